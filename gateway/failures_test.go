package gateway_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// A source is held back after FreeFailures failures in a row, 1 s then
// twice as long with each further failure up to MaxHoldBack; another
// source is not, and a success clears the count.
func TestFailureLimiter(t *testing.T) {
	var l gateway.FailureLimiter
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	for range gateway.FreeFailures - 1 {
		l.Failed(ip, now)
	}
	if _, held := l.Blocked(ip, now); held {
		t.Fatal("held back before the free failures are used up")
	}
	l.Failed(ip, now)
	until, held := l.Blocked(ip, now)
	if !held || until.Sub(now) != time.Second {
		t.Fatalf("after %d failures: held %v until +%v", gateway.FreeFailures, held, until.Sub(now))
	}
	if _, held := l.Blocked(ip, until); held {
		t.Error("held back at the end of the hold-back")
	}
	l.Failed(ip, now)
	if until, _ := l.Blocked(ip, now); until.Sub(now) != 2*time.Second {
		t.Errorf("next delay %v, want 2s", until.Sub(now))
	}
	if _, held := l.Blocked(netip.MustParseAddr("192.0.2.2"), now); held {
		t.Error("another address held back")
	}
	for range 20 {
		l.Failed(ip, now)
	}
	if until, _ := l.Blocked(ip, now); until.Sub(now) != gateway.MaxHoldBack {
		t.Errorf("delay after 25 failures %v, want %v", until.Sub(now), gateway.MaxHoldBack)
	}
	l.Succeeded(ip)
	if _, held := l.Blocked(ip, now); held {
		t.Error("held back after a success")
	}
	l.Failed(ip, now)
	if _, held := l.Blocked(ip, now); held {
		t.Error("held back after one failure following a success")
	}
}
