package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
)

// ListenerTLS is a listener's `tls:` section: Modbus/TCP Security, TLS with
// mutual X.509 authentication of the clients (port 802 by convention).
type ListenerTLS struct {
	Cert     string `yaml:"cert"`      // PEM: the gateway's certificate, its chain after it
	Key      string `yaml:"key"`       // PEM: its private key
	ClientCA string `yaml:"client_ca"` // PEM bundle: the CAs that issue client certificates
	// CRL, when set, is a file of CRLs (PEM or one DER) of the client CAs:
	// revocation is then checked for every client, and a CA without a CRL
	// in it refuses its clients (revocation unknown).
	CRL string `yaml:"crl"`
	// HandshakeTimeout bounds a client's TLS handshake; default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`

	// Read at Load (TLSFiles, as ReadFiles reads them).
	TLSFiles `yaml:"-"`
}

// TLSFiles is what a tls section's files hold.
type TLSFiles struct {
	Certificate tls.Certificate // with its key, Leaf set
	ClientCAs   *x509.CertPool
	CACerts     []*x509.Certificate    // the certificates of ClientCAs, in file order
	CRLs        []*x509.RevocationList // none without tls.crl
}

// FileError is a tls section's file that could not be used: Key names the
// setting (tls.cert, tls.key, tls.client_ca, tls.crl).
type FileError struct {
	Key string
	Err error
}

func (e *FileError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Paths are the files of the section (resolved at Load), crl last when set.
func (t *ListenerTLS) Paths() []string {
	p := []string{t.Cert, t.Key, t.ClientCA}
	if t.CRL != "" {
		p = append(p, t.CRL)
	}
	return p
}

// ReadFiles reads the section's files, at Load and again when a running
// gateway reloads them: the certificate and its key, the client CAs, and
// the CRLs, each of which must be signed by one of the client CAs. An error
// is a *FileError naming the setting at fault.
func (t *ListenerTLS) ReadFiles() (TLSFiles, error) {
	var f TLSFiles
	fail := func(key, format string, a ...any) (TLSFiles, error) {
		return TLSFiles{}, &FileError{Key: key, Err: fmt.Errorf(format, a...)}
	}
	certPEM, _, err := certs.ReadPEMCertificates(t.Cert)
	if err != nil {
		return fail("tls.cert", "%v", err)
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return fail("tls.key", "%v", err)
	}
	if f.Certificate, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return fail("tls.key", "%s is not the key of the certificate in %s (%v)", t.Key, t.Cert, err)
		}
		return fail("tls.key", "%s: %v", t.Key, err)
	}
	_, cas, err := certs.ReadPEMCertificates(t.ClientCA)
	if err != nil {
		return fail("tls.client_ca", "%v", err)
	}
	f.ClientCAs, f.CACerts = x509.NewCertPool(), cas
	for _, ca := range cas {
		f.ClientCAs.AddCert(ca)
	}
	if t.CRL == "" {
		return f, nil
	}
	if f.CRLs, err = certs.ReadCRLFile(t.CRL); err != nil {
		return fail("tls.crl", "%v", err)
	}
	if i, ok := certs.UnsignedCRL(f.CRLs, cas); ok {
		return fail("tls.crl", "%s: CRL %d, of %q, is not signed by a CA in tls.client_ca (%s)", t.CRL, i+1, f.CRLs[i].Issuer.String(), t.ClientCA)
	}
	return f, nil
}

// StaleCRLs says which CRLs are past their next update at now, one line
// each (they still revoke what they list; the CA's newer CRL belongs in
// tls.crl).
func (f TLSFiles) StaleCRLs(now time.Time) []string { return certs.StaleCRLs(f.CRLs, now) }

// checkListenerTLS checks and reads a listener's tls section: the files
// are read at load, so that a missing or mismatched one names its key.
func (c *Config) checkListenerTLS(l *Listener) error {
	t := l.TLS
	if t == nil {
		return nil
	}
	if l.Protocol != "modbus" {
		own := ""
		if l.Protocol == "opcua" {
			own = " (opcua.security_policies, opcua.pki)"
		}
		return c.errf(0, l.key("tls"), "an %s listener has its own security%s; tls is Modbus/TCP Security, for modbus listeners", l.Protocol, own)
	}
	switch {
	case t.Cert == "":
		return c.errf(0, l.key("tls.cert"), "missing: the gateway's certificate (PEM; its chain may follow it)")
	case t.Key == "":
		return c.errf(0, l.key("tls.key"), "missing: the private key of tls.cert (PEM)")
	case t.ClientCA == "":
		return c.errf(0, l.key("tls.client_ca"), "missing: the CA certificates (PEM) that issue client certificates; Modbus/TCP Security authenticates every client by its certificate")
	case t.HandshakeTimeout < 0:
		return c.errf(0, l.key("tls.handshake_timeout"), "%v is negative", t.HandshakeTimeout)
	}
	if t.HandshakeTimeout == 0 {
		t.HandshakeTimeout = gateway.DefaultHandshakeTimeout
	}
	t.Cert, t.Key, t.ClientCA = c.resolve(t.Cert), c.resolve(t.Key), c.resolve(t.ClientCA)
	if t.CRL != "" {
		t.CRL = c.resolve(t.CRL)
	}
	f, err := t.ReadFiles()
	if err != nil {
		fe := err.(*FileError)
		return c.errf(0, l.key(fe.Key), "%v", fe.Err)
	}
	t.TLSFiles = f
	return nil
}
