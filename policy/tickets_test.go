package policy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// clock is a settable now for the ticket store.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTickets(t *testing.T, events *[]TicketEvent) (*Tickets, *clock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tickets.json")
	ts, err := OpenTickets(path, func(ev TicketEvent) error {
		if events != nil {
			*events = append(*events, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The clock starts at the real time: OpenTickets drops the tickets that
	// expired by the real clock, so a fixed date would make the restart
	// check below fail once that date's tickets have run out.
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	ts.now = c.now
	return ts, c, path
}

func aliceTicket() Ticket {
	return Ticket{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "CHG-1234"}
}

func TestTicketLifecycle(t *testing.T) {
	var events []TicketEvent
	ts, c, path := newTickets(t, &events)
	tk, err := ts.Open(aliceTicket(), 2*time.Hour, "root")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tk.ID, "T-") || tk.OpenedBy != "root" || !tk.Expires.Equal(c.t.Add(2*time.Hour)) {
		t.Fatalf("opened %+v", tk)
	}
	if _, err := ts.Approve(tk.ID, "root"); err == nil {
		t.Fatal("the opener approved their own ticket")
	}
	if tk, err = ts.Approve(tk.ID, "bob"); err != nil || !slices.Equal(tk.Approvals, []string{"bob"}) {
		t.Fatalf("approve: %+v, %v", tk, err)
	}
	if _, err := ts.Approve(tk.ID, "bob"); err == nil {
		t.Fatal("approved twice by the same person")
	}

	// The set survives a restart.
	again, err := OpenTickets(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	again.now = c.now
	if l := again.List(); len(l) != 1 || l[0].ID != tk.ID || !slices.Equal(l[0].Approvals, []string{"bob"}) {
		t.Fatalf("after restart: %+v", l)
	}

	if _, err := ts.Close(tk.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Close(tk.ID, "alice"); err == nil {
		t.Fatal("closed twice")
	}
	var kinds []string
	for _, ev := range events {
		kinds = append(kinds, ev.Event+"/"+ev.By)
	}
	if want := []string{"ticket.open/root", "ticket.approve/bob", "ticket.close/alice"}; !slices.Equal(kinds, want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}

	// Expiry: a ticket past its end is not open, cannot be approved or closed.
	tk2, _ := ts.Open(aliceTicket(), time.Minute, "root")
	c.t = c.t.Add(time.Minute)
	if len(ts.List()) != 0 {
		t.Fatal("an expired ticket is listed")
	}
	if _, err := ts.Approve(tk2.ID, "bob"); err == nil {
		t.Fatal("approved an expired ticket")
	}
}

func TestTicketChecks(t *testing.T) {
	ts, _, _ := newTickets(t, nil)
	for name, tc := range map[string]struct {
		t  Ticket
		d  time.Duration
		by string
	}{
		"no user":          {Ticket{Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"no target":        {Ticket{User: "a", Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"no access":        {Ticket{User: "a", Targets: []string{"plc1"}, Reason: "x"}, time.Hour, "root"},
		"unknown access":   {Ticket{User: "a", Targets: []string{"plc1"}, Access: []string{"all"}, Reason: "x"}, time.Hour, "root"},
		"no reason":        {Ticket{User: "a", Targets: []string{"plc1"}, Access: []string{"write"}}, time.Hour, "root"},
		"too long":         {aliceTicket(), 8 * 24 * time.Hour, "root"},
		"no requester":     {aliceTicket(), time.Hour, ""},
		"newline in id":    {Ticket{ID: "T-1\nT-2", User: "a", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"newline in user":  {Ticket{User: "alice\nbob", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"tab in target":    {Ticket{User: "a", Targets: []string{"plc1\t"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"escape in reason": {Ticket{User: "a", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "CHG-1\x1b[2J"}, time.Hour, "root"},
		"slash in id":      {Ticket{ID: "CHG/2026/17", User: "a", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"dots for id":      {Ticket{ID: "..", User: "a", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
		"percent in id":    {Ticket{ID: "p%2Fq", User: "a", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x"}, time.Hour, "root"},
	} {
		if _, err := ts.Open(tc.t, tc.d, tc.by); err == nil {
			t.Errorf("%s: opened", name)
		}
	}
	// A change the audit log refuses does not happen.
	refusing, err := OpenTickets("", func(TicketEvent) error { return errors.New("disk full") })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refusing.Open(aliceTicket(), time.Hour, "root"); err == nil || len(refusing.List()) != 0 {
		t.Fatalf("open not recorded: %v, %d tickets", err, len(refusing.List()))
	}
}

const ticketPolicy = `package interlock

default decision := {"allow": false, "reasons": ["no_ticket"]}

decision := {"allow": true, "reasons": ["ticket"], "ticket": t.id} if {
	some t in input.tickets
	t.user == input.principal.user
	input.target.name in t.targets
	input.operation.access in t.access
}
`

// A ticket allows a call as soon as it is open, and stops allowing as soon
// as it is closed or expires, whatever the decision cache held.
func TestTicketsDecideAndBoundTheCache(t *testing.T) {
	var events []TicketEvent
	ts, c, _ := newTickets(t, &events)
	e, err := New(Options{Path: policyDir(t, map[string]string{"main.rego": ticketPolicy}), Log: zerolog.Nop(),
		Tickets: ts, CacheTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	s.Principal.User = "alice"
	write := func(at time.Time) gateway.Decision {
		t.Helper()
		d, err := e.Decide(context.Background(), s, testCall(s, "write_multiple_registers", gateway.AccessWrite, at))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := write(c.t); d.Allow {
		t.Fatal("allowed without a ticket")
	}
	if d := write(c.t.Add(time.Second)); d.Allow || !d.Cached {
		t.Fatalf("second denial: %+v; want it from the cache", d)
	}
	tk, err := ts.Open(aliceTicket(), 10*time.Minute, "root")
	if err != nil {
		t.Fatal(err)
	}
	if d := write(c.t.Add(2 * time.Second)); !d.Allow || d.Ticket != tk.ID || d.Cached {
		t.Fatalf("with the ticket open: %+v; want a fresh allow naming %s", d, tk.ID)
	}
	if d := write(c.t.Add(3 * time.Second)); !d.Allow || !d.Cached || d.Ticket != tk.ID {
		t.Fatalf("again: %+v; want the cached allow naming the ticket", d)
	}
	// Expiry: the cached allow (TTL 1h) must not outlive the ticket.
	if d := write(tk.Expires.Add(-time.Nanosecond)); !d.Allow {
		t.Fatalf("just before expiry: %+v", d)
	}
	if d := write(tk.Expires); d.Allow {
		t.Fatalf("at expiry: %+v; want deny", d)
	}
	// Close: the next call is denied.
	tk2, _ := ts.Open(aliceTicket(), time.Hour, "root")
	c.t = tk.Expires
	if d := write(c.t.Add(time.Second)); !d.Allow || d.Ticket != tk2.ID {
		t.Fatalf("second ticket: %+v", d)
	}
	if _, err := ts.Close(tk2.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if d := write(c.t.Add(2 * time.Second)); d.Allow {
		t.Fatalf("after close: %+v; want deny", d)
	}
	// A ticket for another user or target does not allow.
	other := aliceTicket()
	other.User = "bob"
	ts.Open(other, time.Hour, "root")
	if d := write(c.t.Add(3 * time.Second)); d.Allow {
		t.Fatalf("bob's ticket allowed alice: %+v", d)
	}
}

// The ticket file is loaded only with tickets Open and Approve could have
// made; each one loaded is recorded (ticket.load), each entry left out is
// named with why.
func TestTicketFileChecked(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	good := Ticket{ID: "T-GOOD", User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "CHG-1",
		OpenedBy: "root", Opened: now, Expires: now.Add(time.Hour), Approvals: []string{"bob"}}
	long := good
	long.ID, long.Expires = "FORGED", now.Add(794*time.Hour)
	noUser := good
	noUser.ID, noUser.User = "T-NOUSER", ""
	self := good
	self.ID, self.Approvals = "T-SELF", []string{"root"}
	dup := good
	dup.ID = "T-DUP"
	everything := good
	everything.ID, everything.Access = "T-ALL", []string{"everything"}
	b, err := json.Marshal([]Ticket{good, long, noUser, self, dup, dup, dup, everything})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tickets.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var events []TicketEvent
	ts, err := OpenTickets(path, func(ev TicketEvent) error { events = append(events, ev); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if l := ts.List(); len(l) != 1 || l[0].ID != "T-GOOD" {
		t.Errorf("loaded %+v, want T-GOOD alone", l)
	}
	if len(events) != 1 || events[0].Event != TicketLoad || events[0].Ticket.ID != "T-GOOD" {
		t.Errorf("events %+v", events)
	}
	refused := strings.Join(ts.Refused(), "\n")
	for _, want := range []string{`(id "FORGED"): it expires 794h0m0s after it was opened`, `(id "T-NOUSER"): a field is missing`,
		`(id "T-SELF"): root approved a ticket they opened`, `entry 7: id "T-DUP" is there 3 times`,
		`(id "T-ALL"): access "everything" is not one of`} {
		if !strings.Contains(refused, want) {
			t.Errorf("refused:\n%s\nlacks %q", refused, want)
		}
	}
}

// A close that cannot be saved says the ticket would come back.
// An id may be opened again once its ticket has expired (or was closed).
func TestTicketIDReopenedAfterExpiry(t *testing.T) {
	ts, c, _ := newTickets(t, nil)
	tk := aliceTicket()
	tk.ID = "CHG-77"
	if _, err := ts.Open(tk, time.Minute, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Open(tk, time.Minute, "root"); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Fatalf("the same id while open: %v", err)
	}
	c.t = c.t.Add(2 * time.Minute)
	if _, err := ts.Open(tk, time.Minute, "root"); err != nil {
		t.Errorf("the id after its ticket expired: %v", err)
	}
}

// Repeated targets and access kinds are kept once.
func TestTicketRepeatsDropped(t *testing.T) {
	ts, _, _ := newTickets(t, nil)
	tk, err := ts.Open(Ticket{User: "alice", Targets: []string{"plc1", "plc2", "plc1"}, Access: []string{"write", "write", "execute"}, Reason: "CHG-1"}, time.Hour, "root")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tk.Targets, []string{"plc1", "plc2"}) || !slices.Equal(tk.Access, []string{"write", "execute"}) {
		t.Errorf("targets %v, access %v", tk.Targets, tk.Access)
	}
}

func TestTicketCloseNotSaved(t *testing.T) {
	ts, _, path := newTickets(t, nil)
	tk, err := ts.Open(aliceTicket(), time.Hour, "root")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil { // the rename over it fails
		t.Fatal(err)
	}
	_, err = ts.Close(tk.ID, "alice")
	if err == nil || !strings.Contains(err.Error(), tk.ID+" is closed now, but") || !strings.Contains(err.Error(), "would be open again") {
		t.Errorf("close: %v", err)
	}
	if !errors.Is(err, ErrNotSaved) {
		t.Errorf("close: %v is not ErrNotSaved", err)
	}
	if len(ts.List()) != 0 {
		t.Error("the ticket is still open")
	}
}
