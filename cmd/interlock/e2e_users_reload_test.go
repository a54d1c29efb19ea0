package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"go.yaml.in/yaml/v3"

	gwopcua "github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// loginOPCUA opens a gopcua session as user on the None endpoint (the
// password encrypted under the token policy); the error is the connect's.
// A login checks a password hash and decides session.open, which under
// the race detector on a loaded machine has taken over 10 s: 30 s to answer.
func loginOPCUA(ctx context.Context, t *testing.T, endpoint, user, password string) (*opcua.Client, error) {
	t.Helper()
	eps, err := opcua.GetEndpoints(ctx, endpoint)
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == ua.SecurityPolicyURINone {
			ep = e
		}
	}
	if ep == nil {
		t.Fatalf("no None endpoint among %d", len(eps))
	}
	c, err := opcua.NewClient(endpoint, opcua.AutoReconnect(false), opcua.RequestTimeout(30*time.Second),
		opcua.AuthUsername(user, password), opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, nil
}

func readSetpoint(ctx context.Context, c *opcua.Client) error {
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.MustParseNodeID(opcuasim.NodeSetpoint), AttributeID: ua.AttributeIDValue}}})
	if err != nil {
		return err
	}
	if st := resp.Results[0].Status; st != ua.StatusOK {
		return st
	}
	return nil
}

// A running gateway takes changes of its OPC UA users file: a user added
// with `interlock users add` logs in without a restart, a file that does
// not load keeps the users in force and is audited once however often it is
// read, and a user removed from the file cannot log in again while the
// session it already has stays open.
func TestE2EOPCUAUsersFileReload(t *testing.T) {
	upstream := startSimOPCUA(t)
	g := newOPCUAGateway(t, upstream)
	usersFile := filepath.Join(g.dir, "users.yaml")
	// The example policy opens sessions only for the users of its data
	// (unknown_user otherwise): the edit docs/opcua.md gives for dan.
	dataPath := filepath.Join(g.policyDir, "data.json")
	data, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	const bob = `"bob": {"roles": ["operator"]}`
	if !strings.Contains(string(data), bob) {
		t.Fatalf("%s no longer lists bob as docs/opcua.md says:\n%s", dataPath, data)
	}
	writeFile(t, dataPath, strings.Replace(string(data), bob, bob+`,
      "dan": {"roles": ["engineer"]}`, 1))
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, g.config, strings.Replace(string(cfg), "policy:\n  path: ./policy\n", "policy:\n  path: ./policy\n  reload_interval: 200ms\n", 1))
	g.start(t)
	endpoint := fmt.Sprintf("opc.tcp://127.0.0.1:%d", g.port)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const danPassword = "dan-secret-1"
	if _, err := loginOPCUA(ctx, t, endpoint, "dan", danPassword); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Fatalf("dan before users add: %v, want Bad_UserAccessDenied", err)
	}

	// users add while the gateway runs: dan logs in without a restart.
	cmd := exec.Command(interlockBin, "users", "add", "--file", usersFile, "--user", "dan", "--roles", "engineer", "--password-stdin")
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(danPassword + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("users add dan: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SIGHUP") || strings.Contains(string(out), "reads the file at start") {
		t.Errorf("users add says %q, want how a running gateway takes the file", out)
	}
	recs := waitAudit(t, g.auditPath, 20*time.Second, "users.load with dan", func(recs []record) bool {
		return len(eventsOf(recs, "users.load")) > 0
	})
	if l := eventsOf(recs, "users.load")[0]; strings.Join(l.strs("added"), ",") != "dan" || l.str("listener") != "line1" ||
		l.str("path") != usersFile || l.num("users") != 3 {
		t.Errorf("users.load record after users add: %s, want dan added, listener line1, %s, 3 users", l, usersFile)
	}
	dan, err := loginOPCUA(ctx, t, endpoint, "dan", danPassword)
	if err != nil {
		t.Fatalf("dan after users add, without a restart: %v", err)
	}
	if err := readSetpoint(ctx, dan); err != nil {
		t.Fatalf("dan reads the setpoint: %v", err)
	}

	// A file that does not load: the users in force stay; one audit record
	// however often it is read (the poll and two SIGHUPs).
	good, err := os.ReadFile(usersFile)
	if err != nil {
		t.Fatal(err)
	}
	badLine := strings.Count(string(good), "\n") + 2
	writeFile(t, usersFile, string(good)+"- name: erin\n  password_hash: erin-in-plain-text\n  roles: [engineer]\n")
	recs = waitAudit(t, g.auditPath, 20*time.Second, "users.load_failed", func(recs []record) bool {
		return len(eventsOf(recs, "users.load_failed")) > 0
	})
	wantAt := fmt.Sprintf("%s:%d: [3].password_hash", usersFile, badLine)
	if f := eventsOf(recs, "users.load_failed")[0]; !strings.Contains(f.str("error"), wantAt) || f.num("users") != 3 ||
		f.str("listener") != "line1" || f.str("path") != usersFile {
		t.Errorf("users.load_failed: %s, want the error at %s and 3 users in force", f, wantAt)
	}
	sighups := func() int {
		n := 0
		for _, l := range g.logLines() {
			if l["message"] == "SIGHUP: policy unchanged" {
				n++
			}
		}
		return n
	}
	for i := 1; i <= 2; i++ { // one at a time: signals sent together may arrive as one
		g.proc.signal(t, syscall.SIGHUP)
		eventually(t, 20*time.Second, 25*time.Millisecond, fmt.Sprintf("SIGHUP %d done", i), func() (bool, string) {
			return sighups() >= i, fmt.Sprintf("%d SIGHUP lines", sighups())
		})
	}
	failed := 0
	for _, l := range g.logLines() {
		if l["message"] == "users file not loaded; the users in force stay" && l["level"] == "error" {
			failed++
			if !strings.Contains(fmt.Sprint(l["error"]), wantAt) {
				t.Errorf("log line of the failed load: %v, want the error at %s", l, wantAt)
			}
		}
	}
	if failed < 3 {
		t.Errorf("%d error lines for the file that does not load, want one per read (poll and two SIGHUPs)", failed)
	}
	if n := len(eventsOf(readAudit(t, g.auditPath), "users.load_failed")); n != 1 {
		t.Errorf("%d users.load_failed records for one failure read three times, want 1", n)
	}
	if _, err := loginOPCUA(ctx, t, endpoint, opcuatest.Engineer, opcuatest.EngineerPassword); err != nil {
		t.Errorf("alice while the users file does not load: %v, want her login (the users in force stay)", err)
	}
	if _, err := loginOPCUA(ctx, t, endpoint, "dan", danPassword); err != nil {
		t.Errorf("dan while the users file does not load: %v, want his login", err)
	}

	// dan removed: his open session stays, a new login is refused.
	var list []gwopcua.User
	if err := yaml.Unmarshal(good, &list); err != nil {
		t.Fatal(err)
	}
	list = slices.DeleteFunc(list, func(u gwopcua.User) bool { return u.Name == "dan" })
	without, err := yaml.Marshal(list)
	if err != nil || len(list) != 2 {
		t.Fatalf("the users file without dan: %v\n%s", err, without)
	}
	writeFile(t, usersFile, string(without))
	recs = waitAudit(t, g.auditPath, 20*time.Second, "users.load without dan", func(recs []record) bool {
		for _, r := range eventsOf(recs, "users.load") {
			if strings.Join(r.strs("removed"), ",") == "dan" {
				return true
			}
		}
		return false
	})
	if _, err := loginOPCUA(ctx, t, endpoint, "dan", danPassword); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Errorf("dan after his removal: %v, want Bad_UserAccessDenied", err)
	}
	if err := readSetpoint(ctx, dan); err != nil {
		t.Errorf("dan's session opened before his removal reads: %v, want it still open", err)
	}
	if _, err := loginOPCUA(ctx, t, endpoint, opcuatest.Engineer, opcuatest.EngineerPassword); err != nil {
		t.Errorf("alice after dan's removal: %v", err)
	}
	recs = readAudit(t, g.auditPath)
	refused := false
	for _, r := range eventsOf(recs, "session.auth_failed") {
		refused = refused || r.str("principal.user") == "dan"
	}
	if !refused {
		t.Error("no session.auth_failed record for dan's login after his removal")
	}
	g.stopGateway(t)
	if r := interlock(t, "audit", "verify", g.auditPath); r.code != 0 {
		t.Errorf("audit verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
