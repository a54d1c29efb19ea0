package opcua_test

import (
	"strings"
	"testing"
	"time"

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
	g.waitRecords(t, 30*time.Second, "three answered reads", func(rs []record) bool { return len(events(rs, "result")) >= 3 })

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
	rs := g.waitRecords(t, 15*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	closes := events(rs, "session.close")
	if len(closes) != 1 || !strings.Contains(closes[0].str("error"), "the client application certificate no longer passes") ||
		!strings.Contains(closes[0].str("error"), "Bad_CertificateUntrusted") {
		t.Errorf("session.close records %v, want one saying the certificate is no longer trusted", closes)
	}
	if n := len(events(rs, "session.open")); n != 1 {
		t.Errorf("%d session.open records, want 1: the client's reconnects are refused", n)
	}
}

// The server's certificate taken out of the gateway's trust list while a
// node-opcua client reads through a Basic256Sha256 upstream leg:
// RecheckTrust closes the connection to the server, the client's session
// stays open and its reads fail while the gateway refuses the server, and
// they come back once the certificate is trusted again.
func TestRecheckTrustDropsAnUntrustedServer(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"},
	})
	pkiDir, store := gatewayPKI(t)
	pairWith(t, srv, store)
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, pkiDir: pkiDir, store: store, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
		UpstreamSecurityPolicy: "Basic256Sha256", UpstreamSecurityMode: "SignAndEncrypt",
	}})
	eng := g.engine.(*opcua.Engine)
	client := opcuatest.StartClient(t, opcuatest.Scenario{Endpoint: g.endpoint, SecurityPolicy: "None", SecurityMode: "None",
		Steps: []opcuatest.Step{{ReadLoop: &opcuatest.ReadLoop{Node: opcuatest.NodePressure, Seconds: 10}}}})
	results := func(status string) func(rs []record) bool {
		n := len(events(g.records(t, func([]record) bool { return true }), "result"))
		return func(rs []record) bool {
			for _, r := range events(rs, "result")[n:] {
				if r.str("status") == status {
					return true
				}
			}
			return false
		}
	}
	g.waitRecords(t, 30*time.Second, "three answered reads", func(rs []record) bool { return len(events(rs, "result")) >= 3 })

	thumb := certs.Thumbprint(srv.Certificate())
	if _, err := store.Reject(thumb); err != nil {
		t.Fatal(err)
	}
	failing := results("error")
	r, err := eng.RecheckTrust()
	if err != nil || r.UpstreamDropped != 1 || r.SessionsEnded != 0 || !strings.Contains(r.UpstreamError, "Bad_CertificateUntrusted") {
		t.Fatalf("RecheckTrust after the server's certificate was rejected: %+v, %v; want its one connection dropped, no session ended", r, err)
	}
	g.waitRecords(t, 15*time.Second, "a read refused for the server's certificate", failing)

	recovering := results("ok")
	trust(t, store, srv.Certificate())
	if r, err := eng.RecheckTrust(); err != nil || r.UpstreamDropped != 0 || r.UpstreamError != "" {
		t.Fatalf("RecheckTrust with the server trusted again: %+v, %v", r, err)
	}
	g.waitRecords(t, 15*time.Second, "a read answered again", recovering)

	res, err := client.Wait()
	if err != nil {
		t.Fatal(err)
	}
	loop := step(t, res, 0, "readLoop")
	if loop.Errors == 0 || loop.ReadsAfterLastError == 0 {
		t.Errorf("read loop: %d reads, %d errors, %d reads after the last error (first %q); want errors while the server was refused, then reads again",
			loop.Reads, loop.Errors, loop.ReadsAfterLastError, loop.FirstError)
	}
	rs := g.waitRecords(t, 15*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	if n := len(events(rs, "session.open")); n != 1 {
		t.Errorf("%d session.open records, want 1: the session outlives the refused server", n)
	}
}
