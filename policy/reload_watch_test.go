package policy

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
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
