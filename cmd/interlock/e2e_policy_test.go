package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultPolicy allows sessions and reads, except at addresses 300..304 where
// the decision fails in one way each. Writes have no rule: undefined.
const faultPolicy = `package interlock

op := input.operation

decision := {"allow": true, "alert": false, "reasons": ["session"]} if op.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if {
	op.access == "read"
	not fault_address
}

fault_address if op.address >= 300

# 300: two complete rules give different values: a Rego conflict error.
decision := {"allow": true, "alert": false, "reasons": ["conflict_a"]} if op.address == 300

decision := {"allow": false, "alert": false, "reasons": ["conflict_b"]} if op.address == 300

# 301: a builtin error.
decision := {"allow": to_number("x") > 0, "reasons": ["builtin"]} if op.address == 301

# 302: no rule matches: the decision is undefined.

# 303: a decision that takes seconds, far past policy.timeout; had it
# finished it would allow.
decision := {"allow": n >= 0, "reasons": ["slow"]} if {
	op.address == 303
	r := numbers.range(1, 4000)
	n := count([1 | some a in r; some b in r; a * b < 0])
}

# 304: a decision of the wrong type.
decision := "allow" if op.address == 304
`

// Policies that fail at run time deny the call with policy_error: a Rego
// conflict, a builtin error, an undefined decision, a decision past
// policy.timeout and one of the wrong type, each through the real binary.
func TestE2EPolicyFaultsFailClosed(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	// policy.timeout: far above what the rules that do not fail take, even
	// in the race-built gateway on a loaded machine (a 50ms bound denied the
	// plain read below there), and far below what the slow rule takes.
	const policyTimeout = time.Second
	g := newGateway(t, gwOptions{upstreamPort: plc.port, policyTimeout: policyTimeout.String(),
		rego: map[string]string{"interlock.rego": faultPolicy}})
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("interlock check of the fault policy: exit %d: %s", r.code, r.stderr)
	}
	g.start(t)

	// The policy works where it does not fail.
	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != v100 || r.values[101] != v101 {
		t.Fatalf("a read the fault policy allows: exit %d, values %v\n%s", r.code, r.values, r.out)
	}

	cases := []struct {
		name    string
		addr    int
		client  string // mbpoll or pymodbus
		logCode string // the cause in the operational log
	}{
		{"conflicting complete rules", 300, peerMbpoll, "policy_eval_error"},
		{"builtin error", 301, peerPymodbus, "policy_eval_error"},
		{"undefined decision", 302, peerMbpoll, "policy_undefined"},
		{"past policy.timeout", 303, peerMbpoll, "policy_timeout"},
		{"wrong type", 304, peerPymodbus, "policy_bad_decision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.client {
			case peerMbpoll:
				// mbpoll waits up to 5 s for the answer: a client kept
				// waiting fails here. How long the decision took is checked
				// in the gateway's own records below.
				r := mbpoll(t, g.port, []string{"-o", "5", "-r", strconv.Itoa(tc.addr)})
				if r.code == 0 || !strings.Contains(r.out, "Illegal function") {
					t.Errorf("mbpoll read %d: exit %d, want Illegal function\n%s", tc.addr, r.code, r.out)
				}
			case peerPymodbus:
				if r := pyclient(t, g.port, "read", tc.addr, 1); r.Exception == nil || *r.Exception != 1 {
					t.Errorf("pymodbus read %d: %+v, want exception 1", tc.addr, r)
				}
			}
			recs := waitAudit(t, g.auditPath, 3*time.Second, "call and result of the read at "+strconv.Itoa(tc.addr), func(recs []record) bool {
				c := callRecords(recs, "read_holding_registers", tc.addr)
				return len(c) == 1 && resultOf(recs, c[0].str("call_id")) != nil
			})
			call := callRecords(recs, "read_holding_registers", tc.addr)[0]
			res := checkCallRecord(t, recs, call, false)
			if got := call.strs("decision.reasons"); !slices.Equal(got, []string{"policy_error", tc.logCode}) {
				t.Errorf("decision reasons %v, want [policy_error %s]", got, tc.logCode)
			}
			if call.get("decision.alert") != true {
				t.Errorf("a policy error is not flagged as an alert: %v", call.get("decision"))
			}
			if e := call.str("decision.error"); e == "" || !strings.Contains(e, tc.logCode) {
				t.Errorf("the call record's decision.error %q does not tell the error (%s)", e, tc.logCode)
			}
			if res.str("status") != "denied" {
				t.Errorf("result status %q, want denied", res.str("status"))
			}
			// How long the decision took: from the call's arrival to its record.
			received, err1 := time.Parse(time.RFC3339Nano, call.str("call_time"))
			recorded, err2 := time.Parse(time.RFC3339Nano, call.str("time"))
			if err1 != nil || err2 != nil {
				t.Fatalf("call_time %q, time %q: %v %v", call.str("call_time"), call.str("time"), err1, err2)
			}
			// (Measured in the gateway: the clients' own start-up, a
			// Python interpreter's on a loaded machine, is not the gateway's.)
			took := recorded.Sub(received)
			if tc.addr == 303 && took < policyTimeout*9/10 {
				t.Errorf("the slow decision took %s from arrival to record, want about policy.timeout (%s)", took, policyTimeout)
			}
			if took > policyTimeout+time.Second {
				t.Errorf("the decision took %s from arrival to record; policy.timeout is %s", took, policyTimeout)
			}
			// A decision stopped at its deadline does not run on in the
			// background: the gateway is idle again.
			if tc.addr == 303 {
				if before, ok := cpuTime(g.proc.pid()); ok {
					time.Sleep(time.Second)
					if after, _ := cpuTime(g.proc.pid()); after-before > 300*time.Millisecond {
						t.Errorf("the gateway used %s of CPU in the second after the timed-out decision: the evaluation runs on", after-before)
					}
				}
			}
			// The operational log says which fault it was.
			g.waitLog(t, 2*time.Second, tc.logCode+" for call "+call.str("call_id"), func(l map[string]any) bool {
				return l["call_id"] == call.str("call_id") && l["level"] == "error" &&
					strings.Contains(fmt.Sprint(l["error"]), tc.logCode)
			})
		})
	}

	// A write has no rule at all in this policy: undefined, denied.
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "1"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Errorf("a write under a policy without write rules: exit %d\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != v100 {
		t.Errorf("the PLC holds %d at 100, want %d", got, v100)
	}
}

// A policy whose decision is defined only for an impossible condition
// passes `interlock check` (a decision rule exists) but decides nothing:
// even the session is refused, and the refusal is audited.
func TestE2EPolicyUndefinedEverywhereRefusesSessions(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll)
	g := newGateway(t, gwOptions{upstreamPort: freePort(t), rego: map[string]string{"interlock.rego": `package interlock

decision := {"allow": true} if input.operation.function == "no such function"
`}})
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("interlock check of a policy with a (never defined) decision rule: exit %d: %s", r.code, r.stderr)
	}
	g.start(t)
	r := mbpoll(t, g.port, []string{"-r", "100"})
	if r.code == 0 || len(r.values) != 0 {
		t.Errorf("mbpoll read under an undefined policy: exit %d, values %v, want a failure\n%s", r.code, r.values, r.out)
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "a session.open record", func(recs []record) bool {
		return len(eventsOf(recs, "session.open")) > 0
	})
	open := eventsOf(recs, "session.open")[0]
	if open.get("success") != false || !slices.Contains(open.strs("decision.reasons"), "policy_error") ||
		open.get("decision.allow") != false || !strings.Contains(open.str("reason"), "policy_error") {
		t.Errorf("session.open under an undefined policy: %s\nwant success false, decision allow false, reasons [policy_error]", open)
	}
	if open.str("source.ip") != "127.0.0.1" || open.str("principal.user") != "alice" {
		t.Errorf("session.open record lacks the source or principal: %s", open)
	}
	if calls := eventsOf(recs, "call"); len(calls) != 0 {
		t.Errorf("calls were decided on a refused session: %v", calls)
	}
}

// A broken policy file written while the gateway runs is refused: the
// running policy keeps deciding, the operational log names the file, and
// the audit log has policy.load_failed. Removing the file lets the pending
// data change load.
func TestE2EPolicyBrokenFileKeepsRunningPolicy(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, reloadInterval: "200ms"})
	g.start(t)

	if r := mbpoll(t, g.port, []string{"-r", "100"}, "1"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("a write outside a window: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "the write's call record", func(recs []record) bool {
		return len(callRecords(recs, "write_single_register", 100)) == 1
	})
	rev0 := callRecords(recs, "write_single_register", 100)[0].str("decision.policy_revision")

	// First the broken file, then the data that would open a window: no
	// snapshot of the directory in between is a valid policy.
	broken := filepath.Join(g.policyDir, "zz_broken.rego")
	writeFile(t, broken, "package interlock\n\ndecision := {\n")
	windowName := fmt.Sprintf("CHG-E2E-%04d", rand.IntN(10000))
	g.setWindows(t, pastWindow(), openWindow(windowName))

	g.waitLog(t, 15*time.Second, "an error naming zz_broken.rego", func(l map[string]any) bool {
		return l["level"] == "error" && strings.Contains(fmt.Sprint(l), "zz_broken.rego")
	})
	recs = waitAudit(t, g.auditPath, 15*time.Second, "a policy.load_failed record naming zz_broken.rego", func(recs []record) bool {
		for _, r := range eventsOf(recs, "policy.load_failed") {
			if strings.Contains(r.str("error"), "zz_broken.rego") {
				return true
			}
		}
		return false
	})
	// Let the watcher see the directory as it now is (several polls).
	time.Sleep(700 * time.Millisecond)

	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != v100 || r.values[101] != v101 {
		t.Errorf("a read while the policy directory is broken: exit %d, values %v\n%s", r.code, r.values, r.out)
	}
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "2"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Errorf("a write while the policy directory is broken (and its data opens a window): exit %d, want Illegal function\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != v100 {
		t.Errorf("the PLC holds %d at 100, want %d", got, v100)
	}
	recs = waitAudit(t, g.auditPath, 3*time.Second, "the second write's result", func(recs []record) bool {
		c := callRecords(recs, "write_single_register", 100)
		return len(c) == 2 && resultOf(recs, c[1].str("call_id")) != nil
	})
	w := callRecords(recs, "write_single_register", 100)[1]
	if res := checkCallRecord(t, recs, w, false); res.str("status") != "denied" {
		t.Errorf("write result %s", res)
	}
	if w.str("decision.policy_revision") != rev0 || !slices.Equal(w.strs("decision.reasons"), []string{"outside_maintenance_window"}) {
		t.Errorf("the write was decided by revision %s with reasons %v; want the running revision %s and outside_maintenance_window",
			w.str("decision.policy_revision"), w.strs("decision.reasons"), rev0)
	}
	for _, r := range eventsOf(recs, "policy.load") {
		if r.str("policy_revision") != rev0 {
			t.Errorf("a policy.load of revision %s while the directory was broken: %s", r.str("policy_revision"), r)
		}
	}

	// Fixed: the pending data change loads.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, 200*time.Millisecond, "the write is allowed once the broken file is gone", func() (bool, string) {
		r := mbpoll(t, g.port, []string{"-r", "100"}, "3")
		return r.code == 0, r.out
	})
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != 3 {
		t.Errorf("the PLC holds %d at 100 after the allowed write, want 3", got)
	}

	// A data file that is not JSON is refused the same way; the policy with
	// the open window stays in force.
	recs = readAudit(t, g.auditPath)
	failed := len(eventsOf(recs, "policy.load_failed"))
	writeFile(t, filepath.Join(g.policyDir, "data.json"), `{"maintenance_windows": [`)
	recs = waitAudit(t, g.auditPath, 15*time.Second, "a policy.load_failed record naming data.json", func(recs []record) bool {
		f := eventsOf(recs, "policy.load_failed")
		return len(f) > failed && strings.Contains(f[len(f)-1].str("error"), "data.json")
	})
	time.Sleep(500 * time.Millisecond)
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "4"); r.code != 0 {
		t.Errorf("a write in the open window after data.json broke: exit %d\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != 4 {
		t.Errorf("the PLC holds %d at 100, want 4", got)
	}
	g.waitLog(t, 2*time.Second, "an error naming data.json", func(l map[string]any) bool {
		return l["level"] == "error" && strings.Contains(fmt.Sprint(l), "data.json")
	})
}

// cpuTime returns the user+system CPU time of a process from /proc.
func cpuTime(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * (time.Second / 100), true // USER_HZ is 100 on Linux
}

// SIGHUP reloads the policy at once, even with a reload interval of an hour.
func TestE2EPolicySIGHUPReloads(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, reloadInterval: "1h"})
	g.start(t)

	// SIGHUP with nothing changed loads nothing.
	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 15*time.Second, "SIGHUP: policy unchanged", func(l map[string]any) bool {
		return l["message"] == "SIGHUP: policy unchanged"
	})

	windowName := fmt.Sprintf("CHG-E2E-%04d", rand.IntN(10000))
	g.setWindows(t, pastWindow(), openWindow(windowName))
	// Without SIGHUP the change waits for the next poll, an hour away.
	time.Sleep(400 * time.Millisecond)
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "11"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("the write before SIGHUP: exit %d, want it denied with Illegal function (the 1h reload interval holds)\n%s", r.code, r.out)
	}

	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 15*time.Second, "policy reloaded on SIGHUP", func(l map[string]any) bool {
		return l["message"] == "policy reloaded on SIGHUP"
	})
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "12"); r.code != 0 {
		t.Fatalf("the write right after SIGHUP: exit %d\n%s", r.code, r.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != 12 {
		t.Errorf("the PLC holds %d at 100 (was %d), want 12", got, v100)
	}

	recs := waitAudit(t, g.auditPath, 3*time.Second, "two write results", func(recs []record) bool {
		c := callRecords(recs, "write_single_register", 100)
		return len(c) == 2 && resultOf(recs, c[1].str("call_id")) != nil
	})
	writes := callRecords(recs, "write_single_register", 100)
	before, after := writes[0], writes[1]
	checkCallRecord(t, recs, before, false)
	if res := checkCallRecord(t, recs, after, true); res.str("status") != "ok" {
		t.Errorf("the write after SIGHUP: result %s", res)
	}
	rev0, rev1 := before.str("decision.policy_revision"), after.str("decision.policy_revision")
	if rev0 == rev1 {
		t.Errorf("both writes were decided by revision %s", rev0)
	}
	if !slices.Contains(after.strs("decision.reasons"), "maintenance_window:"+windowName) {
		t.Errorf("the allowed write's reasons %v do not name the window %s", after.strs("decision.reasons"), windowName)
	}
	var revs []string
	for _, r := range eventsOf(recs, "policy.load") {
		revs = append(revs, r.str("policy_revision"))
	}
	if !slices.Equal(revs, []string{rev0, rev1}) {
		t.Errorf("policy.load revisions %v, want [%s %s]", revs, rev0, rev1)
	}

	// A reload that brings a window the policy cannot read (a tz that is
	// no time zone) is in force, and denies governed writes with
	// policy_error: the operational log says so at once.
	path := filepath.Join(g.policyDir, "data.json")
	var doc map[string]any
	if b, err := os.ReadFile(path); err != nil || json.Unmarshal(b, &doc) != nil {
		t.Fatalf("data.json: %v", err)
	}
	doc["maintenance_windows"] = []map[string]any{{"name": "night shift", "cron": "0 22 * * *", "duration": "8h",
		"tz": "Mars/Olympus", "targets": []string{"plc1"}}}
	b, _ := json.Marshal(doc)
	writeFile(t, path, string(b))
	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 15*time.Second, "the warning of sample calls without a decision", func(l map[string]any) bool {
		e, _ := l["error"].(string)
		return l["message"] == "policy: sample calls get no decision and will be denied with policy_error (interlock check --config tells more)" &&
			strings.Contains(e, `maintenance window "night shift": window tz "Mars/Olympus"`)
	})
}
