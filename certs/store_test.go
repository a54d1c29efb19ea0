package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

const gwURI = "urn:site-a:interlock"

func TestInitLayoutAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	s, err := Init(dir, InitOptions{ApplicationURI: gwURI, Hosts: []string{"gw1.plant.local", "10.0.0.5", "localhost"}, Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layout {
		fi, err := os.Stat(filepath.Join(dir, filepath.FromSlash(l.dir)))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != l.mode {
			t.Errorf("%s: mode %v, want a directory of %04o", l.dir, fi.Mode(), l.mode)
		}
	}
	for _, private := range []string{"own", OwnPrivateDir, "rejected", RejectedCertsDir} {
		fi, _ := os.Stat(filepath.Join(dir, private))
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %04o, want 0700", private, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(s.OwnKeyPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("own key %s: %v, mode %v, want 0600", s.OwnKeyPath(), err, fi.Mode())
	}

	der, key, err := s.Own()
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if key.N.BitLen() != 2048 {
		t.Errorf("key of %d bits, want 2048", key.N.BitLen())
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != gwURI {
		t.Errorf("SAN URIs %v, want %s", c.URIs, gwURI)
	}
	if !slices.Equal(c.DNSNames, []string{"gw1.plant.local", "localhost"}) {
		t.Errorf("SAN DNS %v", c.DNSNames)
	}
	if len(c.IPAddresses) != 1 || !c.IPAddresses[0].Equal(net.ParseIP("10.0.0.5")) {
		t.Errorf("SAN IP %v", c.IPAddresses)
	}
	wantUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign
	if c.KeyUsage != wantUsage {
		t.Errorf("key usage %b, want %b", c.KeyUsage, wantUsage)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("extended key usage %v", c.ExtKeyUsage)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA || string(c.RawIssuer) != string(c.RawSubject) {
		t.Errorf("signature %v, issuer %v: want a self-signed SHA256WithRSA", c.SignatureAlgorithm, c.Issuer)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("self-signature: %v", err)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < 30*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("validity %v, want 30 days", d)
	}
	if string(c.SubjectKeyId) != string(c.AuthorityKeyId) || len(c.SubjectKeyId) == 0 {
		t.Errorf("SKI %x, AKI %x: node-opcua tells self-signed certificates by equal key ids", c.SubjectKeyId, c.AuthorityKeyId)
	}

	// The gateway's certificate passes the gateway's own checks once trusted.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Validate(der, ValidateOptions{ApplicationURI: gwURI, Hostname: "gw1.plant.local"}); code(err) != ua.StatusBadCertificateUntrusted {
		t.Fatalf("own certificate, untrusted: %v", err)
	}
	if _, err := s2.Trust(Thumbprint(der)); err != nil {
		t.Fatal(err)
	}
	if err := s2.Validate(der, ValidateOptions{ApplicationURI: gwURI, Hostname: "10.0.0.5"}); err != nil {
		t.Fatal(err)
	}

	// No overwrite without Force; Force makes a new one.
	_, err = Init(dir, InitOptions{ApplicationURI: gwURI, Hosts: []string{"gw1"}})
	if err == nil || !strings.Contains(err.Error(), s.OwnCertPath()) {
		t.Fatalf("Init over an existing certificate: %v, want an error naming %s", err, s.OwnCertPath())
	}
	if der2, _, _ := s.Own(); string(der2) != string(der) {
		t.Fatal("the refused Init changed the certificate")
	}
	if _, err := Init(dir, InitOptions{ApplicationURI: gwURI, Hosts: []string{"gw1"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	if der2, _, err := s.Own(); err != nil || string(der2) == string(der) {
		t.Fatalf("Init --force: %v, same certificate %v", err, string(der2) == string(der))
	}
}

func TestInitOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    InitOptions
		want string
	}{
		{"no URI", InitOptions{Hosts: []string{"h"}}, "ApplicationURI is required"},
		{"relative URI", InitOptions{ApplicationURI: "interlock", Hosts: []string{"h"}}, "not an absolute URI"},
		{"small key", InitOptions{ApplicationURI: gwURI, Hosts: []string{"h"}, KeyBits: 1024}, "1024 bits"},
		{"huge key", InitOptions{ApplicationURI: gwURI, Hosts: []string{"h"}, KeyBits: 8192}, "8192 bits"},
		{"bad host", InitOptions{ApplicationURI: gwURI, Hosts: []string{"not a host"}}, "neither an IP address nor a DNS name"},
		{"negative days", InitOptions{ApplicationURI: gwURI, Hosts: []string{"h"}, Days: -1}, "validity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Init(dir, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestInitTightensPrivateDirs(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "own", "private"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, "own", "private"), 0o755)
	if _, err := Init(dir, InitOptions{ApplicationURI: gwURI, Hosts: []string{"h"}}); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "own", "private"))
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("own/private mode %04o, want 0700", fi.Mode().Perm())
	}
}

func TestOpenRefusesIncompleteLayout(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := Open(missing); err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "certs init") {
		t.Fatalf("Open(missing): %v", err)
	}
	s := newStore(t)
	crl := s.Path(IssuerCRLDir)
	os.Remove(crl)
	if _, err := Open(s.Dir()); err == nil || !strings.Contains(err.Error(), crl) {
		t.Fatalf("Open without issuer/crl: %v, want an error naming %s", err, crl)
	}
}

func TestOwnRefuses(t *testing.T) {
	s := newStore(t)
	if _, _, err := s.Own(); err == nil || !strings.Contains(err.Error(), s.OwnCertPath()) {
		t.Fatalf("Own without a certificate: %v", err)
	}
	dir := t.TempDir()
	s, err := Init(dir, InitOptions{ApplicationURI: gwURI, Hosts: []string{"h"}})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(s.OwnKeyPath(), 0o644)
	if _, _, err := s.Own(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Own with a 0644 key: %v", err)
	}
	// A key of another certificate.
	os.Chmod(s.OwnKeyPath(), 0o600)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherPEM := pemKey(other)
	os.WriteFile(s.OwnKeyPath(), otherPEM, 0o600)
	if _, _, err := s.Own(); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Own with another key: %v", err)
	}
}

func TestTrustRejectList(t *testing.T) {
	s := newStore(t)
	c := mkCert(t, spec{cn: "eng-ws1"})
	tp := Thumbprint(c.der)
	if code(s.Validate(c.der, ValidateOptions{})) != ua.StatusBadCertificateUntrusted {
		t.Fatal("unknown certificate not refused")
	}
	rej, err := s.List(RejectedCertsDir)
	if err != nil || len(rej) != 1 || rej[0].Thumbprint != tp || rej[0].ApplicationURI != testURI || rej[0].Subject != c.cert.Subject.String() {
		t.Fatalf("List(rejected) = %+v, %v", rej, err)
	}
	if _, err := s.Trust("zz"); err == nil || !strings.Contains(err.Error(), "not a thumbprint") {
		t.Fatalf("Trust(zz): %v", err)
	}
	if _, err := s.Trust("00000000"); err == nil || !strings.Contains(err.Error(), s.Path(RejectedCertsDir)) {
		t.Fatalf("Trust(unknown): %v, want an error naming the folder", err)
	}
	p, err := s.Trust(strings.ToUpper(tp[:10]))
	if err != nil || p != s.Path(TrustedCertsDir, tp+".der") {
		t.Fatalf("Trust = %q, %v", p, err)
	}
	if fs := files(t, s, RejectedCertsDir); len(fs) != 0 {
		t.Fatalf("rejected/certs after trust: %v", fs)
	}
	if err := s.Validate(c.der, ValidateOptions{ApplicationURI: testURI}); err != nil {
		t.Fatalf("after trust: %v", err)
	}
	p, err = s.Reject(tp)
	if err != nil || p != s.Path(RejectedCertsDir, tp+".der") {
		t.Fatalf("Reject = %q, %v", p, err)
	}
	if code(s.Validate(c.der, ValidateOptions{})) != ua.StatusBadCertificateUntrusted {
		t.Fatal("rejected certificate still trusted")
	}
	// TrustFile from a PEM file elsewhere, which also clears the rejected copy.
	f := filepath.Join(t.TempDir(), "client.pem")
	os.WriteFile(f, pemCert(c.der), 0o644)
	if _, err := s.TrustFile(f); err != nil {
		t.Fatal(err)
	}
	if fs := files(t, s, RejectedCertsDir); len(fs) != 0 {
		t.Fatalf("rejected/certs after TrustFile: %v", fs)
	}
	if _, err := s.TrustFile(f); err == nil || !strings.Contains(err.Error(), "trusted already") {
		t.Fatalf("TrustFile twice: %v", err)
	}
	garbage := filepath.Join(t.TempDir(), "x.der")
	os.WriteFile(garbage, []byte("nope"), 0o644)
	if _, err := s.TrustFile(garbage); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("TrustFile(garbage): %v", err)
	}
	// A stray file in trusted is listed with its error and does not stop validation.
	put(t, s, TrustedCertsDir, "stray.der", []byte("not a certificate"))
	infos, err := s.List(TrustedCertsDir)
	if err != nil || len(infos) != 2 {
		t.Fatalf("List(trusted) = %+v, %v", infos, err)
	}
	var stray int
	for _, i := range infos {
		if i.Err != nil {
			stray++
		}
	}
	if stray != 1 {
		t.Errorf("List(trusted): %d entries with an error, want 1", stray)
	}
	if err := s.Validate(c.der, ValidateOptions{}); err != nil {
		t.Fatalf("with a stray file: %v", err)
	}
}

func TestPolicyKeysAndSignatures(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	c := mkCert(t, spec{key: small})
	trust(t, s, c)
	ve := wantCode(t, s.Validate(c.der, ValidateOptions{}), ua.StatusBadCertificatePolicyCheckFailed)
	if !strings.Contains(ve.Reason, "1024") {
		t.Errorf("reason %q does not name the key size", ve.Reason)
	}
	// RSA-PSS with SHA-256 is allowed.
	c = mkCert(t, spec{sigAlg: x509.SHA256WithRSAPSS})
	trust(t, s, c)
	wantCode(t, s.Validate(c.der, ValidateOptions{}), ua.StatusOK)
}

func TestValidationErrorAs(t *testing.T) {
	s := newStore(t)
	err := s.Validate([]byte("x"), ValidateOptions{})
	var sc interface{ StatusCode() ua.StatusCode }
	if !errors.As(err, &sc) || sc.StatusCode() != ua.StatusBadCertificateInvalid {
		t.Fatalf("%v does not carry its status code", err)
	}
	for c, want := range map[ua.StatusCode]string{
		ua.StatusBadCertificateUntrusted:     "Bad_CertificateUntrusted",
		ua.StatusBadNodeIDInvalid:            "Bad_NodeIdInvalid",
		ua.StatusBadSubscriptionIDInvalid:    "Bad_SubscriptionIdInvalid",
		ua.StatusBadTCPNotEnoughResources:    "Bad_TcpNotEnoughResources",
		ua.StatusBadTCPEndpointURLInvalid:    "Bad_TcpEndpointUrlInvalid",
		ua.StatusBadCertificateURIInvalid:    "Bad_CertificateUriInvalid",
		ua.StatusBadIdentityTokenInvalid:     "Bad_IdentityTokenInvalid",
		ua.StatusUncertainInitialValue:       "Uncertain_InitialValue",
		ua.StatusGoodSubscriptionTransferred: "GoodSubscriptionTransferred",
	} {
		if got := StatusName(c); got != want {
			t.Errorf("StatusName(0x%08X) = %s, want %s", uint32(c), got, want)
		}
	}
}
