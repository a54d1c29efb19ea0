package gateway

import (
	"net/netip"
	"testing"
	"time"
)

func TestConnRatesRefill(t *testing.T) {
	r := newConnRates(2, 3) // 2 a second after 3 at once
	src := netip.MustParseAddr("10.0.0.1")
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	for i := range 3 {
		if !r.take(src, t0) {
			t.Fatalf("connection %d of the burst refused", i+1)
		}
	}
	if r.take(src, t0) {
		t.Fatal("a connection past the burst was let through")
	}
	if r.take(src, t0.Add(400*time.Millisecond)) {
		t.Fatal("a connection let through before a token refilled (every 500 ms)")
	}
	if !r.take(src, t0.Add(500*time.Millisecond)) {
		t.Fatal("a connection refused once a token refilled")
	}
	if !r.take(netip.MustParseAddr("10.0.0.2"), t0) {
		t.Fatal("another source shares the first one's bucket")
	}
	// Idle for long, the bucket holds the burst, no more.
	later := t0.Add(time.Hour)
	for i := range 3 {
		if !r.take(src, later) {
			t.Fatalf("after an hour, connection %d of the burst refused", i+1)
		}
	}
	if r.take(src, later) {
		t.Fatal("after an hour, more than the burst let through")
	}
	var off *connRates
	if !off.take(src, t0) || !newConnRates(0, 1).take(src, t0) {
		t.Fatal("no rate: a connection refused")
	}
}

// However many sources connect, the buckets kept stay bounded: those that
// filled up again are forgotten, and beyond maxConnBuckets busy ones the
// others share one bucket.
func TestConnRatesBounded(t *testing.T) {
	r := newConnRates(1, 2) // a bucket is full again 2 s after its last connection
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	for i := range 3 * maxConnBuckets {
		if !r.take(addr(i), t0) && i < maxConnBuckets {
			t.Fatalf("source %d refused its first connection", i)
		}
	}
	if n := r.size(); n > maxConnBuckets+1 {
		t.Fatalf("%d buckets for %d sources, want at most %d", n, 3*maxConnBuckets, maxConnBuckets+1)
	}
	// Beyond the cap, new sources share one bucket: its burst is spent.
	if r.take(addr(5*maxConnBuckets), t0) {
		t.Fatal("a source beyond the cap got past the shared bucket's burst")
	}
	// Once the buckets have filled up again they are forgotten, and a new
	// source has its own bucket again.
	later := t0.Add(3 * time.Second)
	if !r.take(addr(5*maxConnBuckets), later) || !r.take(addr(5*maxConnBuckets), later) {
		t.Fatal("a new source refused its burst once the others were idle")
	}
	if n := r.size(); n != 1 {
		t.Fatalf("%d buckets after the idle ones were forgotten, want 1", n)
	}
}
