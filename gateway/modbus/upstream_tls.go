package modbus

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
)

// SchemeTLS is Modbus/TCP Security toward the device: Modbus/TCP, MBAP
// header and all, inside TLS with mutual X.509 authentication.
const SchemeTLS = "tls"

// DefaultTLSPort is the port of Modbus/TCP Security (MB-TCP-Security), the
// one a tls:// upstream without a port is dialed on.
const DefaultTLSPort = "802"

// UpstreamTLS is the modbus section's upstream_tls: the gateway's side of
// Modbus/TCP Security toward every tls:// upstream of the listener.
type UpstreamTLS struct {
	// CA is a PEM bundle of the certificates that may have issued the
	// device's certificate; nothing else is trusted.
	CA string `yaml:"ca"`
	// Cert and Key are the gateway's client certificate (PEM, its chain
	// may follow it) and its private key.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ServerName is the name the device's certificate must carry; default:
	// the upstream's host (an IP address is matched against IP SANs).
	ServerName string `yaml:"server_name"`
	// CRL, when set, is a file of CRLs (PEM or one DER) of the CAs in CA:
	// every handshake then checks the device's chain for revocation, and a
	// CA without a CRL in it fails the handshake (revocation unknown).
	CRL string `yaml:"crl"`
}

// clientFiles is a reading of an upstream_tls section: the TLS client
// configuration, without a server name, the client certificate's leaf,
// the CA certificates and the CRLs (none without crl).
type clientFiles struct {
	cfg  *tls.Config
	leaf *x509.Certificate
	cas  int
	crls []*x509.RevocationList
}

// paths are the section's files, relative ones taken from baseDir; crl is
// empty without one.
func (t *UpstreamTLS) paths(baseDir string) (ca, cert, key, crl string) {
	path := func(p string) string {
		if filepath.IsAbs(p) || baseDir == "" {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	if t.CRL != "" {
		crl = path(t.CRL)
	}
	return path(t.CA), path(t.Cert), path(t.Key), crl
}

// same says whether two readings hold the same client certificate, CAs
// and CRLs.
func (f clientFiles) same(g clientFiles) bool {
	// The key goes with the certificate: clientTLS checks that they match.
	a, b := f.cfg.Certificates[0].Certificate, g.cfg.Certificates[0].Certificate
	return slices.EqualFunc(a, b, bytes.Equal) && f.cfg.RootCAs.Equal(g.cfg.RootCAs) &&
		slices.EqualFunc(f.crls, g.crls, func(x, y *x509.RevocationList) bool { return bytes.Equal(x.Raw, y.Raw) })
}

// clientTLS reads the files of t (relative to baseDir), at start and again
// when a running gateway reloads them. Errors begin with the key at fault.
func (t *UpstreamTLS) clientTLS(baseDir string) (clientFiles, error) {
	var missing []string
	for _, k := range []struct{ key, v string }{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
		if k.v == "" {
			missing = append(missing, k.key)
		}
	}
	if len(missing) > 0 {
		return clientFiles{}, fmt.Errorf("upstream_tls: missing %s: ca is the CA certificates (PEM) that issued the PLC's certificate, cert and key the gateway's client certificate and its key (PEM); Modbus/TCP Security authenticates both ends",
			strings.Join(missing, ", "))
	}
	caFile, certFile, keyFile, crlFile := t.paths(baseDir)
	certPEM, _, err := certs.ReadPEMCertificates(certFile)
	if err != nil {
		return clientFiles{}, fmt.Errorf("upstream_tls.cert: %v", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return clientFiles{}, fmt.Errorf("upstream_tls.key: %v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return clientFiles{}, fmt.Errorf("upstream_tls.key: %s is not the key of the certificate in %s (%v)", keyFile, certFile, err)
		}
		return clientFiles{}, fmt.Errorf("upstream_tls.key: %s: %v", keyFile, err)
	}
	_, cas, err := certs.ReadPEMCertificates(caFile)
	if err != nil {
		return clientFiles{}, fmt.Errorf("upstream_tls.ca: %v", err)
	}
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	f := clientFiles{cfg: &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		MinVersion:   tls.VersionTLS12,
		// No ClientSessionCache: every connection is a full handshake, the
		// device's certificate verified each time.
	}, leaf: cert.Leaf, cas: len(cas)}
	if crlFile == "" {
		return f, nil
	}
	if f.crls, err = certs.ReadCRLFile(crlFile); err != nil {
		return clientFiles{}, fmt.Errorf("upstream_tls.crl: %v", err)
	}
	if i, ok := certs.UnsignedCRL(f.crls, cas); ok {
		return clientFiles{}, fmt.Errorf("upstream_tls.crl: %s: CRL %d, of %q, is not signed by a CA in upstream_tls.ca (%s)", crlFile, i+1, f.crls[i].Issuer.String(), caFile)
	}
	crls := f.crls
	// Runs after the chain has verified against RootCAs: a revoked device
	// certificate, or one whose CA has no CRL, fails the handshake (0x0A).
	f.cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return certs.CheckChainRevocation(cs.VerifiedChains, crls)
	}
	return f, nil
}

// staleCRLWarnings are what `interlock check` says of the CRLs past their
// next update at now, each beginning with its key.
func staleCRLWarnings(crls []*x509.RevocationList, file string, now time.Time) []string {
	var out []string
	for _, s := range certs.StaleCRLs(crls, now) {
		out = append(out, fmt.Sprintf("upstream_tls.crl: %s: %s; it still revokes what it lists, but PLC certificates revoked since are accepted until the CA's newer CRL is here", file, s))
	}
	return out
}

// certExpiryWarning is how long before its end the gateway's client
// certificate is warned about.
const certExpiryWarning = 30 * 24 * time.Hour

// clientCertWarnings are what `interlock check` says about the gateway's
// client certificate at now: expired, not yet valid, expiring within 30
// days, or not for client authentication. Each begins with its key.
func clientCertWarnings(leaf *x509.Certificate, file string, now time.Time) []string {
	if leaf == nil {
		return nil
	}
	var out []string
	end := leaf.NotAfter.UTC().Format(time.RFC3339)
	switch {
	case now.After(leaf.NotAfter):
		out = append(out, fmt.Sprintf("upstream_tls.cert: %s expired at %s: the PLC refuses the gateway (every call to a tls:// upstream is answered 0x0A)", file, end))
	case now.Before(leaf.NotBefore):
		out = append(out, fmt.Sprintf("upstream_tls.cert: %s is not valid before %s: the PLC refuses the gateway until then", file, leaf.NotBefore.UTC().Format(time.RFC3339)))
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		out = append(out, fmt.Sprintf("upstream_tls.cert: %s expires at %s, in %d days: the PLC refuses the gateway from then on", file, end, int(leaf.NotAfter.Sub(now).Hours()/24)))
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		out = append(out, fmt.Sprintf("upstream_tls.cert: %s is not for client authentication (extended key usage clientAuth): a PLC that checks it refuses the gateway", file))
	}
	return out
}

// errHandshake marks a failed TLS handshake with the device: no path to
// it (0x0A), whatever the underlying error says.
var errHandshake = errors.New("TLS handshake")

// dialTLS dials addr and completes the TLS handshake before returning, so
// that an untrusted device, a wrong name or a refused gateway certificate
// is a failed connect (0x0A, at once), not a failure of the first write.
// The handshake is bounded by the dial's deadline and connectTimeout.
func dialTLS(ctx context.Context, d *net.Dialer, addr string, cfg *tls.Config, connectTimeout time.Duration) (raw net.Conn, tc *tls.Conn, err error) {
	raw, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	hctx := ctx
	if connectTimeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	if !d.Deadline.IsZero() {
		var cancel context.CancelFunc
		hctx, cancel = context.WithDeadline(hctx, d.Deadline)
		defer cancel()
	}
	tc = tls.Client(raw, cfg)
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		if hctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("not done within connect_timeout (%v) or the request's deadline: %w", connectTimeout, err)
		}
		return nil, nil, fmt.Errorf("%w with %s (server name %q): %w", errHandshake, addr, cfg.ServerName, err)
	}
	return raw, tc, nil
}

// sessionRefused explains the end of a TLS session before the device's
// first answer: a TLS 1.3 device checks the gateway's certificate after
// the gateway's side of the handshake has ended, and refuses it with an
// alert, or by closing, at the first read. The error stays what it was
// underneath (0x0A).
func sessionRefused(err error, answered bool) error {
	var oe *net.OpError
	switch {
	case errors.As(err, &oe) && oe.Op == "remote error":
		return fmt.Errorf("the device ended the TLS session (TLS 1.3 devices refuse a gateway certificate they do not accept at this point): %w", err)
	case answered:
		return err
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("the device closed the TLS session before its first answer (a TLS 1.3 device that refuses the gateway's certificate closes it so; its log says why): %w", err)
	}
	return err
}

// tlsLog reports a tls:// upstream's failed handshakes in the operational
// log (at most once every 10 s, counting the others), and the first
// session after a failure.
type tlsLog struct {
	log      zerolog.Logger
	upstream string
	every    gateway.Every
	failing  atomic.Bool
}

func (t *tlsLog) failed(err error) {
	t.failing.Store(true)
	if n, ok := t.every.Allow(time.Now()); ok {
		t.log.Warn().Err(err).Str("upstream", t.upstream).Int("repeats_not_logged", n).
			Msg("upstream TLS session failed: calls to this upstream are answered 0x0A (gateway path unavailable) until a handshake succeeds")
	}
}

func (t *tlsLog) established(c *tls.Conn) {
	if t.failing.Swap(false) {
		cs := c.ConnectionState()
		t.log.Info().Str("upstream", t.upstream).Str("tls_version", tls.VersionName(cs.Version)).
			Msg("upstream TLS session established again")
	}
}
