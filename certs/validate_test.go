package certs

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

func code(err error) ua.StatusCode {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Code
	}
	return 0
}

// wantCode checks that err is a *ValidationError with code, whose message
// names the certificate and the check.
func wantCode(t *testing.T, err error, want ua.StatusCode) *ValidationError {
	t.Helper()
	if want == ua.StatusOK {
		if err != nil {
			t.Fatalf("Validate: %v, want nil", err)
		}
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v (%T), want a *ValidationError with %s", err, err, StatusName(want))
	}
	if ve.Code != want {
		t.Fatalf("Validate: %s, want %s: %v", StatusName(ve.Code), StatusName(want), err)
	}
	msg := err.Error()
	for _, part := range []string{ve.Thumbprint, ve.Check, StatusName(want)} {
		if part == "" || !strings.Contains(msg, part) {
			t.Errorf("error %q does not name %q", msg, part)
		}
	}
	if ve.Subject != "" && !strings.Contains(msg, ve.Subject) {
		t.Errorf("error %q does not name the subject %q", msg, ve.Subject)
	}
	return ve
}

func TestValidate(t *testing.T) {
	keys(t)
	now := time.Now()
	type setup func(t *testing.T, s *Store) (chain []byte, o ValidateOptions)
	selfTrusted := func(sp spec, o ValidateOptions) setup {
		return func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			c := mkCert(t, sp)
			trust(t, s, c)
			return c.der, o
		}
	}
	// caPKI: a root CA in folder (trusted or issuer), a leaf it issued,
	// and optionally its CRL.
	caPKI := func(caFolder string, withCRL bool, revoke bool, leafTrusted bool, sendCA bool) setup {
		return func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true})
			leaf := mkCert(t, spec{parent: ca})
			if caFolder != "" {
				put(t, s, caFolder, "ca.der", ca.der)
			}
			if withCRL {
				var rev []*testCert
				if revoke {
					rev = append(rev, leaf)
				}
				crlDir := TrustedCRLDir
				if caFolder == IssuerCertsDir {
					crlDir = IssuerCRLDir
				}
				put(t, s, crlDir, "ca.crl", mkCRL(t, ca, rev...))
			}
			if leafTrusted {
				trust(t, s, leaf)
			}
			chain := slices.Clone(leaf.der)
			if sendCA {
				chain = append(chain, ca.der...)
			}
			return chain, ValidateOptions{ApplicationURI: testURI}
		}
	}
	tests := []struct {
		name  string
		setup setup
		want  ua.StatusCode
		check func(t *testing.T, s *Store, chain []byte, ve *ValidationError)
	}{
		{name: "self-signed trusted", setup: selfTrusted(spec{}, ValidateOptions{ApplicationURI: testURI}), want: ua.StatusOK},
		{name: "self-signed trusted, PEM file in trusted", want: ua.StatusOK, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			c := mkCert(t, spec{})
			put(t, s, TrustedCertsDir, "client.pem", pemCert(c.der))
			return c.der, ValidateOptions{}
		}},
		{name: "unknown: rejected copy", want: ua.StatusBadCertificateUntrusted,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
				return mkCert(t, spec{}).der, ValidateOptions{}
			},
			check: func(t *testing.T, s *Store, chain []byte, ve *ValidationError) {
				want := s.Path(RejectedCertsDir, Thumbprint(chain)+".der")
				if ve.Rejected != want {
					t.Errorf("Rejected = %q, want %q", ve.Rejected, want)
				}
				b, err := os.ReadFile(want)
				if err != nil || !bytes.Equal(b, chain) {
					t.Errorf("rejected copy: %v, equal %v", err, bytes.Equal(b, chain))
				}
				if fs := files(t, s, TrustedCertsDir); len(fs) != 0 {
					t.Errorf("trusted/certs = %v: an unknown certificate was trusted", fs)
				}
				if !strings.Contains(ve.Error(), "interlock certs trust") {
					t.Errorf("error %q does not say how to trust it", ve.Error())
				}
			}},
		{name: "expired", want: ua.StatusBadCertificateTimeInvalid,
			setup: selfTrusted(spec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}, ValidateOptions{})},
		{name: "not yet valid", want: ua.StatusBadCertificateTimeInvalid,
			setup: selfTrusted(spec{notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)}, ValidateOptions{})},
		{name: "valid at the time asked", want: ua.StatusOK,
			setup: selfTrusted(spec{notBefore: now.Add(time.Hour), notAfter: now.Add(48 * time.Hour)}, ValidateOptions{Now: now.Add(2 * time.Hour)})},
		{name: "wrong ApplicationURI", want: ua.StatusBadCertificateURIInvalid,
			setup: selfTrusted(spec{uri: "urn:test:other"}, ValidateOptions{ApplicationURI: testURI})},
		{name: "right host name", want: ua.StatusOK,
			setup: selfTrusted(spec{dns: []string{"eng-ws1.plant.local"}, ips: []string{"10.1.2.3"}}, ValidateOptions{Hostname: "eng-ws1.plant.local"})},
		{name: "right IP address", want: ua.StatusOK,
			setup: selfTrusted(spec{dns: []string{"eng-ws1.plant.local"}, ips: []string{"10.1.2.3"}}, ValidateOptions{Hostname: "10.1.2.3"})},
		{name: "wrong host name", want: ua.StatusBadCertificateHostNameInvalid,
			setup: selfTrusted(spec{dns: []string{"eng-ws1.plant.local"}}, ValidateOptions{Hostname: "eng-ws2.plant.local"})},
		{name: "key usage lacks keyEncipherment", want: ua.StatusBadCertificateUseNotAllowed,
			setup: selfTrusted(spec{usage: x509.KeyUsageDigitalSignature}, ValidateOptions{})},
		{name: "no key usage", want: ua.StatusBadCertificateUseNotAllowed,
			setup: selfTrusted(spec{noUsage: true}, ValidateOptions{})},
		{name: "extended key usage only codeSigning", want: ua.StatusBadCertificateUseNotAllowed,
			setup: selfTrusted(spec{eku: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}, ValidateOptions{})},
		{name: "CA-issued, CA trusted, CRL", want: ua.StatusOK, setup: caPKI(TrustedCertsDir, true, false, false, false)},
		{name: "CA-issued, leaf trusted, CA in issuer with CRL", want: ua.StatusOK, setup: caPKI(IssuerCertsDir, true, false, true, false)},
		{name: "CA-issued, CA only in issuer", want: ua.StatusBadCertificateUntrusted, setup: caPKI(IssuerCertsDir, true, false, false, false)},
		{name: "CA-issued, revoked", want: ua.StatusBadCertificateRevoked, setup: caPKI(TrustedCertsDir, true, true, false, false)},
		{name: "CA-issued, CA without CRL", want: ua.StatusBadCertificateRevocationUnknown, setup: caPKI(TrustedCertsDir, false, false, false, false)},
		{name: "CA-issued, CA unknown", want: ua.StatusBadCertificateChainIncomplete, setup: caPKI("", false, false, false, false)},
		{name: "chain of two, CA trusted", want: ua.StatusOK, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true})
			leaf := mkCert(t, spec{parent: ca})
			trust(t, s, ca)
			put(t, s, TrustedCRLDir, "ca.crl", mkCRL(t, ca))
			return append(slices.Clone(leaf.der), ca.der...), ValidateOptions{ApplicationURI: testURI}
		}},
		{name: "chain of two, CA only sent", want: ua.StatusBadCertificateUntrusted, setup: caPKI("", true, false, false, true),
			check: func(t *testing.T, s *Store, chain []byte, ve *ValidationError) {
				leaf, _ := x509.ParseCertificates(chain)
				if got := files(t, s, RejectedCertsDir); !slices.Equal(got, []string{Thumbprint(leaf[0].Raw) + ".der"}) {
					t.Errorf("rejected/certs = %v, want the leaf only", got)
				}
			}},
		{name: "chain of two, CA trusted, leaf revoked", want: ua.StatusBadCertificateRevoked, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true})
			leaf := mkCert(t, spec{parent: ca})
			trust(t, s, ca)
			put(t, s, IssuerCRLDir, "ca.crl", mkCRL(t, ca, leaf))
			return append(slices.Clone(leaf.der), ca.der...), ValidateOptions{}
		}},
		{name: "CRL of another CA does not count", want: ua.StatusBadCertificateRevocationUnknown, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true})
			other := mkCert(t, spec{cn: "other CA", ca: true, key: subKey})
			leaf := mkCert(t, spec{parent: ca})
			trust(t, s, ca)
			put(t, s, TrustedCRLDir, "other.crl", mkCRL(t, other, leaf))
			return leaf.der, ValidateOptions{}
		}},
		{name: "intermediate sent, root trusted, both CRLs", want: ua.StatusOK, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			root := mkCert(t, spec{cn: "test root", ca: true})
			sub := mkCert(t, spec{cn: "test sub CA", ca: true, key: subKey, parent: root})
			leaf := mkCert(t, spec{parent: sub})
			trust(t, s, root)
			put(t, s, TrustedCRLDir, "root.crl", mkCRL(t, root))
			put(t, s, IssuerCRLDir, "sub.crl", mkCRL(t, sub))
			return append(slices.Clone(leaf.der), sub.der...), ValidateOptions{}
		}},
		{name: "intermediate without CRL of its root", want: ua.StatusBadCertificateIssuerRevocationUnknown, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			root := mkCert(t, spec{cn: "test root", ca: true})
			sub := mkCert(t, spec{cn: "test sub CA", ca: true, key: subKey, parent: root})
			leaf := mkCert(t, spec{parent: sub})
			trust(t, s, root)
			put(t, s, IssuerCRLDir, "sub.crl", mkCRL(t, sub))
			return append(slices.Clone(leaf.der), sub.der...), ValidateOptions{}
		}},
		{name: "intermediate revoked", want: ua.StatusBadCertificateIssuerRevoked, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			root := mkCert(t, spec{cn: "test root", ca: true})
			sub := mkCert(t, spec{cn: "test sub CA", ca: true, key: subKey, parent: root})
			leaf := mkCert(t, spec{parent: sub})
			trust(t, s, root)
			put(t, s, TrustedCRLDir, "root.crl", mkCRL(t, root, sub))
			put(t, s, IssuerCRLDir, "sub.crl", mkCRL(t, sub))
			return append(slices.Clone(leaf.der), sub.der...), ValidateOptions{}
		}},
		{name: "CA expired", want: ua.StatusBadCertificateIssuerTimeInvalid, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true, notBefore: now.Add(-72 * time.Hour), notAfter: now.Add(-time.Hour)})
			leaf := mkCert(t, spec{parent: ca})
			trust(t, s, ca)
			put(t, s, TrustedCRLDir, "ca.crl", mkCRL(t, ca))
			return leaf.der, ValidateOptions{}
		}},
		{name: "issuer is not a CA", want: ua.StatusBadCertificateIssuerUseNotAllowed, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			notCA := mkCert(t, spec{cn: "an application", key: caKey, usage: appUsageBits | x509.KeyUsageCertSign})
			leaf := mkCert(t, spec{parent: notCA})
			trust(t, s, notCA)
			return leaf.der, ValidateOptions{}
		}},
		{name: "bad signature", want: ua.StatusBadCertificateInvalid, setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
			ca := mkCert(t, spec{cn: "test CA", ca: true})
			leaf := mkCert(t, spec{parent: ca})
			trust(t, s, ca)
			der := slices.Clone(leaf.der)
			der[len(der)-10] ^= 0xff // inside the signature
			return der, ValidateOptions{}
		}},
		{name: "ECDSA certificate", want: ua.StatusBadCertificatePolicyCheckFailed,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
				c := mkCert(t, spec{key: eKey})
				trust(t, s, c)
				return c.der, ValidateOptions{}
			}},
		{name: "ECDSA certificate, unknown", want: ua.StatusBadCertificatePolicyCheckFailed,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
				return mkCert(t, spec{key: eKey}).der, ValidateOptions{}
			}},
		{name: "garbage", want: ua.StatusBadCertificateInvalid,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
				return []byte("\x30\x82\x01\x00garbage, not a certificate"), ValidateOptions{}
			}},
		{name: "empty", want: ua.StatusBadCertificateInvalid,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) { return nil, ValidateOptions{} }},
		{name: "trailing garbage after a certificate", want: ua.StatusBadCertificateInvalid,
			setup: func(t *testing.T, s *Store) ([]byte, ValidateOptions) {
				c := mkCert(t, spec{})
				trust(t, s, c)
				return append(slices.Clone(c.der), 0x30, 0x03, 1, 2), ValidateOptions{}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			chain, o := tc.setup(t, s)
			err := s.Validate(chain, o)
			t.Log(err)
			ve := wantCode(t, err, tc.want)
			if tc.want != ua.StatusBadCertificateUntrusted {
				if fs := files(t, s, RejectedCertsDir); len(fs) != 0 {
					t.Errorf("rejected/certs = %v after %v", fs, err)
				}
			}
			if tc.check != nil {
				tc.check(t, s, chain, ve)
			}
		})
	}
}

// The checks run in the order of OPC 10000-4 §6.1.3: a certificate that
// fails several reports the first.
func TestValidateOrder(t *testing.T) {
	now := time.Now()
	expiredWrongURI := spec{uri: "urn:test:other", notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour), usage: x509.KeyUsageDigitalSignature}
	t.Run("untrusted before expired", func(t *testing.T) {
		s := newStore(t)
		wantCode(t, s.Validate(mkCert(t, expiredWrongURI).der, ValidateOptions{ApplicationURI: testURI}), ua.StatusBadCertificateUntrusted)
	})
	t.Run("expired before URI and usage", func(t *testing.T) {
		s := newStore(t)
		c := mkCert(t, expiredWrongURI)
		trust(t, s, c)
		wantCode(t, s.Validate(c.der, ValidateOptions{ApplicationURI: testURI}), ua.StatusBadCertificateTimeInvalid)
	})
	t.Run("host name before URI", func(t *testing.T) {
		s := newStore(t)
		c := mkCert(t, spec{uri: "urn:test:other", usage: x509.KeyUsageDigitalSignature})
		trust(t, s, c)
		wantCode(t, s.Validate(c.der, ValidateOptions{ApplicationURI: testURI, Hostname: "nowhere.example"}), ua.StatusBadCertificateHostNameInvalid)
	})
	t.Run("URI before usage", func(t *testing.T) {
		s := newStore(t)
		c := mkCert(t, spec{uri: "urn:test:other", usage: x509.KeyUsageDigitalSignature})
		trust(t, s, c)
		wantCode(t, s.Validate(c.der, ValidateOptions{ApplicationURI: testURI}), ua.StatusBadCertificateURIInvalid)
	})
	t.Run("policy before trust list", func(t *testing.T) {
		s := newStore(t)
		wantCode(t, s.Validate(mkCert(t, spec{key: eKey}).der, ValidateOptions{}), ua.StatusBadCertificatePolicyCheckFailed)
	})
}

// A flood of unknown certificates keeps only the newest MaxRejected.
func TestRejectedCap(t *testing.T) {
	s := newStore(t)
	s.MaxRejected = 3
	var last string
	for i := range 6 {
		c := mkCert(t, spec{cn: fmt.Sprint("flood ", i)})
		wantCode(t, s.Validate(c.der, ValidateOptions{}), ua.StatusBadCertificateUntrusted)
		last = Thumbprint(c.der) + ".der"
	}
	got := files(t, s, RejectedCertsDir)
	if len(got) != 3 || !slices.Contains(got, last) {
		t.Fatalf("rejected/certs = %v, want 3 files with the newest %s", got, last)
	}
	// The same certificate again does not add a file.
	c := mkCert(t, spec{cn: "again"})
	for range 3 {
		s.Validate(c.der, ValidateOptions{})
	}
	if got := files(t, s, RejectedCertsDir); len(got) != 3 || !slices.Contains(got, Thumbprint(c.der)+".der") {
		t.Fatalf("rejected/certs = %v", got)
	}
}

// Validate is safe for concurrent use, rejecting included.
func TestValidateConcurrent(t *testing.T) {
	s := newStore(t)
	s.MaxRejected = 5
	good := mkCert(t, spec{})
	trust(t, s, good)
	var bad []*testCert
	for i := range 8 {
		bad = append(bad, mkCert(t, spec{cn: fmt.Sprint("unknown ", i)}))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Validate(good.der, ValidateOptions{ApplicationURI: testURI}); err != nil {
				errs <- err
			}
			if err := s.Validate(bad[i%len(bad)].der, ValidateOptions{}); code(err) != ua.StatusBadCertificateUntrusted {
				errs <- fmt.Errorf("unknown certificate: %v", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := files(t, s, RejectedCertsDir); len(got) > 5 {
		t.Errorf("rejected/certs holds %d files, cap 5", len(got))
	}
}

// Validate never panics, whatever the bytes.
func FuzzValidate(f *testing.F) {
	keys(f)
	c := mkCert(f, spec{})
	ca := mkCert(f, spec{cn: "test CA", ca: true})
	leaf := mkCert(f, spec{parent: ca})
	f.Add(c.der)
	f.Add(append(slices.Clone(leaf.der), ca.der...))
	f.Add(c.der[:len(c.der)/2])
	f.Add([]byte{0x30, 0x80})
	s := newStore(f)
	trust(f, s, ca)
	s.MaxRejected = 10
	f.Fuzz(func(t *testing.T, b []byte) {
		err := s.Validate(b, ValidateOptions{ApplicationURI: testURI, Hostname: "h"})
		var ve *ValidationError
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("%T %v", err, err)
		}
	})
}

// Suppress lets through only the checks it names, and reports each.
func TestValidateSuppress(t *testing.T) {
	now := time.Now()
	all := SuppressPolicy | SuppressValidity | SuppressHostName | SuppressUsage | SuppressRevocationUnknown
	type tcase struct {
		name     string
		cert     func(t *testing.T, s *Store) []byte
		o        ValidateOptions
		want     ua.StatusCode
		reported []ua.StatusCode
	}
	self := func(sp spec) func(t *testing.T, s *Store) []byte {
		return func(t *testing.T, s *Store) []byte {
			c := mkCert(t, sp)
			trust(t, s, c)
			return c.der
		}
	}
	caNoCRL := func(t *testing.T, s *Store) []byte {
		ca := mkCert(t, spec{cn: "test CA", ca: true})
		trust(t, s, ca)
		return mkCert(t, spec{parent: ca}).der
	}
	expired := spec{notBefore: now.Add(-48 * time.Hour), notAfter: now.Add(-time.Hour)}
	for _, tc := range []tcase{
		{"expired, validity suppressed", self(expired), ValidateOptions{Suppress: SuppressValidity}, ua.StatusOK, []ua.StatusCode{ua.StatusBadCertificateTimeInvalid}},
		{"expired, other checks suppressed", self(expired), ValidateOptions{Suppress: all &^ SuppressValidity}, ua.StatusBadCertificateTimeInvalid, nil},
		{"wrong host, suppressed", self(spec{dns: []string{"a"}}), ValidateOptions{Hostname: "b", Suppress: SuppressHostName}, ua.StatusOK, []ua.StatusCode{ua.StatusBadCertificateHostNameInvalid}},
		{"usage, suppressed", self(spec{usage: x509.KeyUsageDigitalSignature}), ValidateOptions{Suppress: SuppressUsage}, ua.StatusOK, []ua.StatusCode{ua.StatusBadCertificateUseNotAllowed}},
		{"no CRL, suppressed", caNoCRL, ValidateOptions{Suppress: SuppressRevocationUnknown}, ua.StatusOK, []ua.StatusCode{ua.StatusBadCertificateRevocationUnknown}},
		{"expired with wrong URI, all suppressed", self(spec{notBefore: expired.notBefore, notAfter: expired.notAfter, uri: "urn:x"}),
			ValidateOptions{ApplicationURI: testURI, Suppress: all}, ua.StatusBadCertificateURIInvalid, []ua.StatusCode{ua.StatusBadCertificateTimeInvalid}},
		{"ECDSA, policy suppressed", self(spec{key: eKey}), ValidateOptions{Suppress: all}, ua.StatusBadCertificatePolicyCheckFailed, nil},
		{"untrusted, all suppressed", func(t *testing.T, s *Store) []byte { return mkCert(t, spec{}).der }, ValidateOptions{Suppress: all}, ua.StatusBadCertificateUntrusted, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			der := tc.cert(t, s)
			var got []ua.StatusCode
			tc.o.OnSuppressed = func(e *ValidationError) { got = append(got, e.Code) }
			wantCode(t, s.Validate(der, tc.o), tc.want)
			if !slices.Equal(got, tc.reported) {
				t.Errorf("reported %v, want %v", got, tc.reported)
			}
		})
	}
	t.Run("small key, policy suppressed", func(t *testing.T) {
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			t.Fatal(err)
		}
		s := newStore(t)
		c := mkCert(t, spec{key: small})
		trust(t, s, c)
		var got []ua.StatusCode
		wantCode(t, s.Validate(c.der, ValidateOptions{Suppress: SuppressPolicy, OnSuppressed: func(e *ValidationError) { got = append(got, e.Code) }}), ua.StatusOK)
		if !slices.Equal(got, []ua.StatusCode{ua.StatusBadCertificatePolicyCheckFailed}) {
			t.Errorf("reported %v", got)
		}
	})
}

// BenchmarkValidate: a trusted self-signed client among 20 trusted
// certificates, and an unknown one (rejected copy written once, then its
// time refreshed).
func BenchmarkValidate(b *testing.B) {
	s := newStore(b)
	for i := range 19 {
		trust(b, s, mkCert(b, spec{cn: fmt.Sprint("other ", i)}))
	}
	good := mkCert(b, spec{})
	trust(b, s, good)
	bad := mkCert(b, spec{cn: "unknown"})
	b.Run("trusted", func(b *testing.B) {
		for b.Loop() {
			if err := s.Validate(good.der, ValidateOptions{ApplicationURI: testURI}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("untrusted", func(b *testing.B) {
		for b.Loop() {
			if code(s.Validate(bad.der, ValidateOptions{})) != ua.StatusBadCertificateUntrusted {
				b.Fatal("not refused")
			}
		}
	})
}

// ValidUntil is the earliest NotAfter of the chain validated on, whether
// the leaf or a CA in the store ends first.
func TestValidUntil(t *testing.T) {
	keys(t)
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		name           string
		caEnd, leafEnd time.Time
	}{
		{"the leaf ends first", now.Add(48 * time.Hour), now.Add(2 * time.Hour)},
		{"the CA ends first", now.Add(3 * time.Hour), now.Add(30 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ca := mkCert(t, spec{cn: "test CA", ca: true, notAfter: tc.caEnd})
			leaf := mkCert(t, spec{parent: ca, notAfter: tc.leafEnd})
			put(t, s, TrustedCertsDir, "ca.der", ca.der)
			put(t, s, TrustedCRLDir, "ca.crl", mkCRL(t, ca))
			got, err := s.ValidUntil(leaf.der, ValidateOptions{ApplicationURI: testURI})
			if err != nil {
				t.Fatal(err)
			}
			want := tc.leafEnd
			if tc.caEnd.Before(want) {
				want = tc.caEnd
			}
			if !got.Equal(want) {
				t.Errorf("ValidUntil = %v, want %v", got, want)
			}
		})
	}
	s := newStore(t)
	if _, err := s.ValidUntil(mkCert(t, spec{}).der, ValidateOptions{}); err == nil {
		t.Error("ValidUntil of an untrusted certificate: no error")
	}
}
