package report

import (
	"testing"
	"time"
)

// The scenario: one day (the period) of a gateway in front of plc1 and
// plc2, with records before and after it.
var (
	periodFrom = ts("2026-11-26T00:00:00Z")
	periodTo   = ts("2026-11-27T00:00:00Z")
)

const (
	hostileUser   = `<script>alert("user")</script>`
	hostileReason = `<img src=x onerror=alert("reason")>`
	hostileFunc   = `"><svg onload=alert("function")>`
)

// scenarioWindows are the maintenance windows: 06:00–10:00 on the day, on
// plc1 only, and a recurring one on plc2 that never opens on the day.
func scenarioWindows() *Windows {
	return &Windows{From: "testdata", Key: "data.maintenance_windows", List: []Window{
		{Name: "CHG-1 tuning", Start: "2026-11-26T06:00:00Z", End: "2026-11-26T10:00:00Z", Targets: []string{"plc1"}},
		{Name: "monthly", Cron: "0 5 1 * *", Dur: "3h", TZ: "Europe/Berlin", Targets: []string{"plc2"}},
	}}
}

// scenario writes the log and returns its path. The expected numbers are
// in the tests that use it.
func scenario(t *testing.T) string {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	before := ts("2026-11-25T23:00:00Z")

	// Before the period: the gateway starts, alice reads plc1.
	l.add(before, "gateway.start", field{"version", "v1"}, field{"boot_id", "boot-1"}, field{"config", "/etc/interlock.yaml"},
		field{"policy_revision", "rev-1"}, field{"policy_mode", "enforce"})
	l.add(before.Add(time.Second), "policy.load", field{"policy_revision", "rev-1"}, field{"path", "/p"}, field{"files", []string{"a.rego", "data.json"}})
	alice := callSpec{session: "s1", user: "alice", roles: []string{"engineer"}, ip: "10.0.5.7", srcName: "ews-alice", target: "plc1",
		function: "read_holding_registers", access: "read", code: 3, fields: []field{{"address", 100}, {"quantity", 2}},
		allow: true, reasons: []string{"read"}, rev: "rev-1", status: "ok"}
	c := alice
	c.id = "c0"
	l.call(before.Add(2*time.Second), c)

	// In the period.
	l.add(at("00:00:01"), "session.open", field{"session_id", "s2"}, field{"listener", "plc1"}, field{"protocol", "modbus"},
		field{"source", map[string]any{"ip": "10.0.5.7", "port": 50200, "name": "ews-alice"}},
		field{"principal", map[string]any{"user": "alice", "auth": "inventory"}},
		field{"target", map[string]any{"name": "plc1", "upstream": "tcp://x"}}, field{"success", true},
		field{"decision", map[string]any{"allow": true, "alert": false, "reasons": []string{"session"}, "policy_revision": "rev-1"}})
	l.add(at("00:00:02"), "session.open", field{"session_id", "s3"}, field{"listener", "plc1"},
		field{"source", map[string]any{"ip": "10.0.9.9", "port": 4000}}, field{"principal", map[string]any{"auth": "none"}},
		field{"target", map[string]any{"name": "plc1"}}, field{"success", false}, field{"reason", "limit: max_conns"})
	for i, hhmm := range []string{"01:00:00", "02:00:00", "03:00:00", "04:00:00", "05:00:00"} {
		c := alice
		c.id = "r" + string(rune('0'+i))
		c.session = "s2"
		l.call(at(hhmm), c)
	}
	// A write inside the window.
	w := alice
	w.id, w.session, w.function, w.access, w.code = "w1", "s2", "write_single_register", "write", 6
	w.fields = []field{{"address", 100}, {"values", []int{1500}}}
	w.reasons = []string{"maintenance_window:CHG-1 tuning"}
	l.call(at("07:00:00"), w)
	// A ticket, and a write outside the window allowed under it.
	tk := map[string]any{"id": "T-1", "user": "alice", "targets": []string{"plc1"}, "access": []string{"write"}, "reason": "CHG-1234",
		"opened_by": "ops", "opened": "2026-11-26T11:00:00Z", "expires": "2026-11-26T15:00:00Z", "approvals": []string{}}
	l.add(at("11:00:00"), "ticket.open", field{"ticket_id", "T-1"}, field{"by", "ops"}, field{"ticket", tk})
	tk["approvals"] = []string{"bob"}
	l.add(at("11:05:00"), "ticket.approve", field{"ticket_id", "T-1"}, field{"by", "bob"}, field{"ticket", tk})
	w2 := w
	w2.id, w2.ticket = "w2", "T-1"
	w2.fields = []field{{"address", 0}, {"quantity", 12}, {"values", []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}}}
	w2.function, w2.code = "write_multiple_registers", 16
	w2.reasons = []string{"ticket:T-1"}
	l.call(at("12:00:00"), w2)
	// The policy changes.
	l.add(at("13:00:00"), "policy.load", field{"policy_revision", "rev-2"}, field{"path", "/p"}, field{"files", []string{"a.rego", "data.json"}},
		field{"bundle_signature", "unsigned"})
	l.add(at("13:30:00"), "policy.load_failed", field{"error", "a.rego:3: rego_parse_error"})
	l.add(at("14:00:00"), "ticket.close", field{"ticket_id", "T-1"}, field{"by", "ops"}, field{"ticket", tk})
	// A hostile, unidentified source writes plc2: denied, outside every window.
	l.call(at("15:00:00"), callSpec{id: "x1", session: "s4", user: hostileUser, auth: "none", ip: "10.0.9.9", target: "plc2",
		function: "write_single_coil", access: "write", code: 5, fields: []field{{"address", 7}, {"values", []int{1}}},
		allow: false, alert: true, reasons: []string{"account_not_approved", hostileReason}, rev: "rev-2", status: "denied"})
	// bob's diagnostics: denied, a state-changing call without a result.
	l.call(at("15:30:00"), callSpec{id: "d1", session: "s5", user: "bob", roles: []string{"operator"}, ip: "10.0.5.8", target: "plc1",
		function: "diagnostics", access: "diagnostic", code: 8, fields: []field{{"sub_function_name", "restart_communications"}},
		allow: false, alert: true, reasons: []string{"diagnostics_denied"}, rev: "rev-2"})
	// A read with an alert, of a function with a hostile name.
	l.call(at("16:00:00"), callSpec{id: "h1", session: "s4", user: hostileUser, auth: "none", ip: "10.0.9.9", target: "plc2",
		function: hostileFunc, access: "read", code: 3, allow: true, alert: true, reasons: []string{"read"}, rev: "rev-2", status: "exception", resCode: 2})
	for i := range 2 {
		l.add(at("17:00:0"+string(rune('0'+i))), "request.rejected", field{"call_id", "j"}, field{"session_id", "s6"}, field{"listener", "plc1"},
			field{"source", map[string]any{"ip": "10.0.9.9", "port": 4001}}, field{"principal", map[string]any{"auth": "none"}},
			field{"target", map[string]any{"name": "plc1"}}, field{"protocol", "modbus"},
			field{"reason", "bad_length"}, field{"detail", "length 0"}, field{"response", "close"})
	}
	l.add(at("18:00:00"), "session.close", field{"session_id", "s2"}, field{"listener", "plc1"},
		field{"source", map[string]any{"ip": "10.0.5.7", "port": 50200}}, field{"principal", map[string]any{"user": "alice"}},
		field{"duration_ms", 64_799_000})
	l.checkpoint(at("19:00:00"), "boot-1", testKey)
	l.add(at("19:30:00"), "audit.mystery", field{"what", hostileReason})
	l.add(at("20:00:00"), "gateway.stop", field{"boot_id", "boot-1"})
	l.add(at("20:00:05"), "gateway.start", field{"version", "v1"}, field{"boot_id", "boot-2"}, field{"policy_revision", "rev-2"}, field{"policy_mode", "enforce"})
	l.add(at("21:00:00"), "gateway.start", field{"version", "v1"}, field{"boot_id", "boot-3"}, field{"policy_revision", "rev-2"}, field{"policy_mode", "enforce"})

	// After the period: carol, never seen before.
	c = alice
	c.id, c.user = "late", "carol"
	l.call(ts("2026-11-27T01:00:00Z"), c)
	return l.write(t.TempDir())
}
