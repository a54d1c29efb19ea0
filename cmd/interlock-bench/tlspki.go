package main

// A throwaway certificate authority for the TLS rows of the modbus section,
// made afresh in the section's work directory at every run: the CA, one
// server certificate (for haproxy and the gateway alike) and one client
// certificate with a Modbus role, as Modbus/TCP Security wants them.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// oidModbusRole is the X.509 extension of Modbus/TCP Security that carries
// the holder's role as a UTF8String (MB-TCP-Security v21, the "RoleOID").
var oidModbusRole = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 50316, 802, 1}

// benchPKI is what the TLS rows need, as files (for haproxy and the
// gateway) and as the client's tls.Config.
type benchPKI struct {
	caFile     string // PEM, the CA certificate
	serverCert string // PEM, the server certificate (IP 127.0.0.1)
	serverKey  string // PEM, its key
	serverPEM  string // PEM, certificate then key in one file (haproxy's crt)
	client     *tls.Config
}

// newBenchPKI makes a CA, a server certificate for 127.0.0.1 and a client
// certificate for alice with the role engineer (ECDSA P-256, TLS 1.3
// only on the client side) in dir.
func newBenchPKI(dir string) (*benchPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "interlock-bench CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, ca, err := signCert(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	p := &benchPKI{
		caFile:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "server.crt"),
		serverKey:  filepath.Join(dir, "server.key"),
		serverPEM:  filepath.Join(dir, "server.pem"),
	}
	if err := os.WriteFile(p.caFile, pemBlock("CERTIFICATE", caDER), 0o644); err != nil {
		return nil, err
	}

	srvCertPEM, srvKeyPEM, err := issueCert(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "interlock-bench server"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{p.serverCert, srvCertPEM},
		{p.serverKey, srvKeyPEM},
		{p.serverPEM, append(append([]byte{}, srvCertPEM...), srvKeyPEM...)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}

	role, err := asn1.MarshalWithParams("engineer", "utf8")
	if err != nil {
		return nil, err
	}
	cliCertPEM, cliKeyPEM, err := issueCert(ca, caKey, &x509.Certificate{
		Subject:         pkix.Name{CommonName: "alice"},
		ExtKeyUsage:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		ExtraExtensions: []pkix.Extension{{Id: oidModbusRole, Value: role}},
	})
	if err != nil {
		return nil, err
	}
	cliCert, err := tls.X509KeyPair(cliCertPEM, cliKeyPEM)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	// No ClientSessionCache: every new connection is a full handshake.
	p.client = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      roots,
		Certificates: []tls.Certificate{cliCert},
	}
	return p, nil
}

// issueCert signs tmpl (a leaf: digital signature, valid from an hour ago
// for a day) with the CA and returns it and a new key as PEM.
func issueCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, _, err := signCert(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), pemBlock("PRIVATE KEY", kder), nil
}

// signCert fills in the serial number and validity of tmpl and signs it.
func signCert(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) ([]byte, *x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	return der, c, err
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
