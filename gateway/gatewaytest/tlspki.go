package gatewaytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// OIDModbusRole is the X.509 extension of Modbus/TCP Security that carries
// the role of a certificate's holder as an ASN.1 UTF8String
// (MB-TCP-Security v21, the "RoleOID").
var OIDModbusRole = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 50316, 802, 1}

// TLSPKI is a throwaway certificate authority for TLS tests: a CA
// certificate in Dir/ca.crt and certificates it issues, as PEM files.
type TLSPKI struct {
	Dir    string
	CAFile string
	CA     *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// CertOptions describes a certificate for TLSPKI.Issue. With neither Client
// nor Server the certificate has no extended key usage.
type CertOptions struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Client     bool // extended key usage clientAuth
	Server     bool // extended key usage serverAuth
	// Role is put in the Modbus role extension as a UTF8String; empty:
	// no extension (unless RoleExt is set).
	Role string
	// RoleExt, when set, is the extension's value as is (for malformed ones).
	RoleExt []byte
	// NotBefore and NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
}

// NewTLSPKI makes a CA in a temporary folder of t.
func NewTLSPKI(t testing.TB) *TLSPKI {
	t.Helper()
	return newTLSPKI(t, "Interlock test CA")
}

// NewTLSPKINamed is NewTLSPKI with the CA's common name given: a second,
// unrelated CA for tests of untrusted certificates.
func NewTLSPKINamed(t testing.TB, name string) *TLSPKI {
	t.Helper()
	return newTLSPKI(t, name)
}

func newTLSPKI(t testing.TB, name string) *TLSPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &TLSPKI{Dir: t.TempDir(), CA: ca, caKey: key}
	p.CAFile = filepath.Join(p.Dir, "ca.crt")
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

// GatewayPair issues the gateway's server certificate for 127.0.0.1
// (Dir/gw.crt, CN gw) and loads it, with a pool that holds p's CA.
func (p *TLSPKI) GatewayPair(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	crt, key := p.Issue(t, "gw", CertOptions{CommonName: "gw", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	return pair, pool
}

// Issue signs a certificate for o and writes it and its key as
// Dir/NAME.crt and Dir/NAME.key.
func (p *TLSPKI) Issue(t testing.TB, name string, o CertOptions) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: o.CommonName},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPs,
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	if o.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if o.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	role := o.RoleExt
	if role == nil && o.Role != "" {
		if role, err = asn1.MarshalWithParams(o.Role, "utf8"); err != nil {
			t.Fatal(err)
		}
	}
	if role != nil {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: OIDModbusRole, Value: role})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// ReadCert reads the first certificate of a PEM file.
func ReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// CRL writes Dir/NAME.crl, a PEM CRL of the CA that revokes the
// certificates given (none: an empty list), valid from an hour before now
// (or before nextUpdate, if that is earlier) to nextUpdate, and returns its
// path and the parsed list.
func (p *TLSPKI) CRL(t testing.TB, name string, nextUpdate time.Time, revoked ...*x509.Certificate) (string, *x509.RevocationList) {
	t.Helper()
	from := time.Now()
	if nextUpdate.Before(from) {
		from = nextUpdate
	}
	tmpl := &x509.RevocationList{
		Number:     serial(t),
		ThisUpdate: from.Add(-time.Hour),
		NextUpdate: nextUpdate,
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.CA, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(p.Dir, name+".crl")
	writePEM(t, path, "X509 CRL", der)
	return path, l
}
