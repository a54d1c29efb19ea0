package report_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/report"
	"github.com/interlock-ics/interlock/audit/report/reporttest"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// TestBrowserHostileLog renders a log whose values try to inject markup and
// script, in Chromium with scripts on and off: the page must say nothing at
// warning level or above, open no dialog, and show the values as text.
func TestBrowserHostileLog(t *testing.T) {
	gatewaytest.RequirePeer(t, "chromium")
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.jsonl")
	hostile := `<script>alert("x")</script><img src=x onerror=alert("y")>`
	writeHostileLog(t, log, hostile)
	rep, err := report.Build(context.Background(), report.Options{Files: []string{log}})
	if err != nil {
		t.Fatal(err)
	}
	htmlPath := filepath.Join(dir, "report.html")
	f, err := os.Create(htmlPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// About 70 KiB: one of the 100 KiB texts shown whole breaks the bound.
	if fi, err := os.Stat(htmlPath); err != nil {
		t.Fatal(err)
	} else if fi.Size() > 160<<10 {
		t.Errorf("a page of %d bytes", fi.Size())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := reporttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, scripts := range []bool{true, false} {
		p, err := b.NewPage(ctx, 1280, 900, scripts)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Navigate(ctx, "file://"+htmlPath); err != nil {
			t.Fatalf("%v\nchromium: %s", err, b.Stderr())
		}
		var body string
		if err := p.Eval(ctx, `document.body.innerText`, &body); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(body, hostile) {
			t.Errorf("scripts %v: the hostile user name is not shown as text", scripts)
		}
		// The load failures' 100 KiB errors (policy, users, tls,
		// upstream_tls, pki), and the other free text: their first 400
		// bytes as text.
		if n := strings.Count(body, hostileError(hostile)[:400]+"…"); n != 5 {
			t.Errorf("scripts %v: %d load failures show their error clipped to 400 bytes, want 5", scripts, n)
		}
		for _, l := range longLabels {
			if !strings.Contains(body, (l + ": " + hostileError(hostile))[:400]+"…") {
				t.Errorf("scripts %v: the text %q… is not shown clipped to 400 bytes", scripts, l)
			}
		}
		if strings.Contains(body, errorEnd) {
			t.Errorf("scripts %v: the page shows more of an error than 400 bytes", scripts)
		}
		var injected int
		if err := p.Eval(ctx, `document.querySelectorAll("script").length + document.querySelectorAll("img").length`, &injected); err != nil {
			t.Fatal(err)
		}
		if injected != 1 { // the report's own script
			t.Errorf("scripts %v: %d script or img elements, want only the report's own script", scripts, injected)
		}
		var sections []string
		if err := p.Eval(ctx, `Array.from(document.querySelectorAll("main > section")).map(s => s.id)`, &sections); err != nil {
			t.Fatal(err)
		}
		if len(sections) < 16 {
			t.Errorf("scripts %v: sections %v", scripts, sections)
		}
		time.Sleep(200 * time.Millisecond) // late console messages
		for _, m := range p.Problems() {
			t.Errorf("scripts %v: the page said %s", scripts, m)
		}
	}
}

func writeHostileLog(t *testing.T, path, hostile string) {
	t.Helper()
	w := openWriter(t, path)
	defer w.Close()
	recordHostile(t, w, hostile)
}

func openWriter(t *testing.T, path string) *audit.Writer {
	t.Helper()
	w, err := audit.Open(audit.Options{Path: path, Gateway: "gw-hostile"})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// errorEnd ends hostileError.
const errorEnd = "END-OF-THE-ERROR"

// hostileError is a load failure's error of over 100 KiB, hostile all along.
func hostileError(hostile string) string {
	return strings.Repeat(hostile, 100<<10/len(hostile)+1) + errorEnd
}

// recordHostile writes a session and calls whose every free-text field is
// hostile: user, roles, source name, target, function, reasons, details,
// the certificate and files of Modbus/TCP Security file loads (of a
// listener and toward its PLCs), the listener, folders and errors of OPC
// UA trust-list checks, and the errors (of over 100 KiB) of policy,
// users-file, TLS (of a listener and toward its PLCs) and trust-list loads;
// and free text of over 100 KiB: the reasons of a refused session, a failed
// login, a malformed request (with its detail and response), a denial, a
// change ticket, a refused ticket-file entry and admin request, a result's
// detail, a failed start's error and a session's close error.
func recordHostile(t *testing.T, w *audit.Writer, hostile string) {
	t.Helper()
	ctx := context.Background()
	s := &gateway.Session{ID: "s1", Started: time.Now(), Gateway: "gw-hostile", Listener: hostile, Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("10.0.0.66"), Port: 4242, Name: hostile, Owner: hostile},
		Principal: gateway.Principal{User: hostile, Auth: gateway.AuthInventory, Roles: []string{hostile}},
		Target:    gateway.Target{Name: hostile, Upstream: hostile, UnitID: 1}}
	w.SessionStart(ctx, s, &gateway.Decision{Allow: true, Reasons: []string{hostile}, Revision: hostile}, "")
	for i, access := range []gateway.Access{gateway.AccessRead, gateway.AccessWrite, gateway.AccessProgram} {
		c := &gateway.Call{ID: fmt.Sprint("c", i), Time: time.Now(), Target: s.Target,
			Operation: gateway.Operation{Function: hostile, Access: access}}
		c.Operation.String("node_id", hostile)
		c.Operation.Ints("values", []int64{1, 2, 3})
		d := gateway.Decision{Allow: i == 0, Alert: i > 0, Reasons: []string{hostile, "x"}, Revision: hostile, ID: "d", Mode: "enforce", Ticket: hostile}
		if err := w.Call(ctx, s, c, d); err != nil {
			t.Fatal(err)
		}
		w.Result(ctx, s, c, &gateway.Result{Status: gateway.StatusException, Code: 2, Detail: hostile, Latency: time.Millisecond})
	}
	w.Rejected(ctx, s, &gateway.Call{ID: "r"}, hostile, hostile, hostile)
	if err := w.Record(hostile, false, func(e *zerolog.Event) { e.Str(hostile, hostile) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("policy.load", false, func(e *zerolog.Event) { e.Str("policy_revision", hostile).Strs("files", []string{hostile}) }); err != nil {
		t.Fatal(err)
	}
	tlsFields := func(e *zerolog.Event) {
		e.Str("listener", hostile).Strs("paths", []string{hostile}).Str("cert_subject", hostile).Str("cert_thumbprint", hostile).
			Time("cert_not_after", time.Now()).Int("crls", 1).Int("revoked_certificates", 1)
	}
	if err := w.Record("tls.load", true, func(e *zerolog.Event) {
		tlsFields(e)
		e.Int("sessions_ended", 1).Strs("stale_crls", []string{hostile})
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("policy.load_failed", true, func(e *zerolog.Event) { e.Str("path", hostile).Str("error", hostileError(hostile)) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("users.load_failed", true, func(e *zerolog.Event) {
		e.Str("listener", hostile).Str("path", hostile).Int("users", 1).Str("error", hostileError(hostile))
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("tls.load_failed", true, func(e *zerolog.Event) { tlsFields(e); e.Str("error", hostileError(hostile)) }); err != nil {
		t.Fatal(err)
	}
	upTLSFields := func(e *zerolog.Event) {
		e.Str("listener", hostile).Strs("paths", []string{hostile}).Str("cert_subject", hostile).Str("cert_thumbprint", hostile).
			Time("cert_not_after", time.Now()).Int("ca_certs", 1)
	}
	if err := w.Record("upstream_tls.load", true, func(e *zerolog.Event) { upTLSFields(e); e.Int("connections_closed", 1) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("upstream_tls.load_failed", true, func(e *zerolog.Event) { upTLSFields(e); e.Str("error", hostileError(hostile)) }); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("pki.load", true, func(e *zerolog.Event) {
		trust := func() *zerolog.Event {
			return zerolog.Dict().Int("trusted_certs", 1).Int("issuer_certs", 1).Int("crls", 1).Int("revoked_certificates", 1)
		}
		e.Str("listener", hostile).Strs("paths", []string{hostile}).Dict("pki", trust()).Dict("user_pki", trust()).Int("sessions_ended", 1).
			Int("upstream_connections_dropped", 1).Str("upstream_error", hostile)
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record("pki.load_failed", true, func(e *zerolog.Event) { e.Str("listener", hostile).Str("error", hostileError(hostile)) }); err != nil {
		t.Fatal(err)
	}
	// The other free text of over 100 KiB, each beginning with its label.
	long := func(label string) string { return label + ": " + hostileError(hostile) }
	refused := *s
	refused.ID = "s2"
	w.SessionStart(ctx, &refused, nil, long("refused"))
	w.AuthFailed(ctx, s, long("auth"), hostile)
	w.Rejected(ctx, s, &gateway.Call{ID: "r2"}, long("reason"), long("detail"), long("response"))
	c := &gateway.Call{ID: "c3", Time: time.Now(), Target: s.Target, Operation: gateway.Operation{Function: "write", Access: gateway.AccessWrite}}
	if err := w.Call(ctx, s, c, gateway.Decision{Allow: false, Reasons: []string{long("decision")}, ID: "d", Mode: "enforce"}); err != nil {
		t.Fatal(err)
	}
	w.Result(ctx, s, c, &gateway.Result{Status: gateway.StatusException, Code: 4, Detail: long("result"), Latency: time.Millisecond})
	for _, r := range []struct {
		event  string
		fields func(e *zerolog.Event)
	}{
		{"ticket.open", func(e *zerolog.Event) {
			e.Str("ticket_id", "T1").Str("by", hostile).Dict("ticket", zerolog.Dict().Str("id", "T1").Str("user", hostile).
				Strs("targets", []string{hostile}).Strs("access", []string{"write"}).Str("reason", long("ticket")).Str("opened_by", hostile).
				Str("opened", time.Now().UTC().Format(time.RFC3339)).Str("expires", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
		}},
		{"ticket.load_refused", func(e *zerolog.Event) { e.Str("reason", long("load refused")) }},
		{"ticket.refused", func(e *zerolog.Event) {
			e.Str("action", "approve").Str("ticket_id", "T1").Str("by", hostile).Str("reason", long("admin"))
		}},
		{"gateway.start_failed", func(e *zerolog.Event) { e.Str("error", long("start")) }},
	} {
		if err := w.Record(r.event, true, r.fields); err != nil {
			t.Fatal(err)
		}
	}
	w.SessionEnd(ctx, &refused, errors.New(long("close")))
	w.SessionEnd(ctx, s, errors.New(hostile))
}

// longLabels begin the free text recordHostile writes besides the load
// failures' errors.
var longLabels = []string{"refused", "auth", "reason", "detail", "response", "decision", "result",
	"ticket", "load refused", "admin", "start", "close"}
