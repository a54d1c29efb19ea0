package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

const siteTests = `package interlock_test

import data.interlock

engineer := {"roles": ["engineer"], "auth": "inventory"}

test_read_allowed if {
	interlock.decision.allow with input as {"operation": {"function": "read_coils", "access": "read"}}
}

test_write_in_window if {
	d := interlock.decision with input as {
		"operation": {"function": "write_single_register", "access": "write"},
		"principal": engineer, "target": {"name": "plc1"},
	} with time.now_ns as time.parse_rfc3339_ns("2026-11-26T03:00:00Z")
	d.allow
	d.alert
}

test_unknown_function_denied if {
	not interlock.decision.allow with input as {"operation": {"function": "x", "access": "read"}}
}
`

func TestRunTests(t *testing.T) {
	ctx := context.Background()
	pass := policyDir(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData, "main_test.rego": siteTests})

	var out bytes.Buffer
	passed, failed, err := RunTests(ctx, []string{pass}, TestOptions{Out: &out})
	if err != nil || passed != 3 || failed != 0 {
		t.Fatalf("passing suite: %d passed, %d failed, %v\n%s", passed, failed, err, &out)
	}
	if !strings.Contains(out.String(), "PASS: 3/3") {
		t.Errorf("output:\n%s", &out)
	}

	out.Reset()
	if _, _, err := RunTests(ctx, []string{pass}, TestOptions{Out: &out, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var results []map[string]any
	if err := json.Unmarshal(out.Bytes(), &results); err != nil || len(results) != 3 {
		t.Errorf("JSON output (%v):\n%s", err, &out)
	}

	failing := policyDir(t, map[string]string{
		"main.rego": sitePolicy, "data.yaml": siteData, "main_test.rego": siteTests,
		"more_test.rego": `package interlock_test

import data.interlock

test_write_outside_window_allowed if {
	interlock.decision.allow with input as {
		"operation": {"function": "write_single_register", "access": "write"},
		"principal": engineer, "target": {"name": "plc1"},
	} with time.now_ns as time.parse_rfc3339_ns("2026-11-27T03:00:00Z")
}

test_builtin_error if {
	to_number("x") == 1
}
`,
	})
	out.Reset()
	passed, failed, err = RunTests(ctx, []string{failing}, TestOptions{Out: &out, Verbose: true})
	if err != nil || passed != 3 || failed != 2 {
		t.Fatalf("failing suite: %d passed, %d failed, %v\n%s", passed, failed, err, &out)
	}
	for _, w := range []string{"FAIL", "test_write_outside_window_allowed", "ERROR"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output does not mention %s:\n%s", w, &out)
		}
	}
}

// A test that raised an error (a builtin error, a conflict) is reported as
// ERROR on its own line, with the error, as the summary counts it; a test
// that is false is a FAIL.
func TestRunTestsErroredTestSaysError(t *testing.T) {
	dir := policyDir(t, map[string]string{"x_test.rego": `package x

test_builtin_error if {
	to_number("x") == 1
}

conflict := 1 if input.a
conflict := 2 if input.a

test_conflict if {
	conflict == 1 with input as {"a": true}
}

test_false if {
	1 == 2
}
`})
	for _, verbose := range []bool{false, true} {
		var out bytes.Buffer
		passed, failed, err := RunTests(context.Background(), []string{dir}, TestOptions{Out: &out, Verbose: verbose})
		if err != nil || passed != 0 || failed != 3 {
			t.Fatalf("verbose %v: %d passed, %d failed, %v\n%s", verbose, passed, failed, err, &out)
		}
		lines := strings.Split(out.String(), "\n")
		line := func(test string) (string, string) {
			for i, l := range lines {
				if strings.HasPrefix(l, "data.x."+test+": ") {
					next := ""
					if i+1 < len(lines) {
						next = lines[i+1]
					}
					return l, next
				}
			}
			return "", ""
		}
		for _, tc := range []struct{ test, outcome, errText string }{
			{"test_builtin_error", "ERROR", "to_number"},
			{"test_conflict", "ERROR", "conflict"},
			{"test_false", "FAIL", ""},
		} {
			l, next := line(tc.test)
			if !strings.HasPrefix(l, "data.x."+tc.test+": "+tc.outcome+" ") {
				t.Errorf("verbose %v: %s: line %q, want %s\n%s", verbose, tc.test, l, tc.outcome, &out)
			}
			if tc.errText != "" && !strings.Contains(next, tc.errText) {
				t.Errorf("verbose %v: %s: the line after it %q does not give the error (%s)\n%s", verbose, tc.test, next, tc.errText, &out)
			}
		}
		if !strings.Contains(out.String(), "FAIL: 1/3") || !strings.Contains(out.String(), "ERROR: 2/3") {
			t.Errorf("verbose %v: summary, want FAIL: 1/3 and ERROR: 2/3\n%s", verbose, &out)
		}
	}
}

func TestRunTestsErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no tests", map[string]string{"main.rego": sitePolicy}, "no tests found"},
		{"no rego", map[string]string{"data.json": "{}"}, "no .rego files"},
		{"parse error", map[string]string{"main.rego": sitePolicy, "x_test.rego": "package x\n\ntest_a if }\n\ntest_b if true\n"}, "x_test.rego:3"},
		{"compile error", map[string]string{"x_test.rego": "package x\n\ntest_a if { y > 1 }\n"}, "x_test.rego:3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, _, err := RunTests(ctx, []string{policyDir(t, tt.files)}, TestOptions{Out: &out})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
