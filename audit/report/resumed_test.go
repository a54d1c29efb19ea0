package report

import (
	"strings"
	"testing"
)

// A session.open of a session on a new secure channel (session.resumed)
// is not another session: the report counts it apart.
func TestReportResumedSessions(t *testing.T) {
	l := newLog(t)
	open := func(at string, port, resumed int) {
		sess := map[string]any{"id": "s1", "started": "2026-11-26T08:00:00Z", "security_policy": "None", "security_mode": "None"}
		if resumed > 0 {
			sess["resumed"] = resumed
		}
		l.add(ts("2026-11-26T"+at+"Z"), "session.open", field{"session_id", "s1"}, field{"listener", "line1"},
			field{"protocol", "opcua"}, field{"session", sess},
			field{"source", map[string]any{"ip": "10.0.0.5", "port": port}},
			field{"principal", map[string]any{"user": "alice", "auth": "username"}}, field{"success", true})
	}
	open("08:00:00", 50000, 0)
	open("08:10:00", 50001, 1)
	open("08:20:00", 50002, 2)
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	if a := rep.agg; a.sessOpened != 1 || a.sessResumed != 2 {
		t.Fatalf("sessions opened %d, resumed %d; want 1 and 2", a.sessOpened, a.sessResumed)
	}
	if !strings.Contains(page, `<span data-k="sessions-total">1</span> session opened`) ||
		!strings.Contains(page, `<span data-k="sessions-resumed">2 times</span> a session moved to a new secure channel`) {
		t.Error("the page does not say 1 session opened and 2 moves to a new secure channel")
	}
}
