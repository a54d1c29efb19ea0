package config

import (
	"crypto/tls"
	"crypto/x509"
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
	// HandshakeTimeout bounds a client's TLS handshake; default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`

	// Read at Load: the certificate with its key (Leaf set) and the pool
	// of client CAs.
	Certificate tls.Certificate `yaml:"-"`
	ClientCAs   *x509.CertPool  `yaml:"-"`
}

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
	certPEM, _, err := certs.ReadPEMCertificates(t.Cert)
	if err != nil {
		return c.errf(0, l.key("tls.cert"), "%v", err)
	}
	keyPEM, err := os.ReadFile(t.Key)
	if err != nil {
		return c.errf(0, l.key("tls.key"), "%v", err)
	}
	if t.Certificate, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return c.errf(0, l.key("tls.key"), "%s is not the key of the certificate in %s (%v)", t.Key, t.Cert, err)
		}
		return c.errf(0, l.key("tls.key"), "%s: %v", t.Key, err)
	}
	_, cas, err := certs.ReadPEMCertificates(t.ClientCA)
	if err != nil {
		return c.errf(0, l.key("tls.client_ca"), "%v", err)
	}
	t.ClientCAs = x509.NewCertPool()
	for _, ca := range cas {
		t.ClientCAs.AddCert(ca)
	}
	return nil
}
