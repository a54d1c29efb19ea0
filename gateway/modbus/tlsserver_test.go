package modbus_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// With CRLs, a client certificate its CA revoked is refused in the
// handshake, and so is one whose CA has no CRL among them (revocation
// unknown), a CRL that only names the CA but is not signed by it included;
// a CRL past its next update still revokes. Set changes what the next
// handshake checks.
func TestTLSServerRevocation(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	forger := gatewaytest.NewTLSPKINamed(t, p.CA.Subject.CommonName) // p's name, not its key
	pair, roots := p.GatewayPair(t)
	cas := x509.NewCertPool()
	cas.AddCert(p.CA)
	cas.AddCert(other.CA)

	alice := issuePair(t, p, "alice", gatewaytest.CertOptions{Client: true, Role: "engineer"})
	bob := issuePair(t, p, "bob", gatewaytest.CertOptions{Client: true, Role: "engineer"})
	carol := issuePair(t, other, "carol", gatewaytest.CertOptions{Client: true, Role: "operator"})
	_, revokesBob := p.CRL(t, "bob-revoked", time.Now().Add(24*time.Hour), bob[0].Leaf)
	_, staleRevokesBob := p.CRL(t, "stale", time.Now().Add(-time.Minute), bob[0].Leaf)
	_, otherEmpty := other.CRL(t, "other", time.Now().Add(24*time.Hour))
	_, forged := forger.CRL(t, "forged", time.Now().Add(24*time.Hour))

	srv := modbus.NewTLSServer(pair, modbus.ClientTrust{CAs: cas})
	addr, results := handshakeServer(t, srv.Config())
	for _, tc := range []struct {
		name string
		crls []*x509.RevocationList
		cert []tls.Certificate
		err  string // "" accepted
	}{
		{"no CRLs: bob", nil, bob, ""},
		{"alice", []*x509.RevocationList{revokesBob, otherEmpty}, alice, ""},
		{"bob revoked", []*x509.RevocationList{revokesBob, otherEmpty}, bob, "revoked at"},
		{"carol", []*x509.RevocationList{revokesBob, otherEmpty}, carol, ""},
		{"carol without a CRL of her CA", []*x509.RevocationList{revokesBob}, carol, `revocation unknown: no CRL of "CN=another CA"`},
		{"bob by a stale CRL", []*x509.RevocationList{staleRevokesBob}, bob, "revoked at"},
		{"alice by a stale CRL", []*x509.RevocationList{staleRevokesBob}, alice, ""},
		{"alice by a forged CRL", []*x509.RevocationList{forged}, alice, `revocation unknown: no CRL of "CN=Interlock test CA"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.Set(pair, modbus.ClientTrust{CAs: cas, CRLs: tc.crls})
			serr, cerr := tryHandshake(t, addr, results, roots, tc.cert, 0)
			if tc.err == "" {
				if serr != nil {
					t.Fatalf("refused: %v", serr)
				}
				return
			}
			if serr == nil || !strings.Contains(serr.Error(), tc.err) {
				t.Fatalf("server handshake error %v, want one with %q", serr, tc.err)
			}
			if cerr == nil {
				t.Fatal("the client was not told")
			}
		})
	}
}

// Recheck holds a session's certificate against the trust set last: a
// certificate revoked since, or whose CA is no longer trusted, no longer
// passes.
func TestTLSServerRecheck(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	srvCrt, srvKey := p.Issue(t, "gw", gatewaytest.CertOptions{CommonName: "gw", Server: true})
	pair, err := tls.LoadX509KeyPair(srvCrt, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	cas := x509.NewCertPool()
	cas.AddCert(p.CA)
	alice := issuePair(t, p, "alice", gatewaytest.CertOptions{Client: true, Role: "engineer"})[0].Leaf
	bob := issuePair(t, p, "bob", gatewaytest.CertOptions{Client: true})[0].Leaf
	state := func(c *x509.Certificate) tls.ConnectionState {
		return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
	}
	srv := modbus.NewTLSServer(pair, modbus.ClientTrust{CAs: cas})
	for _, c := range []*x509.Certificate{alice, bob} {
		if _, err := srv.Recheck(state(c)); err != nil {
			t.Fatalf("%s: %v before any change", c.Subject.CommonName, err)
		}
	}
	// Until when a session may go on: its chain's first expiry, the
	// client's certificate or the CA.
	soon := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	carol := issuePair(t, p, "carol", gatewaytest.CertOptions{Client: true, NotAfter: soon})[0].Leaf
	for _, c := range []struct {
		cert *x509.Certificate
		want time.Time
	}{{alice, alice.NotAfter}, {carol, soon}} {
		if c.want.After(p.CA.NotAfter) {
			c.want = p.CA.NotAfter
		}
		if until, err := srv.Recheck(state(c.cert)); err != nil || !until.Equal(c.want) {
			t.Errorf("%s: until %v, %v; want until %v", c.cert.Subject.CommonName, until, err, c.want)
		}
	}
	_, crl := p.CRL(t, "crl", time.Now().Add(time.Hour), bob)
	srv.Set(pair, modbus.ClientTrust{CAs: cas, CRLs: []*x509.RevocationList{crl}})
	if _, err := srv.Recheck(state(alice)); err != nil {
		t.Errorf("alice: %v, want her to pass", err)
	}
	if _, err := srv.Recheck(state(bob)); err == nil || !strings.Contains(err.Error(), `certificate "CN=bob"`) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("bob: %v, want revoked", err)
	}
	otherCAs := x509.NewCertPool()
	otherCAs.AddCert(other.CA)
	srv.Set(pair, modbus.ClientTrust{CAs: otherCAs})
	if _, err := srv.Recheck(state(alice)); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("alice under another CA: %v, want unknown authority", err)
	}
	if _, err := srv.Recheck(tls.ConnectionState{}); err == nil {
		t.Error("no certificate passes")
	}
}
