package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Info describes a certificate file of a folder, for listings.
type Info struct {
	Folder         string // OwnCertsDir, TrustedCertsDir, IssuerCertsDir or RejectedCertsDir
	Path           string
	Subject        string
	Issuer         string
	Thumbprint     string
	ApplicationURI string // the first subjectAltName URI, "" when none
	NotBefore      time.Time
	NotAfter       time.Time
	IsCA           bool
	Err            error // the file could not be read as a certificate; only Folder and Path are set
}

// Describe fills an Info from a certificate.
func Describe(c *x509.Certificate) Info {
	i := Info{Subject: c.Subject.String(), Issuer: c.Issuer.String(), Thumbprint: Thumbprint(c.Raw),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, IsCA: c.BasicConstraintsValid && c.IsCA}
	if len(c.URIs) > 0 {
		i.ApplicationURI = c.URIs[0].String()
	}
	return i
}

// List describes the certificates of one folder of the store (OwnCertsDir,
// TrustedCertsDir, IssuerCertsDir or RejectedCertsDir), sorted by subject.
// Files that are not certificates come back with Err set.
func (s *Store) List(folder string) ([]Info, error) {
	dir := s.Path(folder)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !isCertName(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		var cs []*x509.Certificate
		if err == nil {
			cs, err = decodeCerts(b)
		}
		if err != nil {
			out = append(out, Info{Folder: folder, Path: p, Err: err})
			continue
		}
		for _, c := range cs {
			i := Describe(c)
			i.Folder, i.Path = folder, p
			out = append(out, i)
		}
	}
	slices.SortStableFunc(out, func(a, b Info) int {
		if c := strings.Compare(a.Subject, b.Subject); c != 0 {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return out, nil
}

// find looks a certificate up in a folder by its thumbprint or a unique
// prefix of at least 8 hex digits of it.
func (s *Store) find(folder, thumbprint string) (Info, *x509.Certificate, error) {
	want := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(thumbprint), ":", ""))
	if len(want) < 8 || strings.Trim(want, "0123456789abcdef") != "" {
		return Info{}, nil, fmt.Errorf("certs: %q is not a thumbprint (the hex SHA-1 of the certificate, at least 8 digits of it)", thumbprint)
	}
	infos, err := s.List(folder)
	if err != nil {
		return Info{}, nil, err
	}
	var hits []Info
	for _, i := range infos {
		if i.Err == nil && strings.HasPrefix(i.Thumbprint, want) {
			hits = append(hits, i)
		}
	}
	switch {
	case len(hits) == 0:
		return Info{}, nil, fmt.Errorf("certs: no certificate with thumbprint %s in %s", want, s.Path(folder))
	case len(hits) > 1:
		var names []string
		for _, h := range hits {
			names = append(names, h.Thumbprint+" ("+h.Path+")")
		}
		return Info{}, nil, fmt.Errorf("certs: thumbprint %s is ambiguous in %s: %s", want, s.Path(folder), strings.Join(names, ", "))
	}
	b, err := os.ReadFile(hits[0].Path)
	if err != nil {
		return Info{}, nil, fmt.Errorf("certs: %w", err)
	}
	cs, err := decodeCerts(b)
	if err != nil {
		return Info{}, nil, fmt.Errorf("certs: %s: %w", hits[0].Path, err)
	}
	if len(cs) != 1 {
		return Info{}, nil, fmt.Errorf("certs: %s holds %d certificates; move it by hand", hits[0].Path, len(cs))
	}
	return hits[0], cs[0], nil
}

// Trust moves a certificate of rejected/certs, named by its thumbprint (or
// a unique prefix of it), to trusted/certs/<thumbprint>.der and returns the
// new path.
func (s *Store) Trust(thumbprint string) (string, error) {
	info, c, err := s.find(RejectedCertsDir, thumbprint)
	if err != nil {
		return "", err
	}
	p, err := s.addTrusted(c)
	if err != nil {
		return "", err
	}
	if err := os.Remove(info.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("certs: trusted as %s, but removing %s failed: %w", p, info.Path, err)
	}
	return p, nil
}

// TrustFile copies the certificate of a file (DER or PEM, one certificate:
// an application certificate or a CA) to trusted/certs/<thumbprint>.der,
// removes its copy from rejected/certs if there is one, and returns the
// new path.
func (s *Store) TrustFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("certs: %w", err)
	}
	c, err := parseOne(b)
	if err != nil {
		return "", fmt.Errorf("certs: %s: %w", path, err)
	}
	p, err := s.addTrusted(c)
	if err != nil {
		return "", err
	}
	rej := s.Path(RejectedCertsDir, Thumbprint(c.Raw)+".der")
	if err := os.Remove(rej); err != nil && !errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("certs: trusted as %s, but removing %s failed: %w", p, rej, err)
	}
	return p, nil
}

func (s *Store) addTrusted(c *x509.Certificate) (string, error) {
	t := Thumbprint(c.Raw)
	if infos, err := s.List(TrustedCertsDir); err == nil {
		for _, i := range infos {
			if i.Thumbprint == t {
				return "", fmt.Errorf("certs: %s is trusted already: %s", t, i.Path)
			}
		}
	}
	p := s.Path(TrustedCertsDir, t+".der")
	if err := writeFileAtomic(p, c.Raw, 0o644); err != nil {
		return "", fmt.Errorf("certs: writing %s: %w", p, err)
	}
	return p, nil
}

// Reject moves a certificate of trusted/certs, named by its thumbprint (or
// a unique prefix of it), to rejected/certs/<thumbprint>.der and returns
// the new path. A certificate of a file holding several is refused.
func (s *Store) Reject(thumbprint string) (string, error) {
	info, c, err := s.find(TrustedCertsDir, thumbprint)
	if err != nil {
		return "", err
	}
	p := s.Path(RejectedCertsDir, info.Thumbprint+".der")
	s.rejectMu.Lock()
	err = writeFileAtomic(p, c.Raw, 0o600)
	s.rejectMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("certs: writing %s: %w", p, err)
	}
	if err := os.Remove(info.Path); err != nil {
		return "", fmt.Errorf("certs: copied to %s, but removing %s failed (it is still trusted): %w", p, info.Path, err)
	}
	return p, nil
}
