package policy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRunTestsCoverage(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"main.rego": `package interlock

decision := {"allow": true} if input.operation.access == "read"

decision := {"allow": false} if input.operation.access == "write"
`,
		"main_test.rego": `package interlock_test

import data.interlock

test_read if interlock.decision.allow with input as {"operation": {"access": "read"}}
`,
	})
	var out strings.Builder
	passed, failed, err := RunTests(context.Background(), []string{dir}, TestOptions{Out: &out, Coverage: true})
	if err != nil || passed != 1 || failed != 0 {
		t.Fatalf("RunTests: %d/%d, %v", passed, failed, err)
	}
	if !strings.Contains(out.String(), "main.rego  not covered: lines 5") || strings.Contains(out.String(), "main_test.rego") {
		t.Fatalf("coverage report does not name the untested write rule, or lists the test file:\n%s", out.String())
	}

	out.Reset()
	_, _, err = RunTests(context.Background(), []string{dir}, TestOptions{Out: &out, MinCoverage: 90})
	if !errors.Is(err, ErrCoverage) {
		t.Fatalf("min coverage 90%%: %v", err)
	}

	out.Reset()
	if _, _, err := RunTests(context.Background(), []string{dir}, TestOptions{Out: &out, Coverage: true, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Coverage float64        `json:"coverage"`
		Files    map[string]any `json:"files"`
	}
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil || doc.Coverage <= 0 || doc.Coverage >= 100 || len(doc.Files) != 1 {
		t.Fatalf("JSON coverage %+v, %v:\n%s", doc, err, out.String())
	}
}
