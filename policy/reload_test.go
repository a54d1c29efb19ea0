package policy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// versionPolicy allows everything with a reason naming its version, so a
// decision shows which policy made it.
func versionPolicy(v string) string {
	return fmt.Sprintf("package interlock\n\ndecision := {\"allow\": true, \"reasons\": [%q]}\n", v)
}

type loadRecord struct {
	rev   string
	files []string
	err   error
}

func TestReload(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("v1")})
	var mu sync.Mutex
	var loads []loadRecord
	e, err := New(Options{Path: dir, Log: zerolog.Nop(), OnLoad: func(l Load) {
		mu.Lock()
		loads = append(loads, loadRecord{l.Revision, l.Files, l.Err})
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	reason := func() (string, string) {
		t.Helper()
		d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
		if err != nil {
			t.Fatal(err)
		}
		return d.Reasons[0], d.Revision
	}
	rev1 := e.Revision()

	if changed, err := e.Reload(); changed || err != nil {
		t.Fatalf("unchanged Reload = %v, %v; want a no-op", changed, err)
	}

	writeFiles(t, dir, map[string]string{"main.rego": versionPolicy("v2")})
	if changed, err := e.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	rev2 := e.Revision()
	if r, rev := reason(); r != "v2" || rev != rev2 || rev2 == rev1 {
		t.Errorf("after reload: %s under %s (was %s)", r, rev, rev1)
	}

	writeFiles(t, dir, map[string]string{"extra.rego": "package interlock\n\nbroken := }\n\nok := 1\n"})
	changed, err := e.Reload()
	if changed || err == nil || !strings.Contains(err.Error(), "extra.rego:3") {
		t.Fatalf("broken Reload = %v, %v; want an error naming extra.rego:3", changed, err)
	}
	if r, rev := reason(); r != "v2" || rev != rev2 || e.Revision() != rev2 {
		t.Errorf("after a failed reload: %s under %s, want v2 under %s", r, rev, rev2)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(loads) != 3 {
		t.Fatalf("OnLoad called %d times, want 3 (start, reload, failed reload): %v", len(loads), loads)
	}
	if loads[0].rev != rev1 || loads[0].err != nil || loads[1].rev != rev2 || loads[1].err != nil {
		t.Errorf("OnLoad records %v", loads[:2])
	}
	if loads[2].err == nil || loads[2].rev == rev2 || len(loads[2].files) != 2 {
		t.Errorf("failed load recorded as %+v", loads[2])
	}
}

// TestReloadWhileDeciding swaps policies under concurrent sessions: every
// decision must come from one policy and carry that policy's revision.
func TestReloadWhileDeciding(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("a")})
	e, err := New(Options{Path: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	revA := e.Revision()
	writeFiles(t, dir, map[string]string{"main.rego": versionPolicy("b")})
	if _, err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	revB := e.Revision()
	want := map[string]string{revA: "a", revB: "b"}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			s := testSession()
			s.ID = fmt.Sprintf("sess-%d", i)
			for ctx.Err() == nil {
				d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
				if err != nil {
					errs <- err
					return
				}
				if v, ok := want[d.Revision]; !ok || d.Reasons[0] != v {
					errs <- fmt.Errorf("decision %v under revision %s", d.Reasons, d.Revision)
					return
				}
			}
		})
	}
	for i := range 20 {
		writeFiles(t, dir, map[string]string{"main.rego": versionPolicy([]string{"a", "b"}[i%2])})
		if changed, err := e.Reload(); !changed || err != nil {
			t.Errorf("Reload %d = %v, %v", i, changed, err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWatch(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("v1")})
	e, err := New(Options{Path: dir, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	waitRevision := func(not string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r := e.Revision(); r != not {
				return r
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("revision still %s after 5s", not)
		return ""
	}
	rev1 := e.Revision()
	writeFiles(t, dir, map[string]string{"main.rego": versionPolicy("version 2")})
	rev2 := waitRevision(rev1)

	// A broken file is refused and the policy in force stays.
	writeFiles(t, dir, map[string]string{"main.rego": "package interlock\n\ndecision := {\n"})
	time.Sleep(100 * time.Millisecond)
	if e.Revision() != rev2 {
		t.Fatalf("broken file replaced the policy")
	}
	writeFiles(t, dir, map[string]string{"main.rego": versionPolicy("version three")})
	waitRevision(rev2)
}
