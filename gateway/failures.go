package gateway

import (
	"net/netip"
	"sync"
	"time"
)

// FailureLimiter holds back a source address whose authentication keeps
// failing (OPC UA logins, Modbus/TCP Security handshakes): after
// FreeFailures failures in a row it is refused without a check for an
// exponentially growing time (1 s, 2 s, 4 s … up to MaxHoldBack), so that
// guessing is slow and a host looping with a bad credential costs a bounded
// number of checks and records. A success clears its count. The zero value
// is ready; it is safe for concurrent use.
type FailureLimiter struct {
	mu sync.Mutex
	by map[netip.Addr]*failureCount
}

type failureCount struct {
	failures int
	until    time.Time
}

const (
	// FreeFailures is the failures in a row a source may have before it is
	// held back.
	FreeFailures = 3
	// MaxHoldBack is the longest a source is held back.
	MaxHoldBack = 5 * time.Minute
	// maxFailureSources bounds the addresses remembered; beyond it, those
	// no longer held back are forgotten.
	maxFailureSources = 10000
)

// Blocked reports whether ip is held back at now, and until when.
func (l *FailureLimiter) Blocked(ip netip.Addr, now time.Time) (until time.Time, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.by[ip]
	if c == nil || !now.Before(c.until) {
		return time.Time{}, false
	}
	return c.until, true
}

// Failed counts a failure of ip at now.
func (l *FailureLimiter) Failed(ip netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.by == nil {
		l.by = make(map[netip.Addr]*failureCount)
	}
	c := l.by[ip]
	if c == nil {
		if len(l.by) >= maxFailureSources {
			for k, v := range l.by { // forget those no longer held back
				if !now.Before(v.until) {
					delete(l.by, k)
				}
			}
		}
		c = &failureCount{}
		l.by[ip] = c
	}
	c.failures++
	if c.failures >= FreeFailures {
		d := time.Second << min(c.failures-FreeFailures, 9)
		c.until = now.Add(min(d, MaxHoldBack))
	}
}

// Succeeded clears the count of ip.
func (l *FailureLimiter) Succeeded(ip netip.Addr) {
	l.mu.Lock()
	delete(l.by, ip)
	l.mu.Unlock()
}
