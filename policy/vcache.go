package policy

import (
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ruleCache is the cache of rule values (topdown.VirtualCache) of one
// evaluation. OPA's own builds a trie of hash maps, one node per term of
// every reference it caches: about a fifth of a decision's allocations.
// ruleCache keeps each frame's entries in one slice, compares a reference's
// hash before the reference, and is reused from a pool, so a decision
// allocates nothing for its cache once the pool is warm. Frames past
// indexFrom entries get a hash index, so a policy that caches many values
// (a function called over a large collection) does not scan.
type ruleCache struct {
	frames []cacheFrame
	terms  []*ast.Term // the cached references' terms, copied
}

type cacheFrame struct {
	entries []cacheEntry
	index   map[int][]int32 // hash → entry positions, once len(entries) > indexFrom
}

type cacheEntry struct {
	hash      int
	ref       ast.Ref
	value     *ast.Term // nil: the reference is undefined
	undefined bool
}

const indexFrom = 32

var _ topdown.VirtualCache = (*ruleCache)(nil)

var ruleCaches = sync.Pool{New: func() any {
	c := &ruleCache{}
	c.Push()
	return c
}}

// getRuleCache returns an empty cache with one frame.
func getRuleCache() *ruleCache { return ruleCaches.Get().(*ruleCache) }

// putRuleCache empties c, dropping every reference to the evaluation's
// terms, and returns it to the pool.
func putRuleCache(c *ruleCache) {
	for len(c.frames) > 1 {
		c.Pop()
	}
	c.frames[0].reset()
	clear(c.terms)
	c.terms = c.terms[:0]
	if cap(c.terms) > 1<<12 {
		c.terms = nil // do not keep a rare huge evaluation's memory
	}
	ruleCaches.Put(c)
}

func (f *cacheFrame) reset() {
	clear(f.entries)
	f.entries = f.entries[:0]
	if cap(f.entries) > 1<<10 {
		f.entries = nil
	}
	f.index = nil
}

func (c *ruleCache) Push() {
	if len(c.frames) < cap(c.frames) {
		c.frames = c.frames[:len(c.frames)+1]
		return
	}
	c.frames = append(c.frames, cacheFrame{})
}

func (c *ruleCache) Pop() {
	top := &c.frames[len(c.frames)-1]
	top.reset()
	c.frames = c.frames[:len(c.frames)-1]
}

func (c *ruleCache) find(ref ast.Ref) (*cacheEntry, int) {
	f := &c.frames[len(c.frames)-1]
	h := ref.Hash()
	if f.index != nil {
		for _, i := range f.index[h] {
			if e := &f.entries[i]; e.ref.Equal(ref) {
				return e, h
			}
		}
		return nil, h
	}
	for i := range f.entries {
		if e := &f.entries[i]; e.hash == h && e.ref.Equal(ref) {
			return e, h
		}
	}
	return nil, h
}

// Get returns the value cached for ref; (nil, true) when ref is cached as
// undefined, (nil, false) when it is not cached.
func (c *ruleCache) Get(ref ast.Ref) (*ast.Term, bool) {
	e, _ := c.find(ref)
	if e == nil {
		return nil, false
	}
	return e.value, e.undefined
}

// Put caches value for ref; a nil value records that ref is undefined.
func (c *ruleCache) Put(ref ast.Ref, value *ast.Term) {
	e, h := c.find(ref)
	if e == nil {
		n := len(c.terms)
		c.terms = append(c.terms, ref...)
		f := &c.frames[len(c.frames)-1]
		f.entries = append(f.entries, cacheEntry{hash: h, ref: ast.Ref(c.terms[n:len(c.terms):len(c.terms)])})
		e = &f.entries[len(f.entries)-1]
		f.indexLast()
	}
	e.value, e.undefined = value, value == nil
}

// indexLast adds the last entry to the frame's index, building the index
// when the frame grows past indexFrom entries.
func (f *cacheFrame) indexLast() {
	n := len(f.entries)
	switch {
	case n <= indexFrom:
		return
	case f.index == nil:
		f.index = make(map[int][]int32, 2*n)
		for i := range f.entries {
			f.index[f.entries[i].hash] = append(f.index[f.entries[i].hash], int32(i))
		}
	default:
		h := f.entries[n-1].hash
		f.index[h] = append(f.index[h], int32(n-1))
	}
}

// Keys returns the references with a value in the top frame.
func (c *ruleCache) Keys() []ast.Ref {
	f := &c.frames[len(c.frames)-1]
	var keys []ast.Ref
	for _, e := range f.entries {
		if !e.undefined {
			keys = append(keys, e.ref)
		}
	}
	return keys
}

// dataCache is the cache of data documents read from the store in one
// evaluation (topdown.BaseCache), flat and pooled as ruleCache is: OPA's
// own is a trie with a map per node. A decision reads a handful of data
// documents, so the entries are scanned. Get finds the shortest cached
// reference that is a prefix of ref and looks the rest up in its value, as
// the trie does.
type dataCache struct {
	entries []dataEntry
	terms   []*ast.Term
}

type dataEntry struct {
	ref   ast.Ref
	value ast.Value
}

var _ topdown.BaseCache = (*dataCache)(nil)

var dataCaches = sync.Pool{New: func() any { return &dataCache{} }}

func getDataCache() *dataCache { return dataCaches.Get().(*dataCache) }

func putDataCache(c *dataCache) {
	clear(c.entries)
	c.entries = c.entries[:0]
	clear(c.terms)
	c.terms = c.terms[:0]
	if cap(c.entries) > 1<<10 || cap(c.terms) > 1<<12 {
		c.entries, c.terms = nil, nil
	}
	dataCaches.Put(c)
}

func (c *dataCache) Get(ref ast.Ref) ast.Value {
	var best *dataEntry
	for i := range c.entries {
		e := &c.entries[i]
		if (best == nil || len(e.ref) < len(best.ref)) && ref.HasPrefix(e.ref) {
			best = e
		}
	}
	if best == nil {
		return nil
	}
	if len(best.ref) == len(ref) {
		return best.value
	}
	v, err := best.value.Find(ref[len(best.ref):])
	if err != nil {
		return nil
	}
	return v
}

func (c *dataCache) Put(ref ast.Ref, value ast.Value) {
	for i := range c.entries {
		if c.entries[i].ref.Equal(ref) {
			c.entries[i].value = value
			return
		}
	}
	n := len(c.terms)
	c.terms = append(c.terms, ref...)
	c.entries = append(c.entries, dataEntry{ref: ast.Ref(c.terms[n:len(c.terms):len(c.terms)]), value: value})
}
