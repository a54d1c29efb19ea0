package opcua_test

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// qualityPolicy lets a write through only with no quality of its own or a
// Good one: a client may not make an HMI show a value as Uncertain or Bad.
const qualityPolicy = `package interlock

default allow := false

allow if input.operation.access in {"session", "read", "browse"}

allow if {
	input.operation.access == "write"
	object.get(input.operation, "value_status", "Good") == "Good"
}

decision := {"allow": allow, "reasons": reasons}

reasons := [] if allow
reasons := ["not_allowed"] if not allow
`

// A gopcua client writes a value with a quality and a source time of its
// own: the policy sees both (value_status, source_timestamp) and refuses
// it, the audit record keeps them, and a plain write goes through.
func TestWriteValueQualityDecided(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: qualityPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := srv.Value(opcuatest.NodeSetpoint)
	uncertain := ua.StatusCode(0x40000000)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	resp, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp,
			Value: ua.MustVariant(61.0), Status: uncertain, SourceTimestamp: at},
	}}})
	if err != nil || len(resp.Results) != 1 || resp.Results[0] != ua.StatusBadUserAccessDenied {
		t.Fatalf("a write with quality Uncertain: %v %+v, want Bad_UserAccessDenied", err, resp)
	}
	if after := srv.Value(opcuatest.NodeSetpoint); after != before {
		t.Errorf("the Setpoint changed by a denied write: %v -> %v", before, after)
	}
	if sc := writeValue(ctx, t, c, opcuatest.NodeSetpoint, 62.0); sc != ua.StatusOK {
		t.Fatalf("a plain write: %v", sc)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 2 })
	var writes []record
	for _, rec := range events(rs, "call") {
		if rec.str("operation", "function") == "write" {
			writes = append(writes, rec)
		}
	}
	if len(writes) != 2 {
		t.Fatalf("%d write call records, want 2", len(writes))
	}
	if w := writes[0]; w.str("operation", "value_status") != certs.StatusName(uncertain) ||
		w.str("operation", "source_timestamp") != "2026-01-02T03:04:05Z" || w.str("decision", "allow") != "false" {
		t.Errorf("the call record of the write with a quality: %v", w)
	}
	if w := writes[1]; w.str("operation", "value_status") != "" || w.str("operation", "source_timestamp") != "" || w.str("decision", "allow") != "true" {
		t.Errorf("the call record of the plain write: %v", w)
	}
}
