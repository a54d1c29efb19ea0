package report

import (
	"html"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ticketLog is a day with a ticket id used twice (opened, closed, opened
// again for someone else), a ticket that expired unclosed, a restart that
// loads the still-open ticket again, and a ticket-file entry refused at
// that start.
func ticketLog(t *testing.T) string {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	tk := func(user, reason, opened, expires string) map[string]any {
		return map[string]any{"id": "T-DUP", "user": user, "targets": []string{"plc1"}, "access": []string{"write"}, "reason": reason,
			"opened_by": "root", "opened": "2026-11-26T" + opened + "Z", "expires": "2026-11-26T" + expires + "Z", "approvals": []string{}}
	}
	first := tk("alice", "first", "08:00:00", "09:00:00")
	second := tk("mallory", "reuse", "08:30:00", "10:30:00")
	l.add(at("08:00:00"), "ticket.open", field{"ticket_id", "T-DUP"}, field{"by", "root"}, field{"ticket", first})
	l.add(at("08:10:00"), "ticket.close", field{"ticket_id", "T-DUP"}, field{"by", "root"}, field{"ticket", first})
	l.add(at("08:30:00"), "ticket.open", field{"ticket_id", "T-DUP"}, field{"by", "root"}, field{"ticket", second})
	w := callSpec{id: "w1", session: "s1", user: "mallory", ip: "10.0.5.9", target: "plc1", function: "write_single_register", access: "write",
		code: 6, fields: []field{{"address", 100}, {"values", []int{4242}}}, allow: true, reasons: []string{"ticket:T-DUP"}, ticket: "T-DUP", rev: "r", status: "ok"}
	l.call(at("08:40:00"), w)
	// A restart: the open ticket is loaded again from the ticket file (the
	// same ticket), and an entry of the file is refused.
	l.add(at("09:00:00"), "gateway.start", field{"version", "v1"}, field{"boot_id", "b2"}, field{"policy_revision", "r"}, field{"policy_mode", "enforce"})
	l.add(at("09:00:01"), "ticket.load", field{"ticket_id", "T-DUP"}, field{"by", "tickets.json"}, field{"ticket", second})
	l.add(at("09:00:01"), "ticket.load_refused", field{"reason", `tickets.json: entry 2 (id "T-BAD"): a field is missing`})
	return l.write(t.TempDir())
}

func TestReportTicketsReusedIDExpiredRefused(t *testing.T) {
	rep, page := build(t, Options{Files: []string{ticketLog(t)}, From: periodFrom, To: periodTo})
	a := rep.agg
	if len(a.tickets) != 2 {
		t.Fatalf("%d ticket instances, want 2 (one per ticket.open; the load after the restart is the second one again)", len(a.tickets))
	}
	first, second := a.tickets[0], a.tickets[1]
	if first.User != "alice" || first.Reason != "first" || !first.Closed.Equal(ts("2026-11-26T08:10:00Z")) || first.Calls != 0 {
		t.Errorf("first ticket: user %q reason %q closed %v calls %d", first.User, first.Reason, first.Closed, first.Calls)
	}
	if second.User != "mallory" || !second.Closed.IsZero() || second.Calls != 1 {
		t.Errorf("second ticket: user %q closed %v calls %d", second.User, second.Closed, second.Calls)
	}
	if o := a.others.m["ticket.load_refused"]; o != nil {
		t.Errorf("ticket.load_refused is filed under events the report does not interpret")
	}

	sec := section(t, page, "tickets")
	text := pageText(sec)
	rows := regexp.MustCompile(`(?s)<tr><td><code>T-DUP</code>.*?</tr>`).FindAllString(sec, -1)
	if len(rows) != 2 {
		t.Fatalf("%d rows of T-DUP in the tickets table, want 2:\n%s", len(rows), text)
	}
	if !strings.Contains(rows[0], "alice") || !strings.Contains(rows[0], "08:10:00") || !strings.Contains(rows[0], "by root") {
		t.Errorf("first row is not alice's ticket closed at 08:10 by root: %s", rows[0])
	}
	if !strings.Contains(rows[1], "mallory") || !strings.Contains(rows[1], "expired") || !strings.Contains(rows[1], "10:30:00") {
		t.Errorf("second row is not mallory's ticket expired at 10:30: %s", rows[1])
	}
	if strings.Contains(text, "not closed") {
		t.Errorf("an expired ticket shows as not closed: %s", text)
	}
	if !strings.Contains(text, `entry 2 (id "T-BAD"): a field is missing`) {
		t.Errorf("the refused ticket-file entry and its reason are not in the tickets section: %s", text)
	}
}

// Refused ticket requests and failed starts are in the report, not among
// the events it does not interpret.
func TestReportRefusedRequestsAndFailedStarts(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	l.add(at("08:00:00"), "policy.load", field{"policy_revision", "r"})
	l.add(at("08:00:01"), "gateway.start_failed", field{"boot_id", "b1"}, field{"error", "listen tcp 127.0.0.1:5020: bind: address already in use"})
	l.add(at("08:01:00"), "gateway.start", field{"version", "v1"}, field{"boot_id", "b2"}, field{"policy_revision", "r"}, field{"policy_mode", "enforce"})
	l.add(at("08:02:00"), "ticket.refused", field{"action", "approve"}, field{"by", "alice"}, field{"ticket_id", "T-1"},
		field{"reason", "ticket: T-1 was opened by alice, who cannot also approve it"})
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	for _, ev := range []string{"ticket.refused", "gateway.start_failed"} {
		if o := rep.agg.others.m[ev]; o != nil {
			t.Errorf("%s is filed under events the report does not interpret", ev)
		}
	}
	text := html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(page, " "))
	text = strings.Join(strings.Fields(text), " ")
	for _, want := range []string{
		"approve T-1 by alice: ticket: T-1 was opened by alice, who cannot also approve it",
		"listen tcp 127.0.0.1:5020: bind: address already in use",
		"1 gateway start failed after the audit log was opened",
		"1 ticket request was refused at the admin socket",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}
