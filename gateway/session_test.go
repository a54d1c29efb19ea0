package gateway

import (
	"strings"
	"sync"
	"testing"
)

// NewID hands out identifiers from a pool of crypto/rand bytes: across
// several refills of the pool, from many goroutines, none repeats and each
// is 32 hex digits.
func TestNewIDUnique(t *testing.T) {
	const goroutines, each = 8, 1000 // 8000 ids: 31 refills of the 4 KiB pool
	ids := make(chan string, goroutines*each)
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				ids <- NewID()
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
			t.Fatalf("id %q is not 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
	}
	if len(seen) != goroutines*each {
		t.Fatalf("%d ids, want %d", len(seen), goroutines*each)
	}
}
