// Package opcua_test checks the OPC UA example: the policy's Rego tests
// pass, and the policy loaded as the gateway loads it (tests left out)
// decides the sample inputs in inputs/ with its shipped data.
package opcua_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/policy"
)

func TestRegoTests(t *testing.T) {
	var out bytes.Buffer
	passed, failed, err := policy.RunTests(context.Background(), []string{"policy"}, policy.TestOptions{Out: &out})
	if err != nil || failed > 0 || passed == 0 {
		t.Fatalf("policy test: %d passed, %d failed, %v\n%s", passed, failed, err, out.String())
	}
}

func TestSampleInputs(t *testing.T) {
	e, err := policy.New(policy.Options{Path: "policy", Gateway: "site-a-gw1", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file    string
		at      string
		allow   bool
		alert   bool
		reasons []string
	}{
		{"alice-writes-setpoint-saturday.json", "2026-11-28T06:30:00Z", true, false,
			[]string{"maintenance-window:pass:weekly tuning"}},
		{"alice-writes-setpoint-saturday.json", "2026-11-26T12:00:00Z", false, true,
			[]string{"maintenance-window:enforced:outside_maintenance_window:line1:write"}},
		{"bob-writes-setpoint.json", "2026-11-28T06:30:00Z", false, true,
			[]string{"maintenance-window:enforced:outside_maintenance_window:line1:write", "opcua-access:enforced:access_not_granted:bob:write"}},
		{"alice-starts-at-700.json", "2026-11-26T12:00:00Z", false, true,
			[]string{"opcua-method-arguments:enforced:argument_out_of_range:ns=1;s=Start:speed=700:limit=0..500"}},
		{"anonymous-reads-temperature.json", "2026-11-26T12:00:00Z", true, false, []string{}},
	} {
		b, err := os.ReadFile(filepath.Join("inputs", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := util.UnmarshalJSON(b, &v); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		in, err := ast.InterfaceToValue(v)
		if err != nil {
			t.Fatal(err)
		}
		at, _ := time.Parse(time.RFC3339, tc.at)
		d, err := e.Eval(context.Background(), in, at)
		if err != nil {
			t.Errorf("%s at %s: %v", tc.file, tc.at, err)
			continue
		}
		if d.Allow != tc.allow || d.Alert != tc.alert || !slices.Equal(d.Reasons, tc.reasons) {
			t.Errorf("%s at %s: allow=%v alert=%v reasons=%q, want allow=%v alert=%v reasons=%q",
				tc.file, tc.at, d.Allow, d.Alert, d.Reasons, tc.allow, tc.alert, tc.reasons)
		}
	}
}
