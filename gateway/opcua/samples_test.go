package opcua

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/interlock-ics/interlock/gateway"
)

func TestSampleSessions(t *testing.T) {
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := fmt.Sprintf("- {name: bob, password_hash: %q, roles: [operator]}\n- {name: alice, password_hash: %q, roles: [engineer]}\n", h, h)
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := func(o Options) gateway.EngineSpec {
		return gateway.EngineSpec{Listener: "line1", BaseDir: dir, Target: gateway.Target{Name: "line1", Upstream: "opc.tcp://127.0.0.1:4840", UnitID: -1},
			Options: func(into any) error { *into.(*Options) = o; return nil }}
	}
	ss, err := SampleSessions(spec(Options{PKI: "pki", Users: "users.yaml", Anonymous: true,
		SecurityPolicies: []string{"None", "Basic256Sha256"}}), time.Now(), []string{"carol"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range ss {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"OPC UA anonymous to line1", "OPC UA unknown user to line1", "OPC UA user alice to line1", "OPC UA user bob to line1"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("sessions %q, want %q", names, want)
	}
	a := ss["OPC UA user alice to line1"]
	if a.Protocol != "opcua" || a.Principal.Auth != gateway.AuthUsername || !reflect.DeepEqual(a.Principal.Roles, []string{"engineer"}) ||
		a.SecurityPolicy != "Basic256Sha256" || a.SecurityMode != "SignAndEncrypt" || a.Target.Name != "line1" {
		t.Errorf("alice's session: %+v", a)
	}
	if p := ss["OPC UA anonymous to line1"].Principal; p.Auth != gateway.AuthAnonymous || p.User != "" {
		t.Errorf("anonymous principal: %+v", p)
	}
	// passthrough, no anonymous, None only: the unknown user alone
	ss, err = SampleSessions(spec(Options{PKI: "pki", Users: UsersPassthrough, SecurityPolicies: []string{"None"}}), time.Now(), nil)
	if err != nil || len(ss) != 1 || ss["OPC UA unknown user to line1"] == nil || ss["OPC UA unknown user to line1"].SecurityMode != "None" {
		t.Errorf("passthrough sessions: %v %v", ss, err)
	}
	// passthrough with user names known elsewhere (inventory, tickets): each
	// once, without roles, as the gateway opens their sessions
	ss, err = SampleSessions(spec(Options{PKI: "pki", Users: UsersPassthrough, SecurityPolicies: []string{"None"}}), time.Now(),
		[]string{"bob", "alice", "", "bob"})
	if err != nil || len(ss) != 3 {
		t.Fatalf("passthrough sessions with known users: %v %v", ss, err)
	}
	for _, u := range []string{"alice", "bob"} {
		s := ss["OPC UA user "+u+" to line1"]
		if s == nil || s.Principal.User != u || s.Principal.Auth != gateway.AuthUsername || len(s.Principal.Roles) != 0 {
			t.Errorf("passthrough session of %s: %+v", u, s)
		}
	}
	if _, err := SampleSessions(spec(Options{PKI: "pki", Users: "missing.yaml"}), time.Now(), nil); err == nil {
		t.Error("a missing users file gave no error")
	}
}

func TestSampleOperations(t *testing.T) {
	byFn := map[string]*gateway.Operation{}
	ops := SampleOperations()
	for i := range ops {
		byFn[ops[i].Function] = &ops[i]
	}
	field := func(fn, key string) any {
		f, ok := byFn[fn].Field(key)
		if !ok {
			return nil
		}
		switch f.Kind {
		case gateway.KindString:
			return f.Str
		case gateway.KindStrings:
			return f.Strs
		default:
			return f.Any
		}
	}
	for _, tc := range []struct {
		fn, key string
		want    any
	}{
		{"read", "node_id", "ns=1;s=Setpoint"},
		{"read", "attribute", "Value"},
		{"write", "browse_path", "/Objects/PLC/Setpoint"},
		{"write", "data_type", "Double"},
		{"write", "value", 42.5},
		{"call", "object_id", "ns=1;s=PLC"},
		{"call", "method_id", "ns=1;s=Start"},
		{"call", "argument_types", []string{"Int32"}},
		{"browse", "node_id", "i=85"},
	} {
		if got := field(tc.fn, tc.key); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %s = %#v, want %#v", tc.fn, tc.key, got, tc.want)
		}
	}
	if args, _ := byFn["call"].Field("arguments"); fmt.Sprint(args.Any) != "[100]" {
		t.Errorf("call arguments %#v, want [100]", args.Any)
	}
	if byFn["write"].Access != gateway.AccessWrite || byFn["call"].Access != gateway.AccessExecute || byFn["browse"].Access != gateway.AccessBrowse {
		t.Errorf("access kinds: %+v", byFn)
	}
}
