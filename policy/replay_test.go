package policy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// ---- hand-written audit records, in the writer's envelope order ----

type replayLog struct {
	seq   int
	lines []string
}

// add appends a record: the envelope, then fields in the order given
// (key, value, key, value …).
func (b *replayLog) add(event string, at time.Time, kv ...any) {
	b.seq++
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"seq":%d,"time":%q,"event":%q,"gateway":"site-a-gw1"`, b.seq, at.Format(time.RFC3339Nano), event)
	for i := 0; i < len(kv); i += 2 {
		v, err := json.Marshal(kv[i+1])
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&sb, ",%q:%s", kv[i], v)
	}
	sb.WriteString(`,"prev":"00","hash":"00"}`)
	b.lines = append(b.lines, sb.String())
}

type replayWho struct {
	session, ip, name, user string
	roles                   []string
}

var (
	rpAlice  = replayWho{"s-alice", "10.0.0.5", "ews-alice", "alice", []string{"engineer"}}
	rpBob    = replayWho{"s-bob", "10.0.0.9", "", "bob", nil}
	rpRogue  = replayWho{"s-rogue", "10.0.0.66", "ews-rogue", "mallory", nil}
	rpTarget = map[string]any{"name": "plc1", "upstream": "tcp://10.0.0.20:502", "unit_id": 1}
)

func (w replayWho) source() map[string]any {
	m := map[string]any{"ip": w.ip, "port": 50123}
	if w.name != "" {
		m["name"] = w.name
	}
	return m
}

func (w replayWho) principal() map[string]any {
	m := map[string]any{"user": w.user, "auth": "inventory"}
	if len(w.roles) > 0 {
		m["roles"] = w.roles
	}
	return m
}

func rpVerdict(allow, alert bool, reasons ...string) map[string]any {
	if reasons == nil {
		reasons = []string{}
	}
	return map[string]any{"allow": allow, "alert": alert, "reasons": reasons,
		"policy_revision": "rev-old", "decision_id": "d", "mode": "enforce"}
}

func (b *replayLog) open(w replayWho, at time.Time, d map[string]any) {
	b.add("session.open", at, "session_id", w.session, "listener", "plc1", "protocol", "modbus",
		"session", map[string]any{"id": w.session, "started": at.Format(time.RFC3339Nano)},
		"source", w.source(), "principal", w.principal(), "target", rpTarget, "success", d["allow"], "decision", d)
}

func (b *replayLog) call(w replayWho, id string, at time.Time, op map[string]any, d map[string]any) {
	b.add("call", at.Add(time.Millisecond), "call_id", id, "session_id", w.session, "listener", "plc1",
		"call_time", at.Format(time.RFC3339Nano), "source", w.source(), "principal", w.principal(),
		"target", rpTarget, "protocol", "modbus", "operation", op, "decision", d)
	b.add("result", at.Add(2*time.Millisecond), "call_id", id, "session_id", w.session,
		"function", op["function"], "status", "ok", "latency_us", 900)
}

func rpRead(addr, qty int) map[string]any {
	return map[string]any{"function": "read_holding_registers", "access": "read", "code": 3, "address": addr, "quantity": qty}
}

func rpWrite(addr int, values ...int) map[string]any {
	return map[string]any{"function": "write_single_register", "access": "write", "code": 6, "address": addr, "values": values}
}

func rpDiag() map[string]any {
	return map[string]any{"function": "diagnostics", "access": "diagnostic", "code": 8,
		"sub_function": 0, "sub_function_name": "return_query_data", "values": []int{0x1234}}
}

func (b *replayLog) write(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(p, []byte(strings.Join(b.lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func replayEngine(t testing.TB, files map[string]string) *Engine {
	t.Helper()
	e, err := New(Options{Path: policyDir(t, files), Gateway: "site-a-gw1", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func replayFiles(t *testing.T, e *Engine, paths ...string) *ReplayReport {
	t.Helper()
	rep, err := Replay(context.Background(), e, AuditFiles(paths...), ReplayOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return rep
}

func rpTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// ---- a window rule replays by the recorded time ----

const replayWindowPolicy = `package interlock

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if input.operation.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if input.operation.access == "read"

decision := {"allow": true, "alert": false, "reasons": ["maintenance_window"]} if {
	input.operation.access == "write"
	some w in data.windows
	time.parse_rfc3339_ns(w.start) <= time.now_ns()
	time.now_ns() < time.parse_rfc3339_ns(w.end)
}
`

const replayWindowData = `{"windows": [{"start": "2026-01-10T06:00:00Z", "end": "2026-01-10T10:00:00Z"}]}`

// A write recorded inside the window stays allowed although the window
// closed long before now; one recorded after it stays denied.
func TestReplayWindowByRecordedTime(t *testing.T) {
	e := replayEngine(t, map[string]string{"main.rego": replayWindowPolicy, "data.json": replayWindowData})
	var b replayLog
	b.add("gateway.start", rpTime("2026-01-10T05:00:00Z"), "version", "dev")
	b.open(rpAlice, rpTime("2026-01-10T07:00:00Z"), rpVerdict(true, false, "session"))
	b.call(rpAlice, "in-window", rpTime("2026-01-10T07:30:00Z"), rpWrite(100, 7), rpVerdict(true, false, "maintenance_window"))
	b.call(rpAlice, "after-window", rpTime("2026-01-10T10:00:00Z"), rpWrite(100, 8), rpVerdict(false, true, "no_rule_allows"))
	b.add("session.close", rpTime("2026-01-10T10:05:00Z"), "session_id", rpAlice.session, "duration_ms", 1)
	// A record written with spaces (another JSON encoder) is read all the same.
	b.lines[2] = strings.Replace(b.lines[2], `"event":"call"`, `"event" : "call"`, 1)
	rep := replayFiles(t, e, b.write(t))

	want := ReplayTotals{Replayed: 3, Unchanged: 3}
	if rep.Totals != want {
		t.Fatalf("totals %+v, want %+v; groups %+v", rep.Totals, want, rep.Groups)
	}
	if !rep.From.Equal(rpTime("2026-01-10T07:00:00Z")) || !rep.To.Equal(rpTime("2026-01-10T10:00:00Z")) {
		t.Errorf("from %s to %s", rep.From, rep.To)
	}
	if rep.Records != len(b.lines) || !slices.Equal(rep.Files, []string{rep.Files[0]}) {
		t.Errorf("records %d (want %d), files %v", rep.Records, len(b.lines), rep.Files)
	}

	// The same write decided now is denied: the recorded time is what kept it allowed.
	r := newReplayer(e, ReplayOptions{})
	for l, err := range AuditLines("audit.jsonl", strings.NewReader(strings.Join(b.lines, "\n")+"\n")) {
		if err != nil {
			t.Fatal(err)
		}
		if err := r.line(l); err != nil {
			t.Fatal(err)
		}
	}
	d, err := e.Eval(context.Background(), r.batch[1].input, time.Now())
	if err != nil || d.Allow {
		t.Fatalf("the in-window write decided now: %+v, %v; want a deny", d, err)
	}
}

// ---- a changed rule ----

// changedPolicy is the candidate. The calls below were recorded under a
// policy that allowed every session, read and diagnostic without alert and
// denied every write. The candidate blocks a rogue workstation, alerts on
// reads of 200 and above, allows engineers' writes, denies diagnostics (no
// alert), and fails on a read of 666.
const changedPolicy = `package interlock

op := input.operation

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if {
	op.access == "session"
	object.get(input.source, "name", "") != "ews-rogue"
}

decision := {"allow": false, "alert": true, "reasons": ["source_blocked"]} if {
	op.access == "session"
	input.source.name == "ews-rogue"
}

decision := {"allow": true, "alert": op.address >= 200, "reasons": reasons} if {
	op.access == "read"
	op.address != 666
	reasons := ["read_protected" | op.address >= 200]
}

decision := {"allow": to_number("x") > 0, "reasons": ["broken"]} if op.address == 666

decision := {"allow": true, "alert": false, "reasons": ["engineer_write"]} if {
	op.access == "write"
	"engineer" in input.principal.roles
}

decision := {"allow": false, "alert": false, "reasons": ["diagnostics_denied"]} if op.function == "diagnostics"
`

func TestReplayChangedRule(t *testing.T) {
	e := replayEngine(t, map[string]string{"main.rego": changedPolicy})
	t0 := rpTime("2026-11-20T08:00:00Z")
	tick := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	allowed, denied := rpVerdict(true, false), rpVerdict(false, true, "writes_denied")
	var b replayLog
	b.open(rpAlice, tick(0), rpVerdict(true, false, "session"))
	b.open(rpBob, tick(0), rpVerdict(true, false, "session"))
	b.open(rpRogue, tick(0), rpVerdict(true, false, "session")) // newly denied
	b.call(rpAlice, "c1", tick(1), rpRead(100, 2), allowed)     // unchanged
	b.call(rpAlice, "c2", tick(2), rpRead(200, 2), allowed)     // alert on
	b.call(rpAlice, "c3", tick(3), rpRead(205, 1), allowed)     // alert on
	b.call(rpBob, "c4", tick(4), rpRead(201, 1), allowed)       // alert on
	b.call(rpAlice, "c5", tick(5), rpWrite(100, 1600), denied)  // newly allowed
	b.call(rpBob, "c6", tick(6), rpWrite(100, 1600), denied)    // unchanged
	for i := range 5 {                                          // newly denied, one group
		b.call(rpAlice, fmt.Sprintf("c%d", 7+i), tick(7+i), rpDiag(), allowed)
	}
	b.call(rpAlice, "c12", tick(12), rpRead(666, 1), allowed) // fails
	// Recorded in monitor mode: the gateway forced the alert on and added
	// monitor_would_deny; the policy's deny without alert is no change.
	mon := rpVerdict(false, true, "diagnostics_denied", gateway.ReasonMonitorWouldDeny)
	mon["mode"] = "monitor"
	b.call(rpBob, "c13", tick(13), rpDiag(), mon)
	rep := replayFiles(t, e, b.write(t))

	want := ReplayTotals{Replayed: 16, Unchanged: 5, NewlyDenied: 6, NewlyAllowed: 1, AlertChanged: 3, Failed: 1}
	if rep.Totals != want {
		t.Fatalf("totals %+v, want %+v", rep.Totals, want)
	}
	type g struct {
		user, source, function, reasons string
		count                           int
		examples                        []string
	}
	wantGroups := map[Change][]g{
		NewlyDenied: {
			{"alice", "ews-alice", "diagnostics", "diagnostics_denied", 5, []string{"c7", "c8", "c9"}},
			{"mallory", "ews-rogue", "session.open", "source_blocked", 1, []string{"s-rogue"}},
		},
		NewlyAllowed: {{"alice", "ews-alice", "write_single_register", "engineer_write", 1, []string{"c5"}}},
		AlertChanged: {
			{"alice", "ews-alice", "read_holding_registers", "read_protected", 2, []string{"c2", "c3"}},
			{"bob", "10.0.0.9", "read_holding_registers", "read_protected", 1, []string{"c4"}},
		},
		Failed: {{"alice", "ews-alice", "read_holding_registers", "policy_error,policy_eval_error", 1, []string{"c12"}}},
	}
	for _, ch := range Changes {
		var got []g
		for _, gr := range rep.Groups[ch] {
			if gr.Target != "plc1" {
				t.Errorf("%s group target %q", ch, gr.Target)
			}
			var ids []string
			for _, ex := range gr.Examples {
				ids = append(ids, ex.CallID)
			}
			got = append(got, g{gr.User, gr.Source, gr.Function, strings.Join(gr.Reasons, ","), gr.Count, ids})
		}
		if fmt.Sprint(got) != fmt.Sprint(wantGroups[ch]) {
			t.Errorf("%s groups:\n got %v\nwant %v", ch, got, wantGroups[ch])
		}
	}

	// An example carries the call and both verdicts.
	ex := rep.Groups[AlertChanged][0].Examples[0]
	if ex.CallID != "c2" || !ex.CallTime.Equal(tick(2)) || ex.Address == nil || *ex.Address != 200 || ex.Quantity != 2 ||
		ex.Old.Alert || !ex.New.Alert || !slices.Equal(ex.New.Reasons, []string{"read_protected"}) || ex.Line != 6 {
		t.Errorf("example %+v", ex)
	}
	fail := rep.Groups[Failed][0].Examples[0]
	if fail.New.Allow || !strings.Contains(fail.New.Error, "to_number") || !fail.Old.Allow {
		t.Errorf("failed example %+v", fail)
	}

	// Replaying the candidate's own decisions changes nothing.
	var same replayLog
	same.open(rpRogue, tick(0), rpVerdict(false, true, "source_blocked"))
	same.call(rpAlice, "c2", tick(2), rpRead(200, 2), rpVerdict(true, true, "read_protected"))
	if rep := replayFiles(t, e, same.write(t)); rep.Totals != (ReplayTotals{Replayed: 2, Unchanged: 2}) {
		t.Errorf("unchanged replay: %+v %+v", rep.Totals, rep.Groups)
	}
}

// ---- tickets ----

func replayTicket(id, user string, opened, expires time.Time, approvals ...string) Ticket {
	return Ticket{ID: id, User: user, Targets: []string{"plc1"}, Access: []string{"write"}, Reason: id + " tuning",
		OpenedBy: "carol", Opened: opened, Expires: expires, Approvals: append([]string{}, approvals...)}
}

// openTickets renders At(t): ids with their approvers.
func rpOpenTickets(t *testing.T, h *TicketHistory, at time.Time) string {
	t.Helper()
	var list []Ticket
	if err := json.Unmarshal([]byte(h.At(at).String()), &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tk := range list {
		out = append(out, tk.ID+"["+strings.Join(tk.Approvals, ",")+"]")
	}
	return strings.Join(out, " ")
}

func TestTicketHistoryAt(t *testing.T) {
	t0 := rpTime("2026-03-01T08:00:00Z")
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	var h TicketHistory
	if h.Add(TicketApprove, m(0), "CHG-1", "bob", Ticket{}) || h.Add(TicketClose, m(0), "CHG-1", "bob", Ticket{}) {
		t.Fatal("an unknown ticket was approved or closed")
	}
	if got := rpOpenTickets(t, &h, m(0)); got != "" {
		t.Fatalf("no tickets: %q", got)
	}
	// As the gateway records them: every record carries the ticket after the change.
	h.Add(TicketOpen, m(0), "CHG-2", "carol", replayTicket("CHG-2", "alice", m(0), m(120)))
	h.Add(TicketOpen, m(10), "CHG-1", "carol", replayTicket("CHG-1", "alice", m(10), m(20)))
	h.Add(TicketApprove, m(30), "CHG-2", "bob", replayTicket("CHG-2", "alice", m(0), m(120), "bob"))
	// As the brief of the record first read: ticket_id and by only.
	h.Add(TicketApprove, m(40), "CHG-2", "dave", Ticket{})
	h.Add(TicketClose, m(90), "CHG-2", "carol", Ticket{})
	for _, tc := range []struct {
		min  int
		want string
	}{
		{-1, ""},                // not yet opened
		{0, "CHG-2[]"},          // open from its opened time, not approved yet
		{10, "CHG-1[] CHG-2[]"}, // sorted by id, as the gateway gives them
		{20, "CHG-2[]"},         // CHG-1 expired at its expires time
		{29, "CHG-2[]"},         // the approval is not given yet
		{30, "CHG-2[bob]"},      // approved
		{31, "CHG-2[bob]"},      // the same answer again (memo)
		{40, "CHG-2[bob,dave]"}, // approved again, from a record without the ticket
		{89, "CHG-2[bob,dave]"}, // still open
		{90, ""},                // closed at 90, though it expires at 120
		{15, "CHG-1[] CHG-2[]"}, // earlier times again (a second log): the state is by time
		{200, ""},               // long expired
	} {
		if got := rpOpenTickets(t, &h, m(tc.min)); got != tc.want {
			t.Errorf("tickets at +%dm: %q, want %q", tc.min, got, tc.want)
		}
	}
	// The gateway's own form of input.tickets.
	want := TicketsTerm([]Ticket{replayTicket("CHG-2", "alice", m(0), m(120), "bob")})
	if got := h.At(m(35)); !got.Equal(want) {
		t.Errorf("At(+35m) = %v\nwant %v", got, want)
	}
}

// replayTicketPolicy allows a write only under an approved ticket of the caller
// for the target, and reads only when input.tickets is a list.
const replayTicketPolicy = `package interlock

default decision := {"allow": false, "alert": true, "reasons": ["no_ticket"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if input.operation.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if {
	input.operation.access == "read"
	is_array(input.tickets)
}

decision := {"allow": true, "alert": false, "reasons": [concat(":", ["ticket", id])], "ticket": id} if {
	input.operation.access == "write"
	id := min({t.id |
		some t in input.tickets
		t.user == input.principal.user
		input.target.name in t.targets
		count(t.approvals) > 0
	})
}
`

// Calls recorded while tickets were opened, approved, closed and expired
// keep their decisions: each call sees the tickets of its own time.
func TestReplayTickets(t *testing.T) {
	e := replayEngine(t, map[string]string{"main.rego": replayTicketPolicy})
	t0 := rpTime("2026-03-01T08:00:00Z")
	m := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
	tk := func(tk Ticket) map[string]any {
		b, _ := json.Marshal(tk)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return v
	}
	deny := rpVerdict(false, true, "no_ticket")
	allowed := func(id string) map[string]any {
		v := rpVerdict(true, false, "ticket:"+id)
		v["ticket"] = id
		return v
	}
	var b replayLog
	b.open(rpAlice, m(-20), rpVerdict(true, false, "session"))
	b.call(rpAlice, "read-no-tickets", m(-10), rpRead(100, 1), rpVerdict(true, false, "read"))
	chg1 := replayTicket("CHG-1", "alice", m(0), m(120))
	b.add("ticket.open", m(0), "ticket_id", "CHG-1", "by", "carol", "ticket", tk(chg1))
	b.call(rpAlice, "w-unapproved", m(5), rpWrite(100, 1), deny)
	chg1.Approvals = []string{"bob"}
	b.add("ticket.approve", m(30), "ticket_id", "CHG-1", "by", "bob", "ticket", tk(chg1))
	b.call(rpAlice, "w-approved", m(45), rpWrite(100, 2), allowed("CHG-1"))
	b.call(rpBob, "w-other-user", m(46), rpWrite(100, 3), deny)
	b.add("ticket.close", m(90), "ticket_id", "CHG-1", "by", "carol", "ticket", tk(chg1))
	b.call(rpAlice, "w-closed", m(95), rpWrite(100, 4), deny)
	chg3 := replayTicket("CHG-3", "alice", m(100), m(110), "bob")
	b.add("ticket.open", m(100), "ticket_id", "CHG-3", "by", "carol", "ticket", tk(chg3))
	b.call(rpAlice, "w-preapproved", m(105), rpWrite(100, 5), allowed("CHG-3"))
	b.call(rpAlice, "w-expired", m(110), rpWrite(100, 6), deny)
	path := b.write(t)

	rep := replayFiles(t, e, path)
	if want := (ReplayTotals{Replayed: 8, Unchanged: 8}); rep.Totals != want {
		t.Fatalf("totals %+v, want %+v; groups %+v", rep.Totals, want, rep.Groups)
	}

	// Without the ticket records every ticketed write changes: the tickets
	// came from the log.
	var kept []string
	for _, l := range b.lines {
		if !strings.Contains(l, `"event":"ticket.`) {
			kept = append(kept, l)
		}
	}
	noTicketsLog := filepath.Join(t.TempDir(), "no-tickets.jsonl")
	if err := os.WriteFile(noTicketsLog, []byte(strings.Join(kept, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = replayFiles(t, e, noTicketsLog)
	var ids []string
	for _, g := range rep.Groups[NewlyDenied] {
		for _, ex := range g.Examples {
			ids = append(ids, ex.CallID)
			if ex.Old.Ticket == "" || ex.New.Ticket != "" {
				t.Errorf("example %s: old ticket %q, new %q", ex.CallID, ex.Old.Ticket, ex.New.Ticket)
			}
		}
	}
	if rep.Totals.NewlyDenied != 2 || !slices.Equal(ids, []string{"w-approved", "w-preapproved"}) {
		t.Errorf("without tickets: %+v, newly denied %v", rep.Totals, ids)
	}
}

// ---- the input is the gateway's ----

// A call written by the audit writer replays with exactly the input the
// gateway gave the policy (policy.Input), session start included.
func TestReplayInputMatchesGateway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := audit.Open(audit.Options{Path: path, Gateway: "site-a-gw1", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	s := &gateway.Session{
		ID: "sess-1", Started: time.Date(2026, 11, 26, 2, 0, 0, 120000000, time.UTC), Gateway: "site-a-gw1",
		Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("10.0.0.5"), Port: 50123, Name: "ews-1", Owner: "ot-team"},
		Principal: gateway.Principal{User: "alice", Auth: gateway.AuthInventory, Roles: []string{"engineer", "lead"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 1},
	}
	anon := &gateway.Session{ID: "sess-2", Started: s.Started, Gateway: "site-a-gw1", Listener: "plc1", Protocol: "modbus",
		Source: gateway.Source{IP: netip.MustParseAddr("10.0.0.99"), Port: 40000}, Target: s.Target}
	d := gateway.Decision{Allow: true, Reasons: []string{}, Revision: "r", ID: "d", Mode: "enforce"}
	w.SessionStart(context.Background(), s, &d, "")
	write := &gateway.Call{ID: "c1", Time: time.Date(2026, 11, 26, 2, 14, 27, 123456789, time.UTC), Target: s.Target,
		Operation: gateway.Operation{Function: "write_multiple_registers", Access: gateway.AccessWrite}}
	write.Operation.Int(gateway.KeyCode, 16)
	write.Operation.Int(gateway.KeyAddress, 100)
	write.Operation.Int(gateway.KeyQuantity, 2)
	write.Operation.Ints(gateway.KeyValues, []int64{1500, -1})
	file := &gateway.Call{ID: "c2", Time: write.Time.Add(time.Second), Target: gateway.Target{Name: "drives", Upstream: "rtuovertcp://10.0.0.30:4001", UnitID: 2},
		Operation: gateway.Operation{Function: "read_file_record", Access: gateway.AccessRead}}
	file.Operation.Int(gateway.KeyCode, 20)
	file.Operation.Any("records", []any{map[string]any{"file": int64(4), "record": int64(1), "length": int64(2)}})
	file.Operation.String("note", "x")
	file.Operation.Bool("flag", true)
	file.Operation.Strings("tags", []string{"a", "b"})
	w.SessionStart(context.Background(), anon, &d, "")
	diag := &gateway.Call{ID: "c3", Time: write.Time.Add(2 * time.Second), Target: anon.Target,
		Operation: gateway.Operation{Function: "diagnostics", Access: gateway.AccessDiagnostic}}
	diag.Operation.Int("sub_function", 1)
	diag.Operation.String("sub_function_name", "restart_communications")
	for _, c := range []struct {
		s *gateway.Session
		c *gateway.Call
	}{{s, write}, {s, file}, {anon, diag}} {
		if err := w.Call(context.Background(), c.s, c.c, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	e := replayEngine(t, map[string]string{"main.rego": replayWindowPolicy, "data.json": replayWindowData})
	r := newReplayer(e, ReplayOptions{})
	for l, err := range AuditFiles(path) {
		if err != nil {
			t.Fatal(err)
		}
		if err := r.line(l); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.batch) != 5 { // two session opens, three calls
		t.Fatalf("%d decisions queued, want 5", len(r.batch))
	}
	for i, want := range []ast.Value{Input("site-a-gw1", s, write), Input("site-a-gw1", s, file), Input("site-a-gw1", anon, diag)} {
		got := r.batch[2+i].input
		if got.Compare(want) != 0 {
			t.Errorf("call %d input\n got %v\nwant %v", i+1, got, want)
		}
	}
	open := r.batch[0]
	if open.ex.Function != gateway.FunctionSessionOpen || open.input.(ast.Object).Get(ast.StringTerm("operation")).String() !=
		`{"access": "session", "function": "session.open"}` {
		t.Errorf("session.open input: %v", open.input)
	}
}

// ---- what is not a record ----

func TestReplayMalformed(t *testing.T) {
	e := replayEngine(t, map[string]string{"main.rego": replayWindowPolicy, "data.json": replayWindowData})
	var good replayLog
	good.add("gateway.start", rpTime("2026-01-10T05:00:00Z"), "version", "dev")
	good.open(rpAlice, rpTime("2026-01-10T07:00:00Z"), rpVerdict(true, false, "session"))
	good.call(rpAlice, "c1", rpTime("2026-01-10T07:30:00Z"), rpRead(1, 1), rpVerdict(true, false, "read"))
	good.add("policy.load", rpTime("2026-01-10T07:31:00Z"), "policy_revision", "x")
	good.add("some.future_event", rpTime("2026-01-10T07:32:00Z"), "anything", map[string]any{"event": "call"})
	goodPath := good.write(t)

	call := func(drop string) string {
		var b replayLog
		b.call(rpAlice, "c9", rpTime("2026-01-10T07:40:00Z"), rpRead(1, 1), rpVerdict(true, false, "read"))
		var m map[string]json.RawMessage
		_ = json.Unmarshal([]byte(b.lines[0]), &m)
		delete(m, drop)
		line, _ := json.Marshal(m)
		return string(line)
	}
	badOp := strings.Replace(call(""), `"function":"read_holding_registers"`, `"function":""`, 1)
	for _, tc := range []struct {
		name, line, want string
	}{
		{"not JSON", `{"seq":9,"time":"x","event":"result",`, "bad.jsonl:3: not a JSON record"},
		{"not JSON, call", `{"seq":9,"event":"call"`, "bad.jsonl:3: not a JSON record"},
		{"plain text", `hello`, "bad.jsonl:3: not a JSON record"},
		{"no call_time", call("call_time"), "bad.jsonl:3: call record has no call_time"},
		{"no call_id", call("call_id"), "bad.jsonl:3: call record has no call_id"},
		{"no operation", call("operation"), "bad.jsonl:3: call record has no operation"},
		{"no function", badOp, "bad.jsonl:3: call record: operation has no function or access"},
		{"no decision", call("decision"), "bad.jsonl:3: call record has no decision.allow"},
		{"no principal", call("principal"), "bad.jsonl:3: call record has no principal"},
		{"bad time", strings.Replace(call(""), `"call_time":"2026`, `"call_time":"yesterday 2026`, 1), "bad.jsonl:3: call record: time"},
		{"ticket without ticket", `{"seq":9,"time":"2026-01-10T07:00:00Z","event":"ticket.open","ticket_id":"T-1"}`, "bad.jsonl:3: ticket.open record has no ticket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.jsonl")
			lines := good.lines[:2]
			if err := os.WriteFile(bad, []byte(strings.Join(append(slices.Clone(lines), tc.line, good.lines[2]), "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Replay(context.Background(), e, AuditFiles(goodPath, bad), ReplayOptions{})
			if err == nil || !strings.Contains(err.Error(), filepath.Dir(bad)) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
	if _, err := Replay(context.Background(), e, AuditFiles(goodPath, "/nonexistent/audit.jsonl"), ReplayOptions{}); err == nil ||
		!strings.Contains(err.Error(), "/nonexistent/audit.jsonl") {
		t.Errorf("a missing file: %v", err)
	}
	// Records that are not calls are skipped, whatever their event.
	rep := replayFiles(t, e, goodPath)
	if rep.Totals != (ReplayTotals{Replayed: 2, Unchanged: 2}) || rep.Records != len(good.lines) || len(rep.CutLines) != 0 {
		t.Errorf("good log: %+v, %d records, cut %v", rep.Totals, rep.Records, rep.CutLines)
	}

	// A last line cut by a crash is skipped and named, and the next file
	// is read; the same log compressed (a rotated file) reads the same.
	dir := t.TempDir()
	cut := filepath.Join(dir, "cut.jsonl")
	if err := os.WriteFile(cut, []byte(strings.Join(good.lines, "\n")+"\n"+`{"seq":99,"event":"call","call_ti`), 0o644); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(strings.Join(good.lines, "\n") + "\n"))
	zw.Close()
	gzPath := filepath.Join(dir, "audit.jsonl.1.gz")
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = replayFiles(t, e, cut, gzPath)
	if rep.Totals != (ReplayTotals{Replayed: 4, Unchanged: 4}) || rep.Records != 2*len(good.lines) ||
		!slices.Equal(rep.CutLines, []string{fmt.Sprintf("%s:%d", cut, len(good.lines)+1)}) || !slices.Equal(rep.Files, []string{cut, gzPath}) {
		t.Errorf("a cut last line, then a compressed file: %+v, %d records, cut %v, files %v", rep.Totals, rep.Records, rep.CutLines, rep.Files)
	}
}

// ---- speed ----

// BenchmarkReplay replays a generated log of 100,000 calls (and their
// result records, in sessions of 100 calls) under the quickstart policy:
// reads and writes from an inventory workstation, some into the protected
// range, some under a change ticket.
func BenchmarkReplay(b *testing.B) {
	const calls, perSession = 100_000, 100
	e, err := New(Options{Path: "../examples/quickstart/policy", Gateway: "bench", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		b.Fatal(err)
	}
	t0 := rpTime("2026-11-20T08:00:00Z")
	var log replayLog
	tk := replayTicket("T-1", "alice", t0.Add(time.Hour), t0.Add(2*time.Hour))
	log.add("ticket.open", t0.Add(time.Hour), "ticket_id", "T-1", "by", "carol", "ticket", tk)
	for i := range calls {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		w := rpAlice
		w.session = fmt.Sprintf("s-%d", i/perSession)
		if i%perSession == 0 {
			log.open(w, at, rpVerdict(true, false, "session"))
		}
		op, d := rpRead(100+i%150, 2), rpVerdict(true, false, "read")
		if i%4 == 3 {
			op, d = rpWrite(100+i%150, i), rpVerdict(false, true, "outside_maintenance_window")
		}
		log.call(w, fmt.Sprintf("c-%d", i), at, op, d)
	}
	path := filepath.Join(b.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(log.lines, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	var rep *ReplayReport
	cpu0 := cpuTime(b)
	for b.Loop() {
		if rep, err = Replay(context.Background(), e, AuditFiles(path), ReplayOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime(b) - cpu0
	if rep.Totals.Replayed != calls+calls/perSession {
		b.Fatalf("replayed %d", rep.Totals.Replayed)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(sec, "s/replay")
	b.ReportMetric(float64(rep.Records)/sec, "records/s")
	b.ReportMetric(float64(rep.Totals.Replayed)/sec, "decisions/s")
	// CPU time says more than wall time on a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*rep.Totals.Replayed), "cpu-µs/decision")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the user and system time of this process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
