package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/admin"
	"github.com/interlock-ics/interlock/policy"
)

// startAdmin serves the admin API of a gateway on a socket in a temporary
// folder, for this process's user, and returns the socket.
func startAdmin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ts, err := policy.OpenTickets(filepath.Join(dir, "tickets.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := admin.Listen(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &admin.Server{Tickets: ts, Allowed: map[uint32]bool{uint32(os.Getuid()): true}, Targets: []string{"plc1"}, Log: zerolog.Nop()}
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

// ticket list --json prints a JSON array, [] when no ticket is open, so
// that a script can read it as a list whatever the gateway holds.
func TestTicketListJSONEmptyIsAnArray(t *testing.T) {
	sock := startAdmin(t)
	list := func() []any {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := cmdTicketList([]string{"--socket", sock, "--json"}, nil, &stdout, &stderr); err != nil {
			t.Fatalf("ticket list --json: %v\n%s", err, stderr.String())
		}
		var got []any
		if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got == nil {
			t.Fatalf("ticket list --json printed %q (%v); want a JSON array", stdout.String(), err)
		}
		return got
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("no ticket open: %v", got)
	}
	var stdout, stderr bytes.Buffer
	if err := cmdTicketOpen([]string{"--socket", sock, "--user", "alice", "--target", "plc1", "--access", "write",
		"--for", "1h", "--reason", "CHG-1"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("ticket open: %v\n%s", err, stderr.String())
	}
	if got := list(); len(got) != 1 {
		t.Fatalf("one ticket open: %v", got)
	}
	if err := cmdTicketList([]string{"--socket", sock}, nil, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "CHG-1") {
		t.Errorf("ticket list: %v\n%s", err, stdout.String())
	}

	// A gateway of an earlier version answers null for no tickets.
	old := filepath.Join(t.TempDir(), "old.sock")
	ln, err := net.Listen("unix", old)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "null\n")
	})}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	stdout.Reset()
	if err := cmdTicketList([]string{"--socket", old, "--json"}, nil, &stdout, &stderr); err != nil || strings.TrimSpace(stdout.String()) != "[]" {
		t.Errorf("ticket list --json from a gateway answering null: %v, printed %q; want []", err, stdout.String())
	}
}
