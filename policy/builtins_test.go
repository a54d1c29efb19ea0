package policy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestWindowOpenAt(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	saturdays := WindowSpec{Cron: "0 6 * * SAT", Duration: "4h", TZ: "Europe/Berlin"}
	for _, tc := range []struct {
		name string
		w    WindowSpec
		t    string
		want bool
	}{
		{"one-off: at start", WindowSpec{Start: "2026-11-28T06:00:00Z", End: "2026-11-28T10:00:00Z"}, "2026-11-28T06:00:00Z", true},
		{"one-off: inside", WindowSpec{Start: "2026-11-28T06:00:00Z", End: "2026-11-28T10:00:00Z"}, "2026-11-28T09:59:59Z", true},
		{"one-off: end is exclusive", WindowSpec{Start: "2026-11-28T06:00:00Z", End: "2026-11-28T10:00:00Z"}, "2026-11-28T10:00:00Z", false},
		{"one-off: before", WindowSpec{Start: "2026-11-28T06:00:00Z", End: "2026-11-28T10:00:00Z"}, "2026-11-28T05:59:59Z", false},
		// Berlin is UTC+1 in November: 06:00 local is 05:00Z.
		{"weekly: opens at 06:00 Berlin", saturdays, "2026-11-28T05:00:00Z", true},
		{"weekly: a minute before", saturdays, "2026-11-28T04:59:00Z", false},
		{"weekly: last minute", saturdays, "2026-11-28T08:59:59Z", true},
		{"weekly: closed after 4h", saturdays, "2026-11-28T09:00:00Z", false},
		{"weekly: not on Friday", saturdays, "2026-11-27T05:30:00Z", false},
		{"weekly: summer time, 06:00 Berlin is 04:00Z", saturdays, "2026-07-04T04:30:00Z", true},
		{"weekly: summer time, 05:00Z is 07:00 local, inside", saturdays, "2026-07-04T05:00:00Z", true},
		{"daily, UTC by default", WindowSpec{Cron: "30 22 * * *", Duration: "2h"}, "2026-11-27T00:15:00Z", true},
		{"daily across midnight, closed", WindowSpec{Cron: "30 22 * * *", Duration: "2h"}, "2026-11-27T00:30:00Z", false},
	} {
		got, err := tc.w.OpenAt(at(tc.t))
		if err != nil || got != tc.want {
			t.Errorf("%s: OpenAt(%s) = %v, %v; want %v", tc.name, tc.t, got, err, tc.want)
		}
	}
	for _, bad := range []WindowSpec{
		{Start: "2026-11-28", End: "2026-11-29T00:00:00Z"},
		{Start: "2026-11-28T06:00:00Z"},
		{Cron: "0 6 * *", Duration: "4h"},
		{Cron: "0 6 * * SAT", Duration: "four hours"},
		{Cron: "0 6 * * SAT", Duration: "4h", TZ: "Mars/Olympus"},
		{Cron: "0 6 * * SAT", Duration: "4h", Start: "2026-11-28T06:00:00Z"},
		{},
	} {
		if _, err := bad.OpenAt(time.Now()); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

const windowBuiltinPolicy = `package interlock

decision := {"allow": true, "alert": false, "reasons": [w.name]} if {
	some w in data.windows
	interlock.window_open(w, time.now_ns())
}

default decision := {"allow": false, "alert": false, "reasons": ["closed"]}
`

const windowBuiltinData = `windows:
  - {name: saturday-maintenance, cron: "0 6 * * SAT", duration: 4h, tz: Europe/Berlin}
  - {name: chg-1, start: "2026-12-01T10:00:00Z", end: "2026-12-01T11:00:00Z"}
`

func TestWindowBuiltinInPolicy(t *testing.T) {
	e := newEngine(t, map[string]string{"main.rego": windowBuiltinPolicy, "data.yaml": windowBuiltinData})
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC), "saturday-maintenance"},
		{time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC), "chg-1"},
		{time.Date(2026, 12, 1, 11, 0, 0, 0, time.UTC), "closed"},
	} {
		d, err := e.Eval(context.Background(), ast.NewObject(), tc.at)
		if err != nil || len(d.Reasons) != 1 || d.Reasons[0] != tc.want {
			t.Errorf("at %s: %+v, %v; want %s", tc.at, d, err, tc.want)
		}
	}
	// A malformed window is a policy error: the call is denied.
	bad := newEngine(t, map[string]string{"main.rego": windowBuiltinPolicy, "data.yaml": "windows:\n  - {name: typo, cron: \"0 6 * * SATURDAY\", duration: 4h}\n"})
	if _, err := bad.Eval(context.Background(), ast.NewObject(), time.Now()); err == nil || Code(err) != CodeEvalError {
		t.Fatalf("malformed window: %v; want %s", err, CodeEvalError)
	}
}

func TestWindowBuiltinInRegoTests(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"main.rego": windowBuiltinPolicy, "data.yaml": windowBuiltinData,
		"main_test.rego": `package interlock_test

import data.interlock

test_saturday_morning if {
	interlock.decision.allow with time.now_ns as time.parse_rfc3339_ns("2026-11-28T07:00:00+01:00")
}

test_saturday_afternoon if {
	not interlock.decision.allow with time.now_ns as time.parse_rfc3339_ns("2026-11-28T14:00:00+01:00")
}
`,
	})
	var out strings.Builder
	passed, failed, err := RunTests(context.Background(), []string{dir}, TestOptions{Out: &out})
	if err != nil || passed != 2 || failed != 0 {
		t.Fatalf("RunTests: %d passed, %d failed, %v\n%s", passed, failed, err, out.String())
	}
}

// interlock.ranges_overlapping gives what the comprehension it stands for
// gives, for well-formed and malformed ranges alike.
func TestRangesOverlapping(t *testing.T) {
	const rangesPolicy = `package interlock

builtin := interlock.ranges_overlapping(input.ranges, input.first, input.last)

comprehension := [r | some r in input.ranges; r.start <= input.last; input.first <= r.end]

decision := {"allow": builtin == comprehension, "alert": false, "reasons": [sprintf("%v", [builtin])]}
`
	e := newEngine(t, map[string]string{"main.rego": rangesPolicy})
	ranges := `[{"name": "a", "start": 0, "end": 99}, {"name": "b", "start": 100, "end": 109, "max": 1200},
		{"name": "c", "start": 100, "end": 119}, {"name": "d", "start": 120, "end": 120}]`
	for _, tc := range []struct {
		ranges      string
		first, last string
		want        string
	}{
		{ranges, "105", "106", `[{"end": 109, "max": 1200, "name": "b", "start": 100}, {"end": 119, "name": "c", "start": 100}]`},
		{ranges, "99", "100", `[{"end": 99, "name": "a", "start": 0}, {"end": 109, "max": 1200, "name": "b", "start": 100}, {"end": 119, "name": "c", "start": 100}]`},
		{ranges, "120", "120", `[{"end": 120, "name": "d", "start": 120}]`},
		{ranges, "0", "0", `[{"end": 99, "name": "a", "start": 0}]`},
		{ranges, "121", "200", `[]`},
		{ranges, "110", "105", `[{"end": 119, "name": "c", "start": 100}]`},
		// Sets and objects are iterated like `some r in`.
		{`{{"start": 5, "end": 6}, {"start": 1, "end": 2}}`, "0", "9", `[{"end": 2, "start": 1}, {"end": 6, "start": 5}]`},
		{`{"x": {"start": 1, "end": 2}, "y": {"start": 3, "end": 4}}`, "2", "3", `[{"end": 2, "start": 1}, {"end": 4, "start": 3}]`},
		// Malformed ranges: no start or end, not an object, other types
		// compared in Rego's order (numbers before strings, null first).
		{`[{"end": 9}, {"start": 0}, 7, "r", [0, 9], {"start": "0", "end": 9}, {"start": 0, "end": "9"}, {"start": null, "end": 9}, {"start": 0, "end": null}]`, "1", "2",
			`[{"end": "9", "start": 0}, {"end": 9, "start": null}]`},
		{`[{"start": 0, "end": 9}]`, `"1"`, "2", `[]`},
		{`[{"start": 0, "end": 9}]`, "1", `"2"`, `[{"end": 9, "start": 0}]`},
		// Not a collection: nothing overlaps.
		{`"ranges"`, "1", "2", `[]`},
		{`5`, "1", "2", `[]`},
		{`null`, "1", "2", `[]`},
		{`[]`, "1", "2", `[]`},
	} {
		in := ast.MustParseTerm(`{"ranges": ` + tc.ranges + `, "first": ` + tc.first + `, "last": ` + tc.last + `}`).Value
		d, err := e.Eval(context.Background(), in, time.Now())
		if err != nil {
			t.Fatalf("%s [%s, %s]: %v", tc.ranges, tc.first, tc.last, err)
		}
		want := ast.MustParseTerm(tc.want).String()
		if !d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != want {
			t.Errorf("%s [%s, %s]: %+v; want %s, the same as the comprehension", tc.ranges, tc.first, tc.last, d, want)
		}
	}
}
