package opcuatest

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

// gopcua's client, as the gateway's upstream leg uses it, against the
// node-opcua server: the endpoints carry the real port and the server's
// certificate, and a UserName login over SecurityPolicy None (the password
// encrypted per the token policy) reads.
func TestGopcuaClientAgainstNodeServer(t *testing.T) {
	srv := StartServer(t, ServerOptions{SecurityPolicies: []string{"None", "Basic256Sha256"}, AcceptUnknownCertificates: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	eps, err := opcua.GetEndpoints(ctx, srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) == 0 {
		t.Fatal("no endpoints")
	}
	for _, ep := range eps {
		if ep.EndpointURL != srv.Endpoint {
			t.Errorf("endpoint URL %s, want %s", ep.EndpointURL, srv.Endpoint)
		}
		if ep.SecurityPolicyURI != ua.SecurityPolicyURINone && len(ep.ServerCertificate) == 0 {
			t.Errorf("%s endpoint without server certificate", ep.SecurityPolicyURI)
		}
	}
	ep, err := opcua.SelectEndpoint(eps, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone)
	if err != nil {
		t.Fatal(err)
	}
	c, err := opcua.NewClient(srv.Endpoint,
		opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName),
		opcua.AuthUsername(Engineer, EngineerPassword),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect as %s: %v", Engineer, err)
	}
	defer c.Close(context.Background())
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.MustParseNodeID(NodePressure), AttributeID: ua.AttributeIDValue},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Results[0]; r.Status != ua.StatusOK || r.Value.Value() != 1.013 {
		t.Errorf("read Pressure: %v %v", r.Status, r.Value.Value())
	}

	bad, err := opcua.NewClient(srv.Endpoint,
		opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName),
		opcua.AuthUsername(Engineer, "wrong"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Connect(ctx); err == nil {
		bad.Close(context.Background())
		t.Error("a wrong password connected")
	}
}
