package opcua_test

import (
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A node-opcua client reading at SignAndEncrypt is cut off when its
// certificate leaves the trust list while its session is open: RecheckTrust
// ends the session (session.close says why) and closes the channel, and
// the client's reads fail from then on (its reconnects are refused). With
// the trust list unchanged, RecheckTrust ends nothing.
func TestRecheckTrustEndsSessionsOfUntrustedClients(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"}, Anonymous: true,
	}})
	eng := g.engine.(*opcua.Engine)
	sc := opcuatest.Scenario{Endpoint: g.endpoint, SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt"}
	cert := trustedClient(t, g, &sc)

	sc.Steps = []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuatest.NodePressure, Seconds: 8}}}
	client := opcuatest.StartClient(t, sc)
	// Reads answered under the trust the session opened with.
	g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 3 })

	r, err := eng.RecheckTrust()
	if err != nil || r.SessionsEnded != 0 || r.PKI.Trusted != 1 {
		t.Fatalf("RecheckTrust with the trust list unchanged: %+v, %v; want nothing ended, 1 trusted certificate", r, err)
	}
	if _, err := g.store.Reject(certs.Thumbprint(cert)); err != nil {
		t.Fatal(err)
	}
	r, err = eng.RecheckTrust()
	if err != nil || r.SessionsEnded != 1 || r.PKI.Trusted != 0 {
		t.Fatalf("RecheckTrust after the certificate was rejected: %+v, %v; want its session ended, none trusted", r, err)
	}

	res, err := client.Wait()
	if err != nil {
		t.Fatal(err)
	}
	loop := step(t, res, 0, "readLoop")
	if loop.Reads == 0 || loop.Errors == 0 || loop.ReadsAfterLastError != 0 {
		t.Errorf("read loop: %d reads, %d errors, %d reads after the last error (first %q); want reads, then only errors",
			loop.Reads, loop.Errors, loop.ReadsAfterLastError, loop.FirstError)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	closes := events(rs, "session.close")
	if len(closes) != 1 || !strings.Contains(closes[0].str("error"), "the client application certificate no longer passes") ||
		!strings.Contains(closes[0].str("error"), "Bad_CertificateUntrusted") {
		t.Errorf("session.close records %v, want one saying the certificate is no longer trusted", closes)
	}
	if n := len(events(rs, "session.open")); n != 1 {
		t.Errorf("%d session.open records, want 1: the client's reconnects are refused", n)
	}
}
