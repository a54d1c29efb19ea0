package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// learnRecordingPolicy allows everything: the gateway records a baseline.
const learnRecordingPolicy = `package interlock

decision := {"allow": true, "alert": false, "reasons": []}
`

// learnTraffic is the normal work of the engineer's workstation
// (127.0.0.1, ews-alice): reads of holding and input registers, a single
// and a multiple register write. It returns how many calls it made.
func learnTraffic(t *testing.T, port int) int {
	t.Helper()
	for _, args := range [][]string{
		{"-r", "100", "-c", "2"},           // read_holding_registers 100..101
		{"-t", "3", "-r", "10", "-c", "4"}, // read_input_registers 10..13
	} {
		if r := mbpoll(t, port, args); r.code != 0 {
			t.Fatalf("mbpoll %v: exit %d\n%s", args, r.code, r.out)
		}
	}
	if r := mbpoll(t, port, []string{"-r", "102"}, "7"); r.code != 0 {
		t.Fatalf("mbpoll write at 102: exit %d\n%s", r.code, r.out)
	}
	if r := pyclient(t, port, "write", 103, 8, 9); r.Error != "" {
		t.Fatalf("pymodbus write at 103..104: %+v", r)
	}
	if r := pyclient(t, port, "read", 100, 5); r.Error != "" || len(r.Registers) != 5 {
		t.Fatalf("pymodbus read of 100..104: %+v", r)
	}
	return 5
}

// A real log recorded by the gateway → policy learn → policy test passes →
// the gateway restarted with the learned policy passes the same traffic with
// no alert, and alerts on (but forwards) planted deviations, each named.
func TestE2ELearnFromARecordedLog(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"interlock.rego": learnRecordingPolicy}})
	g.start(t)

	n := learnTraffic(t, g.port)
	waitAudit(t, g.auditPath, 5*time.Second, "the learning calls", func(recs []record) bool {
		return len(eventsOf(recs, "call")) == n
	})
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}

	out := filepath.Join(g.dir, "learned")
	r := interlock(t, "policy", "learn", "--audit", g.auditPath, "--out", out)
	if r.code != 0 {
		t.Fatalf("policy learn: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"read 5 calls from 1 audit log: learned 5 forwarded", "4 workflows: 1 source, 1 user, 1 target",
		"review and commit; the output is not applied to any gateway"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("policy learn output lacks %q:\n%s", want, r.stdout)
		}
	}
	baseline, err := os.ReadFile(filepath.Join(out, "baseline.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"ews-alice": {"accounts": [{"user": "alice", "auth": "inventory"}]}`,
		`"ews-alice|alice|plc1/1|read_holding_registers": {"access": "read", "calls": 2}`,
		`"read_holding_registers": {"address": [100, 104]}`,
		`"read_input_registers": {"address": [10, 13]}`,
		`"write_multiple_registers": {"address": [103, 104]}`,
	} {
		if !strings.Contains(string(baseline), want) {
			t.Errorf("baseline.json lacks %s:\n%s", want, baseline)
		}
	}
	t.Logf("baseline.json:\n%s", baseline)

	if r := interlock(t, "policy", "test", out); r.code != 0 || !strings.Contains(r.stdout, "PASS: 10/10") {
		t.Fatalf("policy test of the learned policy: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := interlock(t, "policy", "learn", "--audit", g.auditPath, "--out", out); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("a second learn into the same directory: exit %d, stderr %q; want a refusal pointing at --force", r.code, r.stderr)
	}
	if r := interlock(t, "policy", "learn", "--audit", g.auditPath, "--out", out, "--force"); r.code != 0 {
		t.Errorf("learn --force: exit %d: %s", r.code, r.stderr)
	}

	// The gateway runs the learned policy (its tests are not loaded at run time).
	if err := os.Remove(filepath.Join(g.policyDir, "interlock.rego")); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(out, "learned.rego"), filepath.Join(g.policyDir, "learned.rego"))
	copyFile(t, filepath.Join(out, "baseline.json"), filepath.Join(g.policyDir, "baseline.json"))
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("check with the learned policy: exit %d: %s", r.code, r.stderr)
	}
	before := len(readAudit(t, g.auditPath))
	g.start(t)

	n = learnTraffic(t, g.port)
	recs := waitAudit(t, g.auditPath, 5*time.Second, "the learning calls again", func(recs []record) bool {
		return len(eventsOf(recs[before:], "call")) == n
	})[before:]
	if loads := eventsOf(recs, "policy.load"); len(loads) == 0 || !slices.Contains(loads[0].strs("files"), "learned.rego") {
		t.Fatalf("the restarted gateway did not load learned.rego: %v", loads)
	}
	for _, ev := range []string{"session.open", "call"} {
		for _, c := range eventsOf(recs, ev) {
			if c.get("decision.allow") != true || c.get("decision.alert") != false || len(c.strs("decision.reasons")) != 0 {
				t.Errorf("learned traffic under the learned policy: want allow, no alert\n%s", c)
			}
		}
	}

	// Planted deviations: forwarded (the learned policy alerts, it does not
	// block), each alerted with its reason.
	if r := mbpoll(t, g.port, []string{"-r", "900", "-c", "2"}); r.code != 0 {
		t.Errorf("read far outside the learned range: exit %d\n%s", r.code, r.out)
	}
	if r := pyclient(t, g.port, "read_coils", 0, 8); r.Error != "" {
		t.Errorf("read_coils, never seen: %+v", r)
	}
	if r := mbpoll(t, g.port, []string{"-a", "2", "-r", "100"}); r.code != 0 {
		t.Errorf("read of unit 2, never called: exit %d\n%s", r.code, r.out)
	}
	if r := pyclientFrom(t, "127.0.0.2", g.port, "read", 100, 2); r.Error != "" {
		t.Errorf("read from 127.0.0.2, a system never seen: %+v", r)
	}
	planted := []struct {
		what   string
		match  func(record) bool
		reason string
	}{
		{"read at 900", func(c record) bool { return c.num("operation.address") == 900 }, "deviation:address_out_of_range"},
		{"read_coils", func(c record) bool { return c.str("operation.function") == "read_coils" }, "deviation:function_not_seen"},
		{"unit 2", func(c record) bool { return c.num("target.unit_id") == 2 }, "deviation:unusual_target"},
		{"from 127.0.0.2", func(c record) bool { return c.str("source.ip") == "127.0.0.2" }, "deviation:unusual_source"},
	}
	recs = waitAudit(t, g.auditPath, 5*time.Second, "the planted deviations", func(recs []record) bool {
		return len(eventsOf(recs[before:], "call")) == n+len(planted)
	})[before:]
	for _, p := range planted {
		var found record
		for _, c := range eventsOf(recs, "call") {
			if p.match(c) {
				found = c
			}
		}
		if found == nil {
			t.Errorf("%s: no call record", p.what)
			continue
		}
		if found.get("decision.allow") != true || found.get("decision.alert") != true ||
			!slices.Equal(found.strs("decision.reasons"), []string{p.reason}) {
			t.Errorf("%s: want allow, alert, reasons [%s]\n%s", p.what, p.reason, found)
		}
		if res := resultOf(recs, found.str("call_id")); res == nil || res.str("status") != "ok" {
			t.Errorf("%s: want it forwarded (result ok): %v", p.what, res)
		}
	}
	// The unknown system is flagged as soon as it connects.
	for _, s := range eventsOf(recs, "session.open") {
		if s.str("source.ip") == "127.0.0.2" && (s.get("decision.alert") != true || !slices.Contains(s.strs("decision.reasons"), "deviation:unusual_source")) {
			t.Errorf("session.open from 127.0.0.2: want an alert naming deviation:unusual_source\n%s", s)
		}
	}
	verifyAudit(t, g.auditPath)
}
