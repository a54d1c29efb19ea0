package modbus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync/atomic"
	"time"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
)

// ClientTrust is what a Modbus/TCP Security listener verifies client
// certificates against.
type ClientTrust struct {
	CAs *x509.CertPool
	// CRLs, when there are any, make revocation checking mandatory: each
	// certificate of a client's chain that a CA issued needs a CRL of that
	// CA among them (signed by it), and one that a CRL lists is refused. A
	// CRL past its next update still revokes what it lists.
	CRLs []*x509.RevocationList
}

// checkVerified checks what the verifier does not: the role extension and
// revocation.
func (t ClientTrust) checkVerified(peer []*x509.Certificate, chains [][]*x509.Certificate) error {
	if len(peer) == 0 {
		return errors.New("no client certificate")
	}
	if _, err := CertRoles(peer[0]); err != nil {
		return err
	}
	return certs.CheckChainRevocation(chains, t.CRLs)
}

// Verify checks a client's certificates (leaf first, then what it sent
// with it) as a handshake would at now: chained to CAs for client
// authentication, valid, role extension well formed, not revoked. It is
// how a session opened under older trust is checked again. until is when
// the certificates stop passing by time alone (gateway.CertExpiry).
func (t ClientTrust) Verify(peer []*x509.Certificate, now time.Time) (until time.Time, err error) {
	if len(peer) == 0 {
		return time.Time{}, errors.New("no client certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	chains, err := peer[0].Verify(x509.VerifyOptions{Roots: t.CAs, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return time.Time{}, err
	}
	if err := t.checkVerified(peer, chains); err != nil {
		return time.Time{}, err
	}
	return gateway.CertExpiry(chains), nil
}

// TLSServer is the TLS side of a Modbus/TCP Security listener: TLS 1.2 or
// later, a client certificate required and verified against the client
// trust for client authentication (extended key usage clientAuth, or
// none), its role extension well formed (CertRoles) and, with CRLs, not
// revoked. Its certificate and trust can be replaced while it serves (Set):
// every handshake uses what was set last.
type TLSServer struct {
	cur atomic.Pointer[tlsServerState]
}

type tlsServerState struct {
	cfg   *tls.Config
	trust ClientTrust
}

// NewTLSServer returns a TLSServer with the gateway's certificate and the
// client trust.
func NewTLSServer(cert tls.Certificate, trust ClientTrust) *TLSServer {
	s := &TLSServer{}
	s.Set(cert, trust)
	return s
}

// Set replaces the certificate and the trust for the handshakes to come.
func (s *TLSServer) Set(cert tls.Certificate, trust ClientTrust) {
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    trust.CAs,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
		// Every session is a full handshake: its identity comes from a
		// certificate verified now, not from a ticket of an earlier one.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return trust.checkVerified(cs.PeerCertificates, cs.VerifiedChains)
		},
	}
	s.cur.Store(&tlsServerState{cfg: cfg, trust: trust})
}

// Config is the configuration for tls.Server: it hands each handshake the
// one set last.
func (s *TLSServer) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().cfg, nil
		},
	}
}

// Recheck checks a session's TLS connection against the trust set last:
// until when its client certificate is still let in (its chain's first
// expiry), or why it is not (revoked, its CA no longer trusted, expired).
func (s *TLSServer) Recheck(cs tls.ConnectionState) (until time.Time, err error) {
	return s.cur.Load().trust.Verify(cs.PeerCertificates, time.Now())
}
