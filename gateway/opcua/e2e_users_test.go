package opcua_test

import (
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// User name logins against the users file at SecurityPolicy None (the
// password is encrypted with Basic256Sha256 all the same): an operator's
// Write is denied and the server keeps its value; an engineer's mixed Write
// gets a result per slot; Calls are decided per method with their
// arguments; a wrong password fails the session and leaves a record.
func TestNodeOPCUAUserNameDecisions(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Users: usersFile(t),
	}})
	certDir := t.TempDir()

	op := opcuatest.RunClient(t, opcuatest.Scenario{Endpoint: g.endpoint, User: opcuatest.Operator, Password: opcuatest.OperatorPassword, CertDir: certDir,
		Steps: []opcuatest.Step{
			{Read: []string{opcuatest.NodeSetpoint}},
			{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeSetpoint, Value: 99.0, DataType: "Double"}}},
			{Call: &opcuatest.Call{Object: opcuatest.NodePLC, Method: opcuatest.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 100}}}},
		}})
	if rd := step(t, op, 0, "read"); !rd.Results[0].Status.Good() || rd.Results[0].Value != 50.0 {
		t.Errorf("operator read: %+v", rd.Results)
	}
	if w := step(t, op, 1, "write"); w.Results[0].Status.StatusCode() != ua.StatusBadUserAccessDenied {
		t.Errorf("operator write: %+v, want BadUserAccessDenied", w.Results)
	}
	if got := srv.Value(opcuatest.NodeSetpoint); got != 50.0 {
		t.Errorf("server Setpoint after a denied write: %v, want 50", got)
	}
	if c := step(t, op, 2, "call"); c.Status == nil || c.Status.StatusCode() != ua.StatusBadUserAccessDenied {
		t.Errorf("operator call: %+v, want BadUserAccessDenied", c)
	}

	eng := opcuatest.RunClient(t, opcuatest.Scenario{Endpoint: g.endpoint, User: opcuatest.Engineer, Password: opcuatest.EngineerPassword, CertDir: certDir,
		Steps: []opcuatest.Step{
			{Write: []opcuatest.WriteValue{
				{Node: opcuatest.NodeSetpoint, Value: 61.5, DataType: "Double"},
				{Node: opcuatest.NodeCounter, Value: 5, DataType: "Int32"},
				{Node: opcuatest.NodeSetpoint, Value: 62.5, DataType: "Double"},
				{Node: opcuatest.NodeCounter, Value: 6, DataType: "Int32"},
				{Node: opcuatest.NodePressure, Value: 2.0, DataType: "Double"},
			}},
			{Call: &opcuatest.Call{Object: opcuatest.NodePLC, Method: opcuatest.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 300}}}},
			{Call: &opcuatest.Call{Object: opcuatest.NodePLC, Method: opcuatest.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 600}}}},
			{Read: []string{opcuatest.NodeSpeed, opcuatest.NodeSetpoint, opcuatest.NodeCounter}},
		}})
	if eng.Session.User != opcuatest.Engineer {
		t.Errorf("session user %q", eng.Session.User)
	}
	w := step(t, eng, 0, "write")
	want := []ua.StatusCode{ua.StatusOK, ua.StatusBadUserAccessDenied, ua.StatusOK, ua.StatusBadUserAccessDenied, 0}
	for i, v := range w.Results[:4] {
		if v.Status.StatusCode() != want[i] {
			t.Errorf("mixed write slot %d (%s): %v, want %v", i, v.Node, v.Status, want[i])
		}
	}
	// Pressure is allowed by the policy; the server refuses it (read-only)
	// or takes it: either way the server's own status is in the slot.
	if w.Results[4].Status.StatusCode() == ua.StatusBadUserAccessDenied {
		t.Errorf("Pressure slot got the gateway's denial: %v", w.Results[4].Status)
	}
	if c := step(t, eng, 1, "call"); !c.Status.Good() || len(c.Outputs) != 1 || c.Outputs[0].Value != true {
		t.Errorf("Start(300): %+v", c)
	}
	if c := step(t, eng, 2, "call"); c.Status == nil || c.Status.StatusCode() != ua.StatusBadUserAccessDenied {
		t.Errorf("Start(600): %+v, want BadUserAccessDenied", c)
	}
	rd := step(t, eng, 3, "read")
	if rd.Results[0].Value != 300.0 || rd.Results[1].Value != 62.5 || rd.Results[2].Value != 0.0 {
		t.Errorf("read after: %+v (want Speed 300, Setpoint 62.5, Counter 0)", rd.Results)
	}
	if srv.Value(opcuatest.NodeCounter) != 0.0 && srv.Value(opcuatest.NodeCounter) != 0 {
		t.Errorf("server Counter %v, want 0", srv.Value(opcuatest.NodeCounter))
	}

	wrong := opcuatest.RunClient(t, opcuatest.Scenario{Endpoint: g.endpoint, User: opcuatest.Engineer, Password: "not-the-password", CertDir: certDir,
		Steps: []opcuatest.Step{{Read: []string{opcuatest.NodeSetpoint}}}})
	if wrong.ExitCode != 3 || wrong.Session.OK {
		t.Fatalf("wrong password: exit %d session %+v", wrong.ExitCode, wrong.Session)
	}
	if st := wrong.Session.Status; st == nil ||
		(st.StatusCode() != ua.StatusBadUserAccessDenied && st.StatusCode() != ua.StatusBadIdentityTokenRejected) {
		t.Errorf("wrong password: %v (%s)", wrong.Session.Status, wrong.Session.Error)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.auth_failed")) > 0 })
	af := events(rs, "session.auth_failed")
	if len(af) == 0 || af[0].str("principal", "user") != opcuatest.Engineer || af[0].str("reason") != "auth_failed" {
		t.Errorf("auth_failed records: %v", af)
	}
	var denied, deniedCall int
	for _, r := range events(rs, "result") {
		if r.str("status") == "denied" {
			denied++
		}
	}
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "call" && r.str("decision", "allow") == "false" {
			deniedCall++
			if r.str("operation", "method_id") != opcuatest.NodeStart || r.str("operation", "browse_path") != "/Objects/PLC/Start" {
				t.Errorf("call record: %v", r)
			}
		}
	}
	// operator write + call, engineer 2 counter slots + Start(600)
	if denied != 5 || deniedCall != 2 {
		t.Errorf("denied results %d (want 5), denied call records %d (want 2)", denied, deniedCall)
	}
	for _, r := range events(rs, "session.open") {
		if r.str("principal", "auth") != "username" || r.str("principal", "roles") == "" {
			t.Errorf("session.open: %v", r)
		}
	}
}
