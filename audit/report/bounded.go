package report

import (
	"cmp"
	"slices"
)

// The report reads logs of any size in bounded memory: tables keep their
// first rows and count the rest, and tallies keep a bounded number of keys
// and count the rest under "other". Totals stay exact either way.

// capped keeps the first max rows added and counts all of them.
type capped[T any] struct {
	Rows  []T
	Total int64
	max   int
}

func newCapped[T any](max int) capped[T] { return capped[T]{max: max} }

// add counts v and keeps it while there is room; it returns the kept row's
// index, or -1.
func (c *capped[T]) add(v T) int {
	c.Total++
	if len(c.Rows) >= c.max {
		return -1
	}
	c.Rows = append(c.Rows, v)
	return len(c.Rows) - 1
}

// addFunc is add for a row that is built only when it is kept.
func (c *capped[T]) addFunc(mk func() T) {
	c.Total++
	if len(c.Rows) < c.max {
		c.Rows = append(c.Rows, mk())
	}
}

// More is how many rows were counted but not kept.
func (c *capped[T]) More() int64 { return c.Total - int64(len(c.Rows)) }

// tally counts by key, for at most max distinct keys; counts for keys past
// that go to Other and Overflow says that happened.
type tally struct {
	m        map[string]int64
	max      int
	Other    int64
	Overflow bool
}

func newTally(max int) tally { return tally{m: map[string]int64{}, max: max} }

func (t *tally) add(k string, n int64) {
	if v, ok := t.m[k]; ok || len(t.m) < t.max {
		t.m[k] = v + n
		return
	}
	t.Other += n
	t.Overflow = true
}

func (t *tally) Len() int { return len(t.m) }

// kv is one key and its count.
type kv struct {
	Key   string
	Count int64
}

// Top returns the n keys with the highest counts, ties by key.
func (t *tally) Top(n int) []kv {
	out := make([]kv, 0, len(t.m))
	for k, v := range t.m {
		out = append(out, kv{k, v})
	}
	sortCounts(out)
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// Sum is the total of all counts, tracked keys and Other.
func (t *tally) Sum() int64 {
	s := t.Other
	for _, v := range t.m {
		s += v
	}
	return s
}

func sortCounts(s []kv) {
	slices.SortFunc(s, func(a, b kv) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
}

// keyed is a bounded map of per-key state; keys past max are not tracked
// and Overflow says so.
type keyed[V any] struct {
	m        map[string]*V
	max      int
	Overflow bool
}

func newKeyed[V any](max int) keyed[V] { return keyed[V]{m: map[string]*V{}, max: max} }

// get returns the state of k, creating it with init when there is room, or
// nil when k is new and the map is full.
func (k *keyed[V]) get(key string, init func() *V) *V {
	if v, ok := k.m[key]; ok {
		return v
	}
	if len(k.m) >= k.max {
		k.Overflow = true
		return nil
	}
	v := init()
	k.m[key] = v
	return v
}

func (k *keyed[V]) Len() int { return len(k.m) }
