package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestCheckPassesTheQuickstart(t *testing.T) {
	rep, err := Check(context.Background(), "../examples/quickstart/policy", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("quickstart policy fails the check: %+v", rep)
	}
	var allowed, denied int
	for _, s := range rep.Samples {
		if s.Decision.Allow {
			allowed++
		} else {
			denied++
		}
	}
	if len(rep.Samples) != 2*len(sampleOperations()) || allowed == 0 || denied == 0 {
		t.Fatalf("%d samples, %d allowed, %d denied", len(rep.Samples), allowed, denied)
	}
}

func TestCheckFindsNetworkBuiltinsOnTheDecisionPath(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"main.rego": `package interlock

decision := {"allow": approved}

approved if owner_ok(input.source.ip)

owner_ok(ip) if {
	resp := http.send({"method": "GET", "url": concat("", ["http://cmdb.local/", ip])})
	resp.status_code == 200
}
`,
		// Not reachable from the decision: allowed.
		"report.rego": `package reports

nightly := net.lookup_ip_addr("cmdb.local")
`,
	})
	rep, err := Check(context.Background(), dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Network) != 1 || !strings.Contains(rep.Network[0], "main.rego:8: http.send") {
		t.Fatalf("network calls %v (ok %v); want the one http.send in main.rego", rep.Network, rep.OK())
	}
}

// A builtin put in a function's place with "with" is called as surely as a
// builtin called by name; a builtin replaced by a mock is not.
func TestCheckFindsNetworkBuiltinsSwappedInWithWith(t *testing.T) {
	dir := policyDir(t, map[string]string{
		"main.rego": `package interlock

import data.fns

decision := {"allow": allowed}

allowed if {
	resp := fake({"method": "GET", "url": "http://cmdb.local/"}) with fake as http.send
	resp.status_code == 200
}

allowed if fns.check(input.source.ip) with fns.lookup as net.lookup_ip_addr

allowed if mocked with http.send as stub

mocked if http.send({"method": "GET", "url": "http://cmdb.local/"}).status_code == 200

fake(req) := {"status_code": 500}

stub(req) := {"status_code": 200}
`,
		"fns.rego": `package fns

lookup(name) := ["10.0.0.1"]

check(ip) if ip in lookup("cmdb.local")
`,
	})
	rep, err := Check(context.Background(), dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"main.rego:12: net.lookup_ip_addr", "main.rego:16: http.send", "main.rego:8: http.send"} // sorted as text
	if rep.OK() || len(rep.Network) != len(want) {
		t.Fatalf("network calls %v (ok %v); want %v", rep.Network, rep.OK(), want)
	}
	for i, w := range want {
		if !strings.Contains(rep.Network[i], w) {
			t.Errorf("network call %d is %q, want %q", i, rep.Network[i], w)
		}
	}
}

func TestCheckReportsSamplesThatFail(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": `package interlock

decision := {"allow": true} if input.operation.access == "read"

decision := {"allow": "yes"} if input.operation.access == "write"
`})
	rep, err := Check(context.Background(), dir, map[string]ast.Value{"empty input": ast.NewObject()}, 0)
	if err != nil {
		t.Fatal(err)
	}
	fails := map[string]string{}
	for _, s := range rep.Samples {
		if s.Err != nil {
			fails[s.Name] = Code(s.Err)
		}
	}
	if rep.OK() || fails["write_multiple_registers from known engineer"] != CodeBadDecision ||
		fails["diagnostics from unknown source"] != CodeUndefined || fails["empty input"] != CodeUndefined {
		t.Fatalf("failures %v", fails)
	}
	if _, ok := fails["read_holding_registers from known engineer"]; ok {
		t.Fatal("a read failed")
	}
}
