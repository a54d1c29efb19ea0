package opcua_test

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A gateway key of 4096 bits (`interlock certs init --bits 4096`): over
// 2048 bits, what is encrypted for it carries an ExtraPaddingSize byte
// (OPC 10000-6 §6.7.2.5), on the client leg (the OpenSecureChannel
// requests of node-opcua and gopcua clients) and on the upstream leg (the
// server's OpenSecureChannel responses), and what the gateway encrypts for
// a client with a key that large. SignAndEncrypt on both legs works with
// node-opcua and gopcua clients.
func TestSignAndEncrypt4096BitGatewayKey(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{
		SecurityPolicies: []string{"Basic256Sha256", "Aes256_Sha256_RsaPss"}, SecurityModes: []string{"SignAndEncrypt"},
	})
	pkiDir, store := pkiWithKey(t, "urn:interlock:test", 4096)
	pairWith(t, srv, store)

	for _, policy := range []string{"Basic256Sha256", "Aes256_Sha256_RsaPss"} {
		t.Run(policy, func(t *testing.T) {
			g := startGateway(t, gwOpts{upstream: srv.Endpoint, pkiDir: pkiDir, store: store, opts: opcua.Options{
				SecurityPolicies: []string{policy}, SecurityModes: []string{"SignAndEncrypt"}, Anonymous: true,
				UpstreamSecurityPolicy: policy, UpstreamSecurityMode: "SignAndEncrypt",
			}})

			// node-opcua
			sc := opcuatest.Scenario{Endpoint: g.endpoint, SecurityPolicy: policy, SecurityMode: "SignAndEncrypt", CertDir: t.TempDir(),
				Steps: []opcuatest.Step{
					{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeSetpoint, Value: 61.5, DataType: "Double"}}},
					{Read: []string{opcuatest.NodeSetpoint, opcuatest.NodePressure}},
				}}
			trust(t, store, opcuatest.CreateClientCertificate(t, sc))
			r := opcuatest.RunClient(t, sc)
			if w := step(t, r, 0, "write"); w.Results[0].Status.Name != "Good" {
				t.Errorf("node-opcua write: %+v", w.Results)
			}
			if rd := step(t, r, 1, "read"); rd.Results[0].Value != 61.5 || rd.Results[1].Value != 1.013 {
				t.Errorf("node-opcua read: %+v", rd.Results)
			}

			// gopcua, with a 4096-bit key of its own too: what the gateway
			// encrypts for it carries ExtraPaddingSize as well
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, clientStore := pkiWithKey(t, "urn:interlock:test:gopcua-client", 4096)
			cert, _, err := clientStore.Own()
			if err != nil {
				t.Fatal(err)
			}
			trust(t, store, cert)
			c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURIPrefix+policy, ua.MessageSecurityModeSignAndEncrypt, "", "", clientStore)
			if err != nil {
				t.Fatalf("gopcua connect: %v", err)
			}
			v, err := c.Node(ua.MustParseNodeID(opcuatest.NodePressure)).Value(ctx)
			if err != nil || v.Value() != 1.013 {
				t.Errorf("gopcua read: %v, %v", v, err)
			}
		})
	}
}
