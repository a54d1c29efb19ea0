package admin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/policy"
)

func start(t *testing.T, allowed map[uint32]bool) (*Client, *policy.Tickets) {
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
	srv := &Server{Tickets: ts, Allowed: allowed, Targets: []string{"plc1", "plc2"}, Log: zerolog.Nop()}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return NewClient(sock), ts
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
	c, ts := start(t, map[uint32]bool{})
	_, err := c.Open(OpenRequest{User: "alice", Targets: []string{"plc1"}, Access: []string{"write"}, Reason: "x", Duration: "1h"})
	if err == nil || !strings.Contains(err.Error(), "may not administer") {
		t.Fatalf("got %v; want a refusal", err)
	}
	if len(ts.List()) != 0 {
		t.Fatal("a refused caller opened a ticket")
	}
}

func TestListenRefusesASocketInUse(t *testing.T) {
	c, _ := start(t, nil)
	if _, err := Listen(c.Socket, 0o600); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("got %v", err)
	}
}
