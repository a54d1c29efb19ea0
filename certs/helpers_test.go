package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Keys are made once: RSA key generation is slow under -race, and the
// checks do not care that test certificates share keys.
var (
	keysOnce                     sync.Once
	leafKey, caKey, subKey, eKey crypto.Signer
	serials                      atomic.Int64
)

func keys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		gen := func() crypto.Signer {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			return k
		}
		leafKey, caKey, subKey = gen(), gen(), gen()
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		eKey = ek
	})
}

const testURI = "urn:test:client"

// spec describes a test certificate; zero fields get an application
// certificate's defaults.
type spec struct {
	cn        string
	uri       string
	dns       []string
	ips       []string
	notBefore time.Time
	notAfter  time.Time
	usage     x509.KeyUsage
	noUsage   bool
	eku       []x509.ExtKeyUsage
	ca        bool
	key       crypto.Signer
	parent    *testCert // nil: self-signed
	sigAlg    x509.SignatureAlgorithm
}

type testCert struct {
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

const appUsageBits = x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment

func mkCert(t testing.TB, s spec) *testCert {
	t.Helper()
	keys(t)
	if s.key == nil {
		s.key = leafKey
		if s.ca {
			s.key = caKey
		}
	}
	if s.cn == "" {
		s.cn = "test client"
	}
	now := time.Now()
	if s.notBefore.IsZero() {
		s.notBefore = now.Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = now.Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1000 + serials.Add(1)),
		Subject:               pkix.Name{CommonName: s.cn, Organization: []string{"Interlock tests"}},
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		BasicConstraintsValid: true,
		IsCA:                  s.ca,
		DNSNames:              s.dns,
		SignatureAlgorithm:    s.sigAlg,
	}
	switch {
	case s.noUsage:
	case s.usage != 0:
		tmpl.KeyUsage = s.usage
	case s.ca:
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	default:
		tmpl.KeyUsage = appUsageBits
	}
	if s.eku != nil {
		tmpl.ExtKeyUsage = s.eku
	} else if !s.ca {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	if !s.ca {
		u := s.uri
		if u == "" {
			u = testURI
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = []*url.URL{pu}
	}
	for _, ip := range s.ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	parent, signer := tmpl, s.key
	if s.parent != nil {
		parent, signer = s.parent.cert, s.parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, der: der, key: s.key}
}

// mkCRL makes a CRL of ca revoking the given certificates.
func mkCRL(t testing.TB, ca *testCert, revoked ...*testCert) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(serials.Add(1)),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(24 * time.Hour),
	}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: r.cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// newStore makes an empty store layout without an own certificate.
func newStore(t testing.TB) *Store {
	t.Helper()
	dir := t.TempDir()
	for _, l := range layout {
		if err := os.MkdirAll(filepath.Join(dir, filepath.FromSlash(l.dir)), l.mode); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put writes a file into a folder of the store.
func put(t testing.TB, s *Store, folder, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(s.Path(folder, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func trust(t testing.TB, s *Store, c *testCert) {
	t.Helper()
	put(t, s, TrustedCertsDir, Thumbprint(c.der)+".der", c.der)
}

func files(t testing.TB, s *Store, folder string) []string {
	t.Helper()
	ents, err := os.ReadDir(s.Path(folder))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}
