package gateway

import (
	"net/netip"
	"sync"
	"time"
)

// maxConnBuckets bounds the sources whose new connections a listener
// counts apart. When that many have buckets and none has been idle long
// enough to be forgotten, further sources share one bucket.
const maxConnBuckets = 4096

// connRates limits the new connections of each source address with a
// token bucket: burst of them at once, then rate a second. A bucket that
// has filled up again is no different from a new one, so it is forgotten
// when the map is full. The zero value limits nothing; it is safe for
// concurrent use.
type connRates struct {
	rate  float64 // new connections a second; 0: no limit
	burst float64

	mu    sync.Mutex
	by    map[netip.Addr]*connBucket // the zero Addr: the bucket shared beyond maxConnBuckets
	swept time.Time                  // when full buckets were last forgotten
}

type connBucket struct {
	tokens float64   // new connections src may open now
	at     time.Time // when tokens was counted
}

func newConnRates(rate float64, burst int) *connRates {
	return &connRates{rate: rate, burst: float64(max(burst, 1)), by: make(map[netip.Addr]*connBucket)}
}

// take reports whether src may open a new connection at now, and counts
// it when it may. A connection without an IP address (not TCP) is not
// counted.
func (r *connRates) take(src netip.Addr, now time.Time) bool {
	if r == nil || r.rate <= 0 || !src.IsValid() {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.by[src]
	if b == nil {
		if len(r.by) >= maxConnBuckets {
			r.sweep(now)
		}
		if len(r.by) >= maxConnBuckets {
			src = netip.Addr{}
			b = r.by[src]
		}
		if b == nil {
			b = &connBucket{tokens: r.burst, at: now}
			r.by[src] = b
		}
	}
	b.tokens = r.fill(b, now)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// fill returns b's tokens at now.
func (r *connRates) fill(b *connBucket, now time.Time) float64 {
	elapsed := now.Sub(b.at).Seconds()
	if elapsed <= 0 {
		return b.tokens
	}
	return min(r.burst, b.tokens+elapsed*r.rate)
}

// sweep forgets the buckets that have filled up again, at most once a
// second, so that a full map of busy sources costs one pass a second, not
// one per connection.
func (r *connRates) sweep(now time.Time) {
	if now.Sub(r.swept) < time.Second {
		return
	}
	r.swept = now
	for src, b := range r.by {
		if r.fill(b, now) >= r.burst {
			delete(r.by, src)
		}
	}
}

// size is the number of buckets kept.
func (r *connRates) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.by)
}
