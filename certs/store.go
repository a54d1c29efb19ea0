package certs

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Folders of the layout, relative to the store directory.
const (
	OwnCertsDir      = "own/certs"
	OwnPrivateDir    = "own/private"
	TrustedCertsDir  = "trusted/certs"
	TrustedCRLDir    = "trusted/crl"
	IssuerCertsDir   = "issuer/certs"
	IssuerCRLDir     = "issuer/crl"
	RejectedCertsDir = "rejected/certs"
)

// Files of the gateway's own application instance certificate.
const (
	OwnCertFile = "gateway.der" // in own/certs
	OwnKeyFile  = "gateway.pem" // in own/private: PKCS #1 RSA PRIVATE KEY, mode 0600
)

// DefaultMaxRejected is how many certificates rejected/certs keeps: the
// newest; older ones are removed so that a flood of unknown certificates
// cannot fill the disk.
const DefaultMaxRejected = 1000

// layout lists every folder with its mode: private folders are 0700.
var layout = []struct {
	dir  string
	mode fs.FileMode
}{
	{"own", 0o700},
	{OwnCertsDir, 0o755},
	{OwnPrivateDir, 0o700},
	{"trusted", 0o755},
	{TrustedCertsDir, 0o755},
	{TrustedCRLDir, 0o755},
	{"issuer", 0o755},
	{IssuerCertsDir, 0o755},
	{IssuerCRLDir, 0o755},
	{"rejected", 0o700},
	{RejectedCertsDir, 0o700},
}

// Store is a PKI directory in the OPC 10000-12 layout. Its methods are safe
// for concurrent use; the folders are read on every validation, so a
// certificate trusted with `interlock certs trust` counts at once.
type Store struct {
	dir string
	// MaxRejected caps the files in rejected/certs (0: DefaultMaxRejected).
	// Set it before the store is used.
	MaxRejected int

	rejectMu sync.Mutex

	cacheMu sync.Mutex
	cache   map[string]cacheEntry // parsed certificate files of trusted/ and issuer/
}

// Open opens the store at dir, refusing a missing or incomplete layout with
// an error naming the missing folder.
func Open(dir string) (*Store, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("certs: PKI directory %s: %w (create it with `interlock certs init --pki %s`)", dir, unwrapPath(err), dir)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("certs: PKI directory %s is not a directory", dir)
	}
	for _, l := range layout {
		p := filepath.Join(dir, filepath.FromSlash(l.dir))
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("certs: PKI directory %s is incomplete: %s: %w (create the layout with `interlock certs init --pki %s`)", dir, p, unwrapPath(err), dir)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("certs: %s is not a directory", p)
		}
	}
	return &Store{dir: dir}, nil
}

// unwrapPath drops the path of an *fs.PathError, which the message names already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Dir is the store directory.
func (s *Store) Dir() string { return s.dir }

// Path joins a folder of the layout (OwnCertsDir …) and names under it.
func (s *Store) Path(folder string, name ...string) string {
	return filepath.Join(append([]string{s.dir, filepath.FromSlash(folder)}, name...)...)
}

// OwnCertPath and OwnKeyPath are the files of the gateway's own certificate and key.
func (s *Store) OwnCertPath() string { return s.Path(OwnCertsDir, OwnCertFile) }
func (s *Store) OwnKeyPath() string  { return s.Path(OwnPrivateDir, OwnKeyFile) }

// Own reads the gateway's application instance certificate (DER) and its
// private key, refusing a key file open to group or others and a key that
// does not belong to the certificate.
func (s *Store) Own() (cert []byte, key *rsa.PrivateKey, err error) {
	certPath, keyPath := s.OwnCertPath(), s.OwnKeyPath()
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: own certificate: %w (create it with `interlock certs init --pki %s`)", err, s.dir)
	}
	c, err := parseOne(b)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: own certificate %s: %w", certPath, err)
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: own private key: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, nil, fmt.Errorf("certs: private key %s is open to group or others (mode %04o): make it private with chmod 600 %s", keyPath, perm, keyPath)
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: own private key: %w", err)
	}
	key, err = parseRSAKey(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: private key %s: %w", keyPath, err)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, nil, fmt.Errorf("certs: private key %s does not belong to the certificate %s", keyPath, certPath)
	}
	return c.Raw, key, nil
}

// parseRSAKey reads a PEM RSA key, PKCS #1 or PKCS #8.
func parseRSAKey(b []byte) (*rsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	switch blk.Type {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T, not an RSA key", k)
		}
		return rk, nil
	}
	return nil, fmt.Errorf("a PEM %s block, want RSA PRIVATE KEY or PRIVATE KEY", blk.Type)
}

// Thumbprint is the hex SHA-1 of a DER certificate, lower case, as OPC UA
// names certificates.
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return hex.EncodeToString(sum[:])
}

// decodeCerts reads the certificates of a file: DER (one or several
// concatenated) or PEM CERTIFICATE blocks.
func decodeCerts(b []byte) ([]*x509.Certificate, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) {
		var out []*x509.Certificate
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			cs, err := x509.ParseCertificates(blk.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, cs...)
		}
		if len(out) == 0 {
			return nil, errors.New("no PEM CERTIFICATE block")
		}
		return out, nil
	}
	cs, err := x509.ParseCertificates(b)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, errors.New("empty")
	}
	return cs, nil
}

// parseOne reads a file holding exactly one certificate.
func parseOne(b []byte) (*x509.Certificate, error) {
	cs, err := decodeCerts(b)
	if err != nil {
		return nil, err
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("%d certificates in one file, want one", len(cs))
	}
	return cs[0], nil
}

// decodeCRL reads a CRL file, DER or PEM X509 CRL.
func decodeCRL(b []byte) (*x509.RevocationList, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "X509 CRL" {
			return nil, fmt.Errorf("a PEM %s block, want X509 CRL", blk.Type)
		}
		b = blk.Bytes
	}
	return x509.ParseRevocationList(b)
}

// storedCert is a certificate read from a folder.
type storedCert struct {
	path string
	cert *x509.Certificate
}

// readCerts reads every certificate file in a folder. Files that are not
// certificates are reported in bad, not fatal: one stray file must not stop
// validation. Parsed files are cached by path, size and modification time.
func (s *Store) readCerts(dir string) (certs []storedCert, bad []error, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	seen := make(map[string]bool, len(ents))
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !isCertName(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		seen[p] = true
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		key := fileKey{size: fi.Size(), mod: fi.ModTime()}
		s.cacheMu.Lock()
		ce, ok := s.cache[p]
		s.cacheMu.Unlock()
		if !ok || ce.key != key {
			ce = cacheEntry{key: key}
			b, rerr := os.ReadFile(p)
			if rerr == nil {
				ce.certs, ce.err = decodeCerts(b)
			} else {
				ce.err = rerr
			}
			if ce.err != nil {
				ce.err = fmt.Errorf("%s: %w", p, ce.err)
			}
			s.cacheMu.Lock()
			if s.cache == nil {
				s.cache = map[string]cacheEntry{}
			}
			s.cache[p] = ce
			s.cacheMu.Unlock()
		}
		if ce.err != nil {
			bad = append(bad, ce.err)
			continue
		}
		for _, c := range ce.certs {
			certs = append(certs, storedCert{path: p, cert: c})
		}
	}
	// Forget files that are gone from this folder.
	s.cacheMu.Lock()
	for p := range s.cache {
		if filepath.Dir(p) == dir && !seen[p] {
			delete(s.cache, p)
		}
	}
	s.cacheMu.Unlock()
	return certs, bad, nil
}

type fileKey struct {
	size int64
	mod  time.Time
}

type cacheEntry struct {
	key   fileKey
	certs []*x509.Certificate
	err   error
}

// isCertName says whether a file name looks like a certificate file.
func isCertName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".der", ".cer", ".crt", ".pem":
		return true
	}
	return false
}

// readCRLs reads the CRL files of a folder (.crl, .der, .pem).
func readCRLs(dir string) ([]*x509.RevocationList, []error, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []*x509.RevocationList
	var bad []error
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".crl", ".der", ".pem":
		default:
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		crl, err := decodeCRL(b)
		if err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", p, err))
			continue
		}
		out = append(out, crl)
	}
	return out, bad, nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// folder, with exactly mode, and renames it into place.
func writeFileAtomic(path string, b []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
