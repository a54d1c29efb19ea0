package gatewaytest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"os/exec"
	"testing"
)

// The test PKI's certificates verify against its CA, carry the role as a
// UTF8String, and load in Python's ssl (pymodbus's TLS peers use it).
func TestTLSPKI(t *testing.T) {
	p := NewTLSPKI(t)
	crt, key := p.Issue(t, "alice", CertOptions{CommonName: "alice", Client: true, Role: "engineer"})
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the issued certificate does not verify: %v", err)
	}
	var role string
	for _, e := range leaf.Extensions {
		if e.Id.Equal(OIDModbusRole) {
			if rest, err := asn1.UnmarshalWithParams(e.Value, &role, "utf8"); err != nil || len(rest) != 0 {
				t.Fatalf("role extension %x: %v", e.Value, err)
			}
		}
	}
	if role != "engineer" {
		t.Fatalf("role %q, want engineer", role)
	}
	other := NewTLSPKINamed(t, "another CA")
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool()}); err == nil {
		t.Fatal("verified without its CA")
	}
	if other.CA.Subject.CommonName != "another CA" {
		t.Fatalf("CA name %q", other.CA.Subject.CommonName)
	}
	RequirePeer(t, PeerPymodbus)
	py := `import ssl, sys; c = ssl.create_default_context(cafile=sys.argv[1]); c.load_cert_chain(sys.argv[2], sys.argv[3])`
	if out, err := exec.Command(SystemPython, "-c", py, p.CAFile, crt, key).CombinedOutput(); err != nil {
		t.Fatalf("python ssl does not load the files: %v\n%s", err, out)
	}
}
