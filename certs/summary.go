package certs

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
)

// TrustFolders are the folders of a store whose files decide whether a
// peer is trusted: the trust list, the issuers, and their CRLs.
var TrustFolders = []string{TrustedCertsDir, TrustedCRLDir, IssuerCertsDir, IssuerCRLDir}

// Summary is what a store's trust lists hold.
type Summary struct {
	Trusted, Issuers int // certificates in trusted/certs and issuer/certs
	CRLs, Revoked    int // CRLs in trusted/crl and issuer/crl, and the entries in them
	// Digest changes when any certificate or CRL of the trust lists does.
	Digest string
}

// Summary reads the trust lists as a validation would now.
func (s *Store) Summary() (Summary, error) {
	var sum Summary
	var parts []string
	for _, f := range []struct {
		dir string
		n   *int
	}{{TrustedCertsDir, &sum.Trusted}, {IssuerCertsDir, &sum.Issuers}} {
		cs, _, err := s.readCerts(s.Path(f.dir))
		if err != nil {
			return Summary{}, err
		}
		*f.n = len(cs)
		for _, c := range cs {
			parts = append(parts, f.dir+" "+Thumbprint(c.cert.Raw))
		}
	}
	crls, err := s.readAllCRLs()
	if err != nil {
		return Summary{}, err
	}
	sum.CRLs = len(crls)
	for _, l := range crls {
		sum.Revoked += len(l.RevokedCertificateEntries)
		h := sha256.Sum256(l.Raw)
		parts = append(parts, "crl "+hex.EncodeToString(h[:]))
	}
	slices.Sort(parts)
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p + "\n"))
	}
	sum.Digest = hex.EncodeToString(h.Sum(nil))
	return sum, nil
}
