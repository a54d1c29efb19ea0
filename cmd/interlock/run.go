package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/admin"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"  // registers "modbus"
	_ "github.com/interlock-ics/interlock/gateway/opcua" // registers "opcua"
	"github.com/interlock-ics/interlock/policy"
)

const runSynopsis = "--config FILE [--log-format auto|json|console] [--cpu-profile FILE]"

func init() {
	register(command{name: "run", synopsis: runSynopsis, run: cmdRun,
		help: "run the gateway in the foreground (SIGHUP or a change of the files reloads the policy, the OPC UA users files and the Modbus/TCP Security certificates, CAs and CRLs)"})
}

func cmdRun(args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := newFlags("run", "run "+runSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	logFormat := fs.String("log-format", "auto", "operational log on stderr: json, console, or auto (console on a terminal)")
	cpuProfile := fs.String("cpu-profile", "", "write a CPU profile (go tool pprof) to this file until shutdown")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		fs.Usage()
		return usageErr("run: --config FILE is required")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, *logFormat, cfg.Gateway.LogLevel)
	if err != nil {
		return usageErr("run: %v", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	return serve(ctx, cfg, log)
}

// serve runs the gateway until ctx is done.
func serve(ctx context.Context, cfg *config.Config, log zerolog.Logger) (err error) {
	bootID := gateway.NewID()
	// SIGHUP reloads the policy: catch it before anything says the gateway
	// is ready, or a reload asked for right then kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// The shippers stop after the audit log is closed, so that its last
	// records (gateway.stop, the closing checkpoint) go out too.
	var ships shippers
	defer ships.stop()
	aw, keyID, err := openAudit(cfg, bootID, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := aw.Close(); err != nil {
			log.Error().Err(err).Msg("audit: closing the log")
		}
	}()
	started := false
	defer func() {
		if err == nil || started {
			return
		}
		// what the log holds of this start (policy.load …) is explained
		_ = aw.Record(audit.EventGatewayStartFailed, true, func(e *zerolog.Event) {
			e.Str(audit.FieldBootID, bootID).Str("config", cfg.File).Str("error", err.Error())
		})
	}()
	if err := ships.start(cfg, aw, log); err != nil {
		return err
	}

	tickets, err := openTickets(cfg, aw, log)
	if err != nil {
		return err
	}
	dl, err := newDecisionLog(cfg, log)
	if err != nil {
		return err
	}
	var polRef atomic.Pointer[policy.Engine] // set once newPolicy returns
	pol, err := newPolicy(cfg, log, tickets, dl, func(l policy.Load) {
		if l.Err != nil {
			_ = aw.Record("policy.load_failed", true, func(e *zerolog.Event) {
				e.Str("path", cfg.Policy.Path)
				if l.InForce != "" {
					e.Str("policy_revision", l.InForce) // the policy that stays in force
				}
				e.Str("error", l.Err.Error())
			})
			return
		}
		_ = aw.Record("policy.load", true, func(e *zerolog.Event) {
			e.Str("policy_revision", l.Revision).Str("path", cfg.Policy.Path).Strs("files", l.Files)
			if l.BundleSignature != "" {
				e.Str("bundle_signature", l.BundleSignature)
			}
		})
		if p := polRef.Load(); p != nil { // a reload: the new policy is in force
			go warnSamples(cfg, p, log)
		}
	})
	if err != nil {
		return err
	}
	polRef.Store(pol)
	go warnSamples(cfg, pol, log) // beside the start: a slow policy does not hold it up
	p := newPipeline(cfg, pol, aw, log)
	gws, tlsls, err := buildListeners(cfg, p, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, g := range gws {
			g.Engine.Close()
		}
	}()

	// The admin socket opens before the gateway says it is ready, so that a
	// bad admin setting stops the start rather than a running gateway.
	var adminSrv *admin.Server
	var adminLn *net.UnixListener
	if tickets != nil {
		if adminSrv, adminLn, err = newAdmin(cfg, tickets, aw, log); err != nil {
			return err
		}
		defer adminLn.Close()
		log.Info().Str("socket", cfg.Admin.Socket).Int("open_tickets", len(tickets.List())).Msg("admin socket ready")
	}

	lns := make([]net.Listener, len(gws))
	for i, g := range gws {
		addr, _ := config.ListenAddr(cfg.Listeners[i].Listen)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns[:i] {
				l.Close()
			}
			return cfg.Errorf(cfg.Listeners[i].Key("listen"), "%v", err)
		}
		lns[i] = ln
		log.Info().Str("listener", g.Name).Str("protocol", g.Protocol).Str("listen", ln.Addr().String()).
			Str("upstream", g.Target.Upstream).Bool("tls", g.TLS != nil).Msg("listening")
	}
	started = true
	_ = aw.Record(audit.EventGatewayStart, true, func(e *zerolog.Event) {
		e.Str("version", versionString()).Str(audit.FieldBootID, bootID).Str("config", cfg.File).
			Str("policy_revision", pol.Revision()).Str("policy_mode", cfg.Policy.Mode)
		if keyID != "" {
			e.Str(audit.FieldKeyID, keyID)
		}
	})
	log.Info().Str("policy_revision", pol.Revision()).Str("mode", cfg.Policy.Mode).
		Str("audit", cfg.Audit.Path).Msg("gateway ready")

	if dl != nil {
		// The decision log outlives the listeners: the decisions of calls
		// that end during the shutdown still go out.
		dlCtx, dlStop := context.WithCancel(context.Background())
		dlDone := make(chan struct{})
		go func() { dl.Run(dlCtx); close(dlDone) }()
		defer func() {
			dlStop()
			<-dlDone
			sent, dropped, failed := dl.Stats()
			log.Info().Uint64("sent", sent).Uint64("dropped", dropped).Uint64("failed_uploads", failed).Msg("decision logs stopped")
		}()
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for i, g := range gws {
		wg.Go(func() {
			if err := g.Serve(runCtx, lns[i]); err != nil {
				log.Error().Err(err).Str("listener", g.Name).Msg("listener stopped")
			}
		})
	}
	wg.Go(func() { pol.Watch(runCtx, cfg.Policy.ReloadInterval) })
	watches := append(usersWatches(gws, aw, log), pkiWatches(gws, aw, log)...)
	watches = append(watches, upstreamTLSWatches(gws, aw, log)...)
	for _, tl := range tlsls {
		watches = append(watches, tlsWatch(tl, aw, log))
	}
	wg.Go(func() { pollWatches(runCtx, watches, cfg.Policy.ReloadInterval) })
	if adminSrv != nil {
		wg.Go(func() {
			if err := adminSrv.Serve(runCtx, adminLn); err != nil {
				log.Error().Err(err).Msg("admin socket stopped")
			}
		})
	}

	// A reload runs beside the loop, so that a slow bundle server does not
	// hold up a stop; SIGHUPs while one runs are taken as one more.
	reloading := false
	reloaded := make(chan struct{}, 1)
	again := false
	reload := func() {
		reloading = true
		go func() {
			defer func() { reloaded <- struct{}{} }()
			for _, w := range watches {
				w.reloadNow()
			}
			changed, err := pol.ReloadContext(runCtx)
			switch {
			case err != nil:
				log.Error().Err(err).Msg("policy reload on SIGHUP failed; the running policy stays")
			case changed:
				log.Info().Str("policy_revision", pol.Revision()).Msg("policy reloaded on SIGHUP")
			default:
				log.Info().Str("note", "SIGHUP reloads the policy, the OPC UA users files and trust lists, the tls and upstream_tls files only: the configuration file (sources, listeners) is read at start").Msg("SIGHUP: policy unchanged")
			}
		}()
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			if reloading {
				again = true
			} else {
				reload()
			}
		case <-reloaded:
			reloading = false
			if again {
				again = false
				reload()
			}
		}
	}
	log.Info().Msg("shutting down")
	stop()
	wg.Wait()
	_ = aw.Record(audit.EventGatewayStop, true, func(e *zerolog.Event) { e.Str(audit.FieldBootID, bootID) })
	return nil
}

// openAudit opens the audit log with its checkpoint key, rotation,
// retention and capacity settings, and returns the key id ("" unsigned).
func openAudit(cfg *config.Config, bootID string, log zerolog.Logger) (*audit.Writer, string, error) {
	a := cfg.Audit
	opts := audit.Options{
		Path: a.Path, Gateway: cfg.Gateway.ID, SyncInterval: a.SyncInterval, Log: log, BootID: bootID,
		CheckpointEvery: a.CheckpointEvery, CheckpointInterval: a.CheckpointInterval,
		RotateSize: int64(a.RotateSize), RotateInterval: a.RotateInterval,
		RetainDays: a.RetainDays, RetainBytes: int64(a.RetainBytes), RetainFrom: shipRetainFrom(cfg),
		WarnFillPercent: a.WarnFillPercent, CapacityInterval: a.CapacityInterval,
	}
	keyID := ""
	if a.SigningKey != "" {
		k, err := audit.LoadSigningKey(a.SigningKey)
		if err != nil {
			return nil, "", cfg.Errorf("audit.signing_key", "%v", err)
		}
		opts.SigningKey = k
		keyID = audit.KeyID(k.Public().(ed25519.PublicKey))
		log.Info().Str("key_id", keyID).Int("every", a.CheckpointEvery).Dur("interval", a.CheckpointInterval).
			Msg("audit: checkpoints are signed")
	} else {
		log.Warn().Msg("audit: no audit.signing_key: the log has no signed checkpoints, so a rewritten or cut log cannot be told from a genuine one")
	}
	aw, err := audit.Open(opts)
	if err != nil {
		return nil, "", err
	}
	return aw, keyID, nil
}

// newDecisionLog makes the decision log of policy.decision_logs; nil when
// none is configured.
func newDecisionLog(cfg *config.Config, log zerolog.Logger) (*policy.DecisionLog, error) {
	d := cfg.Policy.DecisionLogs
	if d == nil {
		return nil, nil
	}
	dl, err := policy.NewDecisionLog(policy.DecisionLogOptions{
		URL: d.URL, Token: d.Token, CAFile: d.CA, Interval: d.Interval, MaxEvents: d.MaxEvents, Timeout: d.Timeout,
		Labels: map[string]string{"id": cfg.Gateway.ID, "version": versionString(), "type": "interlock"},
	}, log)
	if err != nil {
		return nil, &config.Error{File: cfg.File, Key: "policy.decision_logs", Msg: err.Error()}
	}
	log.Info().Str("url", d.URL).Msg("decision logs on: every decision also goes to the decision log service (best effort)")
	return dl, nil
}

func newPolicy(cfg *config.Config, log zerolog.Logger, tickets *policy.Tickets, dl *policy.DecisionLog, onLoad func(policy.Load)) (*policy.Engine, error) {
	dc, p := cfg.Policy.DecisionCache, cfg.Policy
	if p.BundleKey != "" {
		if _, err := policy.CheckBundleKey(p.BundleKey, p.BundleKeyAlg); err != nil {
			return nil, &config.Error{File: cfg.File, Key: "policy.bundle_key", Msg: fmt.Sprintf("%s: %v", p.BundleKey, err)}
		}
	}
	pol, err := policy.New(policy.Options{
		Path: p.Path, Gateway: cfg.Gateway.ID, Log: log, OnLoad: onLoad,
		NoCache: dc.Disabled, CacheTTL: dc.TTL, CacheEntries: dc.MaxEntries, Tickets: tickets, DecisionLog: dl,
		MaxConcurrentEvaluations: p.MaxConcurrentEvaluations,
		BundleOptions: policy.BundleOptions{
			BundleKeyFile: p.BundleKey, BundleKeyID: p.BundleKeyID, BundleKeyAlg: p.BundleKeyAlg, BundleScope: p.BundleScope,
			BundleCAFile: p.BundleCA, BundleMaxBytes: p.BundleMaxBytes, BundleTimeout: p.BundleTimeout,
		},
	})
	if err != nil {
		if strings.HasPrefix(p.Path, "http://") || strings.HasPrefix(p.Path, "https://") {
			return nil, cfg.Errorf("policy.path", "%v (the gateway does not start without its policy, and keeps no copy of the last bundle)", err)
		}
		// A bundle file or a directory, as a server: the error is about what
		// policy.path names (the Rego file at fault is a path inside the
		// bundle, or a file of the directory).
		return nil, cfg.Errorf("policy.path", "%v", err)
	}
	return pol, nil
}

func newPipeline(cfg *config.Config, d gateway.Decider, a gateway.Auditor, log zerolog.Logger) *gateway.Pipeline {
	return &gateway.Pipeline{
		Decider:                 d,
		Auditor:                 a,
		Monitor:                 cfg.Policy.Mode == config.ModeMonitor,
		DecisionTimeout:         cfg.Policy.Timeout,
		DenyReadsOnAuditFailure: cfg.Audit.ReadsOnFailure == "deny",
		Log:                     log,
	}
}

// buildListeners builds every listener's engine; nothing is dialed or bound.
func buildListeners(cfg *config.Config, p *gateway.Pipeline, log zerolog.Logger) ([]*gateway.Listener, []tlsListener, error) {
	inv := gateway.NewInventory(cfg.Inventory())
	var out []*gateway.Listener
	var tls []tlsListener
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		newEngine, _ := gateway.Lookup(l.Protocol) // checked in config.Load
		target := gateway.Target{Name: l.Name, Upstream: l.Upstream, UnitID: -1}
		limits := gateway.Limits{MaxConns: l.Limits.MaxConns, MaxConnsPerSource: l.Limits.MaxConnsPerSource,
			ConnRatePerSource: l.Limits.ConnRate(), ConnBurstPerSource: l.Limits.ConnBurstPerSource,
			FirstRequestTimeout: l.Limits.FirstRequestTimeout, IdleTimeout: l.Limits.IdleTimeout, RequestTimeout: l.Limits.RequestTimeout,
			RejectedPerSource: l.Limits.RejectedRecordsPerSource, RejectedWindow: l.Limits.RejectedRecordsWindow}
		llog := log.With().Str("listener", l.Name).Logger()
		eng, err := newEngine(gateway.EngineSpec{
			Listener: l.Name, Upstream: l.Upstream, Listen: l.Listen, BaseDir: filepath.Dir(cfg.File),
			Target: target, Limits: limits,
			Pipeline: p, Options: l.Options(), Log: llog,
		})
		if err != nil {
			for _, g := range out {
				g.Engine.Close()
			}
			return nil, nil, l.SectionError(err)
		}
		gl := &gateway.Listener{
			Name: l.Name, Protocol: l.Protocol, Gateway: cfg.Gateway.ID, Target: target,
			Engine: eng, Pipeline: p, Identify: inv, Limits: limits, Log: llog,
		}
		if t := l.TLS; t != nil {
			// Modbus/TCP Security: the certificate is the principal, the
			// inventory only names the machine.
			srv := newTLSServer(t.TLSFiles)
			gl.TLS, gl.HandshakeTimeout, gl.CheckTLS = srv.Config(), t.HandshakeTimeout, srv.Recheck
			gl.Identify = &gateway.CertIdentifier{Inventory: inv, Roles: modbus.CertRoles}
			if leaf := t.Certificate.Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
				llog.Error().Str("cert", t.Cert).Time("not_after", leaf.NotAfter).Msg("tls.cert has expired: clients will refuse the gateway")
			}
			for _, s := range t.StaleCRLs(time.Now()) {
				llog.Warn().Str("crl", t.CRL).Msg(s + "; it still revokes what it lists")
			}
			tls = append(tls, tlsListener{cfg: t, srv: srv, gl: gl})
		}
		out = append(out, gl)
	}
	return out, tls, nil
}

// isTerminal says whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl := zerolog.InfoLevel
	if level != "" {
		l, err := zerolog.ParseLevel(level)
		if err != nil {
			return zerolog.Logger{}, err
		}
		lvl = l
	}
	switch format {
	case "auto":
		if isTerminal(w) {
			w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
		}
	case "console":
		// colours only for a terminal: a file or pipe gets plain text
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
	case "json":
	default:
		return zerolog.Logger{}, errors.New("--log-format: want auto, json or console")
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// openTickets opens the ticket store when the admin socket is configured;
// every change is a durable audit record before it takes effect.
func openTickets(cfg *config.Config, aw *audit.Writer, log zerolog.Logger) (*policy.Tickets, error) {
	if cfg.Admin.Socket == "" {
		return nil, nil
	}
	ts, err := policy.OpenTickets(cfg.Admin.Tickets, func(ev policy.TicketEvent) error {
		return aw.Record(ev.Event, true, func(e *zerolog.Event) {
			t := ev.Ticket
			e.Str("ticket_id", t.ID).Str("by", ev.By).Dict("ticket", zerolog.Dict().
				Str("id", t.ID).Str("user", t.User).Strs("targets", t.Targets).Strs("access", t.Access).
				Str("reason", t.Reason).Str("opened_by", t.OpenedBy).
				Str("opened", t.Opened.UTC().Format(time.RFC3339Nano)).
				Str("expires", t.Expires.UTC().Format(time.RFC3339Nano)).
				Strs("approvals", t.Approvals))
		})
	})
	if err != nil {
		return nil, err
	}
	for _, w := range unservedTickets(cfg, ts) {
		log.Warn().Msg("tickets: " + w)
	}
	for _, why := range ts.Refused() {
		log.Error().Str("reason", why).Msg("tickets: an entry of the ticket file is not loaded")
		if err := aw.Record("ticket.load_refused", true, func(e *zerolog.Event) { e.Str("reason", why) }); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

func newAdmin(cfg *config.Config, tickets *policy.Tickets, aw *audit.Writer, log zerolog.Logger) (*admin.Server, *net.UnixListener, error) {
	allowed := map[uint32]bool{uint32(os.Getuid()): true}
	for i, name := range cfg.Admin.AllowedUsers {
		u, err := user.Lookup(name)
		if err != nil {
			return nil, nil, cfg.Errorf(fmt.Sprintf("admin.allowed_users[%d]", i), "%v", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		allowed[uint32(uid)] = true
	}
	// Only the owner can open the socket unless other users are allowed;
	// then everyone can reach it and the kernel's credentials decide.
	mode := os.FileMode(0o600)
	if len(cfg.Admin.AllowedUsers) > 0 {
		mode = 0o666
	}
	ln, err := admin.Listen(cfg.Admin.Socket, mode)
	if err != nil {
		return nil, nil, cfg.Errorf("admin.socket", "%v", err)
	}
	refused := func(rf admin.Refusal) {
		err := aw.Record("ticket.refused", false, func(e *zerolog.Event) {
			e.Str("action", rf.Action).Str("by", rf.By).Str("reason", rf.Reason)
			if rf.Repeats > 0 {
				e.Int("repeats_not_recorded", rf.Repeats)
			}
			if rf.TicketID != "" {
				e.Str("ticket_id", rf.TicketID)
			}
			if o := rf.Open; o != nil {
				e.Dict("ticket", zerolog.Dict().Str("id", o.ID).Str("user", o.User).Strs("targets", o.Targets).
					Strs("access", o.Access).Str("reason", o.Reason).Str("duration", o.Duration))
			}
		})
		if err != nil {
			log.Error().Err(err).Str("action", rf.Action).Str("by", rf.By).Msg("admin: a refused request is not in the audit log")
		}
	}
	return &admin.Server{Tickets: tickets, Allowed: allowed, Targets: cfg.TargetNames(), Log: log, Refused: refused}, ln, nil
}

// unservedTickets names the loaded tickets for a target this gateway does
// not serve (its configuration changed since they were opened): they allow
// nothing.
func unservedTickets(cfg *config.Config, ts *policy.Tickets) []string {
	served := cfg.TargetNames()
	var out []string
	for _, t := range ts.List() {
		for _, target := range t.Targets {
			if !slices.Contains(served, target) {
				out = append(out, fmt.Sprintf("ticket %s names target %q, which this gateway does not serve (its targets: %s): it allows nothing there",
					t.ID, target, strings.Join(served, ", ")))
			}
		}
	}
	return out
}
