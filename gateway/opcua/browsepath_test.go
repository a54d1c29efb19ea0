package opcua

import (
	"testing"
	"time"
)

func TestPathCacheUnknownExpires(t *testing.T) {
	p := newPathCache()
	now := time.Now()
	p.putUnknown("ns=1;s=Gone", now)
	if !p.isUnknown("ns=1;s=Gone", now.Add(unknownFor-time.Second)) {
		t.Error("unknown node forgotten early")
	}
	if p.isUnknown("ns=1;s=Gone", now.Add(unknownFor)) {
		t.Error("unknown node remembered past its time")
	}
	p.put("ns=1;s=A", "/Objects/A")
	p.putUnknown("ns=1;s=B", now)
	p.clear()
	if _, ok := p.get("ns=1;s=A"); ok || p.isUnknown("ns=1;s=B", now) {
		t.Error("clear kept entries")
	}
	// Without an upstream nothing is looked up and nothing is cached.
	got := p.paths(t.Context(), nil, []string{"ns=1;s=A", ""}, time.Now().Add(time.Second), true)
	if got["ns=1;s=A"] != "" || len(got) != 1 {
		t.Errorf("paths without an upstream: %v", got)
	}
}

// A lookup that failed is remembered for failedFor, and never shortens the
// time an unknown node is remembered.
func TestPathCacheFailedExpires(t *testing.T) {
	p := newPathCache()
	now := time.Now()
	p.putFailed("ns=1;s=Slow", now)
	if !p.isUnknown("ns=1;s=Slow", now.Add(failedFor-time.Millisecond)) {
		t.Error("failed lookup forgotten early")
	}
	if p.isUnknown("ns=1;s=Slow", now.Add(failedFor)) {
		t.Error("failed lookup remembered past its time")
	}
	p.putUnknown("ns=1;s=Gone", now)
	p.putFailed("ns=1;s=Gone", now)
	if !p.isUnknown("ns=1;s=Gone", now.Add(failedFor+time.Second)) {
		t.Error("a failed lookup shortened the time of an unknown node")
	}
	// the share of the request's time the lookups get
	if got := lookupShare(now, now.Add(time.Second)); !got.Equal(now.Add(500 * time.Millisecond)) {
		t.Errorf("lookupShare of 1 s = %v, want 500ms", got.Sub(now))
	}
	if got := lookupShare(now, now.Add(time.Minute)); !got.Equal(now.Add(pathTimeout)) {
		t.Errorf("lookupShare of 1 min = %v, want %v", got.Sub(now), pathTimeout)
	}
}
