package report

import (
	"strings"
	"testing"
	"time"
)

// OPC UA users-file loads are shown beside the policy's: when, which
// listener and file, the users in force and who changed; a failed load is
// a finding. None of them is filed under the events the report does not
// interpret.
func TestReportUsersFileLoads(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	const file = "/etc/interlock/opc1-users.yaml"
	const badHash = `opc1-users.yaml:14: [3].password_hash (user "erin"): not a bcrypt hash`
	l.add(ts("2026-11-25T22:00:00Z"), "users.load", field{"listener", "opc1"}, field{"path", file}, field{"users", 2},
		field{"added", []string{"before-period"}}, field{"removed", []string{}}, field{"changed", []string{}})
	l.add(at("08:00:00"), "users.load", field{"listener", "opc1"}, field{"path", file}, field{"users", 3},
		field{"added", []string{"erin", hostileUser}}, field{"removed", []string{"mallory"}}, field{"changed", []string{"bob"}})
	l.add(at("09:00:00"), "users.load_failed", field{"listener", "opc1"}, field{"path", file}, field{"users", 3},
		field{"error", badHash})
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	a := rep.agg
	for _, ev := range []string{"users.load", "users.load_failed"} {
		if o := a.others.m[ev]; o != nil {
			t.Errorf("%s is filed under events the report does not interpret", ev)
		}
	}
	if a.usersLoads.Total != 1 || a.usersFails.Total != 1 {
		t.Fatalf("users loads %d, failures %d in the period; want 1 and 1", a.usersLoads.Total, a.usersFails.Total)
	}
	if got := a.usersLoads.Rows[0]; got.Listener != "opc1" || got.Path != file || got.Users != 3 || !got.HasUsers ||
		strings.Join(got.Added, ",") != "erin,"+hostileUser || strings.Join(got.Removed, ",") != "mallory" || strings.Join(got.Changed, ",") != "bob" {
		t.Errorf("users.load row: %+v", got)
	}

	sec := section(t, page, "policy")
	if strings.Contains(sec, hostileUser) {
		t.Errorf("a user name of the users file is in the page unescaped")
	}
	text := pageText(sec)
	for _, want := range []string{
		"OPC UA users files", "users.load record (nothing is recorded at start). Changes in the period: 1 .",
		"2026-11-26 08:00:00.000 seq 2 opc1 " + file + " 3 erin, " + hostileUser + " mallory bob",
		"1 users-file load failed ( users.load_failed , once per distinct error); the users in force stayed.",
		"2026-11-26 09:00:00.000 seq 3 opc1 " + file + " 3 " + badHash,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the policy section lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "before-period") {
		t.Errorf("a users.load before the period is shown in it")
	}
	p := rep.view()
	for _, want := range []string{
		"The OPC UA users changed once in the period (users.load).",
		"1 OPC UA users-file load failed; the users in force stayed (users.load_failed).",
	} {
		found := false
		for _, f := range p.Findings {
			found = found || f == want
		}
		if !found {
			t.Errorf("findings lack %q: %q", want, p.Findings)
		}
	}
	for _, f := range p.Findings {
		if strings.Contains(f, "does not interpret") {
			t.Errorf("a finding says there are events the report does not interpret: %q", f)
		}
	}
}

// A users.load naming many users keeps the first maxUserNames of each list
// and counts the rest.
func TestUsersLoadNamesBounded(t *testing.T) {
	var list []string
	for i := range maxUserNames + 5 {
		list = append(list, strings.Repeat("u", 100)+string(rune('a'+i)))
	}
	got := names(list)
	if len(got) != maxUserNames+1 || got[maxUserNames] != "… 5 more" || len(got[0]) > 64+len("…") {
		t.Errorf("names of %d: %d kept, last %q, first %d bytes", len(list), len(got), got[len(got)-1], len(got[0]))
	}
}
