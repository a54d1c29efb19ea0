package opcua_test

import (
	"context"
	"errors"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// users: passthrough: the server checks the password the client gave the
// gateway; a refusal is a failed login, audited; the user's session has no
// roles from the gateway, so the test policy lets it read but not write.
func TestPassthroughLogin(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{DenyAnonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Users: opcua.UsersPassthrough,
		Limits: opcua.LimitOptions{MaxSubscriptionsPerSession: 1},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, opcuatest.Engineer, opcuatest.EngineerPassword, nil)
	if err != nil {
		t.Fatalf("alice through: %v", err)
	}
	if dv := readValue(ctx, t, c, opcuatest.NodeSetpoint); dv.Status != ua.StatusOK {
		t.Errorf("read: %v", dv.Status)
	}
	if sc := writeValue(ctx, t, c, opcuatest.NodeSetpoint, 1.0); sc != ua.StatusBadUserAccessDenied {
		t.Errorf("write without a role: %v", sc)
	}
	// One subscription per session.
	if _, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: time.Second}, make(chan *gopcua.PublishNotificationData, 1)); err != nil {
		t.Fatalf("first subscription: %v", err)
	}
	if _, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: time.Second}, make(chan *gopcua.PublishNotificationData, 1)); !errors.Is(err, ua.StatusBadTooManySubscriptions) {
		t.Errorf("second subscription: %v, want BadTooManySubscriptions", err)
	}

	if _, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, opcuatest.Engineer, "wrong", nil); !errors.Is(err, ua.StatusBadUserAccessDenied) {
		t.Errorf("wrong password: %v", err)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.auth_failed")) > 0 })
	af := events(rs, "session.auth_failed")
	if len(af) != 1 || af[0].str("principal", "user") != opcuatest.Engineer {
		t.Errorf("auth_failed: %v", af)
	}
	if o := events(rs, "session.open"); len(o) != 1 || o[0].str("principal", "user") != opcuatest.Engineer {
		t.Errorf("session.open: %v", o)
	}
}

// upstream_identity service: clients log in with the users file, the
// gateway logs in upstream with one service account.
func TestServiceAccountUpstream(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{DenyAnonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}})
	pw := t.TempDir() + "/upstream.pw"
	if err := writeFile(pw, opcuatest.EngineerPassword+"\n"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Users: usersFile(t),
		UpstreamIdentity: opcua.IdentityService, UpstreamUser: opcuatest.Engineer, UpstreamPasswordFile: pw,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, opcuatest.Operator, opcuatest.OperatorPassword, nil)
	if err != nil {
		t.Fatalf("bob: %v", err)
	}
	if dv := readValue(ctx, t, c, opcuatest.NodeSetpoint); dv.Status != ua.StatusOK {
		t.Errorf("read as the service account: %v", dv.Status)
	}
}

// upstream_identity certificate: the gateway logs in upstream with an X.509
// user token, its own certificate signed over the server's nonce, on a
// server that takes no anonymous logins; a wrong identity would fail every
// request with Bad_IdentityTokenRejected or Bad_UserSignatureInvalid.
func TestCertificateIdentityUpstream(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{DenyAnonymous: true, AcceptUnknownCertificates: true,
		SecurityPolicies: []string{"None", "Basic256Sha256"}})
	for _, upPolicy := range []string{"None", "Basic256Sha256"} {
		t.Run("upstream "+upPolicy, func(t *testing.T) {
			pkiDir, store := gatewayPKI(t)
			if upPolicy != "None" {
				trust(t, store, srv.Certificate())
			}
			g := startGateway(t, gwOpts{upstream: srv.Endpoint, pkiDir: pkiDir, store: store, opts: opcua.Options{
				SecurityPolicies: []string{"None"}, Anonymous: true,
				UpstreamSecurityPolicy: upPolicy, UpstreamIdentity: opcua.IdentityCertificate,
			}})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if dv := readValue(ctx, t, c, opcuatest.NodeSetpoint); dv.Status != ua.StatusOK {
				t.Errorf("read under the gateway's certificate identity: %v", dv.Status)
			}
		})
	}
}

// A login the server refuses (users: passthrough, a wrong password) leaves
// no session on the server: the gateway closes the session it created
// there and could not activate, which the server would otherwise hold,
// taking one of its session slots, until its timeout (a controller has a
// few).
func TestPassthroughRefusedLoginLeavesNoServerSession(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{DenyAnonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Users: opcua.UsersPassthrough}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	direct, err := gopcuaClient(ctx, t, srv.Endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, opcuatest.Engineer, opcuatest.EngineerPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	const currentSessionCount = "i=2277" // Server.ServerDiagnostics.ServerDiagnosticsSummary
	sessions := func() uint32 {
		v, _ := readValue(ctx, t, direct, currentSessionCount).Value.Value().(uint32)
		return v
	}
	if n := sessions(); n != 1 {
		t.Fatalf("%d sessions on the server before the logins, want 1 (the test's own)", n)
	}
	for i := range 3 {
		if _, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, opcuatest.Engineer, "wrong", nil); !errors.Is(err, ua.StatusBadUserAccessDenied) {
			t.Fatalf("wrong password %d: %v", i, err)
		}
	}
	n := sessions()
	for deadline := time.Now().Add(5 * time.Second); n != 1 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n = sessions()
	}
	if n != 1 {
		t.Errorf("%d sessions on the server after 3 refused logins, want 1: each refused login left its session there", n)
	}
}
