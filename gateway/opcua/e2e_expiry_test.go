package opcua_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A session does not outlive its client's application certificate: a
// gopcua client at Basic256Sha256 SignAndEncrypt whose certificate expires
// while it reads is cut off just after the expiry (session.close says
// why, the channel closes), without any change to the trust lists; a
// client with a longer certificate reads on.
func TestSessionEndsWhenItsCertificateExpires(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"Basic256Sha256"}, SecurityModes: []string{"SignAndEncrypt"}, Anonymous: true,
	}})
	end := time.Now().Add(5 * time.Second).Truncate(time.Second)
	const shortURI, longURI = "urn:interlock:test:short-lived", "urn:interlock:test:long-lived"
	shortCert, shortKey := opcuatest.AppCertificate(t, "short-lived client", shortURI, end)
	longCert, longKey := opcuatest.AppCertificate(t, "long-lived client", longURI, time.Now().Add(24*time.Hour))
	trust(t, g.store, shortCert)
	trust(t, g.store, longCert)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(uri string, cert []byte) *gopcua.Client {
		t.Helper()
		var key = shortKey
		if uri == longURI {
			key = longKey
		}
		c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, "", "", nil,
			gopcua.Certificate(cert), gopcua.PrivateKey(key), gopcua.ApplicationURI(uri))
		if err != nil {
			t.Fatalf("%s: connect: %v", uri, err)
		}
		return c
	}
	short, long := connect(shortURI, shortCert), connect(longURI, longCert)
	read := func(c *gopcua.Client) (ua.StatusCode, error) {
		resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
		if err != nil {
			return 0, err
		}
		return resp.Results[0].Status, nil
	}
	if st, err := read(short); err != nil || st != ua.StatusOK {
		t.Fatalf("read with the certificate still valid: %v, %v", st, err)
	}

	rs := g.waitRecords(t, 20*time.Second, "session.close", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	closes := events(rs, "session.close")
	if len(closes) != 1 || !strings.Contains(closes[0].str("error"), "the client application certificate no longer passes") ||
		!strings.Contains(closes[0].str("error"), "Bad_CertificateTimeInvalid") {
		t.Fatalf("session.close records %v, want one saying the certificate expired", closes)
	}
	at, err := time.Parse(time.RFC3339Nano, closes[0].str("time"))
	if err != nil || !at.After(end) || at.After(end.Add(10*time.Second)) {
		t.Errorf("session ended at %v (%v), want just after the certificate's end %v", at, err, end)
	}
	if _, err := read(short); err == nil {
		t.Error("the client of the expired certificate still reads")
	}
	if st, err := read(long); err != nil || st != ua.StatusOK {
		t.Errorf("the client with a longer certificate: %v, %v", st, err)
	}
}
