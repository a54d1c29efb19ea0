package main

// The OPC UA listener through the real binary: `interlock certs init`
// makes the PKI, `interlock sim opcua` is the server, `interlock run` the
// gateway with the example policy of examples/opcua and a users file, and
// node-opcua (a stack nobody here wrote) the engineering client. What the
// engine does in depth is tested in gateway/opcua; this proves the wiring a
// user goes through: the configuration, relative paths, the PKI, the
// policy input of a real session, the audit records and their chain.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"golang.org/x/crypto/bcrypt"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// startSimOPCUA runs `interlock sim opcua` on a free port and waits for its
// "listening" line.
func startSimOPCUA(t *testing.T) string {
	t.Helper()
	port := freePort(t)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", port)
	p := startProc(t, "interlock sim opcua", filepath.Join(t.TempDir(), "sim.log"), nil,
		interlockBin, "sim", "opcua", "--listen", endpoint)
	t.Cleanup(func() { p.stop(t, 5*time.Second) })
	eventually(t, 60*time.Second, 50*time.Millisecond, "the OPC UA simulator listening", func() (bool, string) {
		if p.exited() {
			t.Fatalf("interlock sim opcua exited: %v\n%s", p.err, p.output())
		}
		return strings.Contains(p.output(), "opcua simulator listening on"), p.output()
	})
	return endpoint
}

// newOPCUAGateway writes a gateway directory: a PKI made by `interlock certs
// init`, a users file with bcrypt hashes of the test users, the policy of
// examples/opcua with a maintenance window open now, and a configuration
// with one OPC UA listener, line1, in front of upstream.
func newOPCUAGateway(t *testing.T, upstream string) *gw {
	t.Helper()
	dir := t.TempDir()
	g := &gw{
		dir:       dir,
		config:    filepath.Join(dir, "interlock.yaml"),
		policyDir: filepath.Join(dir, "policy"),
		auditPath: filepath.Join(dir, "audit", "audit.jsonl"),
		logPath:   filepath.Join(dir, "gateway.log"),
		listener:  "line1",
	}
	if r := interlock(t, "certs", "init", "--pki", filepath.Join(dir, "pki"),
		"--uri", "urn:interlock:e2e:line1", "--host", "localhost,127.0.0.1"); r.code != 0 {
		t.Fatalf("interlock certs init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	var users strings.Builder
	for _, u := range []struct{ name, pw, role string }{
		{opcuatest.Engineer, opcuatest.EngineerPassword, "engineer"},
		{opcuatest.Operator, opcuatest.OperatorPassword, "operator"},
	} {
		h, err := bcrypt.GenerateFromPassword([]byte(u.pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&users, "- name: %s\n  password_hash: %q\n  roles: [%s]\n", u.name, h, u.role)
	}
	writeFile(t, filepath.Join(dir, "users.yaml"), users.String())

	src := filepath.Join(repoRoot, "examples", "opcua", "policy")
	if err := os.MkdirAll(g.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(src, "interlock.rego"), filepath.Join(g.policyDir, "interlock.rego"))
	data, err := os.ReadFile(filepath.Join(src, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A one-off window for alice that is open now, in place of the
	// example's dated one.
	now := time.Now().UTC()
	open := fmt.Sprintf(`{"name": "e2e window", "start": %q, "end": %q, "targets": ["line1"], "users": ["alice"]}`,
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	const dated = `{"name": "CHG-0042 controller retune", "start": "2026-12-05T22:00:00Z", "end": "2026-12-06T04:00:00Z",
       "targets": ["line1"], "users": ["alice"]}`
	if !strings.Contains(string(data), dated) {
		t.Fatalf("examples/opcua/policy/data.json no longer has the dated window this test replaces:\n%s", data)
	}
	writeFile(t, filepath.Join(g.policyDir, "data.json"), strings.Replace(string(data), dated, open, 1))

	port := freePort(t)
	writeFile(t, g.config, fmt.Sprintf(`# written by the e2e tests
gateway:
  id: e2e-gw1
listeners:
  - name: line1
    protocol: opcua
    listen: opc.tcp://127.0.0.1:%d
    upstream: %s
    limits:
      request_timeout: 5s
    opcua:
      pki: ./pki
      security_policies: [None, Basic256Sha256]
      anonymous: true
      users: ./users.yaml
      upstream_identity: anonymous
      upstream_security_policy: None
policy:
  path: ./policy
  timeout: %s
audit:
  path: ./audit/audit.jsonl
`, port, upstream, e2ePolicyTimeout))
	return g
}

func TestE2EOPCUAThroughTheBinary(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	upstream := startSimOPCUA(t)
	g := newOPCUAGateway(t, upstream)
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("interlock check: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.start(t)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", g.port)
	const appURI = "urn:interlock:test:engineering-client" // known to the example policy, but on None no certificate proves it: writes alert

	// The operator reads, and may not write the setpoint.
	bob := opcuatest.RunClient(t, opcuatest.Scenario{
		Endpoint: endpoint, SecurityPolicy: "None", SecurityMode: "None",
		User: opcuatest.Operator, Password: opcuatest.OperatorPassword, ApplicationURI: appURI,
		Steps: []opcuatest.Step{
			{Read: []string{opcuasim.NodeSetpoint, opcuasim.NodeTemperature}},
			{Write: []opcuatest.WriteValue{{Node: opcuasim.NodeSetpoint, Value: 99.5, DataType: "Double"}}},
		},
	})
	if !bob.Session.OK || len(bob.Steps) != 2 {
		t.Fatalf("bob's session: %+v\n%s", bob, bob.Log)
	}
	before := bob.Steps[0].Results[0]
	for _, v := range bob.Steps[0].Results {
		if !v.Status.Good() {
			t.Errorf("bob reads %s: %s, want Good", v.Node, v.Status.Name)
		}
	}
	if st := bob.Steps[1].Results[0].Status; st.Name != "BadUserAccessDenied" {
		t.Errorf("bob writes the setpoint: %s, want BadUserAccessDenied", st.Name)
	}

	// The engineer writes the setpoint inside her window, starts the line
	// within the argument limit and is refused above it.
	alice := opcuatest.RunClient(t, opcuatest.Scenario{
		Endpoint: endpoint, SecurityPolicy: "None", SecurityMode: "None",
		User: opcuatest.Engineer, Password: opcuatest.EngineerPassword, ApplicationURI: appURI,
		Steps: []opcuatest.Step{
			{Read: []string{opcuasim.NodeSetpoint}},
			{Write: []opcuatest.WriteValue{{Node: opcuasim.NodeSetpoint, Value: 42.25, DataType: "Double"}}},
			{Read: []string{opcuasim.NodeSetpoint}},
			{Call: &opcuatest.Call{Object: opcuasim.NodePLC, Method: opcuasim.NodeStart,
				Args: []opcuatest.Variant{{DataType: "Int32", Value: 300}}}},
			{Call: &opcuatest.Call{Object: opcuasim.NodePLC, Method: opcuasim.NodeStart,
				Args: []opcuatest.Variant{{DataType: "Int32", Value: 700}}}},
			{Read: []string{opcuasim.NodeSpeed}},
		},
	})
	if !alice.Session.OK || len(alice.Steps) != 6 {
		t.Fatalf("alice's session: %+v\n%s", alice, alice.Log)
	}
	if v := alice.Steps[0].Results[0]; fmt.Sprint(v.Value) != fmt.Sprint(before.Value) {
		t.Errorf("the setpoint changed after bob's denied write: %v, was %v", v.Value, before.Value)
	}
	if st := alice.Steps[1].Results[0].Status; !st.Good() {
		t.Errorf("alice writes the setpoint in her window: %s, want Good", st.Name)
	}
	if v := alice.Steps[2].Results[0]; fmt.Sprint(v.Value) != "42.25" {
		t.Errorf("the setpoint after alice's write: %v, want 42.25", v.Value)
	}
	if st := alice.Steps[3].Status; st == nil || !st.Good() {
		t.Errorf("alice calls Start(300): %+v, want Good", alice.Steps[3])
	}
	if st := alice.Steps[4].Status; st == nil || st.Name != "BadUserAccessDenied" {
		t.Errorf("alice calls Start(700), over the policy's limit of 500: %+v, want BadUserAccessDenied", alice.Steps[4])
	}
	if v := alice.Steps[5].Results[0]; fmt.Sprint(v.Value) != "300" {
		t.Errorf("the speed after Start(300) and a denied Start(700): %v, want 300", v.Value)
	}

	// A wrong password is refused and recorded.
	mallory := opcuatest.RunClient(t, opcuatest.Scenario{
		Endpoint: endpoint, SecurityPolicy: "None", SecurityMode: "None",
		User: opcuatest.Engineer, Password: "guess", ApplicationURI: appURI,
		Steps: []opcuatest.Step{{Read: []string{opcuasim.NodeSetpoint}}},
	})
	if mallory.Session.OK {
		t.Errorf("a wrong password opened a session: %+v", mallory)
	}

	recs := waitAudit(t, g.auditPath, 10*time.Second, "the wrong password recorded", func(recs []record) bool {
		return len(eventsOf(recs, "session.auth_failed")) > 0
	})
	opens := eventsOf(recs, "session.open")
	users := map[string]bool{}
	for _, r := range opens {
		users[r.str("principal.user")] = true
		if r.str("protocol") != "opcua" || r.str("target.name") != "line1" {
			t.Errorf("session.open record without the OPC UA listener: %s", r)
		}
	}
	if !users["alice"] || !users["bob"] {
		t.Errorf("session.open records for %v, want alice and bob", users)
	}
	var deniedWrite, allowedWrite, deniedCall bool
	for _, r := range eventsOf(recs, "call") {
		fn, user, allow := r.str("operation.function"), r.str("principal.user"), r.get("decision.allow") == true
		switch {
		case fn == "write" && user == "bob" && !allow && r.str("operation.node_id") == opcuasim.NodeSetpoint:
			deniedWrite = true
			if res := resultOf(recs, r.str("call_id")); res.str("status") != "denied" {
				t.Errorf("bob's denied write has result %s", res)
			}
		case fn == "write" && user == "alice" && allow:
			allowedWrite = true
			if r.num("operation.value") != 42.25 || r.str("operation.data_type") != "Double" {
				t.Errorf("alice's write record lacks the value written: %s", r)
			}
			if res := resultOf(recs, r.str("call_id")); res.str("status") != "ok" {
				t.Errorf("alice's write has result %s", res)
			}
		case fn == "call" && user == "alice" && !allow:
			deniedCall = true
			if r.str("operation.method_id") != opcuasim.NodeStart {
				t.Errorf("the denied call record names method %q", r.str("operation.method_id"))
			}
		}
	}
	if !deniedWrite || !allowedWrite || !deniedCall {
		t.Errorf("call records: bob's denied write %v, alice's allowed write %v, alice's denied Start(700) %v",
			deniedWrite, allowedWrite, deniedCall)
	}

	g.stopGateway(t)
	if r := interlock(t, "audit", "verify", g.auditPath); r.code != 0 {
		t.Errorf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// examples/opcua/run.sh as a new user runs it: PKI, users, simulator and
// gateway on the fixed ports 4840 and 4841, an operator's write denied, an
// engineer's Start allowed at 300 and denied at 700, an audit log that
// verifies, a second run refused while it runs, every command it prints
// under "Try next" working as printed, and nothing left running after
// Ctrl-C. Not parallel: it builds bin/interlock like the Modbus quickstart,
// which runs in parallel after this.
func TestE2EQuickstartOPCUA(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	for _, port := range []int{4840, 4841} {
		if portAccepts(port) {
			t.Fatalf("port %d is in use (an OPC UA quickstart already running?): the quickstart needs it", port)
		}
	}
	script := filepath.Join(repoRoot, "examples", "opcua", "run.sh")
	p := startProc(t, "opcua run.sh", filepath.Join(t.TempDir(), "quickstart.log"), nil, "bash", script)
	eventually(t, 4*time.Minute, 100*time.Millisecond, "run.sh waits for Ctrl-C", func() (bool, string) {
		return p.exited() || strings.Contains(p.output(), "Ctrl-C stops"), p.output()
	})
	// The records of the demo itself: those before the "Try next" commands.
	var demoRecs int
	if !p.exited() {
		runDir := filepath.Join(repoRoot, "examples", "opcua", "run")
		secondDemoRun(t, script, p.pid(), runDir)
		demoRecs = len(readAudit(t, filepath.Join(runDir, "audit", "audit.jsonl")))
		checkOPCUATryNext(t, p.output())
		_ = syscall.Kill(-p.pid(), syscall.SIGINT) // a terminal's Ctrl-C goes to the whole group
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("run.sh did not end within a minute of Ctrl-C:\n%s", p.output())
	}
	out := p.output()
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("run.sh: exit %d, want 0 (after Ctrl-C too)\n%s", code, out)
	}
	for _, want := range []string{
		"read    ns=1;s=Setpoint = 50  Good",
		"write   ns=1;s=Setpoint := 55.5  BadUserAccessDenied",
		"call    ns=1;s=Start(300)  Good  outputs true\n  call    ns=1;s=Start(700)  BadUserAccessDenied\n",
		"read    ns=1;s=Speed = 300  Good",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run.sh does not show %q:\n%s", want, out)
		}
	}
	m := regexp.MustCompile(`(?m)^\s*audit log\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("run.sh does not name the audit log:\n%s", out)
	}
	verifyAudit(t, m[1])
	all := readAudit(t, m[1])
	if demoRecs == 0 || demoRecs > len(all) {
		t.Fatalf("the quickstart audit log has %d records, %d of them before the try-next commands", len(all), demoRecs)
	}
	recs := all[:demoRecs]
	var denied []string
	for _, r := range eventsOf(recs, "call") {
		if r.get("decision.allow") != true {
			denied = append(denied, r.str("principal.user")+" "+r.str("operation.function"))
		}
	}
	if strings.Join(denied, ",") != "bob write,alice call" {
		t.Errorf("denied calls in the quickstart log: %v, want bob's write and alice's call", denied)
	}
	for _, port := range []int{4840, 4841} {
		if portAccepts(port) {
			t.Errorf("port %d still accepts after run.sh exited", port)
		}
	}
}

// Bad input at the OPC UA listener of a running gateway: each connection
// gets an OPC UA ERR message and is closed, each leaves a request.rejected
// record, and a client reading all along is served throughout.
func TestE2EOPCUABadInput(t *testing.T) {
	upstream := startSimOPCUA(t)
	g := newOPCUAGateway(t, upstream)
	g.start(t)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", g.port)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := opcua.NewClient(endpoint, opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.AutoReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("gopcua client through the gateway: %v", err)
	}
	defer c.Close(context.Background())
	stop := make(chan struct{})
	readErrs := make(chan error, 1)
	var reads atomic.Int64
	go func() {
		defer close(readErrs)
		id := ua.MustParseNodeID(opcuasim.NodeSetpoint)
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: id, AttributeID: ua.AttributeIDValue}}})
			if err == nil && resp.Results[0].Status != ua.StatusOK {
				err = resp.Results[0].Status
			}
			if err != nil {
				readErrs <- err
				return
			}
			reads.Add(1)
		}
	}()
	waitReads := func(n int64, what string) {
		t.Helper()
		eventually(t, 30*time.Second, 10*time.Millisecond, what, func() (bool, string) {
			return reads.Load() >= n, fmt.Sprintf("%d reads", reads.Load())
		})
	}
	waitReads(20, "20 reads before the bad input")

	hello := func(size uint32) []byte {
		return []byte{'H', 'E', 'L', 'F', byte(size), byte(size >> 8), byte(size >> 16), byte(size >> 24)}
	}
	cases := []struct {
		name string
		send []byte
	}{
		{"an HTTP request", []byte("GET / HTTP/1.1\r\nHost: gw\r\n\r\n")},
		{"a Hello of 4 bytes", hello(4)},
		{"a Hello of 2 GiB", hello(1 << 31)},
		{"a message before the Hello", append([]byte("MSGF\x18\x00\x00\x00"), make([]byte, 16)...)},
	}
	for _, tc := range cases {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(tc.send); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		reply, _ := io.ReadAll(conn) // until the gateway closes
		conn.Close()
		if len(reply) < 12 || string(reply[:4]) != "ERRF" {
			t.Errorf("%s: the gateway answered %q, want an ERR message before closing", tc.name, reply)
			continue
		}
		code := ua.StatusCode(binary.LittleEndian.Uint32(reply[8:12]))
		if code == ua.StatusOK {
			t.Errorf("%s: ERR with status Good", tc.name)
		}
	}
	waitReads(reads.Load()+20, "20 more reads after the bad input")
	close(stop)
	if err := <-readErrs; err != nil {
		t.Errorf("a client reading during the bad input failed: %v", err)
	}
	t.Logf("%d reads served around %d bad connections", reads.Load(), len(cases))

	recs := waitAudit(t, g.auditPath, 10*time.Second, "a record of each bad connection", func(recs []record) bool {
		return len(eventsOf(recs, "request.rejected")) >= len(cases)
	})
	for _, r := range eventsOf(recs, "request.rejected") {
		if r.str("reason") == "" || r.str("protocol") != "opcua" {
			t.Errorf("request.rejected record without a reason or protocol: %s", r)
		}
	}
}

// TestE2ECheckOPCUASamples: check decides OPC UA sample calls (a session
// open, Read, Write, Call and Browse of each user of the users file, and
// of an anonymous and an unknown user) with the policy: a maintenance
// window whose tz is not a time zone fails the check for alice's write, as
// the gateway would deny it with policy_error. Nothing is dialed.
func TestE2ECheckOPCUASamples(t *testing.T) {
	g := newOPCUAGateway(t, fmt.Sprintf("opc.tcp://127.0.0.1:%d", freePort(t)))
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("check of the example: exit %d, want 0\n%s%s", r.code, r.stdout, r.stderr)
	}
	data := filepath.Join(g.policyDir, "data.json")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	const tz = `"tz": "Europe/Berlin"`
	if !strings.Contains(string(b), tz) {
		t.Fatalf("examples/opcua/policy/data.json no longer has the window tz this test breaks:\n%s", b)
	}
	writeFile(t, data, strings.Replace(string(b), tz, `"tz": "Europe/Brelin"`, 1))
	r := interlock(t, "check", "--config", g.config)
	if r.code != 1 || !strings.Contains(r.stderr, "policy.path: ") || !strings.Contains(r.stderr, "write from OPC UA user alice to line1") ||
		!strings.Contains(r.stderr, `window tz "Europe/Brelin" is not a time zone`) {
		t.Errorf("check of an OPC UA policy with a bad window tz: exit %d, want 1 naming alice's write and the tz\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// With users: passthrough the gateway has no list of users: the user
	// names of the source inventory are sampled instead.
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	const fileUsers = "users: ./users.yaml\n      upstream_identity: anonymous\n"
	if !strings.Contains(string(cfg), fileUsers) {
		t.Fatalf("the test config no longer has %q:\n%s", fileUsers, cfg)
	}
	writeFile(t, g.config, strings.Replace(string(cfg), fileUsers, "users: passthrough\n", 1)+
		"sources:\n  - address: 10.0.5.7\n    name: ews-alice\n    user: alice\n")
	r = interlock(t, "check", "--config", g.config)
	if r.code != 1 || !strings.Contains(r.stderr, "write from OPC UA user alice to line1") ||
		!strings.Contains(r.stderr, `window tz "Europe/Brelin" is not a time zone`) {
		t.Errorf("check with users: passthrough and alice in the inventory: exit %d, want 1 naming alice's OPC UA write and the tz\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// A node-opcua client reading at Basic256Sha256 SignAndEncrypt through the
// binary is cut off when an operator takes its certificate out of the
// trust list with `interlock certs reject`: the running gateway sees the
// change, records pki.load with the session it ended, the session's
// session.close says why, and the client's reads fail from then on.
func TestE2EOPCUACertificateRejectedWhileConnected(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	upstream := startSimOPCUA(t)
	g := newOPCUAGateway(t, upstream)
	g.start(t)
	pki := filepath.Join(g.dir, "pki")
	certDir := t.TempDir()
	sc := opcuatest.Scenario{Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", g.port),
		SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt", CertDir: certDir,
		Steps: []opcuatest.Step{{Read: []string{opcuasim.NodeTemperature}}}}
	if r := opcuatest.RunClient(t, sc); r.Session.OK {
		t.Fatalf("an unknown client certificate opened a session: %+v", r)
	}
	cert, err := opcuatest.ClientCertificate(certDir)
	if err != nil {
		t.Fatal(err)
	}
	thumb := certs.Thumbprint(cert)
	if r := interlock(t, "certs", "trust", "--pki", pki, thumb); r.code != 0 {
		t.Fatalf("certs trust: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	sc.Steps = []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuasim.NodeTemperature, Seconds: 10}}}
	client := opcuatest.StartClient(t, sc)
	waitAudit(t, g.auditPath, 15*time.Second, "the client's session.open", func(rs []record) bool {
		for _, o := range eventsOf(rs, "session.open") {
			if o.str("principal.cert_thumbprint") == thumb && o.get("success") == true {
				return true
			}
		}
		return false
	})
	if r := interlock(t, "certs", "reject", "--pki", pki, thumb); r.code != 0 {
		t.Fatalf("certs reject: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	recs := waitAudit(t, g.auditPath, 15*time.Second, "a pki.load that ended the session", func(rs []record) bool {
		for _, l := range eventsOf(rs, "pki.load") {
			if l.num("sessions_ended") == 1 {
				return true
			}
		}
		return false
	})
	var load record
	for _, l := range eventsOf(recs, "pki.load") {
		load = l
	}
	if load.str("listener") != "line1" || load.num("pki.trusted_certs") != 0 || len(load.strs("paths")) != 4 || load.get("trust_changed") != true {
		t.Errorf("pki.load: %s\nwant listener line1, no certificate trusted any more, the four trust folders, trust_changed true", load)
	}
	var ended []record
	for _, c := range eventsOf(recs, "session.close") {
		if c.str("principal.cert_thumbprint") == thumb {
			ended = append(ended, c)
		}
	}
	if len(ended) != 1 || !strings.Contains(ended[0].str("error"), "the client application certificate no longer passes") ||
		!strings.Contains(ended[0].str("error"), "Bad_CertificateUntrusted") {
		t.Errorf("the client's session.close records: %v, want one saying its certificate is no longer trusted", ended)
	}
	res, err := client.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 1 {
		t.Fatalf("client: %+v\n%s", res, res.Log)
	}
	if loop := res.Steps[0]; loop.Reads == 0 || loop.Errors == 0 || loop.ReadsAfterLastError != 0 {
		t.Errorf("read loop: %d reads, %d errors, %d reads after the last error (first %q); want reads, then only errors",
			loop.Reads, loop.Errors, loop.ReadsAfterLastError, loop.FirstError)
	}
}
