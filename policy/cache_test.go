package policy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

func newCachedEngine(t testing.TB, files map[string]string, ttl time.Duration) (*Engine, string) {
	t.Helper()
	dir := policyDir(t, files)
	e, err := New(Options{Path: dir, Gateway: "site-a-gw1", Log: zerolog.Nop(), CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return e, dir
}

func decide(t *testing.T, e *Engine, s *gateway.Session, c *gateway.Call) gateway.Decision {
	t.Helper()
	d, err := e.Decide(context.Background(), s, c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCacheAnswersRepeatedCalls(t *testing.T) {
	e, _ := newCachedEngine(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}, time.Second)
	s := testSession()
	first := decide(t, e, s, testCall(s, "read_holding_registers", gateway.AccessRead, inWindow))
	again := decide(t, e, s, testCall(s, "read_holding_registers", gateway.AccessRead, inWindow.Add(100*time.Millisecond)))
	if first.Cached || !again.Cached {
		t.Fatalf("cached flags %v, %v; want false, true", first.Cached, again.Cached)
	}
	if again.Allow != first.Allow || !slices.Equal(again.Reasons, first.Reasons) || again.Revision != first.Revision {
		t.Fatalf("cached verdict %+v differs from %+v", again, first)
	}
	if again.ID == first.ID || again.ID == "" {
		t.Fatal("a cached decision must have its own id")
	}

	// Another session with the same identity shares the entry; a different
	// address, principal or source does not.
	s2 := testSession()
	s2.ID = "sess-2"
	if d := decide(t, e, s2, testCall(s2, "read_holding_registers", gateway.AccessRead, inWindow.Add(200*time.Millisecond))); !d.Cached {
		t.Fatal("same input from another session with the same identity was not cached")
	}
	c := testCall(s, "read_holding_registers", gateway.AccessRead, inWindow.Add(200*time.Millisecond))
	c.Operation.Fields[1].Int = 101
	if d := decide(t, e, s, c); d.Cached {
		t.Fatal("a different address was answered from the cache")
	}
	s3 := testSession()
	s3.Principal.User = "mallory"
	if d := decide(t, e, s3, testCall(s3, "read_holding_registers", gateway.AccessRead, inWindow.Add(200*time.Millisecond))); d.Cached {
		t.Fatal("a different principal was answered from the cache")
	}
	s4 := testSession()
	s4.Source.Name = "laptop-7"
	if d := decide(t, e, s4, testCall(s4, "read_holding_registers", gateway.AccessRead, inWindow.Add(200*time.Millisecond))); d.Cached {
		t.Fatal("a different source was answered from the cache")
	}
}

// A window closing is honoured within the cache TTL: every call at or after
// end+TTL is decided afresh and denied, however often it was cached before.
func TestCacheHonoursWindowCloseWithinTTL(t *testing.T) {
	const ttl = 500 * time.Millisecond
	e, _ := newCachedEngine(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}, ttl)
	end := time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC) // siteData's window end
	s := testSession()
	var sawCachedAllowAfterEnd bool
	for at := end.Add(-300 * time.Millisecond); at.Before(end.Add(3 * ttl)); at = at.Add(25 * time.Millisecond) {
		d := decide(t, e, s, testCall(s, "write_multiple_registers", gateway.AccessWrite, at))
		switch {
		case at.Before(end) && !d.Allow:
			t.Fatalf("at end-%v: denied inside the window", end.Sub(at))
		case !at.Before(end.Add(ttl)) && d.Allow:
			t.Fatalf("at end+%v (cached %v): allowed after end+TTL", at.Sub(end), d.Cached)
		case !at.Before(end) && d.Allow:
			sawCachedAllowAfterEnd = d.Cached || sawCachedAllowAfterEnd
		}
	}
	if !sawCachedAllowAfterEnd {
		t.Log("no cached allow just after the window end (entries expired exactly at the end)")
	}
}

func TestCacheEmptiedByReloadAndSkipsErrors(t *testing.T) {
	e, dir := newCachedEngine(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}, time.Minute)
	s := testSession()
	c := func(at time.Time) *gateway.Call {
		return testCall(s, "write_multiple_registers", gateway.AccessWrite, at)
	}
	if d := decide(t, e, s, c(inWindow)); !d.Allow {
		t.Fatalf("write in window denied: %+v", d)
	}
	if d := decide(t, e, s, c(inWindow)); !d.Cached {
		t.Fatal("not cached")
	}
	// Data change: engineers lose write access.
	writeFiles(t, dir, map[string]string{"data.yaml": `windows: []` + "\n"})
	if changed, err := e.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v, %v", changed, err)
	}
	if d := decide(t, e, s, c(inWindow)); d.Cached || d.Allow {
		t.Fatalf("after the reload: %+v; want a fresh deny", d)
	}

	// Errors are never cached.
	bad, _ := newCachedEngine(t, map[string]string{"main.rego": "package interlock\n\ndecision := {\"allow\": 10 / input.operation.quantity_zero}\n"}, time.Minute)
	for range 2 {
		if d, err := bad.Decide(context.Background(), s, c(inWindow)); err == nil || d.Cached {
			t.Fatalf("error path: %+v, %v", d, err)
		}
	}
}

func TestCachedReasonsAreNotShared(t *testing.T) {
	e, _ := newCachedEngine(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}, time.Minute)
	s := testSession()
	c := testCall(s, "write_multiple_registers", gateway.AccessWrite, outOfWindow)
	d := decide(t, e, s, c)
	d2 := decide(t, e, s, c)
	want := slices.Clone(d2.Reasons)
	_ = append(d2.Reasons, gateway.ReasonMonitorWouldDeny) // what the pipeline does in monitor mode
	if d3 := decide(t, e, s, c); !slices.Equal(d3.Reasons, want) || !slices.Equal(d.Reasons, want) {
		t.Fatalf("reasons changed through a caller's append: %v, want %v", d3.Reasons, want)
	}
}

func TestNoCache(t *testing.T) {
	e, err := New(Options{Path: policyDir(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	for range 3 {
		if d := decide(t, e, s, testCall(s, "read_holding_registers", gateway.AccessRead, inWindow)); d.Cached {
			t.Fatal("cached with NoCache")
		}
	}
}
