package policy

import (
	"context"
	"slices"
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

// TestDecisionBuiltin decides with interlock.decision straight from input:
// the policy library's convention (examples/policies/README.md), its
// corner cases, and the errors that deny.
func TestDecisionBuiltin(t *testing.T) {
	e := newEngine(t, map[string]string{"main.rego": `package interlock

decision := interlock.decision(input.violations, input.passes, input.tickets, input.staging)
`})
	v := func(id, reason string) string { return `{"id": "` + id + `", "reason": "` + reason + `"}` }
	for _, tc := range []struct {
		name                               string
		violations, passes, tickets, stage string
		allow, alert                       bool
		reasons                            []string
		ticket                             string
		err                                string
	}{
		{name: "nothing found", violations: `set()`, passes: `set()`, tickets: `set()`, stage: `[]`,
			allow: true, reasons: []string{}},
		{name: "a pass and its ticket", violations: `set()`, passes: `{` + v("change-ticket", "T-2") + `}`, tickets: `{"T-2", "T-10"}`, stage: `[]`,
			allow: true, reasons: []string{"change-ticket:pass:T-2"}, ticket: "T-10"},
		{name: "enforced", violations: `{` + v("b-rule", "x") + `, ` + v("a-rule", "y") + `}`, passes: `{` + v("c-rule", "z") + `}`, tickets: `{"T-1"}`, stage: `[]`,
			alert: true, reasons: []string{"a-rule:enforced:y", "b-rule:enforced:x", "c-rule:pass:z"}},
		{name: "staged by id, in a set", violations: `{` + v("a-rule", "y") + `}`, passes: `set()`, tickets: `{"T-1"}`, stage: `{"a-rule"}`,
			allow: true, alert: true, reasons: []string{"a-rule:monitor:y"}, ticket: "T-1"},
		{name: "staged by an object's values", violations: `{` + v("a-rule", "y") + `, ` + v("b-rule", "x") + `}`, passes: `set()`, tickets: `set()`,
			stage: `{"first": "b-rule"}`, alert: true, reasons: []string{"a-rule:enforced:y", "b-rule:monitor:x"}},
		{name: "marked monitor-only by its module", violations: `{{"id": "a-rule", "reason": "y", "monitor": true}, {"id": "b-rule", "reason": "x", "monitor": false}}`,
			passes: `set()`, tickets: `set()`, stage: `[]`, alert: true, reasons: []string{"a-rule:monitor:y", "b-rule:enforced:x"}},
		{name: "staging that is no list stages nothing", violations: `{` + v("a-rule", "y") + `}`, passes: `set()`, tickets: `set()`, stage: `"a-rule"`,
			alert: true, reasons: []string{"a-rule:enforced:y"}},
		{name: "arrays keep equal reasons", violations: `[` + v("a-rule", "y") + `, {"id": "a-rule", "reason": "y", "extra": 1}]`, passes: `[]`, tickets: `[]`, stage: `null`,
			alert: true, reasons: []string{"a-rule:enforced:y", "a-rule:enforced:y"}},
		{name: "a violation without a reason", violations: `{{"id": "a-rule"}}`, passes: `set()`, tickets: `set()`, stage: `[]`,
			err: `a violation needs a string id and reason`},
		{name: "a pass with a number id", violations: `set()`, passes: `{{"id": 7, "reason": "x"}}`, tickets: `set()`, stage: `[]`,
			err: `a pass needs a string id and reason`},
		{name: "a violation that is no object", violations: `{"a-rule"}`, passes: `set()`, tickets: `set()`, stage: `[]`,
			err: `a violation is not an object`},
		{name: "a ticket id that is no string", violations: `set()`, passes: `set()`, tickets: `{7}`, stage: `[]`,
			err: `a ticket id is not a string`},
		{name: "violations that are no collection", violations: `"x"`, passes: `set()`, tickets: `set()`, stage: `[]`,
			err: `violations is not an array, set or object`},
	} {
		in := ast.MustParseTerm(`{"violations": ` + tc.violations + `, "passes": ` + tc.passes + `, "tickets": ` + tc.tickets +
			`, "staging": ` + tc.stage + `}`).Value
		d, err := e.Eval(context.Background(), in, time.Now())
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, decision %+v; want an error with %q", tc.name, err, d, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if d.Allow != tc.allow || d.Alert != tc.alert || d.Ticket != tc.ticket || !slices.Equal(d.Reasons, tc.reasons) {
			t.Errorf("%s: allow=%v alert=%v ticket=%q reasons=%q; want allow=%v alert=%v ticket=%q reasons=%q",
				tc.name, d.Allow, d.Alert, d.Ticket, d.Reasons, tc.allow, tc.alert, tc.ticket, tc.reasons)
		}
	}
}

// TestValuesWithin compares interlock.values_within with the Rego test it
// stands for in modbus-ranges' fast path: wherever the builtin holds, the
// Rego test holds too (the fast path never lets through what the rules
// would stop), and for numbers they agree.
func TestValuesWithin(t *testing.T) {
	e := newEngine(t, map[string]string{"main.rego": `package interlock

builtin := interlock.values_within(input.range, input.values)

default rego := false

rego if {
	is_array(input.values)
	is_object(input.range)
	low := min(input.values)
	high := max(input.values)
	lower := object.get(input.range, "min", low)
	upper := object.get(input.range, "max", high)
	is_number(lower)
	is_number(upper)
	lower <= low
	high <= upper
}

# allow: the builtin; alert: the Rego test.
decision := {"allow": builtin, "alert": rego, "reasons": []}
`})
	for _, tc := range []struct {
		rng, values string
		want        bool
		numeric     bool // the values and limits are numbers: the two agree
	}{
		{`{"min": 0, "max": 1200}`, `[650, 700]`, true, true},
		{`{"min": 0, "max": 1200}`, `[0, 1200]`, true, true},
		{`{"min": 0, "max": 1200}`, `[650, 1201]`, false, true},
		{`{"min": 0, "max": 1200}`, `[-1]`, false, true},
		{`{"min": -10.5, "max": 10.5}`, `[-10.5, 10.25]`, true, true},
		{`{"max": 5}`, `[-70000, 5]`, true, true},
		{`{"min": 5}`, `[5, 1e9]`, true, true},
		{`{}`, `[1, 2, 3]`, true, true},
		{`{"start": 0, "end": 9}`, `[65535]`, true, true},
		// Limits that are not numbers fail both.
		{`{"min": 0, "max": "1200"}`, `[700]`, false, false},
		{`{"min": null}`, `[700]`, false, false},
		// Values that are not numbers, or none: the builtin fails where
		// Rego's ordering of types may let them pass.
		{`{"min": 0, "max": 1200}`, `["700"]`, false, false},
		{`{"max": 1200}`, `[null, 5]`, false, false},
		{`{}`, `[true]`, false, false},
		{`{"min": 0}`, `[]`, false, false},
		{`{"min": 0}`, `{"a": 1}`, false, false},
		{`"range"`, `[1]`, false, false},
	} {
		in := ast.MustParseTerm(`{"range": ` + tc.rng + `, "values": ` + tc.values + `}`).Value
		d, err := e.Eval(context.Background(), in, time.Now())
		if err != nil {
			t.Fatalf("%s %s: %v", tc.rng, tc.values, err)
		}
		regoHolds := d.Alert
		if d.Allow != tc.want {
			t.Errorf("values_within(%s, %s) = %v, want %v", tc.rng, tc.values, d.Allow, tc.want)
		}
		if d.Allow && !regoHolds {
			t.Errorf("values_within(%s, %s) holds where the Rego test does not", tc.rng, tc.values)
		}
		if tc.numeric && d.Allow != regoHolds {
			t.Errorf("values_within(%s, %s) = %v, the Rego test %v", tc.rng, tc.values, d.Allow, regoHolds)
		}
	}
}
