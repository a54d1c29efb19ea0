package opcua_test

import (
	"encoding/base64"
	"testing"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// structurePolicy allows writes of the Recipe only as the vendor's
// structure (its encoding id), and never the one recipe the plant forbids
// (its bytes).
var structurePolicy = `package interlock

default allow := false

allow if input.operation.access in {"session", "read", "browse"}

allow if {
	input.operation.access == "write"
	input.operation.value.type_id == "ns=1;i=5001"
	input.operation.value.body != "` + forbiddenRecipeB64 + `"
}

decision := {"allow": allow, "record_old_value": input.operation.access == "write", "reasons": reasons}

reasons := [] if allow
reasons := ["not_allowed"] if not allow
`

var forbiddenRecipeB64 = base64.StdEncoding.EncodeToString([]byte("recipe 0: 9000 rpm"))

// node-opcua client -> gateway -> node-opcua server: a structure of a type
// the gateway's codec does not know (a vendor's DataType) is read and
// written through the gateway byte for byte, the policy decides on its
// type id and bytes, and the audit record holds both, old and new.
func TestNodeOPCUAVendorStructure(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: structurePolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	recipe := func(typeID, body string) map[string]any { return map[string]any{"typeId": typeID, "body": body} }
	initial, next := b64("recipe 7: 120 rpm, 35 s"), b64("recipe 8: 90 rpm, 40 s")
	r := opcuatest.RunClient(t, opcuatest.Scenario{Endpoint: g.endpoint, Steps: []opcuatest.Step{
		{ReadRaw: []string{opcuatest.NodeRecipe}},
		{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeRecipe, DataType: "ExtensionObject", Value: recipe("ns=1;i=5001", next)}}},
		{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeRecipe, DataType: "ExtensionObject", Value: recipe("ns=1;i=5001", forbiddenRecipeB64)}}},
		{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeRecipe, DataType: "ExtensionObject", Value: recipe("ns=1;i=5002", next)}}},
		{ReadRaw: []string{opcuatest.NodeRecipe}},
	}})
	if !r.Connect.OK || !r.Session.OK || len(r.Steps) != 5 {
		t.Fatalf("connect %+v session %+v steps %d\n%s", r.Connect, r.Session, len(r.Steps), r.Log)
	}
	for i := range r.Steps {
		step(t, r, i, r.Steps[i].Step)
	}
	read := func(i int) string {
		v := r.Steps[i].Results[0]
		m, _ := v.Value.(map[string]any)
		if v.Status.Name != "Good" || v.DataType != "ExtensionObject" || m["typeId"] != "ns=1;i=5001" {
			t.Fatalf("step %d: read %+v\n%s", i, v, r.Log)
		}
		body, _ := m["body"].(string)
		return body
	}
	if got := read(0); got != initial {
		t.Errorf("read through the gateway: body %q, want %q", got, initial)
	}
	for i, want := range map[int]string{1: "Good", 2: "BadUserAccessDenied", 3: "BadUserAccessDenied"} {
		if got := r.Steps[i].Results[0].Status.Name; got != want {
			t.Errorf("write %d: %s, want %s", i, got, want)
		}
	}
	if got := read(4); got != next {
		t.Errorf("read after the writes: body %q, want %q", got, next)
	}
	if m, _ := srv.Value(opcuatest.NodeRecipe).(map[string]any); m["typeId"] != "ns=1;i=5001" || m["body"] != next {
		t.Errorf("the server holds %v, want the written bytes %q", srv.Value(opcuatest.NodeRecipe), next)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 5 })
	var calls []record
	for _, rec := range events(rs, "call") {
		if rec.str("operation", "function") == "write" {
			calls = append(calls, rec)
		}
	}
	if len(calls) != 3 {
		t.Fatalf("%d write call records, want 3: %v", len(calls), calls)
	}
	if c := calls[0]; c.str("operation", "data_type") != "ExtensionObject" ||
		c.str("operation", "value", "type_id") != "ns=1;i=5001" || c.str("operation", "value", "body") != next ||
		c.str("decision", "allow") != "true" {
		t.Errorf("allowed write's call record: %v", c)
	}
	if c := calls[1]; c.str("operation", "value", "body") != forbiddenRecipeB64 || c.str("decision", "allow") != "false" {
		t.Errorf("forbidden recipe's call record: %v", c)
	}
	if c := calls[2]; c.str("operation", "value", "type_id") != "ns=1;i=5002" || c.str("decision", "allow") != "false" {
		t.Errorf("other type's call record: %v", c)
	}
	var ok record
	for _, rec := range events(rs, "result") {
		if len(calls) > 0 && rec.str("call_id") == calls[0].str("call_id") {
			ok = rec
		}
	}
	if ok == nil || ok.str("status") != "ok" || ok.str("old_value", "type_id") != "ns=1;i=5001" || ok.str("old_value", "body") != initial {
		t.Errorf("allowed write's result record (old value): %v", ok)
	}
}
