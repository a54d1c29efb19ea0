package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/ship"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// shipDrainTimeout bounds how long shutdown waits for the shippers to send
// what the log holds; the cursor keeps the rest for the next start.
const shipDrainTimeout = 3 * time.Second

// shippers are the running shippers of `audit.ship:`.
type shippers struct {
	list []*ship.Shipper
}

// start starts one shipper per `audit.ship:` entry, each following the
// audit log from its cursor. Notes (a refused record skipped or stopping a
// shipper) are written to the log through aw.
func (ss *shippers) start(cfg *config.Config, aw *audit.Writer, log zerolog.Logger) error {
	for i := range cfg.Audit.Ship {
		sc := &cfg.Audit.Ship[i]
		sink, err := newSink(cfg, i)
		if err != nil {
			return err
		}
		s, err := ship.New(ship.Options{
			Name: sc.Name, Path: cfg.Audit.Path, CursorPath: sc.Cursor, Sink: sink,
			BatchRecords: sc.BatchRecords, BatchBytes: int(sc.BatchBytes), RetryMax: sc.RetryMax, OnReject: sc.OnReject,
			Note: func(event string, fields func(e *zerolog.Event)) error { return aw.Record(event, true, fields) },
			Head: func() uint64 { return aw.Stats().Seq },
			Log:  log,
		})
		if err == nil {
			err = s.Start()
		}
		if err != nil {
			return &config.Error{File: cfg.File, Key: fmt.Sprintf("audit.ship[%d]", i), Msg: err.Error()}
		}
		ss.list = append(ss.list, s)
	}
	return nil
}

// stop lets every shipper send what the log holds, all within one bound.
func (ss *shippers) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), shipDrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range ss.list {
		wg.Go(func() { s.Stop(ctx) })
	}
	wg.Wait()
}

// shipRetainFrom keeps retention from deleting a rotated file that a
// shipper has not delivered yet: it names the oldest file some shipper
// still needs (ship.OldestNeeded, from their cursor files). nil when
// nothing is shipped.
func shipRetainFrom(cfg *config.Config) func() (string, error) {
	if len(cfg.Audit.Ship) == 0 {
		return nil
	}
	path := cfg.Audit.Path
	cursors := make([]string, len(cfg.Audit.Ship))
	for i, sc := range cfg.Audit.Ship {
		cursors[i] = sc.Cursor
	}
	return func() (string, error) { return ship.OldestNeeded(path, cursors) }
}

// newSink builds the sink of audit.ship[i].
func newSink(cfg *config.Config, i int) (ship.Sink, error) {
	sc := &cfg.Audit.Ship[i]
	cfgErr := func(key string, err error) error {
		return &config.Error{File: cfg.File, Key: fmt.Sprintf("audit.ship[%d].%s", i, key), Msg: err.Error()}
	}
	var tlsCfg *tls.Config
	if t := sc.TLS; t != nil {
		c, err := ship.TLSConfig(t.CA, t.Cert, t.Key, t.ServerName)
		if err != nil {
			return nil, cfgErr("tls", err)
		}
		tlsCfg = c
	}
	switch sc.Type {
	case config.ShipSyslog:
		s, err := ship.NewSyslog(ship.SyslogOptions{
			Address: sc.Address, TLS: tlsCfg, Format: sc.Format, Hostname: sc.Hostname,
			Facility: sc.FacilityCode, SDID: sc.SDID, Version: versionString(),
			DialTimeout: sc.Timeout, WriteTimeout: sc.Timeout,
		})
		if err != nil {
			return nil, cfgErr("address", err)
		}
		return s, nil
	case config.ShipHTTP:
		h, err := ship.NewHTTP(ship.HTTPOptions{
			URL: sc.URL, TokenFile: sc.TokenFile, AuthScheme: sc.AuthScheme, TLS: tlsCfg,
			Timeout: sc.Timeout, Version: versionString(),
		})
		if err != nil {
			key := "url"
			if strings.Contains(err.Error(), "token_file") {
				key = "token_file"
			}
			return nil, cfgErr(key, err)
		}
		return h, nil
	}
	return nil, cfgErr("type", fmt.Errorf("%q is not one of syslog, http", sc.Type))
}
