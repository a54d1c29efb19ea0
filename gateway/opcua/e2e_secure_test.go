package opcua_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// Basic256Sha256 SignAndEncrypt on both legs with a user name: an unknown
// client certificate is refused and copied to rejected/; once trusted, the
// client gets the same results as directly.
func TestNodeOPCUASignAndEncrypt(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"},
	})
	pkiDir, store := gatewayPKI(t)
	pairWith(t, srv, store)

	certDir := t.TempDir()
	sc := scenario(srv.Endpoint)
	sc.SecurityPolicy, sc.SecurityMode, sc.CertDir = "Basic256Sha256", "SignAndEncrypt", certDir
	sc.User, sc.Password = opcuatest.Engineer, opcuatest.EngineerPassword

	g := startGateway(t, gwOpts{upstream: srv.Endpoint, pkiDir: pkiDir, store: store, opts: opcua.Options{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"},
		Users: usersFile(t), UpstreamSecurityPolicy: "Basic256Sha256", UpstreamSecurityMode: "SignAndEncrypt",
	}})
	sc.Endpoint = g.endpoint
	untrusted := opcuatest.RunClient(t, sc)
	if untrusted.ExitCode == 0 || untrusted.Connect.OK && untrusted.Session.OK {
		t.Fatalf("an unknown client certificate got in: %+v", untrusted)
	}
	clientCert, err := opcuatest.ClientCertificate(certDir)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(pkiDir, "rejected", "certs")); len(ents) == 0 {
		t.Errorf("the refused certificate is not in rejected/certs (%s)", certs.Thumbprint(clientCert))
	}
	if strings.Contains(untrusted.Log, "trusted/certs") || strings.Contains(untrusted.Log, "rejected/certs") {
		t.Errorf("the client was told why its certificate failed:\n%s", untrusted.Log)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) > 0 })
	found := false
	for _, r := range events(rs, "request.rejected") {
		if r.str("reason") == "certificate_invalid" && strings.Contains(r.str("detail"), "Bad_CertificateUntrusted") {
			found = true
		}
	}
	if !found {
		t.Errorf("no record of the refused certificate: %v", events(rs, "request.rejected"))
	}

	trust(t, store, clientCert)
	srv.Trust(clientCert)
	sc.Endpoint = srv.Endpoint
	direct := summarize(t, opcuatest.RunClient(t, sc))
	srv.Restart()
	sc.Endpoint = g.endpoint
	r := opcuatest.RunClient(t, sc)
	equalSummary(t, direct, summarize(t, r))

	rs = g.records(t, func(rs []record) bool { return len(events(rs, "session.open")) > 0 })
	open := events(rs, "session.open")
	if len(open) != 1 {
		t.Fatalf("session.open records: %v", open)
	}
	o := open[0]
	if o.str("session", "security_policy") != "Basic256Sha256" || o.str("session", "security_mode") != "SignAndEncrypt" ||
		o.str("principal", "cert_thumbprint") != certs.Thumbprint(clientCert) || o.str("principal", "application_uri") == "" ||
		o.str("principal", "user") != opcuatest.Engineer {
		t.Errorf("session.open: %v", o)
	}
}
