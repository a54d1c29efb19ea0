package opcua

import (
	"testing"
	"time"
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
