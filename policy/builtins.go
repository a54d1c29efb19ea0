package policy

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/robfig/cron/v3"
	_ "time/tzdata" // window time zones resolve on hosts without a zoneinfo database
)

// Builtins the gateway adds to Rego, at run time and in `policy test`.
//
//	interlock.window_open(window, now_ns) → bool
//
// window is a maintenance window from policy data, one-off or recurring:
//
//	{"start": "2026-11-28T06:00:00Z", "end": "2026-11-28T10:00:00Z"}
//	{"cron": "0 6 * * SAT", "duration": "4h", "tz": "Europe/Berlin"}
//
// A one-off window is open from start (inclusive) to end (exclusive). A
// recurring one opens at every time its cron expression (minute hour
// day-of-month month day-of-week, in tz; UTC when tz is absent) names, for
// duration. A malformed window is an error, which denies the call.
//
//	interlock.ranges_overlapping(ranges, first, last) → array
//
// ranges is an array, set or object of ranges such as {"start": 100, "end":
// 109, ...}; the result holds, in iteration order, every range r with
// r.start <= last and first <= r.end, compared as Rego's <= compares. It is
// the comprehension
//
//	[r | some r in ranges; r.start <= last; first <= r.end]
//
// in one step: an element that is not an object or lacks start or end is
// left out, and ranges that is not a collection gives [].
//
//	interlock.values_within(range, values) → bool
//
// reports whether every value of the array values lies within range's
// limits: range.min <= v <= range.max, a limit that is absent bounding
// nothing. It is false when values is empty or holds anything but numbers,
// and when a limit present is not a number (a typo in data never lets a
// value through). It is the test
//
//	low := min(values); high := max(values)
//	lower := object.get(range, "min", low); upper := object.get(range, "max", high)
//	is_number(lower); is_number(upper); lower <= low; high <= upper
//
// in one step, stricter where Rego would compare values of other types.
//
//	interlock.decision(violations, passes, tickets, staging) → object
//
// builds the decision of the policy library's convention
// (examples/policies/README.md) from what its modules found:
//
//	violations  collection of {"id", "reason", ["monitor": true]}
//	passes      collection of {"id", "reason"}
//	tickets     collection of ticket ids (strings)
//	staging     collection of the rule ids that are monitor-only
//
// A violation is monitor-only when its id is in staging or it carries
// "monitor": true, and enforced otherwise; staging that is not a collection
// (null, a string) stages nothing. The result is
//
//	{"allow": <no enforced violation>, "alert": <any violation>,
//	 "reasons": <sorted "id:enforced|monitor:reason" of every violation
//	             and "id:pass:reason" of every pass>,
//	 "ticket": <the smallest ticket id, only when allowed and there is one>}
//
// which is what the library template's former Rego rules give (kept as
// referenceTemplate in examples/policies/policies_test.go, which holds the
// builtin to them), in one step. An id or reason that is not a string, or a
// ticket id that is not one, is an error, which denies the call.

// gatewayBuiltin declares one of the gateway's builtins. None is memoized:
// each is cheap, and OPA's memo would key every call on its arguments' whole
// text.
func gatewayBuiltin(name, description string, result *types.NamedType, args ...types.Type) *rego.Function {
	return &rego.Function{
		Name:        name,
		Description: description,
		Decl:        types.NewFunction(types.Args(args...), result),
		Memoize:     false,
	}
}

var windowOpen = gatewayBuiltin("interlock.window_open",
	"reports whether a maintenance window (one-off start/end, or cron + duration + tz) is open at now_ns",
	types.Named("open", types.B),
	types.Named("window", types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
	types.Named("now_ns", types.N))

var rangesOverlapping = gatewayBuiltin("interlock.ranges_overlapping",
	"the ranges (objects with start and end) of a collection that overlap [first, last]",
	types.Named("overlapping", types.NewArray(nil, types.A)),
	types.Named("ranges", types.A), types.Named("first", types.A), types.Named("last", types.A))

var valuesWithin = gatewayBuiltin("interlock.values_within",
	"whether every value (a number) of an array lies within a range's min and max (numbers, either absent)",
	types.Named("within", types.B),
	types.Named("range", types.A), types.Named("values", types.A))

var decisionFunc = gatewayBuiltin("interlock.decision",
	"the policy library's decision (allow, alert, sorted reasons, ticket) from its modules' violations, passes, tickets and the staged rule ids",
	types.Named("decision", types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
	types.Named("violations", types.A), types.Named("passes", types.A), types.Named("tickets", types.A),
	types.Named("staging", types.A))

var (
	startKey = ast.StringTerm("start")
	endKey   = ast.StringTerm("end")
)

func rangesOverlappingBuiltin(_ rego.BuiltinContext, ranges, first, last *ast.Term) (*ast.Term, error) {
	var out []*ast.Term
	add := func(r *ast.Term) {
		obj, ok := r.Value.(ast.Object)
		if !ok {
			return
		}
		start, end := obj.Get(startKey), obj.Get(endKey)
		if start != nil && end != nil && start.Value.Compare(last.Value) <= 0 && first.Value.Compare(end.Value) <= 0 {
			out = append(out, r)
		}
	}
	switch c := ranges.Value.(type) {
	case *ast.Array:
		c.Foreach(add)
	case ast.Set:
		c.Foreach(add)
	case ast.Object:
		c.Foreach(func(_, v *ast.Term) { add(v) })
	}
	return ast.ArrayTerm(out...), nil
}

var (
	minKey = ast.StringTerm("min")
	maxKey = ast.StringTerm("max")
)

func valuesWithinBuiltin(_ rego.BuiltinContext, r, values *ast.Term) (*ast.Term, error) {
	return ast.InternedTerm(valuesWithinLimits(r, values)), nil
}

func valuesWithinLimits(r, values *ast.Term) bool {
	obj, ok := r.Value.(ast.Object)
	if !ok {
		return false
	}
	vs, ok := values.Value.(*ast.Array)
	if !ok || vs.Len() == 0 {
		return false
	}
	var lower, upper ast.Number
	if t := obj.Get(minKey); t != nil {
		if lower, ok = t.Value.(ast.Number); !ok {
			return false
		}
	}
	if t := obj.Get(maxKey); t != nil {
		if upper, ok = t.Value.(ast.Number); !ok {
			return false
		}
	}
	for i := range vs.Len() {
		v, ok := vs.Elem(i).Value.(ast.Number)
		if !ok || (lower != "" && ast.Compare(lower, v) > 0) || (upper != "" && ast.Compare(v, upper) > 0) {
			return false
		}
	}
	return true
}

// Terms of the decision builtin, made once (the decision's keys are
// decision.go's).
var (
	idKey       = ast.StringTerm("id")
	reasonKey   = ast.StringTerm("reason")
	monitorKey  = ast.StringTerm("monitor")
	trueTerm    = ast.BooleanTerm(true)
	allowClean  = ast.ObjectTerm([2]*ast.Term{keyAllow, ast.BooleanTerm(true)}, [2]*ast.Term{keyAlert, ast.BooleanTerm(false)}, [2]*ast.Term{keyReasons, ast.ArrayTerm()})
	errNotColln = errors.New("is not an array, set or object")
)

// each calls f for every element of a collection (an object's values).
func each(c *ast.Term, f func(*ast.Term) error) error {
	var err error
	visit := func(t *ast.Term) {
		if err == nil {
			err = f(t)
		}
	}
	switch v := c.Value.(type) {
	case *ast.Array:
		v.Foreach(visit)
	case ast.Set:
		v.Foreach(visit)
	case ast.Object:
		v.Foreach(func(_, t *ast.Term) { visit(t) })
	default:
		return errNotColln
	}
	return err
}

func size(c *ast.Term) int {
	switch v := c.Value.(type) {
	case *ast.Array:
		return v.Len()
	case ast.Set:
		return v.Len()
	case ast.Object:
		return v.Len()
	}
	return -1
}

// finding reads the id and reason of a violation or pass.
func finding(what string, t *ast.Term) (id, reason string, obj ast.Object, err error) {
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return "", "", nil, fmt.Errorf("a %s is not an object: %v", what, t)
	}
	it, rt := obj.Get(idKey), obj.Get(reasonKey)
	if it == nil || rt == nil {
		return "", "", nil, fmt.Errorf("a %s needs a string id and reason: %v", what, t)
	}
	i, ok1 := it.Value.(ast.String)
	r, ok2 := rt.Value.(ast.String)
	if !ok1 || !ok2 {
		return "", "", nil, fmt.Errorf("a %s needs a string id and reason: %v", what, t)
	}
	return string(i), string(r), obj, nil
}

func decisionBuiltin(_ rego.BuiltinContext, violations, passes, tickets, staging *ast.Term) (*ast.Term, error) {
	nv, np, nt := size(violations), size(passes), size(tickets)
	for _, c := range [...]struct {
		name string
		n    int
	}{{"violations", nv}, {"passes", np}, {"tickets", nt}} {
		if c.n < 0 {
			return nil, fmt.Errorf("%s %s", c.name, errNotColln)
		}
	}
	if nv == 0 && np == 0 && nt == 0 {
		return allowClean, nil // nearly every call: no finding, nothing passed on
	}
	reasons := make([]string, 0, nv+np)
	enforced := 0
	if err := each(violations, func(t *ast.Term) error {
		id, reason, obj, err := finding("violation", t)
		if err != nil {
			return err
		}
		status := "enforced"
		if m := obj.Get(monitorKey); (m != nil && m.Equal(trueTerm)) || staged(staging, id) {
			status = "monitor"
		} else {
			enforced++
		}
		reasons = append(reasons, id+":"+status+":"+reason)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := each(passes, func(t *ast.Term) error {
		id, reason, _, err := finding("pass", t)
		if err != nil {
			return err
		}
		reasons = append(reasons, id+":pass:"+reason)
		return nil
	}); err != nil {
		return nil, err
	}
	var ticket *ast.Term // the smallest id
	if err := each(tickets, func(t *ast.Term) error {
		if _, ok := t.Value.(ast.String); !ok {
			return fmt.Errorf("a ticket id is not a string: %v", t)
		}
		if ticket == nil || ast.Compare(t.Value, ticket.Value) < 0 {
			ticket = t
		}
		return nil
	}); err != nil {
		return nil, err
	}
	slices.Sort(reasons)
	rs := make([]*ast.Term, len(reasons))
	for i, r := range reasons {
		rs[i] = ast.StringTerm(r)
	}
	allow := enforced == 0
	d := ast.NewObject([2]*ast.Term{keyAllow, ast.InternedTerm(allow)}, [2]*ast.Term{keyAlert, ast.InternedTerm(nv > 0)},
		[2]*ast.Term{keyReasons, ast.ArrayTerm(rs...)})
	if allow && ticket != nil {
		d.Insert(keyTicket, ticket)
	}
	return ast.NewTerm(d), nil
}

// staged reports whether rule id is in the staging collection; staging that
// is not a collection (null, a string) stages nothing, as the template's
// rules had it: a malformed list enforces every rule.
func staged(staging *ast.Term, id string) bool {
	found := false
	_ = each(staging, func(t *ast.Term) error {
		if s, ok := t.Value.(ast.String); ok && string(s) == id {
			found = true
		}
		return nil
	})
	return found
}

// windowKeys are the fields of a window object, as terms made once.
var windowKeys = [...]*ast.Term{ast.StringTerm("start"), ast.StringTerm("end"), ast.StringTerm("cron"),
	ast.StringTerm("duration"), ast.StringTerm("tz")}

func windowOpenBuiltin(_ rego.BuiltinContext, w, now *ast.Term) (*ast.Term, error) {
	obj, ok := w.Value.(ast.Object)
	if !ok {
		return nil, errors.New("window is not an object")
	}
	n, ok := now.Value.(ast.Number)
	if !ok {
		return nil, errors.New("now_ns is not a number")
	}
	ns, ok := n.Int64()
	if !ok {
		return nil, fmt.Errorf("now_ns %s is not an integer", n)
	}
	var spec WindowSpec
	for i, dst := range [...]*string{&spec.Start, &spec.End, &spec.Cron, &spec.Duration, &spec.TZ} {
		v := obj.Get(windowKeys[i])
		if v == nil {
			continue
		}
		str, ok := v.Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("window %s is not a string", string(windowKeys[i].Value.(ast.String)))
		}
		*dst = string(str)
	}
	open, err := spec.OpenAt(time.Unix(0, ns))
	if err != nil {
		// name the window, as the data does, so that it can be found
		for _, k := range [...]string{"name", "id"} {
			if t := obj.Get(ast.InternedTerm(k)); t != nil {
				if v, ok := t.Value.(ast.String); ok {
					return nil, fmt.Errorf("maintenance window %q: %w", string(v), err)
				}
			}
		}
		return nil, err
	}
	return ast.InternedTerm(open), nil
}

// WindowSpec is a maintenance window as policy data writes it.
type WindowSpec struct {
	Start, End         string // one-off, RFC 3339
	Cron, Duration, TZ string // recurring
}

// OpenAt reports whether the window is open at t.
func (w WindowSpec) OpenAt(t time.Time) (bool, error) {
	switch {
	case w.Cron != "" && (w.Start != "" || w.End != ""):
		return false, errors.New("window has both cron and start/end")
	case w.Cron != "":
		return w.recurringOpenAt(t)
	case w.Start == "" || w.End == "":
		return false, errors.New("window needs start and end, or cron and duration")
	}
	start, err := time.Parse(time.RFC3339Nano, w.Start)
	if err != nil {
		return false, fmt.Errorf("window start %q is not RFC 3339", w.Start)
	}
	end, err := time.Parse(time.RFC3339Nano, w.End)
	if err != nil {
		return false, fmt.Errorf("window end %q is not RFC 3339", w.End)
	}
	return !t.Before(start) && t.Before(end), nil
}

// recurringOpenAt: open when an activation a has a <= t < a+duration, that
// is when the first activation after t-duration is not after t.
func (w WindowSpec) recurringOpenAt(t time.Time) (bool, error) {
	d, err := time.ParseDuration(w.Duration)
	if err != nil || d <= 0 {
		return false, fmt.Errorf("window duration %q is not a positive duration such as 4h", w.Duration)
	}
	sched, loc, err := schedule(w.Cron, w.TZ)
	if err != nil {
		return false, err
	}
	a := sched.Next(t.Add(-d).In(loc))
	return !a.After(t), nil
}

type schedKey struct{ spec, tz string }

type parsedSchedule struct {
	sched cron.Schedule
	loc   *time.Location
}

var schedules sync.Map // schedKey → parsedSchedule

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

func schedule(spec, tz string) (cron.Schedule, *time.Location, error) {
	k := schedKey{spec, tz}
	if p, ok := schedules.Load(k); ok {
		ps := p.(parsedSchedule)
		return ps.sched, ps.loc, nil
	}
	loc := time.UTC
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, nil, fmt.Errorf("window tz %q is not a time zone such as Europe/Berlin", tz)
		}
		loc = l
	}
	s, err := cronParser.Parse(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("window cron %q: %v (want minute hour day-of-month month day-of-week)", spec, err)
	}
	schedules.Store(k, parsedSchedule{s, loc})
	return s, loc, nil
}

// builtins lists the gateway's builtins with their implementations: the
// compiler, the query and the test runner take them from here.
var builtins = []struct {
	fn   *rego.Function
	impl func(*rego.Rego)
}{
	{windowOpen, rego.Function2(windowOpen, windowOpenBuiltin)},
	{rangesOverlapping, rego.Function3(rangesOverlapping, rangesOverlappingBuiltin)},
	{valuesWithin, rego.Function2(valuesWithin, valuesWithinBuiltin)},
	{decisionFunc, rego.Function4(decisionFunc, decisionBuiltin)},
}

// compilerBuiltins declares the gateway's builtins to a compiler.
func compilerBuiltins() map[string]*ast.Builtin {
	m := make(map[string]*ast.Builtin, len(builtins))
	for _, b := range builtins {
		m[b.fn.Name] = &ast.Builtin{Name: b.fn.Name, Decl: b.fn.Decl}
	}
	return m
}

// regoBuiltins implements them for a query.
func regoBuiltins() []func(*rego.Rego) {
	opts := make([]func(*rego.Rego), len(builtins))
	for i, b := range builtins {
		opts[i] = b.impl
	}
	return opts
}

// testerBuiltins gives them to the Rego test runner.
func testerBuiltins() []*tester.Builtin {
	tb := make([]*tester.Builtin, len(builtins))
	for i, b := range builtins {
		tb[i] = &tester.Builtin{Decl: &ast.Builtin{Name: b.fn.Name, Decl: b.fn.Decl}, Func: b.impl}
	}
	return tb
}
