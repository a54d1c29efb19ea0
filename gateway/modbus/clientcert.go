package modbus

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"unicode/utf8"
)

// OIDRole is the X.509 extension of Modbus/TCP Security (MB-TCP-Security
// v21, the RoleOID) that carries the role of a client certificate's holder
// as an ASN.1 UTF8String.
var OIDRole = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 50316, 802, 1}

// CertRoles returns the roles a client certificate carries: its role
// extension's UTF8String as the one role, or none when the certificate has
// no role extension (never a default). An extension that is not a single
// non-empty DER UTF8String with nothing after it is an error naming the
// OID: a role the gateway would read one way and another device another way
// must not authorize anything.
func CertRoles(cert *x509.Certificate) ([]string, error) {
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(OIDRole) {
			continue
		}
		role, err := parseRole(ext.Value)
		if err != nil {
			return nil, fmt.Errorf("role extension %v: %w", OIDRole, err)
		}
		return []string{role}, nil
	}
	return nil, nil
}

func parseRole(der []byte) (string, error) {
	var v asn1.RawValue
	rest, err := asn1.Unmarshal(der, &v)
	switch {
	case err != nil:
		return "", fmt.Errorf("not DER: %v", err)
	case len(rest) > 0:
		return "", fmt.Errorf("%d bytes after the UTF8String", len(rest))
	case v.Class != asn1.ClassUniversal || v.Tag != asn1.TagUTF8String || v.IsCompound:
		return "", fmt.Errorf("not a UTF8String (class %d, tag %d)", v.Class, v.Tag)
	case len(v.Bytes) == 0:
		return "", errors.New("an empty UTF8String")
	case !utf8.Valid(v.Bytes):
		return "", errors.New("a UTF8String that is not UTF-8")
	}
	return string(v.Bytes), nil
}
