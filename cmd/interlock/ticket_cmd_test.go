package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// --for takes a duration, a number of days or the end time; anything else
// is refused naming the flag, the value and the forms it takes.
func TestTicketOpenFor(t *testing.T) {
	sock := startAdmin(t)
	open := func(id, forArg string) (policy.Ticket, error) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := cmdTicketOpen([]string{"--socket", sock, "--user", "alice", "--target", "plc1", "--access", "write",
			"--for", forArg, "--reason", "CHG-1", "--id", id, "--json"}, nil, &stdout, &stderr)
		var tk policy.Ticket
		if err == nil {
			if jerr := json.Unmarshal(stdout.Bytes(), &tk); jerr != nil {
				t.Fatalf("ticket open --json printed %q: %v", stdout.String(), jerr)
			}
		}
		return tk, err
	}
	end := time.Now().Add(3 * time.Hour).UTC().Truncate(time.Second)
	for i, tc := range []struct {
		forArg string
		want   time.Time
	}{
		{"90m", time.Now().Add(90 * time.Minute)},
		{"2d", time.Now().Add(48 * time.Hour)},
		{end.Format(time.RFC3339), end},
		{end.In(time.FixedZone("CET", 3600)).Format(time.RFC3339), end},
	} {
		tk, err := open(fmt.Sprintf("T-%d", i), tc.forArg)
		if err != nil {
			t.Errorf("--for %s: %v", tc.forArg, err)
			continue
		}
		if d := tk.Expires.Sub(tc.want); d < -5*time.Second || d > 5*time.Second {
			t.Errorf("--for %s: expires %s, want about %s", tc.forArg, tk.Expires, tc.want)
		}
	}
	for _, tc := range []struct{ forArg, want string }{
		{"2x", `ticket open: --for "2x": want how long, such as 2h, 90m, 1h30m or 2d (at most 168h, 7d), or when the ticket ends, in RFC 3339`},
		{"1.5d", `ticket open: --for "1.5d": want how long`},
		{"tomorrow", `ticket open: --for "tomorrow": want how long`},
		{"-2h", `ticket open: --for "-2h": not a positive duration: want how long`},
		{"0s", `ticket open: --for "0s": not a positive duration`},
		{"99999999d", `ticket open: --for "99999999d": far over the 168h (7d) a ticket may last`},
		{"2020-01-01T00:00:00Z", `ticket open: --for "2020-01-01T00:00:00Z": 2020-01-01T00:00:00Z is past`},
	} {
		_, err := open("T-bad", tc.forArg)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.HasPrefix(ee.msg, tc.want) {
			t.Errorf("--for %s: %v; want exit 2 and %q", tc.forArg, err, tc.want)
		}
	}
}
