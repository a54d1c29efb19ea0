package report_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/report"
	"github.com/interlock-ics/interlock/audit/report/reporttest"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// TestBrowserReportReadsAsWords renders, in Chromium, the report of an OPC
// UA log whose records are a second apart, and reads the page as an auditor
// does: bucket widths in words ("per second"), a function named once with
// its node and no empty field, no "via" naming the target again, counts
// with their words ("1 call was", never "call(s)"), and the listeners'
// blind-spot sentence only when a listener saw nothing.
func TestBrowserReportReadsAsWords(t *testing.T) {
	gatewaytest.RequirePeer(t, "chromium")
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.jsonl")
	writeOPCUALog(t, log)
	line1 := report.Listener{Name: "line1", Protocol: "opcua", Listen: "opc.tcp://127.0.0.1:4841", Upstream: "opc.tcp://127.0.0.1:4840"}
	busy := renderReport(t, dir, "busy.html", log, []report.Listener{line1})
	silent := renderReport(t, dir, "silent.html", log, []report.Listener{line1,
		{Name: "line2", Protocol: "opcua", Listen: "opc.tcp://127.0.0.1:4851", Upstream: "opc.tcp://127.0.0.1:4850"}})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	b, err := reporttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	read := func(p *reporttest.Page, expr string) string {
		t.Helper()
		var s string
		if err := p.Eval(ctx, expr, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, scripts := range []bool{true, false} {
		p, err := b.NewPage(ctx, 1280, 900, scripts)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Navigate(ctx, "file://"+busy); err != nil {
			t.Fatalf("%v\nchromium: %s", err, b.Stderr())
		}
		body := read(p, `document.body.innerText`)
		for _, bad := range []string{"(s)", "(ies)", "per 1 s", "index_range", "write write", "via line1", "saw no traffic"} {
			if strings.Contains(body, bad) {
				t.Errorf("scripts %v: the page says %q", scripts, bad)
			}
		}
		if got := read(p, `document.querySelector("#activity p").innerText`); got != "Calls per second by decision, stacked. Hover a bar for its numbers." {
			t.Errorf("scripts %v: the chart's caption is %q", scripts, got)
		}
		if got := read(p, `document.querySelector("#activity svg text.axis").textContent`); got != "UTC, one bar per second" {
			t.Errorf("scripts %v: the chart's axis says %q", scripts, got)
		}
		// The denied write: the function once, then its node and what was written.
		what := read(p, `document.querySelector("#denials table.calls tbody tr td:nth-child(4)").innerText`)
		if want := "write\nnode_id=ns=1;s=Setpoint browse_path=/Objects/PLC/Setpoint attribute=Value value=55.5 data_type=Double"; what != want {
			t.Errorf("scripts %v: the What cell of the denied write is\n%q, want\n%q", scripts, what, want)
		}
		where := read(p, `document.querySelector("#denials table.calls tbody tr td:nth-child(3)").innerText`)
		if where != "127.0.0.1:50000\n→ line1" {
			t.Errorf("scripts %v: the Where cell of the denied write is %q", scripts, where)
		}
		// A method call keeps its access kind: it is not the function's name.
		if got := read(p, `document.querySelector("#state table.calls tbody tr:last-child td:nth-child(4)").innerText`); !strings.HasPrefix(got, "call execute\nobject_id=ns=1;s=PLC method_id=ns=1;s=Start") {
			t.Errorf("scripts %v: the What cell of the method call is %q", scripts, got)
		}
		for _, want := range []string{"1 state-changing call was denied.", "2 state-changing calls (write,", "1 call denied and", "2 sessions opened, 0 refused, 0 authentication failures, 2 closed.", "1 gateway start in the period; 1 clean stop.",
			"from 1 file and the configuration", "quickstart-gw1 (", "0 requests were refused before any policy decision"} {
			if !strings.Contains(body, want) {
				t.Errorf("scripts %v: the page lacks %q", scripts, want)
			}
		}
		if got := read(p, `document.querySelector("#listeners p").innerText`); got != "The listeners of the configuration and what each saw in the period." {
			t.Errorf("scripts %v: every listener saw traffic, and the listeners section says %q", scripts, got)
		}
		if err := p.Navigate(ctx, "file://"+silent); err != nil {
			t.Fatal(err)
		}
		if got := read(p, `document.querySelector("#listeners p").innerText`); !strings.Contains(got, "in the period. 1 of them saw no traffic: either nothing used that path") {
			t.Errorf("scripts %v: line2 saw no traffic, and the listeners section says %q", scripts, got)
		}
		if got := read(p, `document.querySelector("#summary .findings").innerText`); !strings.Contains(got, "1 configured listener saw no traffic in the period") {
			t.Errorf("scripts %v: the findings are %q", scripts, got)
		}
		time.Sleep(200 * time.Millisecond) // late console messages
		for _, m := range p.Problems() {
			t.Errorf("scripts %v: the page said %s", scripts, m)
		}
	}
}

func renderReport(t *testing.T, dir, name, log string, listeners []report.Listener) string {
	t.Helper()
	rep, err := report.Build(context.Background(), report.Options{Files: []string{log}, Listeners: listeners,
		Config: "interlock.yaml", Now: func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := rep.WriteHTML(f); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeOPCUALog writes what the OPC UA quickstart records, a second a
// record: bob reads and writes the setpoint (denied), alice calls a method
// twice (allowed, then denied); the write's index_range is empty, as the
// gateway records a write of a whole value.
func writeOPCUALog(t *testing.T, path string) {
	t.Helper()
	var mu sync.Mutex
	clock := time.Date(2026, 11, 29, 2, 37, 0, 0, time.UTC)
	w, err := audit.Open(audit.Options{Path: path, Gateway: "quickstart-gw1", Clock: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := w.Record(audit.EventGatewayStart, true, func(e *zerolog.Event) {
		e.Str("version", "test").Str("boot_id", "boot-1").Str("policy_revision", "rev-1").Str("policy_mode", "enforce")
	}); err != nil {
		t.Fatal(err)
	}
	target := gateway.Target{Name: "line1", Upstream: "opc.tcp://127.0.0.1:4840", UnitID: -1} // OPC UA: no unit
	session := func(id, user, role string) *gateway.Session {
		s := &gateway.Session{ID: id, Started: time.Now(), Gateway: "quickstart-gw1", Listener: "line1", Protocol: "opcua",
			Source:    gateway.Source{IP: netip.MustParseAddr("127.0.0.1"), Port: 50000},
			Principal: gateway.Principal{User: user, Auth: gateway.AuthUsername, Roles: []string{role}}, Target: target}
		w.SessionStart(ctx, s, &gateway.Decision{Allow: true, Revision: "rev-1"}, "")
		return s
	}
	call := func(s *gateway.Session, id string, op gateway.Operation, allow bool, reason string) {
		c := &gateway.Call{ID: id, Time: time.Now(), Target: target, Operation: op}
		d := gateway.Decision{Allow: allow, Revision: "rev-1", ID: id + "-d", Mode: "enforce"}
		res := &gateway.Result{Status: gateway.StatusOK, Latency: time.Millisecond}
		if !allow {
			d.Reasons = []string{reason}
			res = &gateway.Result{Status: gateway.StatusDenied, Detail: reason}
		}
		if err := w.Call(ctx, s, c, d); err != nil {
			t.Fatal(err)
		}
		w.Result(ctx, s, c, res)
	}
	node := func(fn string, access gateway.Access, id, path string) gateway.Operation {
		op := gateway.Operation{Function: fn, Access: access}
		op.String("node_id", id)
		op.String("browse_path", path)
		op.String("attribute", "Value")
		op.String("index_range", "")
		return op
	}
	method := func(speed int64) gateway.Operation {
		op := gateway.Operation{Function: "call", Access: gateway.AccessExecute}
		op.String("browse_path", "/Objects/PLC/Start")
		op.String("object_id", "ns=1;s=PLC")
		op.String("method_id", "ns=1;s=Start")
		op.Ints("arguments", []int64{speed})
		op.Strings("argument_types", []string{"Int32"})
		return op
	}

	bob := session("s-bob", "bob", "operator")
	call(bob, "c1", node("read", gateway.AccessRead, "ns=1;s=Setpoint", "/Objects/PLC/Setpoint"), true, "")
	write := node("write", gateway.AccessWrite, "ns=1;s=Setpoint", "/Objects/PLC/Setpoint")
	write.Any("value", 55.5)
	write.String("data_type", "Double")
	call(bob, "c2", write, false, "access_not_granted:bob:write")
	w.SessionEnd(ctx, bob, nil)
	alice := session("s-alice", "alice", "engineer")
	for i := range 8 {
		call(alice, "r"+string(rune('a'+i)), node("read", gateway.AccessRead, "ns=1;s=Speed", "/Objects/PLC/Speed"), true, "")
	}
	call(alice, "c3", method(300), true, "")
	w.SessionEnd(ctx, alice, nil)
	if err := w.Record(audit.EventGatewayStop, true, func(e *zerolog.Event) { e.Str("boot_id", "boot-1") }); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
