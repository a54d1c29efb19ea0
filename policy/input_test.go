package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/interlock-ics/interlock/gateway"
)

// asJSON decodes JSON with exact numbers, for comparing inputs.
func asJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return v
}

func valueJSON(t *testing.T, v ast.Value) any {
	t.Helper()
	x, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return asJSON(t, b)
}

func TestInputShape(t *testing.T) {
	opcua := &gateway.Session{
		ID:       "sess-2",
		Started:  time.Date(2026, 11, 26, 2, 0, 0, 0, time.FixedZone("CET", 3600)),
		Listener: "line1",
		Protocol: "opcua",
		Source:   gateway.Source{IP: netip.MustParseAddr("10.0.0.7"), Port: 50124},
		Principal: gateway.Principal{
			User: "alice", Auth: gateway.AuthUsername, Roles: []string{"engineer", "operator"},
			CertThumbprint: "ab12", ApplicationURI: "urn:ews",
		},
		SecurityPolicy: "Basic256Sha256",
		SecurityMode:   "SignAndEncrypt",
	}
	call := &gateway.Call{
		Time:      inWindow,
		Target:    gateway.Target{Name: "line1", Upstream: "opc.tcp://10.0.0.20:4840", UnitID: -1},
		Operation: gateway.Operation{Function: "call", Access: gateway.AccessExecute},
	}
	op := &call.Operation
	op.String("object_id", "ns=1;s=Obj")
	op.Strings("node_ids", []string{"a", "b"})
	op.Ints("empty", nil)
	op.Int(gateway.KeyCode, -5)
	op.Int("big", 9007199254740993)
	op.Bool("enabled", true)
	op.Any("arguments", []any{int64(1), "x", map[string]any{"k": true}, nil, 2.5})
	op.String(gateway.KeyFunction, "shadow") // the core's function wins

	modbus := &gateway.Session{ID: "sess-3", Listener: "plc1", Protocol: "modbus"}
	read := &gateway.Call{
		Time:      outOfWindow,
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 0},
		Operation: gateway.Operation{Function: "read_coils", Access: gateway.AccessRead},
	}

	tests := []struct {
		name string
		s    *gateway.Session
		c    *gateway.Call
		want string
	}{
		{"opcua with every field", opcua, call, `{
			"time": "2026-11-26T02:14:27.123456789Z",
			"gateway": {"id": "site-a-gw1", "listener": "line1"},
			"session": {"id": "sess-2", "started": "2026-11-26T01:00:00Z",
				"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"},
			"source": {"ip": "10.0.0.7", "port": 50124},
			"principal": {"user": "alice", "auth": "username", "roles": ["engineer", "operator"],
				"cert_thumbprint": "ab12", "application_uri": "urn:ews"},
			"target": {"name": "line1", "upstream": "opc.tcp://10.0.0.20:4840"},
			"protocol": "opcua",
			"operation": {"function": "call", "access": "execute", "object_id": "ns=1;s=Obj",
				"node_ids": ["a", "b"], "empty": [], "code": -5, "big": 9007199254740993, "enabled": true,
				"arguments": [1, "x", {"k": true}, null, 2.5]},
			"tickets": []
		}`},
		{"modbus with nothing optional", modbus, read, `{
			"time": "2026-11-26T07:00:00Z",
			"gateway": {"id": "site-a-gw1", "listener": "plc1"},
			"session": {"id": "sess-3"},
			"source": {},
			"principal": {"auth": "none", "roles": []},
			"target": {"name": "plc1", "upstream": "tcp://127.0.0.1:502", "unit_id": 0},
			"protocol": "modbus",
			"operation": {"function": "read_coils", "access": "read"},
			"tickets": []
		}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := valueJSON(t, Input("site-a-gw1", tt.s, tt.c))
			if want := asJSON(t, []byte(tt.want)); !reflect.DeepEqual(got, want) {
				gb, _ := json.MarshalIndent(got, "", "  ")
				t.Errorf("input:\n%s\nwant:\n%s", gb, tt.want)
			}
		})
	}
}

// echoPolicy hands the input back, so a test sees what the policy saw.
const echoPolicy = `package interlock

decision := {"allow": true, "reasons": [json.marshal(input)]}
`

func TestPolicySeesInput(t *testing.T) {
	e := newEngine(t, map[string]string{"echo.rego": echoPolicy})
	s := testSession()
	seen := func(c *gateway.Call) any {
		t.Helper()
		d, err := e.Decide(context.Background(), s, c)
		if err != nil {
			t.Fatal(err)
		}
		return asJSON(t, []byte(d.Reasons[0]))
	}
	check := func(c *gateway.Call) {
		t.Helper()
		if got, want := seen(c), valueJSON(t, Input("site-a-gw1", s, c)); !reflect.DeepEqual(got, want) {
			t.Errorf("policy saw %v\nwant %v", got, want)
		}
	}

	c := testCall(s, "write_multiple_registers", gateway.AccessWrite, inWindow)
	check(c)
	cache := s.Cache
	if _, ok := cache.(*sessionInput); !ok {
		t.Fatalf("s.Cache = %T, want the session input", cache)
	}
	check(testCall(s, "read_coils", gateway.AccessRead, outOfWindow))
	if s.Cache != cache {
		t.Error("session part rebuilt for an unchanged session")
	}

	// The engine filled in the user after the session opened.
	s.Principal.User, s.Principal.Auth = "alice", gateway.AuthUsername
	check(c)
	if s.Cache == cache {
		t.Error("session part not rebuilt after the principal changed")
	}
	// Roles changed in place are noticed too.
	cache = s.Cache
	s.Principal.Roles[0] = "operator"
	check(c)
	if s.Cache == cache {
		t.Error("session part not rebuilt after a role changed")
	}
	// A call to another unit of the same listener.
	other := testCall(s, "read_coils", gateway.AccessRead, inWindow)
	other.Target.UnitID = 7
	check(other)
	check(c)
}
