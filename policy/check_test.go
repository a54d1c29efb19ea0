package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestCheckPassesTheQuickstart(t *testing.T) {
	rep, err := Check(context.Background(), "../examples/quickstart/policy", nil)
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
	rep, err := Check(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Network) != 1 || !strings.Contains(rep.Network[0], "main.rego:8: http.send") {
		t.Fatalf("network calls %v (ok %v); want the one http.send in main.rego", rep.Network, rep.OK())
	}
}

func TestCheckReportsSamplesThatFail(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": `package interlock

decision := {"allow": true} if input.operation.access == "read"

decision := {"allow": "yes"} if input.operation.access == "write"
`})
	rep, err := Check(context.Background(), dir, map[string]ast.Value{"empty input": ast.NewObject()})
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
