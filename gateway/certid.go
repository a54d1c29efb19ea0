package gateway

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"strings"
)

// CertIdentifier is the Identifier of a TLS listener: the principal is the
// verified client certificate (principal.auth "certificate"), never the
// inventory's user or roles; the inventory still names the machine
// (source.name, source.owner). A connection without a completed, verified
// handshake (one refused before it) has principal.auth "none".
type CertIdentifier struct {
	// Inventory names the source; nil: sources stay unnamed.
	Inventory Identifier
	// Roles returns the roles a verified certificate carries (Modbus/TCP
	// Security: its role extension). An error gives no roles; the TLS
	// configuration refuses such certificates in the handshake already.
	Roles func(cert *x509.Certificate) ([]string, error)
}

var _ Identifier = (*CertIdentifier)(nil)

// Identify fills the source from the inventory and the principal and
// session.security_policy ("TLS1.2", "TLS1.3") from the TLS connection.
func (ci *CertIdentifier) Identify(ctx context.Context, conn net.Conn, s *Session) {
	if ci.Inventory != nil {
		ci.Inventory.Identify(ctx, conn, s)
	}
	s.Principal = Principal{Auth: AuthNone}
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return
	}
	cert := st.PeerCertificates[0]
	s.Principal = CertPrincipal(cert)
	if ci.Roles != nil {
		if roles, err := ci.Roles(cert); err == nil {
			s.Principal.Roles = roles
		}
	}
	s.SecurityPolicy = TLSVersionName(st.Version)
}

// CertPrincipal is the principal a client certificate names, without
// roles: user is the subject's common name or, when it has none, its first
// subject alternative name (DNS name, then e-mail address, IP address, URI);
// cert_thumbprint is the hex SHA-1 of the certificate, as OPC UA names
// certificates.
func CertPrincipal(cert *x509.Certificate) Principal {
	user := cert.Subject.CommonName
	switch {
	case user != "":
	case len(cert.DNSNames) > 0:
		user = cert.DNSNames[0]
	case len(cert.EmailAddresses) > 0:
		user = cert.EmailAddresses[0]
	case len(cert.IPAddresses) > 0:
		user = cert.IPAddresses[0].String()
	case len(cert.URIs) > 0:
		user = cert.URIs[0].String()
	}
	return Principal{User: user, Auth: AuthCertificate, CertThumbprint: Thumbprint(cert.Raw)}
}

// Thumbprint is principal.cert_thumbprint of a DER certificate: its hex
// SHA-1, lower case, as OPC UA names certificates (certs.Thumbprint, which
// gateway cannot import: certs' tests use the gateway's fakes).
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return hex.EncodeToString(sum[:])
}

// TLSVersionName is the session.security_policy of a TLS session: "TLS1.2",
// "TLS1.3".
func TLSVersionName(v uint16) string {
	return strings.ReplaceAll(tls.VersionName(v), " ", "")
}
