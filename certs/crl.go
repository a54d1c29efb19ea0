package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
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
