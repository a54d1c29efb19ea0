package opcua_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uasc"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
)

// gopcua clients from one source address get max_sessions_per_source
// sessions, over one connection or many; one more is refused
// (Bad_TooManySessions, a request.rejected naming the limit and the
// address) while a client from another address (127.0.0.2) is served.
func TestSessionsPerSourceGopcua(t *testing.T) {
	sim, err := opcuasim.Start(opcuasim.Options{Endpoint: "opc.tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	g := startGateway(t, gwOpts{upstream: sim.Endpoint(), policy: allowAllPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
		Limits: opcua.LimitOptions{MaxSessions: 10, MaxSessionsPerSource: 3}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from := func(ip string) gopcua.Option {
		return gopcua.Dialer(&uacp.Dialer{Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}})
	}

	// Two sessions over one connection (created, not activated: gopcua's
	// ActivateSession closes the client's session before), then one more
	// client connected with a session of its own.
	one, err := gopcua.NewClient(g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone), from("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Dial(ctx); err != nil {
		t.Fatal(err)
	}
	defer one.Close(ctx)
	for range 2 {
		if _, err := one.CreateSession(ctx, sessionConfig()); err != nil {
			t.Fatalf("CreateSession over one connection: %v", err)
		}
	}
	if _, err := connectClient(ctx, t, g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone), from("127.0.0.1")); err != nil {
		t.Fatalf("a third session from 127.0.0.1: %v", err)
	}
	_, err = one.CreateSession(ctx, sessionConfig())
	if !errors.Is(err, ua.StatusBadTooManySessions) {
		t.Errorf("a fourth session from 127.0.0.1, over the first connection: %v, want Bad_TooManySessions", err)
	}
	_, err = connectClient(ctx, t, g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone), from("127.0.0.1"))
	if !errors.Is(err, ua.StatusBadTooManySessions) {
		t.Errorf("a fourth session from 127.0.0.1, on a new connection: %v, want Bad_TooManySessions", err)
	}
	other, err := connectClient(ctx, t, g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone), from("127.0.0.2"))
	if err != nil {
		t.Fatalf("a session from 127.0.0.2: %v", err)
	}
	if _, err := other.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuasim.NodePressure),
		AttributeID: ua.AttributeIDValue}}}); err != nil {
		t.Errorf("a Read of the session from 127.0.0.2: %v", err)
	}
	rs := g.waitRecords(t, 10*time.Second, "two refusals over max_sessions_per_source", func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "request.rejected") {
			if r.str("reason") == "limit" && strings.Contains(r.str("detail"), "max_sessions_per_source (3) reached by 127.0.0.1") {
				n++
			}
		}
		return n == 2
	})
	for _, r := range events(rs, "session.open") {
		if r.str("source", "ip") == "127.0.0.2" {
			return
		}
	}
	t.Error("no session.open of the client from 127.0.0.2")
}

func sessionConfig() *uasc.SessionConfig {
	return &uasc.SessionConfig{SessionTimeout: time.Minute,
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:interlock:test", ApplicationType: ua.ApplicationTypeClient,
			ApplicationName: ua.NewLocalizedText("interlock test")}}
}
