package opcua

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

// TestBeforeHint: the gateway gives up a tenth before the client's
// TimeoutHint, never more than a second before it.
func TestBeforeHint(t *testing.T) {
	for _, c := range []struct{ hint, want time.Duration }{
		{500 * time.Millisecond, 450 * time.Millisecond},
		{4 * time.Second, 3600 * time.Millisecond},
		{10 * time.Second, 9 * time.Second},
		{15 * time.Second, 14 * time.Second},
		{10 * time.Minute, 10*time.Minute - time.Second},
	} {
		if got := beforeHint(c.hint); got != c.want {
			t.Errorf("beforeHint(%v) = %v, want %v", c.hint, got, c.want)
		}
	}
}

// TestBudget: a TimeoutHint shorter than the request timeout shortens a
// request's budget as a longer one lengthens it, down to minHintBudget; no
// hint leaves the request timeout; a Publish waits its hint.
func TestBudget(t *testing.T) {
	c := &conn{e: &Engine{}}
	c.e.limits.RequestTimeout = 5 * time.Second
	c.e.opts.Limits.MaxPublishTimeout = time.Minute
	for _, tc := range []struct {
		hint    uint32 // ms
		publish bool
		want    time.Duration
	}{
		{0, false, 5 * time.Second},
		{1, false, minHintBudget},
		{50, false, minHintBudget},
		{1000, false, 900 * time.Millisecond},
		{5000, false, 4500 * time.Millisecond},
		{5500, false, 5 * time.Second},
		{15000, false, 14 * time.Second},
		{600000, false, time.Minute},
		{0, true, time.Minute},
		{1000, true, 900 * time.Millisecond},
		{15000, true, 14 * time.Second},
	} {
		if got := c.budget(&ua.RequestHeader{TimeoutHint: tc.hint}, tc.publish); got != tc.want {
			t.Errorf("budget(TimeoutHint %d ms, publish %v) = %v, want %v", tc.hint, tc.publish, got, tc.want)
		}
	}
	// a request timeout under the floor is kept
	c.e.limits.RequestTimeout = 50 * time.Millisecond
	if got := c.budget(&ua.RequestHeader{TimeoutHint: 1}, false); got != 50*time.Millisecond {
		t.Errorf("budget(TimeoutHint 1 ms) under a 50 ms request timeout = %v, want 50ms", got)
	}
}
