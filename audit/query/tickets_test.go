package query

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func ticketObj(id, user string) obj {
	return obj{{"id", id}, {"user", user}, {"targets", []string{"plc1"}}, {"access", []string{"write"}}, {"reason", "CHG-7"},
		{"opened_by", "root"}, {"opened", at(1)}, {"expires", at(3601)}, {"approvals", []string{}}}
}

// --user finds the tickets opened for the user as well as those the user
// opened, approved or closed.
func TestUserMatchesTicketUser(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", []string{
		line(1, "ticket.open", kv{"ticket_id", "T-1"}, kv{"by", "root"}, kv{"ticket", ticketObj("T-1", "alice")}),
		line(2, "ticket.open", kv{"ticket_id", "T-2"}, kv{"by", "root"}, kv{"ticket", ticketObj("T-2", "bob")}),
		line(3, "ticket.approve", kv{"ticket_id", "T-2"}, kv{"by", "alice"}, kv{"ticket", ticketObj("T-2", "bob")}),
	})
	ids := func(recs []*Record) []string {
		var out []string
		for _, r := range recs {
			out = append(out, r.Event+" "+r.TicketID)
		}
		return out
	}
	for _, tc := range []struct {
		user string
		want []string
	}{
		{"alice", []string{"ticket.open T-1", "ticket.approve T-2"}},
		{"bob", []string{"ticket.open T-2", "ticket.approve T-2"}},
		{"root", []string{"ticket.open T-1", "ticket.open T-2"}},
		{"carol", nil},
	} {
		recs, _ := run(t, Query{Filter: Filter{Users: []string{tc.user}}}, path)
		if got := ids(recs); !slices.Equal(got, tc.want) {
			t.Errorf("--user %s: %v, want %v", tc.user, got, tc.want)
		}
	}
}

// tableRows runs lines through a Table and returns its rows without the
// header.
func tableRows(t *testing.T, lines ...string) []string {
	t.Helper()
	var b bytes.Buffer
	tab := NewTable(&b)
	for _, l := range lines {
		r, err := Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := tab.Flush(); err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")[1:]
}

// A ticket event's row names the ticket, its user, targets, expiry and
// reason, not only the event and the operator.
func TestTableTicketRow(t *testing.T) {
	rows := tableRows(t, line(1, "ticket.open", kv{"ticket_id", "T-1"}, kv{"by", "root"}, kv{"ticket", ticketObj("T-1", "alice")}))
	for _, want := range []string{"root", "plc1", "ticket.open", "ticket T-1 for alice: write on plc1 until 2026-11-26T11:00:01.000Z (CHG-7)"} {
		if !strings.Contains(rows[0], want) {
			t.Errorf("ticket.open row lacks %q: %s", want, rows[0])
		}
	}
}
