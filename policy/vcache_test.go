package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/rs/zerolog"
)

func TestRuleCacheFrames(t *testing.T) {
	c := getRuleCache()
	a := ast.MustParseRef("data.interlock.a")
	b := ast.MustParseRef("data.interlock.b")
	if v, undef := c.Get(a); v != nil || undef {
		t.Fatalf("empty cache: Get = %v, %v", v, undef)
	}
	c.Put(a, ast.IntNumberTerm(1))
	c.Put(b, nil)
	if v, undef := c.Get(a); !v.Equal(ast.IntNumberTerm(1)) || undef {
		t.Fatalf("Get(a) = %v, %v; want 1, false", v, undef)
	}
	if v, undef := c.Get(b); v != nil || !undef {
		t.Fatalf("Get(b) = %v, %v; want undefined", v, undef)
	}
	// An equal reference made elsewhere finds the entry.
	if v, _ := c.Get(ast.MustParseRef("data.interlock.a")); v == nil {
		t.Fatal("Get of an equal reference missed")
	}
	c.Push()
	if v, undef := c.Get(a); v != nil || undef {
		t.Fatalf("new frame: Get(a) = %v, %v; want not cached", v, undef)
	}
	c.Put(a, ast.IntNumberTerm(2))
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(2)) {
		t.Fatalf("new frame: Get(a) = %v, want 2", v)
	}
	c.Pop()
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(1)) {
		t.Fatalf("after Pop: Get(a) = %v, want 1", v)
	}
	if keys := c.Keys(); len(keys) != 1 || !keys[0].Equal(a) {
		t.Fatalf("Keys = %v, want [%v]", keys, a)
	}

	// Past indexFrom entries the frame is looked up through its index;
	// references whose hashes are equal (a sum over their terms) stay apart.
	f := ast.MustParseRef("data.interlock.f")
	for i := range 3 * indexFrom {
		c.Put(append(f.Copy(), ast.IntNumberTerm(i), ast.IntNumberTerm(-i)), ast.IntNumberTerm(i))
	}
	for i := range 3 * indexFrom {
		ref := append(f.Copy(), ast.IntNumberTerm(i), ast.IntNumberTerm(-i))
		if v, _ := c.Get(ref); v == nil || !v.Equal(ast.IntNumberTerm(i)) {
			t.Fatalf("Get(%v) = %v, want %d", ref, v, i)
		}
	}
	swapped := append(f.Copy(), ast.IntNumberTerm(-1), ast.IntNumberTerm(1))
	if swapped.Hash() != append(f.Copy(), ast.IntNumberTerm(1), ast.IntNumberTerm(-1)).Hash() {
		t.Fatal("test premise: swapped terms hash alike")
	}
	if v, _ := c.Get(swapped); v != nil {
		t.Fatalf("Get(%v) = %v: a reference with the same hash matched", swapped, v)
	}
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(1)) {
		t.Fatalf("after indexing: Get(a) = %v, want 1", v)
	}
	c.Put(a, ast.IntNumberTerm(3)) // an update through the index
	if v, _ := c.Get(a); !v.Equal(ast.IntNumberTerm(3)) {
		t.Fatalf("after update: Get(a) = %v, want 3", v)
	}

	putRuleCache(c)
	if len(c.frames) != 1 || len(c.frames[0].entries) != 0 || c.frames[0].index != nil || len(c.terms) != 0 {
		t.Fatalf("a cache back in the pool is not empty: %d frames, %d entries", len(c.frames), len(c.frames[0].entries))
	}
}

// cachePolicy caches values in ways a decision can: complete rules, partial
// sets, undefined rules, functions called with many arguments (past the
// index threshold), and `with`, which evaluates in frames of its own.
const cachePolicy = `package interlock

limit := data.limits.doubled

tag := t if t := data.tags[input.kind] else := "none"

big(x) := x * 2 if x > limit

doubled := {y | some x in numlist(input.n); y := big(x)}

numlist(n) := numbers.range(0, n)

flags contains "many" if count(doubled) > 40

flags contains "odd" if input.n % 2 == 1

missing if input.nothing

as_admin := r if r := role with input.principal.roles as ["admin"]

role := "admin" if "admin" in input.principal.roles

role := "user" if not "admin" in input.principal.roles

decision := {"allow": count(flags) == 0, "alert": false, "reasons": sort([f | some f in flags]), "n": count(doubled), "role": role, "as_admin": as_admin, "tag": tag} if not missing
`

// The rule and data caches give the decisions OPA's own caches give.
func TestEvalCachesSameDecisions(t *testing.T) {
	dir := policyDir(t, map[string]string{"p.rego": cachePolicy, "data.json": `{"limits": {"doubled": 3}, "tags": {"a": "alpha", "b": "beta"}}`})
	e, err := New(Options{Path: dir, Gateway: "gw", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := e.cur.Load()
	for _, n := range []int{0, 1, 4, 7, 45, 200} {
		for _, roles := range []string{`[]`, `["admin"]`} {
			in := ast.MustParseTerm(fmt.Sprintf(`{"n": %d, "kind": %q, "principal": {"roles": %s}}`, n, string(rune('a'+n%3)), roles)).Value
			want, err := p.query.Eval(ctx, rego.EvalParsedInput(in))
			if err != nil {
				t.Fatal(err)
			}
			vc, dc := getRuleCache(), getDataCache()
			got, err := p.query.Eval(ctx, rego.EvalParsedInput(in), rego.EvalVirtualCache(vc), rego.EvalBaseCache(dc))
			putRuleCache(vc)
			putDataCache(dc)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) != 1 || len(got) != 1 {
				t.Fatalf("n=%d roles=%s: %d and %d results", n, roles, len(want), len(got))
			}
			w, g := fmt.Sprint(want[0].Expressions[0].Value), fmt.Sprint(got[0].Expressions[0].Value)
			if w != g {
				t.Errorf("n=%d roles=%s: rule cache gives %s, OPA's cache %s", n, roles, g, w)
			}
			// numbers.range(0, 45) holds 0..45, of which 4..45 are over the limit.
			if n == 45 && roles == `[]` && g != `{"alert": false, "allow": false, "as_admin": "admin", "n": 42, "reasons": ["many", "odd"], "role": "user", "tag": "alpha"}` {
				t.Errorf("n=45: decision %s is not the one the policy says", g)
			}
		}
	}
}

func TestDataCache(t *testing.T) {
	c := getDataCache()
	a := ast.MustParseRef("data.a")
	if v := c.Get(a); v != nil {
		t.Fatalf("empty cache: Get = %v", v)
	}
	doc := ast.MustParseTerm(`{"b": {"c": 1}, "d": [10, 20]}`).Value
	c.Put(a, doc)
	for ref, want := range map[string]string{
		"data.a":       doc.String(),
		"data.a.b.c":   "1",
		"data.a.d[1]":  "20",
		"data.a.b.zzz": "<nil>",
		"data.x":       "<nil>",
		"data":         "<nil>",
	} {
		got := "<nil>"
		if v := c.Get(ast.MustParseRef(ref)); v != nil {
			got = v.String()
		}
		if got != want {
			t.Errorf("Get(%s) = %s, want %s", ref, got, want)
		}
	}
	// A longer reference cached later does not shadow the shorter one.
	c.Put(ast.MustParseRef("data.a.b"), ast.MustParseTerm(`{"c": 1}`).Value)
	if v := c.Get(ast.MustParseRef("data.a.b.c")); v == nil || v.String() != "1" {
		t.Fatalf("Get(data.a.b.c) = %v, want 1", v)
	}
	c.Put(a, ast.MustParseTerm(`{"b": 2}`).Value) // replaces
	if v := c.Get(ast.MustParseRef("data.a.b")); v == nil || v.String() != "2" {
		t.Fatalf("after replacing data.a: Get(data.a.b) = %v, want 2", v)
	}
	putDataCache(c)
	if len(c.entries) != 0 || len(c.terms) != 0 {
		t.Fatalf("a cache back in the pool holds %d entries", len(c.entries))
	}
}
