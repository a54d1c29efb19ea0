package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
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
	// The open tickets, read only: the policy sees them as at run time, and
	// their users get sample calls. An error is reported with admin.tickets.
	var tickets *policy.Tickets
	var ticketsErr error
	if cfg.Admin.Socket != "" {
		tickets, ticketsErr = policy.OpenTickets(cfg.Admin.Tickets, nil)
	}
	var loaded policy.Load
	pol, err := newPolicy(cfg, log, tickets, nil, func(l policy.Load) { loaded = l })
	if err != nil {
		return err
	}
	switch loaded.BundleSignature {
	case "unsigned":
		warnAt(stdout, cfg, "policy.path", "the bundle is unsigned and no policy.bundle_key is set: nothing proves where it came from")
	case "not_checked":
		warnAt(stdout, cfg, "policy.path", "the bundle is signed but no policy.bundle_key is set: its signature is not checked")
	}
	// Engines validate their sections and upstream URLs; nothing is dialed
	// and no call passes, so the pipeline needs no auditor.
	gws, _, err := buildListeners(cfg, newPipeline(cfg, pol, nil, log), log)
	if err != nil {
		return err
	}
	for i, g := range gws {
		if cw, ok := g.Engine.(gateway.ConfigWarner); ok {
			for _, w := range cw.ConfigWarnings() {
				var e *config.Error
				if errors.As(cfg.Listeners[i].SectionError(errors.New(w)), &e) {
					warnAt(stdout, cfg, e.Key, "%s", e.Msg)
				}
			}
		}
		g.Engine.Close()
	}
	if err := checkSamples(cfg, pol, stdout); err != nil {
		return err
	}
	// The listen addresses: one that cannot be bound here is an error; one
	// in use may be the running gateway's, and is a warning.
	for i := range cfg.Listeners {
		addr, _ := config.ListenAddr(cfg.Listeners[i].Listen)
		ln, err := net.Listen("tcp", addr)
		switch {
		case err == nil:
			ln.Close()
		case errors.Is(err, syscall.EADDRINUSE):
			warnAt(stdout, cfg, cfg.Listeners[i].Key("listen"), "%s is in use (by the running gateway, or run will fail)", addr)
		default:
			return cfg.Errorf(cfg.Listeners[i].Key("listen"), "%v", err)
		}
		warnConnRate(stdout, cfg, &cfg.Listeners[i])
		if err := checkListenerCert(stdout, cfg, &cfg.Listeners[i], time.Now()); err != nil {
			return err
		}
	}
	if err := audit.CheckPath(cfg.Audit.Path); err != nil {
		return cfg.Errorf("audit.path", "%v", err)
	}
	if dir, err := probeWritable(nearestDir(cfg.Audit.Path)); err != nil {
		return cfg.Errorf("audit.path", "%s: no file can be made in %s, where the gateway creates the log, its next and rotated files: %v", cfg.Audit.Path, dir, err)
	}
	if pct, ok := audit.FillPercent(nearestDir(cfg.Audit.Path)); ok && pct >= cfg.Audit.WarnFillPercent {
		warnAt(stdout, cfg, "audit.path", "the filesystem of %s is %.1f%% full (warn_fill_percent %v): when it is full, state-changing calls are denied", cfg.Audit.Path, pct, cfg.Audit.WarnFillPercent)
	}
	if held, err := audit.Held(cfg.Audit.Path); err == nil && held {
		warnAt(stdout, cfg, "audit.path", "%s is held by a running gateway (run will fail while it runs)", cfg.Audit.Path)
	}
	if a := cfg.Admin; a.Socket != "" {
		if fi, err := os.Lstat(a.Socket); err == nil && fi.Mode()&os.ModeSocket == 0 {
			return cfg.Errorf("admin.socket", "%s is there and is not a socket: the gateway will not replace it", a.Socket)
		}
		if fi, err := os.Stat(filepath.Dir(a.Socket)); err != nil || !fi.IsDir() {
			return cfg.Errorf("admin.socket", "the folder of %s is not there: create it, or put the socket elsewhere", a.Socket)
		}
		if c, err := net.Dial("unix", a.Socket); err == nil {
			c.Close()
			warnAt(stdout, cfg, "admin.socket", "%s is in use (by the running gateway, or run will fail)", a.Socket)
		}
		if ticketsErr != nil {
			return cfg.Errorf("admin.tickets", "%v", ticketsErr)
		}
		for _, why := range tickets.Refused() {
			warnAt(stdout, cfg, "admin.tickets", "not loaded at start: %s", why)
		}
		for _, w := range unservedTickets(cfg, tickets) {
			warnAt(stdout, cfg, "admin.tickets", "%s", w)
		}
	}
	if cfg.Audit.SigningKey != "" {
		if _, err := audit.LoadSigningKey(cfg.Audit.SigningKey); err != nil {
			return cfg.Errorf("audit.signing_key", "%v", err)
		}
	}
	warnHosts(cfg, stdout, net.DefaultResolver.LookupHost)
	fmt.Fprintf(stdout, "%s: ok: %s, policy %s revision %s (%s mode), audit log %s",
		cfg.File, audit.Plural(len(gws), "listener"), cfg.Policy.Path, pol.Revision(), cfg.Policy.Mode, cfg.Audit.Path)
	for i := range cfg.Listeners {
		if s := tlsSummary(&cfg.Listeners[i]); s != "" {
			fmt.Fprintf(stdout, "; %s", s)
		}
	}
	fmt.Fprintln(stdout)
	return nil
}

// tlsSummary says what a Modbus/TCP Security listener presents and trusts,
// and whether it checks revocation; "" for a listener without tls. The ok
// line ends with it, so that a plain configuration's line stays as it was.
func tlsSummary(l *config.Listener) string {
	t := l.TLS
	if t == nil || t.Certificate.Leaf == nil {
		return ""
	}
	leaf := t.Certificate.Leaf
	s := fmt.Sprintf("%s: Modbus/TCP Security, certificate %s until %s, client CAs %d", l.Name,
		leaf.Subject.String(), leaf.NotAfter.UTC().Format(time.RFC3339), len(t.CACerts))
	if len(t.CRLs) == 0 {
		return s + ", no CRL: revocation not checked"
	}
	revoked := 0
	for _, c := range t.CRLs {
		revoked += len(c.RevokedCertificateEntries)
	}
	return s + fmt.Sprintf(", CRLs %d (%d revoked)", len(t.CRLs), revoked)
}

// sampleResults are the sample calls a policy gives no decision.
type sampleResults struct {
	total             int
	failed, undefined []string
	first             error // of the first failed
	// unnamed are the OPC UA listeners with users: passthrough when the
	// configuration names no user: no named user's call is decided there.
	unnamed []*config.Listener
}

// decideSamples decides a call of every kind the gateway decodes (as policy
// check does) with the loaded policy and its data, within policy.timeout:
// from the samples' engineer and unknown source, and from each workstation
// of the source inventory to each target (the calls the policy's data —
// accounts, windows, tickets — is about); and, for each OPC UA listener, a
// session open, Read, Write, Call and Browse of each user of its users
// file, and of an anonymous or unknown user.
func decideSamples(cfg *config.Config, pol *policy.Engine) sampleResults {
	at := time.Now().UTC()
	samples := policy.SampleInputs(cfg.Gateway.ID, at)
	sessions := map[string]*gateway.Session{}
	for _, ws := range cfg.Inventory() {
		if ws.User == "" {
			continue
		}
		for _, target := range cfg.TargetNames() {
			sessions[fmt.Sprintf("%s at %s to %s", ws.User, cmp.Or(ws.Name, ws.Prefix.String()), target)] = &gateway.Session{
				ID: "sample-" + ws.User, Started: at, Gateway: cfg.Gateway.ID, Listener: target, Protocol: "modbus",
				Source:    gateway.Source{IP: ws.Prefix.Addr(), Port: 50123, Name: ws.Name, Owner: ws.Owner},
				Principal: gateway.Principal{User: ws.User, Auth: gateway.AuthInventory, Roles: ws.Roles},
				Target:    gateway.Target{Name: target, UnitID: -1},
			}
		}
	}
	maps.Copy(samples, policy.SampleInputsFrom(cfg.Gateway.ID, at, sessions))
	// OPC UA: each user of a listener's users file (with passthrough, the
	// users of the inventory and of open tickets), and an anonymous or
	// unknown one, with the engine's own operations. A listener whose
	// section is wrong has none: building its engine says what is wrong.
	known := pol.TicketUsers()
	for _, ws := range cfg.Inventory() {
		known = append(known, ws.User)
	}
	var res sampleResults
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.Protocol != opcua.Protocol {
			continue
		}
		ss, err := opcua.SampleSessions(gateway.EngineSpec{Listener: l.Name, Upstream: l.Upstream, Listen: l.Listen,
			BaseDir: filepath.Dir(cfg.File), Target: gateway.Target{Name: l.Name, Upstream: l.Upstream, UnitID: -1},
			Options: l.Options()}, at, known)
		if err != nil {
			continue
		}
		if usersPassthrough(l) && !slices.ContainsFunc(known, func(u string) bool { return u != "" }) {
			res.unnamed = append(res.unnamed, l)
		}
		maps.Copy(samples, policy.SampleInputsOf(cfg.Gateway.ID, at, ss, opcua.SampleOperations()))
	}
	names := slices.Sorted(maps.Keys(samples))
	res.total = len(names)
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Policy.Timeout)
		_, err := pol.Eval(ctx, samples[n], at)
		cancel()
		var pe *policy.Error
		switch {
		case err == nil:
		case errors.As(err, &pe) && pe.Code == policy.CodeUndefined:
			res.undefined = append(res.undefined, n)
		default:
			res.failed = append(res.failed, n)
			if res.first == nil {
				res.first = fmt.Errorf("%s: %w", n, err)
			}
		}
	}
	return res
}

// usersPassthrough reports whether an OPC UA listener leaves passwords
// to the server (opcua.users: passthrough): the gateway knows no user list.
func usersPassthrough(l *config.Listener) bool {
	var o opcua.Options
	opts := l.Options()
	return opts != nil && opts(&o) == nil && o.Users == opcua.UsersPassthrough
}

// some names up to three of list.
func some(list []string) string {
	s := strings.Join(list[:min(len(list), 3)], "; ")
	if len(list) > 3 {
		s += fmt.Sprintf("; and %d more", len(list)-3)
	}
	return s
}

// checkSamples fails the check on a policy or data error the gateway would
// meet on a call (a maintenance window whose tz is not a time zone, a rule
// that fails, a decision past the timeout): it denies that call at run time
// with policy_error. A decision left undefined for some calls (denied the
// same way) may be the policy's design: a warning.
func checkSamples(cfg *config.Config, pol *policy.Engine, stdout io.Writer) error {
	if pol.UsesNetwork() {
		warnAt(stdout, cfg, "policy.path", "the policy calls the network (http.send or net.lookup_ip_addr): no sample call is decided, they would reach the service (interlock policy check --policy DIR names the calls)")
		return nil
	}
	r := decideSamples(cfg, pol)
	for _, l := range r.unnamed {
		noteAt(stdout, cfg, l.Key("opcua.users"), "passthrough, and the configuration names no user: the calls of %s are decided for an unknown user (and anonymous, when on) only, never for a named user, so the policy's rules for named users are not checked here; to check them, give their user names in sources (user:) or open a change ticket for them (interlock ticket open), or decide inputs of your own with interlock policy check --input FILE", l.Name)
	}
	if len(r.failed) > 0 {
		return cfg.Errorf("policy.path", "%d of %d sample calls get no decision, which the gateway denies with policy_error (%s); the first: %v",
			len(r.failed), r.total, some(r.failed), r.first)
	}
	if len(r.undefined) > 0 {
		warnAt(stdout, cfg, "policy.path", "the decision is undefined for %d of %d sample calls, which the gateway denies with policy_error, policy_undefined (%s)", len(r.undefined), r.total, some(r.undefined))
	}
	return nil
}

// warnSamples logs what checkSamples would fail on, for a policy the
// running gateway loaded (at start or on a reload): it is in force, and
// the calls named are denied with policy_error.
func warnSamples(cfg *config.Config, pol *policy.Engine, log zerolog.Logger) {
	if pol.UsesNetwork() {
		return // made-up calls would reach the service
	}
	r := decideSamples(cfg, pol)
	if len(r.failed) > 0 {
		log.Warn().Err(r.first).Int("failed", len(r.failed)).Int("samples", r.total).Str("policy_revision", pol.Revision()).
			Msg("policy: sample calls get no decision and will be denied with policy_error (interlock check --config tells more)")
	}
}

// probeWritable creates and removes a file in dir: asking the kernel for
// permission (access(2)) answers for the real user and trusts mode bits,
// which root passes everywhere, while a network file system squashing
// root, or a kernel folder, still refuses the file. It returns dir.
func probeWritable(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".interlock-check-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return dir, err
	}
	name := f.Name()
	werr := f.Close()
	if err := os.Remove(name); err != nil {
		return dir, fmt.Errorf("made %s but cannot remove it: %w", name, err)
	}
	return dir, werr
}

// nearestDir is the folder of path, or the nearest one above it that is
// there (the audit folder is made at the first start).
func nearestDir(path string) string {
	dir := filepath.Dir(path)
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// warnConnRate warns of a per-source connection rate limit that refuses
// what a host may hold (a burst under max_conns_per_source: an HMI that
// reconnects after a network blip cannot reopen all its connections at
// once), of a rate under one connection a minute, and of a burst that has
// no effect (no rate).
func warnConnRate(stdout io.Writer, cfg *config.Config, l *config.Listener) {
	lim := l.Limits
	if lim.ConnRate() == 0 && lim.ConnBurstPerSource != gateway.DefaultConnBurstPerSource(lim.MaxConnsPerSource) {
		warnAt(stdout, cfg, l.Key("limits.conn_burst_per_source"), "%d has no effect: limits.conn_rate_per_source is 0 (no rate limit)", lim.ConnBurstPerSource)
	}
	if lim.ConnRate() > 0 && lim.ConnRate() < 1.0/60 {
		warnAt(stdout, cfg, l.Key("limits.conn_rate_per_source"), "%v new connections a second: a host that has used its burst of %d gets one more every %v (0 turns the limit off)",
			lim.ConnRate(), lim.ConnBurstPerSource, time.Duration(float64(time.Second)/lim.ConnRate()).Round(time.Second))
	}
	if lim.ConnRate() > 0 && lim.ConnBurstPerSource < lim.MaxConnsPerSource {
		warnAt(stdout, cfg, l.Key("limits.conn_burst_per_source"), "%d is under max_conns_per_source (%d): a host that reconnects after a network blip cannot reopen all the connections it may hold at once (the rest are refused, limit: conn_rate_per_source)", lim.ConnBurstPerSource, lim.MaxConnsPerSource)
	}
}

// certExpiryWarning is how long before its end a listener's TLS certificate
// is warned about.
const certExpiryWarning = 30 * 24 * time.Hour

// checkListenerCert looks at the gateway's certificate of a TLS listener:
// expired is an error (no client would take it), expiring within 30 days
// or not for server authentication a warning; so is a CRL past its next
// update.
func checkListenerCert(w io.Writer, cfg *config.Config, l *config.Listener, now time.Time) error {
	if l.TLS == nil || l.TLS.Certificate.Leaf == nil {
		return nil
	}
	leaf, key := l.TLS.Certificate.Leaf, l.Key("tls.cert")
	end := leaf.NotAfter.UTC().Format(time.RFC3339)
	switch {
	case now.After(leaf.NotAfter):
		return cfg.Errorf(key, "%s expired at %s: clients refuse the gateway", l.TLS.Cert, end)
	case now.Before(leaf.NotBefore):
		warnAt(w, cfg, key, "%s is not valid before %s: clients refuse the gateway until then", l.TLS.Cert, leaf.NotBefore.UTC().Format(time.RFC3339))
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		warnAt(w, cfg, key, "%s expires at %s, in %d days: clients refuse the gateway from then on", l.TLS.Cert, end, int(leaf.NotAfter.Sub(now).Hours()/24))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		warnAt(w, cfg, key, "%s is not for server authentication (extended key usage serverAuth): clients that check it refuse the gateway", l.TLS.Cert)
	}
	for _, stale := range l.TLS.StaleCRLs(now) {
		warnAt(w, cfg, l.Key("tls.crl"), "%s: %s; it still revokes what it lists, but certificates revoked since are let in until the CA's newer CRL is here", l.TLS.CRL, stale)
	}
	return nil
}
