package admin

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/policy"
)

func start(t *testing.T, allowed map[uint32]bool) (*Client, *policy.Tickets) {
	t.Helper()
	c, ts, _ := startRecording(t, allowed)
	return c, ts
}

// startRecording is start with the refusals the server records.
func startRecording(t *testing.T, allowed map[uint32]bool) (*Client, *policy.Tickets, *refusals) {
	t.Helper()
	dir := t.TempDir()
	ts, err := policy.OpenTickets(filepath.Join(dir, "tickets.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rec := &refusals{}
	srv := &Server{Tickets: ts, Allowed: allowed, Targets: []string{"plc1", "plc2"}, Log: zerolog.Nop(), Refused: rec.add}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(sock), ts, rec
}

type refusals struct {
	mu   sync.Mutex
	list []Refusal
}

func (r *refusals) add(rf Refusal) {
	r.mu.Lock()
	r.list = append(r.list, rf)
	r.mu.Unlock()
}

func (r *refusals) get() []Refusal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

func TestTicketsThroughTheSocket(t *testing.T) {
	me := uint32(os.Getuid())
	c, ts := start(t, map[uint32]bool{me: true})
	if fi, err := os.Stat(c.Socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	tk, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "CHG-1234", Duration: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	if tk.OpenedBy == "" || tk.User != "alice" || time.Until(tk.Expires) < 119*time.Minute {
		t.Fatalf("opened %+v", tk)
	}
	if l := ts.List(); len(l) != 1 || l[0].ID != tk.ID {
		t.Fatalf("store holds %+v", l)
	}
	// The opener cannot approve (two-person rule); the error comes back.
	if _, err := c.Approve(tk.ID); err == nil || !strings.Contains(err.Error(), "cannot also approve") {
		t.Fatalf("self-approval: %v", err)
	}
	if _, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x", Duration: "forever"}); err == nil {
		t.Fatal("a bad duration was accepted")
	}
	// A target the gateway does not serve (a typo) would never match a call.
	if _, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc2", "plc3"}, Access: []string{"write"}, Reason: "x", Duration: "1h"}); err == nil ||
		!strings.Contains(err.Error(), `target "plc3" is not served by this gateway (its targets: plc1, plc2)`) {
		t.Fatalf("a ticket for an unknown target: %v", err)
	}
	if l, err := c.List(); err != nil || len(l) != 1 {
		t.Fatalf("list: %+v, %v", l, err)
	}
	if _, err := c.Close(tk.ID); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.List(); len(l) != 0 {
		t.Fatalf("after close: %+v", l)
	}
}

func TestCallerNotAllowed(t *testing.T) {
	c, ts, rec := startRecording(t, map[uint32]bool{})
	_, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x", Duration: "1h"})
	if err == nil || !strings.Contains(err.Error(), "may not administer") {
		t.Fatalf("got %v; want a refusal", err)
	}
	if len(ts.List()) != 0 {
		t.Fatal("a refused caller opened a ticket")
	}
	// a flood of them is recorded once every 10 s, the rest counted
	for range 100 {
		if _, err := c.Close("T-1"); err == nil || !strings.Contains(err.Error(), "may not administer") {
			t.Fatalf("a refused caller closed a ticket: %v", err)
		}
	}
	got := rec.get()
	if len(got) != 1 || got[0].Action != "open" || got[0].By == "" || !strings.Contains(got[0].Reason, "may not administer") ||
		got[0].Open == nil || got[0].Open.User != "alice" {
		t.Errorf("refusals recorded: %+v; want the first alone, with the ticket asked for", got)
	}
}

// A change that took effect but could not be saved comes back with the
// ticket and a Warning, not as a refusal.
func TestTicketNotSavedIsAWarning(t *testing.T) {
	c, ts, rec := startRecording(t, map[uint32]bool{uint32(os.Getuid()): true})
	tk, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x", Duration: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(filepath.Dir(c.Socket), "tickets.json")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o700); err != nil { // the rename over it fails
		t.Fatal(err)
	}
	closed, err := c.Close(tk.ID)
	var w *Warning
	if !errors.As(err, &w) || !strings.Contains(w.Msg, "is closed now, but") || closed.ID != tk.ID {
		t.Fatalf("close: %+v, %v; want the ticket and a Warning", closed, err)
	}
	if len(ts.List()) != 0 || len(rec.get()) != 0 {
		t.Errorf("open tickets %v, refusals %v; want none", ts.List(), rec.get())
	}
}

func TestListenRefusesASocketInUse(t *testing.T) {
	c, _ := start(t, nil)
	if _, err := Listen(c.Socket, 0o600); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("got %v", err)
	}
}

// The list of open tickets is a JSON array, [] when none is open, for any
// client of the socket (not only this package's, which reads null as empty).
func TestListEmptyIsAnArray(t *testing.T) {
	c, _ := start(t, map[uint32]bool{uint32(os.Getuid()): true})
	resp, err := c.hc.Get("http://interlock/v1/tickets")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "[]" {
		t.Errorf("GET /v1/tickets with none open: %q, want []", got)
	}
}
