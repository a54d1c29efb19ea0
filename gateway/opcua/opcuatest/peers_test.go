package opcuatest

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

// The peers talk to each other directly: what the gateway's end-to-end
// tests compare against.

func step(t *testing.T, r *Result, i int, name string) StepResult {
	t.Helper()
	if !r.Connect.OK || !r.Session.OK {
		t.Fatalf("connect %+v session %+v\n%s", r.Connect, r.Session, r.Log)
	}
	if len(r.Steps) <= i {
		t.Fatalf("step %d missing: %d results\n%s", i, len(r.Steps), r.Log)
	}
	s := r.Steps[i]
	if s.Step != name || s.Error != "" {
		t.Fatalf("step %d: want %s, got %+v", i, name, s)
	}
	return s
}

func TestReadWriteCallBrowse(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	r := RunClient(t, Scenario{
		Endpoint: srv.Endpoint,
		Steps: []Step{
			{Read: []string{NodeTemperature, NodeSetpoint, NodePressure, NodeCounter, "ns=1;s=NoSuchNode"}},
			{Write: []WriteValue{
				{Node: NodeSetpoint, Value: 42.5, DataType: "Double"},
				{Node: NodeCounter, Value: 7, DataType: "Int32"},
			}},
			{Read: []string{NodeSetpoint, NodeCounter}},
			{Call: &Call{Object: NodePLC, Method: NodeStart, Args: []Variant{{DataType: "Int32", Value: 300}}}},
			{Call: &Call{Object: NodePLC, Method: NodeStart, Args: []Variant{{DataType: "Int32", Value: 1001}}}},
			{Read: []string{NodeSpeed}},
			{Browse: NodePLC},
		},
	})
	if r.ExitCode != 0 || !r.Close.OK {
		t.Fatalf("exit %d close %+v\n%s", r.ExitCode, r.Close, r.Log)
	}

	read := step(t, r, 0, "read")
	wantTypes := []string{"Double", "Double", "Double", "Int32"}
	for i, v := range read.Results[:4] {
		if !v.Status.Good() || v.DataType != wantTypes[i] {
			t.Errorf("read %s: %+v, want Good %s", v.Node, v, wantTypes[i])
		}
	}
	if read.Results[1].Value != 50.0 || read.Results[2].Value != 1.013 || read.Results[3].Value != 0.0 {
		t.Errorf("initial values: %+v", read.Results)
	}
	if got := read.Results[4].Status.StatusCode(); got != ua.StatusBadNodeIDUnknown {
		t.Errorf("unknown node: %v, want BadNodeIdUnknown", read.Results[4].Status)
	}

	write := step(t, r, 1, "write")
	for _, v := range write.Results {
		if !v.Status.Good() {
			t.Errorf("write %s: %v", v.Node, v.Status)
		}
	}
	back := step(t, r, 2, "read")
	if back.Results[0].Value != 42.5 || back.Results[1].Value != 7.0 {
		t.Errorf("read back: %+v", back.Results)
	}
	if got := srv.Value(NodeSetpoint); got != 42.5 {
		t.Errorf("server holds Setpoint %v, want 42.5", got)
	}

	ok := step(t, r, 3, "call")
	if !ok.Status.Good() || len(ok.Outputs) != 1 || ok.Outputs[0] != (Variant{DataType: "Boolean", Value: true}) {
		t.Errorf("Start(300): %+v", ok)
	}
	refused := step(t, r, 4, "call")
	if refused.Status == nil || refused.Status.StatusCode() != ua.StatusBadOutOfRange || len(refused.Outputs) != 0 {
		t.Errorf("Start(1001): %+v, want BadOutOfRange", refused)
	}
	if speed := step(t, r, 5, "read").Results[0]; speed.Value != 300.0 {
		t.Errorf("Speed after Start(300), Start(1001): %+v, want 300", speed)
	}

	browse := step(t, r, 6, "browse")
	var names []string
	for _, ref := range browse.References {
		if ref.NodeClass == "Variable" || ref.NodeClass == "Method" {
			names = append(names, ref.BrowseName+"="+ref.NodeID)
		}
	}
	want := []string{
		"Counter=" + NodeCounter, "Level=" + NodeLevel, "Pressure=" + NodePressure, "Recipe=" + NodeRecipe, "Setpoint=" + NodeSetpoint,
		"Speed=" + NodeSpeed, "Start=" + NodeStart, "Temperature=" + NodeTemperature, "Trend=" + NodeTrend, "Wait=" + NodeWait,
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("browse PLC: %v, want %v", names, want)
	}
}

// TestVendorStructure: the test server's Recipe holds the bytes of a
// structure no codec here knows, which the test client reads as sent and
// writes back as bytes; a value of another type is refused.
func TestVendorStructure(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	write := func(typeID, body string) Step {
		return Step{Write: []WriteValue{{Node: NodeRecipe, DataType: "ExtensionObject", Value: map[string]any{"typeId": typeID, "body": body}}}}
	}
	r := RunClient(t, Scenario{Endpoint: srv.Endpoint, Steps: []Step{
		{ReadRaw: []string{NodeRecipe}},
		write("ns=1;i=5001", b64("recipe 8")),
		{Write: []WriteValue{{Node: NodeRecipe, DataType: "Double", Value: 1.5}}},
		{ReadRaw: []string{NodeRecipe}},
	}})
	if r.ExitCode != 0 {
		t.Fatalf("exit %d\n%s", r.ExitCode, r.Log)
	}
	body := func(i int) any {
		v := step(t, r, i, "readRaw").Results[0]
		m, _ := v.Value.(map[string]any)
		if !v.Status.Good() || v.DataType != "ExtensionObject" || m["typeId"] != "ns=1;i=5001" {
			t.Fatalf("read %d: %+v", i, v)
		}
		return m["body"]
	}
	if got := body(0); got != b64("recipe 7: 120 rpm, 35 s") {
		t.Errorf("initial body %v", got)
	}
	if got := step(t, r, 1, "write").Results[0].Status; !got.Good() {
		t.Errorf("write of the structure: %v", got)
	}
	if got := step(t, r, 2, "write").Results[0].Status; got.Good() {
		t.Errorf("write of a Double: %v, want refused", got)
	}
	if got := body(3); got != b64("recipe 8") {
		t.Errorf("body after the write %v", got)
	}
	if m, _ := srv.Value(NodeRecipe).(map[string]any); m["body"] != b64("recipe 8") {
		t.Errorf("the server holds %v", srv.Value(NodeRecipe))
	}
}

func TestSubscribeAndHangingPublish(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	r := RunClient(t, Scenario{
		Endpoint: srv.Endpoint,
		Steps:    []Step{{Subscribe: &Subscribe{Node: NodeTemperature, Samples: 3, Interval: 100 * time.Millisecond}}},
	})
	sub := step(t, r, 0, "subscribe")
	if !sub.Status.Good() || len(sub.Samples) != 3 {
		t.Fatalf("subscribe: %+v", sub)
	}
	seen := map[any]bool{}
	for _, s := range sub.Samples {
		if !s.Status.Good() || s.DataType != "Double" {
			t.Errorf("sample %+v", s)
		}
		seen[s.Value] = true
	}
	if len(seen) < 2 {
		t.Errorf("Temperature did not change across samples: %+v", sub.Samples)
	}

	// With Publish held back for a minute no notification arrives within
	// the step's 2 s, while a Read of the same session is answered.
	srv.HangPublish(time.Minute)
	r = RunClient(t, Scenario{
		Endpoint: srv.Endpoint,
		Steps: []Step{
			{Subscribe: &Subscribe{Node: NodeTemperature, Samples: 1, Timeout: 2 * time.Second}},
			{Read: []string{NodePressure}},
		},
	})
	if hung := step(t, r, 0, "subscribe"); len(hung.Samples) != 0 {
		t.Errorf("notifications while Publish hangs: %+v", hung.Samples)
	}
	if rd := step(t, r, 1, "read"); !rd.Results[0].Status.Good() || rd.Results[0].Value != 1.013 {
		t.Errorf("read while Publish hangs: %+v", rd.Results)
	}
	srv.HangPublish(0)
	r = RunClient(t, Scenario{
		Endpoint: srv.Endpoint,
		Steps:    []Step{{Subscribe: &Subscribe{Node: NodeTemperature, Samples: 1}}},
	})
	if sub := step(t, r, 0, "subscribe"); len(sub.Samples) != 1 {
		t.Errorf("after HangPublish(0): %+v", sub)
	}
}

func TestUserNameLogin(t *testing.T) {
	srv := StartServer(t, ServerOptions{DenyAnonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}})
	certs := t.TempDir() // one client certificate for the three runs
	ok := RunClient(t, Scenario{Endpoint: srv.Endpoint, User: Engineer, Password: EngineerPassword, CertDir: certs,
		Steps: []Step{{Read: []string{NodeSetpoint}}}})
	if rd := step(t, ok, 0, "read"); !rd.Results[0].Status.Good() {
		t.Errorf("alice reads: %+v", rd)
	}
	if ok.Session.User != Engineer {
		t.Errorf("session user %q", ok.Session.User)
	}

	wrong := RunClient(t, Scenario{Endpoint: srv.Endpoint, User: Engineer, Password: "not-the-password", CertDir: certs,
		Steps: []Step{{Read: []string{NodeSetpoint}}}})
	if wrong.ExitCode != 3 || wrong.Session.OK || len(wrong.Steps) != 0 {
		t.Fatalf("wrong password: exit %d session %+v steps %+v", wrong.ExitCode, wrong.Session, wrong.Steps)
	}
	if st := wrong.Session.Status; st == nil ||
		(st.StatusCode() != ua.StatusBadUserAccessDenied && st.StatusCode() != ua.StatusBadIdentityTokenRejected) {
		t.Errorf("wrong password: status %v (%s), want BadUserAccessDenied or BadIdentityTokenRejected",
			wrong.Session.Status, wrong.Session.Error)
	}

	anon := RunClient(t, Scenario{Endpoint: srv.Endpoint, CertDir: certs, Steps: []Step{{Read: []string{NodeSetpoint}}}})
	if anon.ExitCode != 3 || anon.Session.OK {
		t.Errorf("anonymous with anonymous denied: exit %d session %+v", anon.ExitCode, anon.Session)
	}
}

func TestSignAndEncryptBasic256Sha256(t *testing.T) {
	srv := StartServer(t, ServerOptions{SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"}})
	certs := t.TempDir()
	sc := Scenario{
		Endpoint:       srv.Endpoint,
		SecurityPolicy: "Basic256Sha256",
		SecurityMode:   "SignAndEncrypt",
		User:           Operator,
		Password:       OperatorPassword,
		CertDir:        certs,
		ApplicationURI: "urn:interlock:test:engineering-client",
		Steps: []Step{
			{Read: []string{NodePressure}},
			{Write: []WriteValue{{Node: NodeCounter, Value: 11, DataType: "Int32"}}},
		},
	}

	// The server does not know the client's certificate yet.
	der := CreateClientCertificate(t, sc)
	untrusted := RunClient(t, sc)
	if untrusted.Connect.OK && untrusted.Session.OK {
		t.Fatalf("an untrusted client certificate got a session: %+v", untrusted)
	}
	if got, err := ClientCertificate(certs); err != nil || !bytes.Equal(got, der) {
		t.Fatalf("the client made another certificate (%v)", err)
	}
	if cert, err := x509.ParseCertificate(der); err != nil || len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:interlock:test:engineering-client" {
		t.Errorf("client certificate URIs: %v (%v)", cert, err)
	}
	srv.Trust(der)
	r := RunClient(t, sc)
	if rd := step(t, r, 0, "read"); !rd.Results[0].Status.Good() || rd.Results[0].Value != 1.013 {
		t.Errorf("read: %+v", rd.Results)
	}
	if w := step(t, r, 1, "write"); !w.Results[0].Status.Good() {
		t.Errorf("write: %+v", w.Results)
	}
	if got := srv.Value(NodeCounter); got != 11.0 {
		t.Errorf("server holds Counter %v, want 11", got)
	}

	// A channel without security is not offered.
	none := sc
	none.SecurityPolicy, none.SecurityMode = "None", "None"
	if r := RunClient(t, none); r.Connect.OK && r.Session.OK {
		t.Errorf("SecurityPolicy None opened a session on a SignAndEncrypt-only server")
	}
}

func TestRestartKeepsEndpoint(t *testing.T) {
	srv := StartServer(t, ServerOptions{})
	before := srv.Endpoint
	srv.Stop()
	down := RunClient(t, Scenario{Endpoint: before, Steps: []Step{{Read: []string{NodePressure}}}})
	if down.ExitCode != 2 || down.Connect.OK {
		t.Errorf("stopped server: exit %d connect %+v", down.ExitCode, down.Connect)
	}
	srv.Restart()
	if srv.Endpoint != before {
		t.Errorf("endpoint %s after restart, was %s", srv.Endpoint, before)
	}
	r := RunClient(t, Scenario{Endpoint: srv.Endpoint, Steps: []Step{{Read: []string{NodePressure}}}})
	if rd := step(t, r, 0, "read"); !rd.Results[0].Status.Good() {
		t.Errorf("read after restart: %+v", rd)
	}
}

// A short secure channel token lifetime: the client renews the channel
// several times while it reads, and no read fails.
func TestShortTokenLifetime(t *testing.T) {
	srv := StartServer(t, ServerOptions{
		SecurityPolicies:          []string{"Basic256Sha256"},
		SecurityModes:             []string{"SignAndEncrypt"},
		AcceptUnknownCertificates: true,
	})
	r := RunClient(t, Scenario{
		Endpoint:       srv.Endpoint,
		SecurityPolicy: "Basic256Sha256",
		SecurityMode:   "SignAndEncrypt",
		TokenLifetime:  2 * time.Second,
		Steps:          []Step{{ReadLoop: &ReadLoop{Node: NodeTemperature, Seconds: 8}}},
	})
	loop := step(t, r, 0, "readLoop")
	if loop.Reads == 0 || loop.Errors != 0 {
		t.Errorf("readLoop: %d reads, %d errors (first: %s)", loop.Reads, loop.Errors, loop.FirstError)
	}
	t.Logf("%d reads, %d token renewals", loop.Reads, r.Close.TokenRenewals)
	if loop.ReadsAfterLastError != loop.Reads {
		t.Errorf("readsAfterLastError %d, reads %d", loop.ReadsAfterLastError, loop.Reads)
	}
	if r.Close.TokenRenewals < 2 {
		t.Errorf("%d token renewals in 8 s with a 2 s lifetime, want at least 2", r.Close.TokenRenewals)
	}
}
