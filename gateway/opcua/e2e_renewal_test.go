package opcua_test

import (
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A node-opcua client at SignAndEncrypt with a 5 s token lifetime reads
// through the gateway for a minute, across many channel renewals, with its
// session and upstream session kept.
func TestNodeOPCUATokenRenewals(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute long")
	}
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"}, Anonymous: true,
	}})
	sc := opcuatest.Scenario{Endpoint: g.endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt"}
	trustedClient(t, g, &sc)

	sc.TokenLifetime = 5 * time.Second
	sc.Steps = []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuatest.NodePressure, Seconds: 60}}}
	r := opcuatest.RunClient(t, sc)
	loop := step(t, r, 0, "readLoop")
	if loop.Errors != 0 || loop.Reads < 100 {
		t.Errorf("read loop: %d reads, %d errors (first %q)", loop.Reads, loop.Errors, loop.FirstError)
	}
	// The channel revises lifetimes below 10 s up to 10 s: a renewal about
	// every 7.5 s.
	if r.Close.TokenRenewals < 5 {
		t.Errorf("token renewals: %d, want 5 or more in a minute", r.Close.TokenRenewals)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	if o := events(rs, "session.open"); len(o) != 1 {
		t.Errorf("session.open records: %d, want 1 (the session outlives the renewals)", len(o))
	}
}
