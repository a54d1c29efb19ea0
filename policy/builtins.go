package policy

import (
	"errors"
	"fmt"
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
var windowOpen = &rego.Function{
	Name:        "interlock.window_open",
	Description: "reports whether a maintenance window (one-off start/end, or cron + duration + tz) is open at now_ns",
	Decl: types.NewFunction(
		types.Args(
			types.Named("window", types.NewObject(nil, types.NewDynamicProperty(types.S, types.A))),
			types.Named("now_ns", types.N),
		),
		types.Named("open", types.B),
	),
	// Not memoized: the window is cheap to check (schedules are parsed
	// once, see schedule), and OPA's memo would key every call on the
	// window's whole text.
	Memoize: false,
}

var rangesOverlapping = &rego.Function{
	Name:        "interlock.ranges_overlapping",
	Description: "the ranges (objects with start and end) of a collection that overlap [first, last]",
	Decl: types.NewFunction(
		types.Args(
			types.Named("ranges", types.A),
			types.Named("first", types.A),
			types.Named("last", types.A),
		),
		types.Named("overlapping", types.NewArray(nil, types.A)),
	),
	Memoize: false,
}

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

// compilerBuiltins declares the gateway's builtins to a compiler.
func compilerBuiltins() map[string]*ast.Builtin {
	return map[string]*ast.Builtin{
		windowOpen.Name:        {Name: windowOpen.Name, Decl: windowOpen.Decl},
		rangesOverlapping.Name: {Name: rangesOverlapping.Name, Decl: rangesOverlapping.Decl},
	}
}

// regoBuiltins implements them for a query.
func regoBuiltins() []func(*rego.Rego) {
	return []func(*rego.Rego){rego.Function2(windowOpen, windowOpenBuiltin),
		rego.Function3(rangesOverlapping, rangesOverlappingBuiltin)}
}

// testerBuiltins gives them to the Rego test runner.
func testerBuiltins() []*tester.Builtin {
	return []*tester.Builtin{{
		Decl: &ast.Builtin{Name: windowOpen.Name, Decl: windowOpen.Decl},
		Func: rego.Function2(windowOpen, windowOpenBuiltin),
	}, {
		Decl: &ast.Builtin{Name: rangesOverlapping.Name, Decl: rangesOverlapping.Decl},
		Func: rego.Function3(rangesOverlapping, rangesOverlappingBuiltin),
	}}
}
