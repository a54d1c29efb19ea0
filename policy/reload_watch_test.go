package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// failedLoads are the failed load attempts OnLoad was told of.
func (l *loadLog) failedLoads() []Load {
	l.mu.Lock()
	defer l.mu.Unlock()
	var f []Load
	for _, x := range l.full {
		if x.Err != nil {
			f = append(f, x)
		}
	}
	return f
}

// A policy directory that disappears while the gateway polls it is a failed
// load, reported to OnLoad (the policy.load_failed record) once and not at
// every poll, as a reload after SIGHUP reports it; the policy in force stays.
// The directory coming back ends the failure; losing it again is reported again.
func TestWatchPolicyPathGone(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("v1")})
	var loads loadLog
	var logs syncBuffer
	e, err := New(Options{Path: dir, Log: zerolog.New(&logs), OnLoad: loads.onLoad})
	if err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failed load reported for the missing directory", func() bool { return len(loads.failedLoads()) > 0 })
	time.Sleep(150 * time.Millisecond) // many polls
	f := loads.failedLoads()
	if len(f) != 1 {
		t.Fatalf("%d failed loads reported for one missing directory, want 1: %+v", len(f), f)
	}
	if msg := f[0].Err.Error(); !strings.Contains(msg, dir) || !strings.Contains(msg, "no such file or directory") {
		t.Errorf("failed load error %q, want it to name %s and say it does not exist", msg, dir)
	}
	if f[0].InForce != rev || e.Revision() != rev {
		t.Errorf("in force after the failure: %q (engine %q), want %q", f[0].InForce, e.Revision(), rev)
	}
	// A reload on SIGHUP reports the same failure the same way.
	if _, err := e.Reload(); err == nil || err.Error() != f[0].Err.Error() {
		t.Errorf("Reload = %v, want the poll's error %v", err, f[0].Err)
	}

	if err := os.Rename(dir+".gone", dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "log line of the directory's return", func() bool {
		return strings.Contains(logs.String(), "policy files valid again")
	})
	if e.Revision() != rev {
		t.Errorf("revision %s after the directory came back, want %s", e.Revision(), rev)
	}
	n := len(loads.failedLoads())
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failed load for losing the directory again", func() bool { return len(loads.failedLoads()) > n })
	if err := os.Rename(dir+".gone", dir); err != nil { // for t.TempDir's cleanup
		t.Fatal(err)
	}
}

// A policy file still being written is not loaded half-way: a change is
// loaded only when the next poll finds the files' sizes and modification
// times unchanged. Here the first part of the file compiles on its own (and
// would allow everything); it must never decide. A reload (SIGHUP) loads at
// once.
func TestWatchWaitsForFilesToSettle(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("v1")})
	var loads loadLog
	e, err := New(Options{Path: dir, Log: zerolog.Nop(), OnLoad: loads.onLoad})
	if err != nil {
		t.Fatal(err)
	}
	rev1 := e.Revision()
	ss := e.src.(statSource)
	var w watchState
	poll := func() { e.poll(context.Background(), ss, &w) }
	reason := func() string {
		t.Helper()
		s := testSession()
		d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
		if err != nil {
			t.Fatal(err)
		}
		return d.Reasons[0]
	}

	const partial = "package interlock\n\ndefault decision := {\"allow\": true, \"reasons\": [\"partial\"]}\n"
	const rest = "\ndecision := {\"allow\": true, \"reasons\": [\"full\"]} if input.operation.access == \"read\"\n"
	main := filepath.Join(dir, "main.rego")
	if err := os.WriteFile(main, []byte(partial), 0o644); err != nil {
		t.Fatal(err)
	}
	poll() // sees the partial file: it may still be being written
	if e.Revision() != rev1 {
		t.Fatalf("the partial file was loaded at the first poll that saw it (decides %q)", reason())
	}
	f, err := os.OpenFile(main, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(rest); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	poll() // the file changed again since the last poll
	if e.Revision() != rev1 {
		t.Fatalf("a policy was loaded while the file was changing (decides %q)", reason())
	}
	poll() // unchanged since the last poll: loaded
	if e.Revision() == rev1 || reason() != "full" {
		t.Fatalf("the complete file was not loaded at the second poll that saw it unchanged: %s decides %q", e.Revision(), reason())
	}
	if all := loads.all(); len(all) != 2 || all[1].err != nil {
		t.Errorf("loads %+v, want the start and the complete file", all)
	}

	// SIGHUP does not wait.
	writeFiles(t, dir, map[string]string{"main.rego": versionPolicy("v3")})
	if changed, err := e.Reload(); !changed || err != nil || reason() != "v3" {
		t.Fatalf("Reload = %v, %v, decides %q; want v3 at once", changed, err, reason())
	}
	rev3 := e.Revision()
	poll()
	poll()
	if e.Revision() != rev3 || len(loads.all()) != 3 {
		t.Errorf("polls after the reload loaded again: %s, %d loads", e.Revision(), len(loads.all()))
	}
}
