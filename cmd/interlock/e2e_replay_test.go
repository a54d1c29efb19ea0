package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replayBasePolicy is what the gateway runs while the test records: reads
// allowed, diagnostics denied, writes only inside a maintenance window, an
// alert on writes that touch a protected range.
const replayBasePolicy = `package interlock

op := input.operation

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if op.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if op.access == "read"

decision := {"allow": false, "alert": true, "reasons": ["diagnostics_denied"]} if op.function == "diagnostics"

decision := {"allow": in_window, "alert": alert_write, "reasons": array.concat([w], p)} if {
	op.access == "write"
	w := window_reason
	p := ["protected_range" | touches_protected]
}

default window_reason := "outside_maintenance_window"

window_reason := "maintenance_window" if in_window

default alert_write := false

alert_write if not in_window

alert_write if touches_protected

default in_window := false

in_window if {
	some w in data.maintenance_windows
	input.target.name in w.targets
	time.parse_rfc3339_ns(w.start) <= time.now_ns()
	time.now_ns() < time.parse_rfc3339_ns(w.end)
}

# [address, address+quantity) overlaps [start, end]; FC 6 carries no quantity.
touches_protected if {
	some r in data.protected_ranges
	op.address <= r.end
	r.start < op.address + object.get(op, "quantity", 1)
}
`

// replayChangedPolicy is the candidate: reads at 200 and above denied,
// coil reads watched (alert), FC 8 return-query-data allowed with an alert,
// and a write that touches the protected range denied instead of alerted.
const replayChangedPolicy = `package interlock

op := input.operation

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if op.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if {
	op.access == "read"
	op.function != "read_coils"
	op.address < 200
}

decision := {"allow": false, "alert": true, "reasons": ["read_protected_denied"]} if {
	op.access == "read"
	op.function != "read_coils"
	op.address >= 200
}

decision := {"allow": true, "alert": true, "reasons": ["read_coils_watched"]} if op.function == "read_coils"

decision := {"allow": true, "alert": true, "reasons": ["diagnostics_echo"]} if {
	op.function == "diagnostics"
	op.sub_function == 0
}

decision := {"allow": false, "alert": true, "reasons": ["diagnostics_denied"]} if {
	op.function == "diagnostics"
	op.sub_function != 0
}

decision := {"allow": count(denials) == 0, "alert": count(denials) > 0, "reasons": reasons} if {
	op.access == "write"
	reasons := write_reasons
}

denials contains "outside_maintenance_window" if not in_window

denials contains "protected_range" if touches_protected

write_reasons := sort([d | some d in denials]) if count(denials) > 0

write_reasons := ["maintenance_window"] if count(denials) == 0

default in_window := false

in_window if {
	some w in data.maintenance_windows
	input.target.name in w.targets
	time.parse_rfc3339_ns(w.start) <= time.now_ns()
	time.now_ns() < time.parse_rfc3339_ns(w.end)
}

touches_protected if {
	some r in data.protected_ranges
	op.address <= r.end
	r.start < op.address + object.get(op, "quantity", 1)
}
`

// sentCall is one call the test made, as the audit log names it.
type sentCall struct {
	function          string
	address, quantity int // quantity 0: the request has none (FC 6)
	sub               int // FC 8 sub-function
	inWindow          bool
}

type replayVerdict struct {
	allow, alert bool
	reasons      []string
}

func (c sentCall) touchesProtected() bool {
	q := max(c.quantity, 1)
	return c.function != "diagnostics" && c.function != "read_coils" && c.address <= 209 && 200 < c.address+q
}

func (c sentCall) isWrite() bool { return strings.HasPrefix(c.function, "write_") }

// baseVerdict and changedVerdict are the two policies, worked by hand.
func (c sentCall) baseVerdict() replayVerdict {
	switch {
	case c.function == "diagnostics":
		return replayVerdict{false, true, []string{"diagnostics_denied"}}
	case c.isWrite():
		r := []string{"outside_maintenance_window"}
		if c.inWindow {
			r[0] = "maintenance_window"
		}
		if c.touchesProtected() {
			r = append(r, "protected_range")
		}
		return replayVerdict{c.inWindow, !c.inWindow || c.touchesProtected(), r}
	}
	return replayVerdict{true, false, []string{"read"}}
}

func (c sentCall) changedVerdict() replayVerdict {
	switch {
	case c.function == "diagnostics" && c.sub == 0:
		return replayVerdict{true, true, []string{"diagnostics_echo"}}
	case c.function == "diagnostics":
		return replayVerdict{false, true, []string{"diagnostics_denied"}}
	case c.function == "read_coils":
		return replayVerdict{true, true, []string{"read_coils_watched"}}
	case c.isWrite():
		var r []string
		if !c.inWindow {
			r = append(r, "outside_maintenance_window")
		}
		if c.touchesProtected() {
			r = append(r, "protected_range")
		}
		if len(r) == 0 {
			return replayVerdict{true, false, []string{"maintenance_window"}}
		}
		return replayVerdict{false, true, r}
	case c.address >= 200:
		return replayVerdict{false, true, []string{"read_protected_denied"}}
	}
	return replayVerdict{true, false, []string{"read"}}
}

// replayJSON is the part of `policy replay --format json` the test reads.
type replayJSON struct {
	Policy         string `json:"policy"`
	PolicyRevision string `json:"policy_revision"`
	Records        int    `json:"records"`
	Totals         struct {
		Replayed     int `json:"replayed"`
		Unchanged    int `json:"unchanged"`
		NewlyDenied  int `json:"newly_denied"`
		NewlyAllowed int `json:"newly_allowed"`
		AlertChanged int `json:"alert_changed"`
		Failed       int `json:"failed"`
	} `json:"totals"`
	Groups map[string][]struct {
		User     string   `json:"user"`
		Source   string   `json:"source"`
		Target   string   `json:"target"`
		Function string   `json:"function"`
		Reasons  []string `json:"reasons"`
		Count    int      `json:"count"`
		Examples []struct {
			CallID  string `json:"call_id"`
			Address *int   `json:"address"`
			Old     struct {
				Allow   bool     `json:"allow"`
				Reasons []string `json:"reasons"`
			} `json:"old"`
			New struct {
				Allow   bool     `json:"allow"`
				Reasons []string `json:"reasons"`
			} `json:"new"`
		} `json:"examples"`
	} `json:"groups"`
}

// The gateway records a known mix of calls; a changed policy replayed over
// that log reports exactly the calls the change affects, as counted by hand
// from what the test sent. --fail-on exits 1 with the change and 0 with the
// policy that recorded the log; markdown carries the tables.
func TestE2EPolicyReplayRecordedLog(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"interlock.rego": replayBasePolicy}})
	dataDoc := func(ws ...window) string {
		b, _ := json.MarshalIndent(map[string]any{
			"maintenance_windows": ws,
			"protected_ranges":    []map[string]any{{"name": "safety_limits", "start": 200, "end": 209}},
		}, "", "  ")
		return string(b)
	}
	writeFile(t, filepath.Join(g.policyDir, "data.json"), dataDoc(pastWindow()))
	g.start(t)

	var sent []sentCall
	sessions := 0
	inWindow := false
	read := func(addr, count int) {
		t.Helper()
		if r := mbpoll(t, g.port, []string{"-r", strconv.Itoa(addr), "-c", strconv.Itoa(count)}); r.code != 0 {
			t.Fatalf("mbpoll read %d×%d: exit %d\n%s", addr, count, r.code, r.out)
		}
		sent = append(sent, sentCall{function: "read_holding_registers", address: addr, quantity: count})
		sessions++
	}
	writeOne := func(addr, v int) { // mbpoll: FC 6
		t.Helper()
		r := mbpoll(t, g.port, []string{"-r", strconv.Itoa(addr)}, strconv.Itoa(v))
		if allowed := r.code == 0; allowed != inWindow {
			t.Fatalf("mbpoll write %d: exit %d, in window %v\n%s", addr, r.code, inWindow, r.out)
		}
		sent = append(sent, sentCall{function: "write_single_register", address: addr, inWindow: inWindow})
		sessions++
	}
	writeMany := func(addr int, vs ...int) { // pymodbus: FC 16
		t.Helper()
		r := pyclient(t, g.port, "write", append([]int{addr}, vs...)...)
		if allowed := r.Exception == nil && r.Error == ""; allowed != inWindow {
			t.Fatalf("pymodbus write %d: %+v, in window %v", addr, r, inWindow)
		}
		sent = append(sent, sentCall{function: "write_multiple_registers", address: addr, quantity: len(vs), inWindow: inWindow})
		sessions++
	}
	diagnostics := func(sub, data uint16) { // raw FC 8: no peer sends it
		t.Helper()
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(g.port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pdu := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16([]byte{0x08}, sub), data)
		adu := append(binary.BigEndian.AppendUint16([]byte{0, 1, 0, 0}, uint16(len(pdu)+1)), append([]byte{1}, pdu...)...)
		if _, err := c.Write(adu); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp := make([]byte, 9)
		if _, err := io.ReadFull(c, resp); err != nil || resp[7] != 0x88 || resp[8] != 0x01 {
			t.Fatalf("FC 8 sub-function %d: answer % x, %v; want exception 1", sub, resp, err)
		}
		sent = append(sent, sentCall{function: "diagnostics", sub: int(sub), inWindow: inWindow})
		sessions++
	}

	// Outside any window.
	read(100, 2)
	read(100, 2)
	read(200, 2)
	if r := pyclient(t, g.port, "read", 205, 3); r.Error != "" {
		t.Fatalf("pymodbus read 205×3: %+v", r)
	}
	sent = append(sent, sentCall{function: "read_holding_registers", address: 205, quantity: 3})
	sessions++
	if r := mbpoll(t, g.port, []string{"-t", "0", "-r", "0", "-c", "8"}); r.code != 0 {
		t.Fatalf("mbpoll read coils: exit %d\n%s", r.code, r.out)
	}
	sent = append(sent, sentCall{function: "read_coils", address: 0, quantity: 8})
	sessions++
	writeOne(100, 1600)
	writeOne(205, 7)
	diagnostics(0, 0x1234) // return query data
	diagnostics(1, 0)      // restart communications

	// A window opens at the next full second, after every call above.
	start := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	g.setWindows(t, pastWindow(), window{Name: "CHG-E2E-REPLAY", Start: start.Format(time.RFC3339),
		End: start.Add(time.Hour).Format(time.RFC3339), Targets: []string{"plc1"}})
	g.waitLog(t, 10*time.Second, "policy reloaded", func(l map[string]any) bool { return l["message"] == "policy reloaded" })
	time.Sleep(time.Until(start) + 10*time.Millisecond)
	inWindow = true
	writeOne(100, 1700)
	writeOne(205, 9)
	writeMany(199, 1, 2) // 199..200 touches the range
	writeMany(150, 5)
	read(201, 1)
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d", code)
	}

	// The log holds what was sent, decided as the base policy says: the
	// hand model of that policy is checked against the real gateway.
	recs := readAudit(t, g.auditPath)
	calls := eventsOf(recs, "call")
	if len(calls) != len(sent) {
		t.Fatalf("%d call records, %d calls sent", len(calls), len(sent))
	}
	for i, c := range calls {
		s, want := sent[i], sent[i].baseVerdict()
		if c.str("operation.function") != s.function || (s.function != "diagnostics" && int(c.num("operation.address")) != s.address) ||
			c.get("decision.allow") != want.allow || c.get("decision.alert") != want.alert ||
			!slices.Equal(c.strs("decision.reasons"), want.reasons) {
			t.Fatalf("call %d: sent %+v, want %+v; recorded %s", i, s, want, c)
		}
	}
	opens := 0
	for _, o := range eventsOf(recs, "session.open") {
		if o.get("decision") != nil {
			opens++
		}
	}
	if opens != sessions {
		t.Fatalf("%d decided session.open records, %d connections made", opens, sessions)
	}
	verifyAudit(t, g.auditPath)

	// The hand count: every call under both policies.
	type groupKey struct{ change, function, reasons string }
	wantGroups := map[groupKey]int{}
	var wantUnchanged, wantDenied, wantAllowed, wantAlert int
	for _, s := range sent {
		o, n := s.baseVerdict(), s.changedVerdict()
		var change string
		switch {
		case o.allow && !n.allow:
			change, wantDenied = "newly_denied", wantDenied+1
		case !o.allow && n.allow:
			change, wantAllowed = "newly_allowed", wantAllowed+1
		case o.alert != n.alert:
			change, wantAlert = "alert_changed", wantAlert+1
		default:
			wantUnchanged++
			continue
		}
		wantGroups[groupKey{change, s.function, strings.Join(n.reasons, ",")}]++
	}
	wantUnchanged += sessions // both policies allow every session
	// The mix above makes each kind of change at least once.
	if wantDenied < 3 || wantAllowed == 0 || wantAlert == 0 || wantUnchanged <= sessions {
		t.Fatalf("the sent mix does not exercise the change: denied %d, allowed %d, alert %d", wantDenied, wantAllowed, wantAlert)
	}

	changed := filepath.Join(t.TempDir(), "candidate")
	writeFile(t, filepath.Join(changed, "interlock.rego"), replayChangedPolicy)
	copyFile(t, filepath.Join(g.policyDir, "data.json"), filepath.Join(changed, "data.json"))

	r := interlock(t, "policy", "replay", "--config", g.config, "--audit", g.auditPath, "--policy", changed, "--format", "json")
	if r.code != 0 {
		t.Fatalf("policy replay --format json: exit %d\n%s", r.code, r.stderr)
	}
	var rep replayJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("policy replay --format json: %v\n%s", err, r.stdout)
	}
	tot := rep.Totals
	if tot.Replayed != len(sent)+sessions || tot.Unchanged != wantUnchanged || tot.NewlyDenied != wantDenied ||
		tot.NewlyAllowed != wantAllowed || tot.AlertChanged != wantAlert || tot.Failed != 0 {
		t.Errorf("totals %+v; want replayed %d, unchanged %d, newly denied %d, newly allowed %d, alert changed %d",
			tot, len(sent)+sessions, wantUnchanged, wantDenied, wantAllowed, wantAlert)
	}
	if rep.Records != len(recs) || rep.Policy != changed || rep.PolicyRevision == "" {
		t.Errorf("records %d (log has %d), policy %q, revision %q", rep.Records, len(recs), rep.Policy, rep.PolicyRevision)
	}
	gotGroups := map[groupKey]int{}
	callIDs := map[string]record{}
	for _, c := range calls {
		callIDs[c.str("call_id")] = c
	}
	for change, groups := range rep.Groups {
		for _, gr := range groups {
			gotGroups[groupKey{change, gr.Function, strings.Join(gr.Reasons, ",")}] += gr.Count
			if gr.User != "alice" || gr.Source != "ews-alice" || gr.Target != "plc1" {
				t.Errorf("%s group %s: user %q, source %q, target %q", change, gr.Function, gr.User, gr.Source, gr.Target)
			}
			if len(gr.Examples) != min(gr.Count, 3) {
				t.Errorf("%s group %s: %d examples of %d calls", change, gr.Function, len(gr.Examples), gr.Count)
			}
			for _, ex := range gr.Examples {
				c, ok := callIDs[ex.CallID]
				if !ok || c.str("operation.function") != gr.Function || c.get("decision.allow") != ex.Old.Allow ||
					!slices.Equal(c.strs("decision.reasons"), ex.Old.Reasons) || !slices.Equal(ex.New.Reasons, gr.Reasons) {
					t.Errorf("%s example %+v does not match its call record %s", change, ex, c)
				}
			}
		}
	}
	if fmt.Sprint(gotGroups) != fmt.Sprint(wantGroups) {
		t.Errorf("groups (change, function, new reasons) → calls:\n got %v\nwant %v", gotGroups, wantGroups)
	}

	// CI: the change fails --fail-on newly-denied and any-change; the policy
	// that recorded the log passes both.
	replay := func(policyDir string, extra ...string) cliResult {
		return interlock(t, append([]string{"policy", "replay", "--config", g.config, "--audit", g.auditPath, "--policy", policyDir}, extra...)...)
	}
	if r := replay(changed, "--fail-on", "newly-denied"); r.code != 1 || !strings.Contains(r.stderr, fmt.Sprintf("%d newly denied and 0 failed to evaluate", wantDenied)) {
		t.Errorf("--fail-on newly-denied with the change: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := replay(changed, "--fail-on", "any-change"); r.code != 1 {
		t.Errorf("--fail-on any-change with the change: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, fail := range []string{"newly-denied", "any-change"} {
		if r := replay(g.policyDir, "--fail-on", fail); r.code != 0 {
			t.Errorf("--fail-on %s with the recording policy: exit %d\n%s\n%s", fail, r.code, r.stdout, r.stderr)
		}
	}
	if r := replay(g.policyDir, "--format", "json"); r.code != 0 || !strings.Contains(r.stdout, `"unchanged": `+strconv.Itoa(len(sent)+sessions)) {
		t.Errorf("replay under the recording policy: exit %d\n%s", r.code, r.stdout)
	}

	md := replay(changed, "--format", "markdown")
	for _, want := range []string{
		"### Policy replay: ",
		fmt.Sprintf("| newly denied | %d |", wantDenied),
		fmt.Sprintf("| unchanged | %d |", wantUnchanged),
		"| calls | user | source | target | function | new reasons | examples |",
		fmt.Sprintf("| %d | alice | ews-alice | plc1 | read_holding_registers | read_protected_denied |",
			wantGroups[groupKey{"newly_denied", "read_holding_registers", "read_protected_denied"}]),
	} {
		if md.code != 0 || !strings.Contains(md.stdout, want) {
			t.Errorf("markdown (exit %d) lacks %q:\n%s", md.code, want, md.stdout)
		}
	}
	text := replay(changed)
	if text.code != 0 || !strings.Contains(text.stdout, fmt.Sprintf("newly denied         %6d", wantDenied)) {
		t.Errorf("text (exit %d):\n%s", text.code, text.stdout)
	}
}

// Usage and record errors: a line that is not JSON is named by file:line.
func TestE2EPolicyReplayErrors(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(repoRoot, "examples", "ci", "config.yaml")
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	writeFile(t, bad, `{"seq":1,"time":"2026-11-26T00:00:00Z","event":"gateway.start"}`+"\n"+`{"seq":2,"event":"call",`+"\n")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--audit", bad}, 2, "--config is required"},
		{[]string{"--config", cfg}, 2, "at least one --audit"},
		{[]string{"--config", cfg, "--audit", bad, "--format", "html"}, 2, `--format "html"`},
		{[]string{"--config", cfg, "--audit", bad, "--fail-on", "everything"}, 2, `--fail-on "everything"`},
		{[]string{"--config", cfg, "--audit", bad}, 1, bad + ":2: not a JSON record"},
		{[]string{"--config", cfg, "--audit", bad + ".missing"}, 1, bad + ".missing"},
	} {
		r := interlock(t, append([]string{"policy", "replay"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("policy replay %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	h := interlock(t, "policy", "replay", "--help")
	if h.code != 0 || !strings.Contains(h.stderr, "interlock audit verify") || !strings.Contains(h.stderr, "-fail-on") {
		t.Errorf("policy replay --help: exit %d\n%s", h.code, h.stderr)
	}
}

// The CI example cannot rot: the replay command of the workflow, run as it
// is written there against the committed sample log (a real gateway log)
// and quickstart policy, passes; so do the Rego tests it runs.
func TestE2EPolicyReplayCIExample(t *testing.T) {
	t.Parallel()
	wf, err := os.ReadFile(filepath.Join(repoRoot, ".github", "workflows", "policy.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var commands [][]string
	for _, line := range strings.Split(string(wf), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "run:"))
		if cmd, _, _ := strings.Cut(line, "|"); strings.HasPrefix(cmd, "bin/interlock policy ") {
			commands = append(commands, strings.Fields(cmd)[1:])
		}
	}
	var ran []string
	for _, args := range commands {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, interlockBin, args...)
		cmd.Dir, cmd.Env = repoRoot, childEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("the workflow's `interlock %s` in the repository: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[1] == "replay" && !strings.Contains(string(out), "### Policy replay: no change") {
			t.Errorf("the CI replay reports changes between the sample and the quickstart policy:\n%s", out)
		}
		ran = append(ran, args[1])
	}
	if !slices.Equal(ran, []string{"test", "replay"}) {
		t.Fatalf("the workflow runs %v, want policy test then policy replay", ran)
	}
	if !slices.Contains(commands[1], "--fail-on") || !slices.Contains(commands[1], "markdown") {
		t.Errorf("the workflow's replay does not fail on changes with markdown output: %v", commands[1])
	}

	sample := filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl")
	verifyAudit(t, sample)
	recs := readAudit(t, sample)
	if n := len(eventsOf(recs, "call")); n < 10 || len(eventsOf(recs, "ticket.open")) == 0 {
		t.Errorf("the sample has %d calls and %d ticket.open records; want a real mix (examples/ci/record-sample.sh)",
			n, len(eventsOf(recs, "ticket.open")))
	}
}
