package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// ReadPEMCertificates reads a file of PEM certificates (a TLS certificate
// chain or a CA bundle): its bytes and the certificates, at least one. A
// CERTIFICATE block that does not parse is an error, not skipped; blocks of
// other types are.
func ReadPEMCertificates(path string) ([]byte, []*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: certificate %d: %v", path, len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return b, certs, nil
}
