package certs

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
)

// ValidateOptions are what the peer claims, to check against its certificate.
type ValidateOptions struct {
	// ApplicationURI the peer names in CreateSession; "" skips the URI check.
	ApplicationURI string
	// Hostname the certificate must name in its subjectAltName (a DNS name
	// or an IP address); "" skips the host name check.
	Hostname string
	// Now is the time of the validity check; zero means time.Now().
	Now time.Time
	// Suppress lets certificates through the checks it names (OPC 10000-4
	// §6.1.3 allows suppressing these, never structure, chain, signature,
	// trust list, ApplicationURI or a revoked certificate). A non-RSA key
	// is refused even with SuppressPolicy: no policy could use it.
	Suppress Suppress
	// OnSuppressed is called with each failure Suppress let through, so
	// that the caller can audit it.
	OnSuppressed func(*ValidationError)
}

// Suppress is a set of checks a configuration may suppress.
type Suppress uint8

const (
	SuppressPolicy            Suppress = 1 << iota // Bad_CertificatePolicyCheckFailed (key length, signature algorithm)
	SuppressValidity                               // Bad_CertificateTimeInvalid, Bad_CertificateIssuerTimeInvalid
	SuppressHostName                               // Bad_CertificateHostNameInvalid
	SuppressUsage                                  // Bad_CertificateUseNotAllowed, Bad_CertificateIssuerUseNotAllowed
	SuppressRevocationUnknown                      // Bad_CertificateRevocationUnknown, Bad_CertificateIssuerRevocationUnknown
)

// stop says whether a failure refuses the certificate, or is suppressed
// (and reported to OnSuppressed).
func (o *ValidateOptions) stop(e *ValidationError) bool {
	var bit Suppress
	switch e.Code {
	case ua.StatusBadCertificatePolicyCheckFailed:
		bit = SuppressPolicy
	case ua.StatusBadCertificateTimeInvalid, ua.StatusBadCertificateIssuerTimeInvalid:
		bit = SuppressValidity
	case ua.StatusBadCertificateHostNameInvalid:
		bit = SuppressHostName
	case ua.StatusBadCertificateUseNotAllowed, ua.StatusBadCertificateIssuerUseNotAllowed:
		bit = SuppressUsage
	case ua.StatusBadCertificateRevocationUnknown, ua.StatusBadCertificateIssuerRevocationUnknown:
		bit = SuppressRevocationUnknown
	}
	if bit == 0 || o.Suppress&bit == 0 {
		return true
	}
	if o.OnSuppressed != nil {
		o.OnSuppressed(e)
	}
	return false
}

// Checks, in the order of OPC 10000-4 §6.1.3 (Table 106), as they appear in
// ValidationError.Check.
const (
	CheckStructure      = "certificate structure"
	CheckChain          = "build certificate chain"
	CheckSignature      = "signature"
	CheckSecurityPolicy = "security policy"
	CheckTrustList      = "trust list"
	CheckValidity       = "validity period"
	CheckHostName       = "host name"
	CheckURI            = "application uri"
	CheckUsage          = "certificate usage"
	CheckFindCRL        = "find revocation list"
	CheckRevocation     = "revocation"
	// CheckStore is a store that could not be read: nothing is trusted then.
	CheckStore = "trust store"
)

// MaxChainLength bounds the certificates of a chain, the leaf included.
const MaxChainLength = 8

// ValidationError is why a certificate is refused. Code is the OPC UA status
// the peer would get (gateways answer Bad_SecurityChecksFailed and audit
// this error; see OPC 10000-4 §6.5.5).
type ValidationError struct {
	Code       ua.StatusCode
	Reason     string
	Check      string // one of the Check… constants
	Subject    string // of the certificate that failed the check ("" when unparsable)
	Thumbprint string // of that certificate (of the bytes when unparsable)
	Rejected   string // the copy in rejected/certs, when the certificate was untrusted
}

func (e *ValidationError) Error() string {
	subj := e.Subject
	if subj == "" {
		subj = "(unparsable)"
	}
	return fmt.Sprintf("certificate %q (thumbprint %s): %s check failed: %s: %s", subj, e.Thumbprint, e.Check, StatusName(e.Code), e.Reason)
}

// StatusCode is the OPC UA status of the refusal.
func (e *ValidationError) StatusCode() ua.StatusCode { return e.Code }

// StatusName is the OPC UA name of a status code, such as
// Bad_CertificateUntrusted, spelt as OPC 10000-4 §7.39 and the OPC
// Foundation's StatusCode list spell it (Bad_NodeIdInvalid,
// Bad_TcpNotEnoughResources), not as gopcua's Go names (NodeID, TCP).
func StatusName(c ua.StatusCode) string {
	d, ok := ua.StatusCodes[c]
	if !ok {
		return fmt.Sprintf("0x%08X", uint32(c))
	}
	n := specSpelling.Replace(strings.TrimPrefix(d.Name, "Status"))
	if rest, ok := strings.CutPrefix(n, "Bad"); ok {
		return "Bad_" + rest
	}
	if rest, ok := strings.CutPrefix(n, "Uncertain"); ok {
		return "Uncertain_" + rest
	}
	return n
}

// specSpelling undoes the initialisms of gopcua's status names: the
// only ones they have are ID, URI, URL and TCP.
var specSpelling = strings.NewReplacer("ID", "Id", "URI", "Uri", "URL", "Url", "TCP", "Tcp")

func fail(c *x509.Certificate, check string, code ua.StatusCode, format string, a ...any) *ValidationError {
	return &ValidationError{Code: code, Check: check, Subject: c.Subject.String(), Thumbprint: Thumbprint(c.Raw), Reason: fmt.Sprintf(format, a...)}
}

// Validate decides whether a peer's application instance certificate is
// trusted. chain is the certificate as OPC UA sends it: the DER leaf,
// optionally followed by the DER certificates of its issuers. Checks run in
// the order of OPC 10000-4 §6.1.3: structure, chain (issuer/certs,
// trusted/certs and the chain sent), signatures, security policy (RSA 2048
// to 4096 bits, SHA-256 or better), trust list (the leaf or a CA of its
// chain in trusted/certs), validity, host name, ApplicationURI, usage, and
// revocation (CRLs in trusted/crl and issuer/crl; a self-signed certificate
// needs none). The first failing check returns a *ValidationError; an
// untrusted leaf is first copied to rejected/certs/<thumbprint>.der.
func (s *Store) Validate(chain []byte, o ValidateOptions) error {
	_, err := s.ValidUntil(chain, o)
	return err
}

// ValidUntil is Validate that also says until when the certificate passes
// as far as time goes: the earliest NotAfter along the chain it was
// validated on (the leaf, its CAs, the root), after which a session opened
// with it must not go on.
func (s *Store) ValidUntil(chain []byte, o ValidateOptions) (time.Time, error) {
	path, err := s.validate(chain, o)
	if err != nil {
		return time.Time{}, err
	}
	return PathExpiry(path), nil
}

// PathExpiry is the earliest NotAfter of a certificate chain.
func PathExpiry(path []*x509.Certificate) time.Time {
	var end time.Time
	for _, c := range path {
		if end.IsZero() || c.NotAfter.Before(end) {
			end = c.NotAfter
		}
	}
	return end
}

// validate is Validate, returning the chain it validated on.
func (s *Store) validate(chain []byte, o ValidateOptions) ([]*x509.Certificate, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}

	// Certificate structure.
	if len(chain) == 0 {
		return nil, &ValidationError{Code: ua.StatusBadCertificateInvalid, Check: CheckStructure, Thumbprint: Thumbprint(nil), Reason: "no certificate"}
	}
	sent, err := x509.ParseCertificates(chain)
	if err != nil || len(sent) == 0 {
		if err == nil {
			err = errors.New("empty")
		}
		return nil, &ValidationError{Code: ua.StatusBadCertificateInvalid, Check: CheckStructure, Thumbprint: Thumbprint(chain),
			Reason: fmt.Sprintf("not a DER X.509 certificate or chain of %d bytes: %v", len(chain), err)}
	}
	leaf := sent[0]
	if len(sent) > MaxChainLength {
		return nil, fail(leaf, CheckStructure, ua.StatusBadCertificateInvalid, "a chain of %d certificates (at most %d)", len(sent), MaxChainLength)
	}
	if leaf.Version != 3 {
		return nil, fail(leaf, CheckStructure, ua.StatusBadCertificateInvalid, "an X.509 version %d certificate, want version 3", leaf.Version)
	}

	trusted, _, err := s.readCerts(s.Path(TrustedCertsDir))
	if err != nil {
		return nil, fail(leaf, CheckStore, ua.StatusBadSecurityChecksFailed, "reading the trusted certificates: %v", err)
	}
	issuers, _, err := s.readCerts(s.Path(IssuerCertsDir))
	if err != nil {
		return nil, fail(leaf, CheckStore, ua.StatusBadSecurityChecksFailed, "reading the issuer certificates: %v", err)
	}

	// Build the certificate chain, up to a self-issued certificate.
	candidates := make([]*x509.Certificate, 0, len(sent)-1+len(issuers)+len(trusted))
	candidates = append(candidates, sent[1:]...)
	for _, sc := range issuers {
		candidates = append(candidates, sc.cert)
	}
	for _, sc := range trusted {
		candidates = append(candidates, sc.cert)
	}
	path := []*x509.Certificate{leaf}
	for cur := leaf; !selfIssued(cur); {
		parent := findIssuer(cur, candidates, path)
		if parent == nil {
			return nil, fail(cur, CheckChain, ua.StatusBadCertificateChainIncomplete,
				"its issuer %q is neither in the chain sent nor in %s or %s", cur.Issuer.String(), IssuerCertsDir, TrustedCertsDir)
		}
		if len(path) == MaxChainLength {
			return nil, fail(leaf, CheckChain, ua.StatusBadCertificateChainIncomplete, "no root within %d certificates", MaxChainLength)
		}
		path = append(path, parent)
		cur = parent
	}

	// Signatures: each certificate by its issuer, the root by itself.
	for i, c := range path {
		parent := c
		if i+1 < len(path) {
			parent = path[i+1]
		}
		if err := parent.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
			var ia x509.InsecureAlgorithmError
			if errors.As(err, &ia) {
				return nil, fail(c, CheckSecurityPolicy, ua.StatusBadCertificatePolicyCheckFailed, "signed with %v, which no security policy allows", c.SignatureAlgorithm)
			}
			by := "its issuer " + parent.Subject.String()
			if parent == c {
				by = "itself"
			}
			return nil, fail(c, CheckSignature, ua.StatusBadCertificateInvalid, "signature by %s does not verify: %v", by, err)
		}
	}

	// Security policy: the Basic256Sha256 family (Basic256Sha256,
	// Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss) wants RSA keys of 2048
	// to 4096 bits and SHA-256 or stronger signatures.
	for i, c := range path {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fail(c, CheckSecurityPolicy, ua.StatusBadCertificatePolicyCheckFailed, "a %v key; the security policies want RSA", c.PublicKeyAlgorithm)
		}
		if !strongSignature(c.SignatureAlgorithm) {
			if e := fail(c, CheckSecurityPolicy, ua.StatusBadCertificatePolicyCheckFailed, "signed with %v; the security policies want RSA with SHA-256 or stronger", c.SignatureAlgorithm); o.stop(e) {
				return nil, e
			}
		}
		bits := pub.N.BitLen()
		if bits < 2048 || (i == 0 && bits > 4096) {
			if e := fail(c, CheckSecurityPolicy, ua.StatusBadCertificatePolicyCheckFailed, "an RSA key of %d bits; the security policies want 2048 to 4096", bits); o.stop(e) {
				return nil, e
			}
		}
	}

	// Trust list: the leaf itself, or a CA of its chain.
	trustedSet := make(map[string]bool, len(trusted))
	for _, sc := range trusted {
		trustedSet[string(sc.cert.Raw)] = true
	}
	isTrusted := false
	for _, c := range path {
		if trustedSet[string(c.Raw)] {
			isTrusted = true
			break
		}
	}
	if !isTrusted {
		e := fail(leaf, CheckTrustList, ua.StatusBadCertificateUntrusted, "neither it nor a CA of its chain is in %s", TrustedCertsDir)
		if p, err := s.reject(leaf); err != nil {
			e.Reason += fmt.Sprintf("; copying it to %s failed: %v", RejectedCertsDir, err)
		} else {
			e.Rejected = p
			e.Reason += fmt.Sprintf("; copied to %s (trust it with `interlock certs trust --pki %s %s`)", p, s.dir, Thumbprint(leaf.Raw))
		}
		return nil, e
	}

	// Validity period.
	for i, c := range path {
		if now.Before(c.NotBefore) || now.After(c.NotAfter) {
			code := ua.StatusBadCertificateTimeInvalid
			if i > 0 {
				code = ua.StatusBadCertificateIssuerTimeInvalid
			}
			if e := fail(c, CheckValidity, code, "valid from %s to %s, not at %s",
				c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)); o.stop(e) {
				return nil, e
			}
		}
	}

	// Host name.
	if o.Hostname != "" {
		if err := leaf.VerifyHostname(o.Hostname); err != nil {
			if e := fail(leaf, CheckHostName, ua.StatusBadCertificateHostNameInvalid, "does not name host %q (DNS %v, IP %v)", o.Hostname, leaf.DNSNames, leaf.IPAddresses); o.stop(e) {
				return nil, e
			}
		}
	}

	// ApplicationURI against the subjectAltName URI.
	if o.ApplicationURI != "" && !hasURI(leaf, o.ApplicationURI) {
		return nil, fail(leaf, CheckURI, ua.StatusBadCertificateURIInvalid, "its subjectAltName URIs %v do not include the ApplicationURI %q", uriStrings(leaf), o.ApplicationURI)
	}

	// Certificate usage.
	if err := appUsage(leaf); err != "" {
		if e := fail(leaf, CheckUsage, ua.StatusBadCertificateUseNotAllowed, "%s", err); o.stop(e) {
			return nil, e
		}
	}
	for _, c := range path[1:] {
		var e *ValidationError
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			e = fail(c, CheckUsage, ua.StatusBadCertificateIssuerUseNotAllowed, "issues %q but is not a CA (basicConstraints cA is not set)", path[0].Subject.String())
		case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
			e = fail(c, CheckUsage, ua.StatusBadCertificateIssuerUseNotAllowed, "a CA whose key usage lacks keyCertSign")
		}
		if e != nil && o.stop(e) {
			return nil, e
		}
	}

	// Revocation: every certificate issued by a CA needs a CRL of that CA.
	if len(path) > 1 {
		crls, err := s.readAllCRLs()
		if err != nil {
			return nil, fail(leaf, CheckStore, ua.StatusBadSecurityChecksFailed, "%v", err)
		}
		found := make([][]*x509.RevocationList, len(path)-1)
		for i := range found {
			found[i] = CRLsOf(path[i+1], crls)
			if len(found[i]) == 0 {
				code := ua.StatusBadCertificateRevocationUnknown
				if i > 0 {
					code = ua.StatusBadCertificateIssuerRevocationUnknown
				}
				if e := fail(path[i], CheckFindCRL, code, "no CRL of its issuer %q in %s or %s", path[i+1].Subject.String(), TrustedCRLDir, IssuerCRLDir); o.stop(e) {
					return nil, e
				}
			}
		}
		for i, lists := range found {
			if r, l := RevokedBy(path[i], lists); r != nil {
				code := ua.StatusBadCertificateRevoked
				if i > 0 {
					code = ua.StatusBadCertificateIssuerRevoked
				}
				return nil, fail(path[i], CheckRevocation, code, "revoked at %s by a CRL of %q", r.RevocationTime.UTC().Format(time.RFC3339), l.Issuer.String())
			}
		}
	}
	return path, nil
}

// selfIssued says whether a certificate names itself as its issuer: the
// root of a chain (its self-signature is checked with the others).
func selfIssued(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer)
}

// findIssuer finds the issuer of c among candidates, not already on the
// path: the subject must match c's issuer and the key identifiers, when
// both are present; one whose signature verifies is preferred.
func findIssuer(c *x509.Certificate, candidates, path []*x509.Certificate) *x509.Certificate {
	var match *x509.Certificate
next:
	for _, p := range candidates {
		if !bytes.Equal(p.RawSubject, c.RawIssuer) {
			continue
		}
		if len(c.AuthorityKeyId) > 0 && len(p.SubjectKeyId) > 0 && !bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId) {
			continue
		}
		for _, q := range path {
			if bytes.Equal(q.Raw, p.Raw) {
				continue next
			}
		}
		if p.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
			return p
		}
		if match == nil {
			match = p
		}
	}
	return match
}

func strongSignature(a x509.SignatureAlgorithm) bool {
	switch a {
	case x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return true
	}
	return false
}

func hasURI(c *x509.Certificate, want string) bool {
	norm := want
	if u, err := url.Parse(want); err == nil {
		norm = u.String()
	}
	for _, u := range c.URIs {
		if s := u.String(); s == want || s == norm {
			return true
		}
	}
	return false
}

func uriStrings(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	return out
}

// appUsage checks the key usage of an application instance certificate
// (OPC 10000-6 §6.2.2): it signs, and RSA encrypts keys and data to it.
// nonRepudiation is not required: common stacks leave it out. It returns
// what is wrong, or "".
func appUsage(c *x509.Certificate) string {
	if c.KeyUsage == 0 {
		return "no keyUsage extension (an application certificate needs digitalSignature, keyEncipherment and dataEncipherment)"
	}
	var missing []string
	for _, u := range []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
		{x509.KeyUsageDataEncipherment, "dataEncipherment"},
	} {
		if c.KeyUsage&u.bit == 0 {
			missing = append(missing, u.name)
		}
	}
	if len(missing) > 0 {
		return "key usage lacks " + strings.Join(missing, ", ")
	}
	if len(c.ExtKeyUsage) > 0 || len(c.UnknownExtKeyUsage) > 0 {
		for _, u := range c.ExtKeyUsage {
			if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
				return ""
			}
		}
		return "extended key usage names neither serverAuth nor clientAuth"
	}
	return ""
}

// readAllCRLs reads trusted/crl and issuer/crl.
func (s *Store) readAllCRLs() ([]*x509.RevocationList, error) {
	var all []*x509.RevocationList
	for _, d := range []string{TrustedCRLDir, IssuerCRLDir} {
		l, _, err := readCRLs(s.Path(d))
		if err != nil {
			return nil, fmt.Errorf("reading the CRLs: %w", err)
		}
		all = append(all, l...)
	}
	return all, nil
}
