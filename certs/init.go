package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// InitOptions describe the gateway's application instance certificate.
type InitOptions struct {
	ApplicationURI string   // required, such as urn:site-a:interlock; the SAN URI
	Hosts          []string // DNS names and IP addresses for the SAN (default: os.Hostname)
	Organization   string   // subject O (default "Interlock")
	CommonName     string   // subject CN (default "Interlock@" + the first host)
	Days           int      // validity (default 5 years)
	KeyBits        int      // RSA key size, 2048..4096 (default 2048)
	Force          bool     // replace an existing own certificate and key
}

// Defaults of InitOptions.
const (
	DefaultDays    = 365 * 5
	DefaultKeyBits = 2048
)

// Init creates the folder layout at dir (keeping what exists, tightening
// private folders to 0700) and a new self-signed application instance
// certificate in own/: RSA, SHA-256, the ApplicationURI and hosts in the
// subjectAltName, key usage digitalSignature, nonRepudiation,
// keyEncipherment, dataEncipherment and keyCertSign, extended key usage
// serverAuth and clientAuth. It refuses to replace an existing own
// certificate or key unless o.Force.
func Init(dir string, o InitOptions) (*Store, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("certs: no PKI directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	for _, l := range layout {
		p := filepath.Join(dir, filepath.FromSlash(l.dir))
		fi, err := os.Stat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(p, l.mode); err != nil {
				return nil, fmt.Errorf("certs: %w", err)
			}
			if err := os.Chmod(p, l.mode); err != nil { // whatever the umask
				return nil, fmt.Errorf("certs: %w", err)
			}
		case err != nil:
			return nil, fmt.Errorf("certs: %w", err)
		case !fi.IsDir():
			return nil, fmt.Errorf("certs: %s is not a directory", p)
		case l.mode == 0o700 && fi.Mode().Perm()&0o077 != 0:
			if err := os.Chmod(p, 0o700); err != nil {
				return nil, fmt.Errorf("certs: making %s private: %w", p, err)
			}
		}
	}
	s := &Store{dir: dir}
	certPath, keyPath := s.OwnCertPath(), s.OwnKeyPath()
	if !o.Force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return nil, fmt.Errorf("certs: %s exists: not replacing the gateway's certificate (use --force to make a new one; clients that trust the old one must then trust the new one)", p)
			}
		}
	}
	der, key, err := newAppCert(o, time.Now())
	if err != nil {
		return nil, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("certs: writing %s: %w", keyPath, err)
	}
	if err := writeFileAtomic(certPath, der, 0o644); err != nil {
		return nil, fmt.Errorf("certs: writing %s: %w", certPath, err)
	}
	return s, nil
}

func (o *InitOptions) check() error {
	if o.ApplicationURI == "" {
		return errors.New("certs: the ApplicationURI is required (such as urn:site-a:interlock)")
	}
	if u, err := url.Parse(o.ApplicationURI); err != nil || u.Scheme == "" {
		return fmt.Errorf("certs: ApplicationURI %q is not an absolute URI (such as urn:site-a:interlock)", o.ApplicationURI)
	}
	if len(o.Hosts) == 0 {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("certs: no host names given and the host name is unknown")
		}
		o.Hosts = []string{h}
	}
	for _, h := range o.Hosts {
		if net.ParseIP(h) == nil && !validDNSName(h) {
			return fmt.Errorf("certs: host %q is neither an IP address nor a DNS name", h)
		}
	}
	if o.Organization == "" {
		o.Organization = "Interlock"
	}
	if o.CommonName == "" {
		o.CommonName = "Interlock@" + o.Hosts[0]
	}
	switch {
	case o.Days == 0:
		o.Days = DefaultDays
	case o.Days < 0:
		return fmt.Errorf("certs: validity of %d days", o.Days)
	}
	switch {
	case o.KeyBits == 0:
		o.KeyBits = DefaultKeyBits
	case o.KeyBits < 2048 || o.KeyBits > 4096:
		return fmt.Errorf("certs: RSA key of %d bits: the Basic256Sha256 family of security policies needs 2048 to 4096", o.KeyBits)
	}
	return nil
}

func validDNSName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// newAppCert makes a self-signed application instance certificate as
// OPC 10000-6 §6.2.2 describes it (and as node-opcua makes its own).
func newAppCert(o InitOptions, now time.Time) ([]byte, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, o.KeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generating an RSA key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	u, _ := url.Parse(o.ApplicationURI)
	pubDER := x509.MarshalPKCS1PublicKey(&key.PublicKey)
	ski := sha1.Sum(pubDER)
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject: pkix.Name{
			CommonName:   o.CommonName,
			Organization: []string{o.Organization},
		},
		NotBefore:             now.Add(-time.Hour), // tolerate clients whose clock is a little behind
		NotAfter:              now.Add(time.Duration(o.Days) * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		SubjectKeyId:          ski[:],
		AuthorityKeyId:        ski[:],
		URIs:                  []*url.URL{u},
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	for _, h := range o.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: creating the certificate: %w", err)
	}
	return der, key, nil
}
