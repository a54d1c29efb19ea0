package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// shipHostTimeout bounds check's lookups of the SIEM hosts: the machine
// that runs check may have no DNS, and check must not hang on it.
const shipHostTimeout = 2 * time.Second

// warnShipHosts warns about each audit.ship receiver whose host does not
// resolve here: at run time its shipper would only back off, logging "no
// such host". A warning, not an error: check may run on a build machine
// that does not see the site's DNS. Literal IP addresses are not looked up.
func warnShipHosts(cfg *config.Config, w io.Writer, lookup func(ctx context.Context, host string) ([]string, error)) {
	type receiver struct{ key, host string }
	var rs []receiver
	for i, s := range cfg.Audit.Ship {
		var r receiver
		switch s.Type {
		case config.ShipSyslog:
			r.key = fmt.Sprintf("audit.ship[%d].address", i)
			r.host, _, _ = net.SplitHostPort(s.Address)
		case config.ShipHTTP:
			r.key = fmt.Sprintf("audit.ship[%d].url", i)
			if u, err := url.Parse(s.URL); err == nil {
				r.host = u.Hostname()
			}
		}
		if _, err := netip.ParseAddr(r.host); r.host == "" || err == nil {
			continue
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), shipHostTimeout)
	defer cancel()
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() { _, errs[i] = lookup(ctx, r.host) })
	}
	wg.Wait()
	for i, r := range rs {
		err := errs[i]
		var de *net.DNSError
		switch {
		case err == nil:
			continue
		case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &de) && de.IsTimeout):
			warnAt(w, cfg, r.key, "host %s: no answer from DNS within %v, not checked (the shipper cannot deliver while its host does not resolve)", r.host, shipHostTimeout)
			continue
		case errors.As(err, &de):
			err = errors.New(de.Err)
		}
		warnAt(w, cfg, r.key, "host %s does not resolve here (%v): the shipper would retry with back-off and deliver nothing until it does", r.host, err)
	}
}

// warnAt prints a check warning that names the file, line and key as a
// configuration error does: FILE:LINE: warning: KEY: message.
func warnAt(w io.Writer, cfg *config.Config, key, format string, args ...any) {
	var e *config.Error
	if !errors.As(cfg.Errorf(key, format, args...), &e) {
		return
	}
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	fmt.Fprintf(w, "%s: warning: %s: %s\n", loc, e.Key, e.Msg)
}
