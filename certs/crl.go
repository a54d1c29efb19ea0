package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"
)

// ReadCRLFile reads a file of certificate revocation lists: one DER CRL, or
// one or more PEM "X509 CRL" blocks. A CRL that does not parse is an error
// naming its place in the file; a file without a CRL is an error.
func ReadCRLFile(path string) ([]*x509.RevocationList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.RevocationList
	rest := b
	for {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: CRL %d: %v", path, len(out)+1, err)
		}
		out = append(out, l)
	}
	if len(out) > 0 {
		return out, nil
	}
	if bytes.Contains(b, []byte("-----BEGIN")) {
		return nil, fmt.Errorf("%s holds no PEM X509 CRL block", path)
	}
	l, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("%s: not a DER or PEM CRL: %v", path, err)
	}
	return []*x509.RevocationList{l}, nil
}

// CRLsOf returns the CRLs of crls issued and signed by the CA ca.
func CRLsOf(ca *x509.Certificate, crls []*x509.RevocationList) []*x509.RevocationList {
	var out []*x509.RevocationList
	for _, l := range crls {
		if bytes.Equal(l.RawIssuer, ca.RawSubject) && l.CheckSignatureFrom(ca) == nil {
			out = append(out, l)
		}
	}
	return out
}

// RevokedBy returns the entry that revokes c in one of lists (the CRLs of
// c's issuer, CRLsOf) and the list it is in; nil when none does.
func RevokedBy(c *x509.Certificate, lists []*x509.RevocationList) (*x509.RevocationListEntry, *x509.RevocationList) {
	for _, l := range lists {
		for i := range l.RevokedCertificateEntries {
			r := &l.RevokedCertificateEntries[i]
			if r.SerialNumber != nil && r.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return r, l
			}
		}
	}
	return nil, nil
}

// UnsignedCRL returns the index in crls of the first CRL that no CA of cas
// issued and signed, and whether there is one: a file of CRLs is only of
// use when each belongs to a trusted CA.
func UnsignedCRL(crls []*x509.RevocationList, cas []*x509.Certificate) (int, bool) {
	for i, l := range crls {
		signed := false
		for _, ca := range cas {
			if len(CRLsOf(ca, []*x509.RevocationList{l})) > 0 {
				signed = true
				break
			}
		}
		if !signed {
			return i, true
		}
	}
	return 0, false
}

// StaleCRLs says which CRLs are past their next update at now, one line
// each (they still revoke what they list; the CA's newer CRL is due).
func StaleCRLs(crls []*x509.RevocationList, now time.Time) []string {
	var out []string
	for _, l := range crls {
		if !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
			out = append(out, fmt.Sprintf("the CRL of %q was due for its next update at %s", l.Issuer.String(), l.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return out
}

// RevokedCount is the number of entries over all crls.
func RevokedCount(crls []*x509.RevocationList) int {
	n := 0
	for _, l := range crls {
		n += len(l.RevokedCertificateEntries)
	}
	return n
}

// CheckChainRevocation checks the chains a peer's certificate verified along
// against crls (a TLS handshake's verified chains): a certificate revoked
// on any of them is an error naming it and its CRL's issuer; otherwise one
// chain whose every issued certificate has a CRL of its issuer is enough,
// and without one the error is "revocation unknown". A CRL past its next
// update still revokes what it lists. Without CRLs there is nothing to
// check.
func CheckChainRevocation(chains [][]*x509.Certificate, crls []*x509.RevocationList) error {
	if len(crls) == 0 {
		return nil
	}
	var unknown error
	checked := false
	for _, chain := range chains {
		complete := true
		for i := 0; i+1 < len(chain); i++ {
			lists := CRLsOf(chain[i+1], crls)
			if len(lists) == 0 {
				complete = false
				if unknown == nil {
					unknown = fmt.Errorf("revocation unknown: no CRL of %q, the issuer of %q", chain[i+1].Subject.String(), chain[i].Subject.String())
				}
				continue
			}
			if r, _ := RevokedBy(chain[i], lists); r != nil {
				return fmt.Errorf("certificate %q (serial %s) revoked at %s by a CRL of %q", chain[i].Subject.String(),
					chain[i].SerialNumber.Text(16), r.RevocationTime.UTC().Format(time.RFC3339), chain[i+1].Subject.String())
			}
		}
		checked = checked || complete
	}
	if !checked && unknown != nil {
		return unknown
	}
	return nil
}
