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
	got := p.paths(t.Context(), nil, []string{"ns=1;s=A", ""})
	if got["ns=1;s=A"] != "" || len(got) != 1 {
		t.Errorf("paths without an upstream: %v", got)
	}
}
