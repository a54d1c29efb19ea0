package modbus_test

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"unicode/utf8"

	"github.com/interlock-ics/interlock/gateway/modbus"
)

// FuzzCertRoles holds the role extension to one reading: whatever its
// bytes, a role is taken only when they are exactly the DER encoding of
// one non-empty UTF-8 UTF8String, so that no other device can read
// another role, or none, from the same certificate.
func FuzzCertRoles(f *testing.F) {
	for _, seed := range [][]byte{
		{0x0c, 0x08, 'e', 'n', 'g', 'i', 'n', 'e', 'e', 'r'},
		{0x13, 0x03, 'o', 'p', 's'},
		{0x0c, 0x81, 0x03, 'o', 'p', 's'}, // a length not in its shortest form
		{0x0c, 0x03, 'o', 'p', 's', 0x00},
		{0x2c, 0x03, 0x0c, 0x01, 'a'},
		{0x0c, 0x00},
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ext []byte) {
		cert := &x509.Certificate{Extensions: []pkix.Extension{{Id: modbus.OIDRole, Value: ext}}}
		roles, err := modbus.CertRoles(cert)
		if err != nil {
			if roles != nil {
				t.Fatalf("%x: roles %q beside the error %v", ext, roles, err)
			}
			return
		}
		if len(roles) != 1 || roles[0] == "" || !utf8.ValidString(roles[0]) {
			t.Fatalf("%x: roles %q", ext, roles)
		}
		der, err := asn1.MarshalWithParams(roles[0], "utf8")
		if err != nil || !bytes.Equal(der, ext) {
			t.Fatalf("%x read as role %q, whose DER is %x (%v)", ext, roles[0], der, err)
		}
	})
}
