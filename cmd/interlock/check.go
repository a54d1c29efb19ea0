package main

import (
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/policy"
)

func init() {
	register(command{name: "check", synopsis: "--config FILE", run: cmdCheck,
		help: "check the configuration, compile the policy and check that the audit log can be written"})
}

func cmdCheck(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("check", "check --config FILE", stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return usageErr("check: --config FILE is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := zerolog.Nop()
	pol, err := newPolicy(cfg, log, nil, nil, nil)
	if err != nil {
		return err
	}
	// Engines validate their sections and upstream URLs; nothing is dialed
	// and no call passes, so the pipeline needs no auditor.
	gws, err := buildListeners(cfg, newPipeline(cfg, pol, nil, log), log)
	if err != nil {
		return err
	}
	for _, g := range gws {
		g.Engine.Close()
	}
	if err := audit.CheckPath(cfg.Audit.Path); err != nil {
		return cfg.Errorf("audit.path", "%v", err)
	}
	if a := cfg.Admin; a.Socket != "" {
		if fi, err := os.Lstat(a.Socket); err == nil && fi.Mode()&os.ModeSocket == 0 {
			return cfg.Errorf("admin.socket", "%s is there and is not a socket: the gateway will not replace it", a.Socket)
		}
		ts, err := policy.OpenTickets(a.Tickets, nil)
		if err != nil {
			return cfg.Errorf("admin.tickets", "%v", err)
		}
		for _, why := range ts.Refused() {
			fmt.Fprintf(stdout, "%s: warning: admin.tickets: not loaded at start: %s\n", cfg.File, why)
		}
	}
	if cfg.Audit.SigningKey != "" {
		if _, err := audit.LoadSigningKey(cfg.Audit.SigningKey); err != nil {
			return cfg.Errorf("audit.signing_key", "%v", err)
		}
	}
	fmt.Fprintf(stdout, "%s: ok: %d listener(s), policy %s revision %s (%s mode), audit log %s\n",
		cfg.File, len(gws), cfg.Policy.Path, pol.Revision(), cfg.Policy.Mode, cfg.Audit.Path)
	return nil
}
