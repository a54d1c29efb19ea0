package report

import (
	"testing"
	"time"
)

// A call the policy allowed because of a maintenance window was inside it,
// even when the data given to the report no longer lists that window.
func TestReportWindowPassRecordedInTheDecision(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	w := callSpec{session: "s1", user: "alice", ip: "10.0.5.7", target: "plc1", function: "write_single_register", access: "write",
		code: 6, fields: []field{{"address", 100}, {"values", []int{1234}}}, allow: true, rev: "r", status: "ok"}
	w.id, w.reasons = "w1", []string{"maintenance_window:CHG-77 tuning"}
	l.call(at("12:00:00"), w)
	w.id, w.reasons = "w2", []string{"maintenance-window:pass:CHG-78"}
	l.call(at("12:01:00"), w)
	w.id, w.reasons, w.allow, w.status = "w3", []string{"outside_maintenance_window"}, false, "denied"
	l.call(at("12:02:00"), w)
	// The data as it is now: CHG-77 and CHG-78 were removed after the work.
	rep, _ := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo, Windows: scenarioWindows()})
	a := rep.agg
	if a.insideWindow != 2 || a.outside != 1 || a.outsideAllowed != 0 {
		t.Errorf("inside %d, outside %d (allowed %d); want 2 inside, 1 outside (denied)", a.insideWindow, a.outside, a.outsideAllowed)
	}
	for _, row := range a.outsideRows.Rows {
		if row.CallID != "w3" {
			t.Errorf("call %s, allowed by a window, is listed as outside the windows", row.CallID)
		}
	}
}
