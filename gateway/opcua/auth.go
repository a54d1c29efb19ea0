package opcua

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
)

// rsaKey returns the RSA public key of the first certificate of a chain; a
// certificate with another kind of key is an error, not a panic.
func rsaKey(chain []byte) (*x509.Certificate, *rsa.PublicKey, error) {
	cs, err := x509.ParseCertificates(chain)
	if err != nil {
		return nil, nil, err
	}
	if len(cs) == 0 {
		return nil, nil, errors.New("no certificate")
	}
	k, ok := cs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, nil, fmt.Errorf("certificate key is %T, not RSA", cs[0].PublicKey)
	}
	return cs[0], k, nil
}

// sameLeaf reports whether two certificate chains start with the same certificate.
func sameLeaf(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ca, err1 := x509.ParseCertificates(a)
	cb, err2 := x509.ParseCertificates(b)
	return err1 == nil && err2 == nil && len(ca) > 0 && len(cb) > 0 && bytes.Equal(ca[0].Raw, cb[0].Raw)
}

// refuse records a request refused before a session exists and answers it.
func (c *conn) refuse(ctx context.Context, h *ua.RequestHeader, function, reason, detail string, code ua.StatusCode) ua.Response {
	call := &gateway.Call{Target: c.base.Target,
		Operation: gateway.Operation{Function: function, Access: gateway.AccessSession}}
	c.e.pipeline.Reject(ctx, c.base, call, reason, detail, statusName(code))
	return fault(h, code)
}

func statusName(code ua.StatusCode) string { return certs.StatusName(code) }

// maxNameLen bounds the ApplicationURI and the user name a client gives:
// both go into the policy input and every audit record of the session, and
// a longer one is refused before it gets there.
const maxNameLen = 4096

// createSession answers CreateSession: a new session bound to this channel,
// with a random id, token and nonce, signed with the gateway's key.
func (c *conn) createSession(ctx context.Context, req *ua.CreateSessionRequest) ua.Response {
	h := req.RequestHeader
	const fn = "create_session"
	secure := c.policyURI != ua.SecurityPolicyURINone
	s := &uaSession{e: c.e, policyURI: c.policyURI, mode: c.mode, clientDesc: req.ClientDescription,
		subs: map[uint32]bool{}, items: map[itemKey]string{}, itemAttrs: map[itemKey]string{},
		itemHandles: map[itemKey]uint32{}, handles: map[uint32]map[uint32]*itemHandle{}, cps: map[string]string{}}
	s.conn.Store(c)
	s.source = c.base.Source.IP
	if s.clientDesc == nil {
		s.clientDesc = &ua.ApplicationDescription{}
	}
	if n := len(s.clientDesc.ApplicationURI); n > maxNameLen {
		return c.refuse(ctx, h, fn, "application_uri_invalid", fmt.Sprintf("an ApplicationURI of %d bytes, over %d", n, maxNameLen), ua.StatusBadInvalidArgument)
	}
	if secure {
		if !sameLeaf(req.ClientCertificate, c.remoteCert) {
			return c.refuse(ctx, h, fn, "certificate_invalid", "the CreateSession certificate is not the secure channel's", ua.StatusBadSecurityChecksFailed)
		}
		_, k, err := rsaKey(c.remoteCert)
		if err != nil {
			return c.refuse(ctx, h, fn, "certificate_invalid", err.Error(), ua.StatusBadCertificateInvalid)
		}
		if len(req.ClientNonce) < 32 {
			return c.refuse(ctx, h, fn, "nonce_invalid", fmt.Sprintf("client nonce of %d bytes", len(req.ClientNonce)), ua.StatusBadNonceInvalid)
		}
		if c.e.validate != nil {
			until, err := c.e.validate(c.remoteCert, s.clientDesc.ApplicationURI)
			if err != nil {
				return c.refuse(ctx, h, fn, "certificate_invalid", err.Error(), ua.StatusBadSecurityChecksFailed)
			}
			s.appUntil = until
		}
		s.clientCert, s.clientKey = c.remoteCert, k
	}
	timeout := time.Duration(req.RequestedSessionTimeout * float64(time.Millisecond))
	timeout = min(max(timeout, MinSessionTimeout), c.e.opts.Limits.SessionTimeout)
	s.timeout = timeout
	s.created = time.Now()
	s.id, s.token = newToken(), newToken()
	s.key = tokenKey(s.token)
	s.nonce = newNonce()
	s.touch()

	sig := &ua.SignatureData{}
	if secure {
		enc, err := uapolicy.Asymmetric(c.policyURI, c.e.key, s.clientKey)
		if err != nil {
			return c.refuse(ctx, h, fn, "certificate_invalid", err.Error(), ua.StatusBadSecurityChecksFailed)
		}
		b, err := enc.Signature(append(append([]byte{}, req.ClientCertificate...), req.ClientNonce...))
		if err != nil {
			return c.refuse(ctx, h, fn, "signature_failed", err.Error(), ua.StatusBadInternalError)
		}
		sig = &ua.SignatureData{Algorithm: enc.SignatureURI(), Signature: b}
	}
	switch evicted, bound := c.e.sessions.add(s); {
	case evicted != nil:
		c.e.closeSession(ctx, evicted, evictedBy(bound))
	case bound != "":
		return c.refuse(ctx, h, fn, "limit", bound, ua.StatusBadTooManySessions)
	}
	return &ua.CreateSessionResponse{
		ResponseHeader:        header(h, ua.StatusOK),
		SessionID:             s.id,
		AuthenticationToken:   s.token,
		RevisedSessionTimeout: float64(timeout / time.Millisecond),
		ServerNonce:           s.nonce,
		ServerCertificate:     c.e.cert,
		ServerEndpoints:       c.e.endpoints(),
		ServerSignature:       sig,
		MaxRequestMessageSize: c.e.opts.Limits.MaxMessageSize,
	}
}

// authError is a refused login: code goes to the client, detail into the
// session.auth_failed record.
type authError struct {
	code   ua.StatusCode
	detail string
}

// activateSession checks the client's signature and user token, decides
// session.open, and opens the upstream session.
func (c *conn) activateSession(ctx context.Context, req *ua.ActivateSessionRequest) ua.Response {
	h := req.RequestHeader
	s, code := c.lookup(h, false)
	if s != nil {
		// One activation of a session at a time: one pipelined behind
		// another sees the session as the first left it (activated, a new
		// nonce, on this channel), never opens it a second time.
		s.activation.Lock()
		defer s.activation.Unlock()
		s, code = c.lookup(h, false)
	}
	var from *conn // the channel a moving session leaves, nil: between channels
	moving := false
	switch {
	case code == ua.StatusBadSecureChannelIDInvalid && c.mayTake(s):
		// A session activated on a new channel: its own closed, or the
		// client left it for this one.
		if r := c.refuseMove(ctx, h, s); r != nil {
			return r
		}
		from, moving = s.conn.Load(), true
	case code != ua.StatusOK:
		return c.refuseSession(ctx, req, code)
	}
	s.mu.Lock()
	nonce, activated, prev := s.nonce, s.activated, s.gs
	s.mu.Unlock()
	s.touch()

	if s.clientKey != nil {
		var sig []byte
		if req.ClientSignature != nil {
			sig = req.ClientSignature.Signature
		}
		enc, err := uapolicy.Asymmetric(c.policyURI, c.e.key, s.clientKey)
		if err == nil {
			err = enc.VerifySignature(append(append([]byte{}, c.e.cert...), nonce...), sig)
		}
		if err != nil {
			return c.refuse(ctx, h, "activate_session", "signature_invalid", "client signature: "+err.Error(), ua.StatusBadApplicationSignatureInvalid)
		}
	}

	gs := c.newGatewaySession(s)
	var userUntil time.Time
	id, aerr := c.authenticate(ctx, s, req, nonce, gs, &userUntil)
	if aerr == nil && activated && (prev.Principal.User != gs.Principal.User || prev.Principal.Auth != gs.Principal.Auth) {
		aerr = &authError{ua.StatusBadIdentityChangeNotSupported, "the session is active for another user"}
	}
	if aerr != nil {
		c.e.pipeline.AuthFailed(ctx, gs, aerr.detail)
		return fault(h, aerr.code)
	}
	newNonce := newNonce()
	userCert := x509TokenCert(req)
	if moving {
		return c.moveSession(ctx, h, s, from, prev, gs, id, newNonce, userCert, userUntil)
	}
	if activated {
		s.mu.Lock()
		s.nonce, s.userCert = newNonce, userCert
		s.mu.Unlock()
		s.checkCertsAfter(s.appUntil, userUntil)
		c.sessionOnChannel()
		return &ua.ActivateSessionResponse{ResponseHeader: header(h, ua.StatusOK), ServerNonce: newNonce}
	}

	up := newUpstream(c.e.up, id)
	if c.e.opts.Users == UsersPassthrough && id.kind == IdentitySame {
		// The upstream is the one that checks the password.
		cctx, cancel := context.WithTimeout(ctx, c.e.limits.RequestTimeout+5*time.Second)
		_, err := up.client(cctx)
		cancel()
		if err != nil {
			up.Close()
			code := statusOf(err)
			if isAuthStatus(code) {
				c.e.logins.Failed(gs.Source.IP, time.Now())
				c.e.pipeline.AuthFailed(ctx, gs, "upstream refused the login: "+err.Error())
				return fault(h, ua.StatusBadUserAccessDenied)
			}
			return c.refuse(ctx, h, "activate_session", "upstream_unavailable", err.Error(), code)
		}
	}
	s.decide.Lock()
	ok := c.e.pipeline.Open(ctx, gs)
	s.decide.Unlock()
	if !ok {
		up.Close()
		c.e.sessions.remove(s)
		return fault(h, ua.StatusBadUserAccessDenied)
	}
	s.mu.Lock()
	if s.closed {
		cause := s.endCause
		s.mu.Unlock()
		up.Close()
		// ended meanwhile with no session to record: its session.open is
		// written, so is its end
		c.e.pipeline.Auditor.SessionEnd(context.WithoutCancel(ctx), gs, cause)
		return fault(h, ua.StatusBadSessionClosed)
	}
	s.gs, s.up, s.activated, s.nonce, s.userCert = gs, up, true, newNonce, userCert
	s.live.Store(true)
	s.mu.Unlock()
	s.checkCertsAfter(s.appUntil, userUntil)
	c.e.logins.Succeeded(gs.Source.IP)
	c.sessionOnChannel()
	return &ua.ActivateSessionResponse{ResponseHeader: header(h, ua.StatusOK), ServerNonce: newNonce}
}

// x509TokenCert is the certificate of an ActivateSession's X.509 user
// token, nil for other tokens.
func x509TokenCert(req *ua.ActivateSessionRequest) []byte {
	if eo := req.UserIdentityToken; eo != nil {
		if t, ok := eo.Value.(*ua.X509IdentityToken); ok {
			return t.CertificateData
		}
	}
	return nil
}

// sessionOnChannel tells the channel a session is active on it, which lifts
// its smaller request size limit (MaxMessageSizeBeforeSession); before the
// ActivateSession is answered, so the client's next request meets the new
// limit.
func (c *conn) sessionOnChannel() {
	if ch, ok := c.ch.(interface{ SessionActivated() }); ok {
		ch.SessionActivated()
	}
}

// newGatewaySession is the record of a UA session: the connection's source
// and target with the session's own id and security.
func (c *conn) newGatewaySession(s *uaSession) *gateway.Session {
	b := c.base
	gs := &gateway.Session{
		ID: gateway.NewID(), Started: time.Now().UTC(), Gateway: b.Gateway, Listener: b.Listener,
		Protocol: b.Protocol, Source: b.Source, Target: b.Target,
		SecurityPolicy: policyName(c.policyURI), SecurityMode: modeName(c.mode),
	}
	if gs.Protocol == "" {
		gs.Protocol = Protocol
	}
	gs.Principal.ApplicationURI = s.clientDesc.ApplicationURI
	if c.remoteCert != nil {
		gs.Principal.CertThumbprint = certs.Thumbprint(c.remoteCert)
	}
	gs.Log = b.Log.With().Str("ua_session", gs.ID).Logger()
	return gs
}

// authenticate checks the user identity token and fills gs.Principal. It
// returns how the upstream session logs in, and sets userUntil to when an
// X.509 user token's certificate stops passing by time alone.
func (c *conn) authenticate(ctx context.Context, s *uaSession, req *ua.ActivateSessionRequest, nonce []byte, gs *gateway.Session, userUntil *time.Time) (identity, *authError) {
	var tok any
	if eo := req.UserIdentityToken; eo != nil {
		tok = eo.Value
		switch {
		case tok == nil && eo.EncodingMask != ua.ExtensionObjectEmpty, // a structure decoded without a value
			tok != nil && !isUserToken(tok): // another structure, or one kept as its bytes
			tok = unknownToken{expandedString(eo.TypeID)} // refused below, not taken as anonymous
		}
	}
	if tok == nil {
		tok = &ua.AnonymousIdentityToken{} // Part 4: a null token is anonymous
	}
	now := time.Now()
	if until, held := c.e.logins.Blocked(gs.Source.IP, now); held {
		if t, ok := tok.(*ua.UserNameIdentityToken); ok {
			gs.Principal.Auth = gateway.AuthUsername
			if len(t.UserName) <= maxNameLen {
				gs.Principal.User = t.UserName
			}
		}
		return identity{}, &authError{ua.StatusBadUserAccessDenied,
			fmt.Sprintf("too many failed logins from %s: held back until %s", gs.Source.IP, until.UTC().Format(time.RFC3339))}
	}
	fail := func(code ua.StatusCode, format string, a ...any) (identity, *authError) {
		c.e.logins.Failed(gs.Source.IP, time.Now())
		return identity{}, &authError{code, fmt.Sprintf(format, a...)}
	}
	switch t := tok.(type) {
	case *ua.AnonymousIdentityToken:
		gs.Principal.Auth = gateway.AuthAnonymous
		if !c.e.opts.Anonymous {
			return fail(ua.StatusBadIdentityTokenRejected, "anonymous login is disabled")
		}
		return c.e.upstreamIdentity(identity{kind: IdentityAnonymous}), nil

	case *ua.UserNameIdentityToken:
		gs.Principal.Auth = gateway.AuthUsername
		if n := len(t.UserName); n > maxNameLen {
			return fail(ua.StatusBadIdentityTokenInvalid, "a user name of %d bytes, over %d", n, maxNameLen)
		}
		gs.Principal.User = t.UserName
		if c.e.opts.Users == "" {
			return fail(ua.StatusBadIdentityTokenRejected, "user name login is not configured")
		}
		pw, err := c.password(t, nonce)
		if err != nil {
			return fail(ua.StatusBadIdentityTokenInvalid, "user name token: %v", err)
		}
		if c.e.opts.Users == UsersPassthrough {
			return identity{kind: IdentitySame, user: t.UserName, password: pw}, nil
		}
		u, ok := c.e.users.Load().Check(t.UserName, pw)
		if !ok {
			return fail(ua.StatusBadUserAccessDenied, "wrong user name or password")
		}
		gs.Principal.Roles = append([]string(nil), u.Roles...)
		return c.e.upstreamIdentity(identity{kind: IdentitySame, user: t.UserName, password: pw}), nil

	case *ua.X509IdentityToken:
		gs.Principal.Auth = gateway.AuthX509
		cert, key, err := rsaKey(t.CertificateData)
		if err != nil {
			return fail(ua.StatusBadIdentityTokenInvalid, "X.509 user token: %v", err)
		}
		if n := len(cert.Subject.CommonName); n > maxNameLen {
			return fail(ua.StatusBadIdentityTokenInvalid, "X.509 user certificate: a common name of %d bytes, over %d", n, maxNameLen)
		}
		gs.Principal.User = cert.Subject.CommonName
		if c.e.validateUser == nil {
			return fail(ua.StatusBadIdentityTokenRejected, "X.509 user tokens need a trust store")
		}
		until, err := c.e.validateUser(t.CertificateData)
		if err != nil {
			return fail(ua.StatusBadIdentityTokenRejected, "X.509 user certificate: %v", err)
		}
		*userUntil = until
		var sig []byte
		if req.UserTokenSignature != nil {
			sig = req.UserTokenSignature.Signature
		}
		enc, err := uapolicy.Asymmetric(c.e.userTokenPolicy(c.policyURI), nil, key)
		if err == nil {
			err = enc.VerifySignature(append(append([]byte{}, c.e.cert...), nonce...), sig)
		}
		if err != nil {
			return fail(ua.StatusBadUserSignatureInvalid, "X.509 user token signature: %v", err)
		}
		return c.e.upstreamIdentity(identity{kind: IdentityCertificate}), nil
	}
	if u, ok := tok.(unknownToken); ok {
		return fail(ua.StatusBadIdentityTokenInvalid, "a user token of type %s, which is no user identity token", u.typeID)
	}
	return fail(ua.StatusBadIdentityTokenInvalid, "user token of type %T is not supported", tok)
}

// unknownToken stands for a UserIdentityToken that is not one: a structure
// of another type, or of a type the codec does not know (its bytes).
type unknownToken struct{ typeID string }

// isUserToken reports whether v is one of OPC 10000-4 §7.41's user identity
// tokens.
func isUserToken(v any) bool {
	switch v.(type) {
	case *ua.AnonymousIdentityToken, *ua.UserNameIdentityToken, *ua.X509IdentityToken, *ua.IssuedIdentityToken:
		return true
	}
	return false
}

// upstreamIdentity maps the client's identity to the configured upstream login.
func (e *Engine) upstreamIdentity(client identity) identity {
	switch e.opts.UpstreamIdentity {
	case IdentitySame:
		if client.kind == IdentitySame {
			return client
		}
		return identity{kind: IdentityAnonymous}
	case IdentityService:
		return identity{kind: IdentityService, user: e.opts.UpstreamUser, password: e.opts.upstreamPwd}
	case IdentityCertificate:
		return identity{kind: IdentityCertificate}
	}
	return identity{kind: IdentityAnonymous}
}

// password decrypts a UserNameIdentityToken: the plaintext is
// [length u32][password][server nonce], encrypted with the gateway's key
// under the token's security policy. A plain password is taken only on a
// SignAndEncrypt channel.
func (c *conn) password(t *ua.UserNameIdentityToken, nonce []byte) (string, error) {
	if t.EncryptionAlgorithm == "" {
		if c.mode != ua.MessageSecurityModeSignAndEncrypt {
			return "", errors.New("unencrypted password on a channel that is not SignAndEncrypt")
		}
		return string(t.Password), nil
	}
	enc, err := uapolicy.Asymmetric(c.e.userTokenPolicy(c.policyURI), c.e.key, nil)
	if err != nil {
		return "", err
	}
	if t.EncryptionAlgorithm != enc.EncryptionURI() {
		return "", fmt.Errorf("encryption algorithm %q, want %q", t.EncryptionAlgorithm, enc.EncryptionURI())
	}
	p, err := enc.Decrypt(t.Password)
	if err != nil {
		return "", errors.New("password does not decrypt")
	}
	if len(p) < 4 {
		return "", errors.New("decrypted password is too short")
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n < len(nonce) || n > len(p)-4 {
		return "", errors.New("decrypted password has a wrong length")
	}
	body := p[4 : 4+n]
	if !bytes.Equal(body[n-len(nonce):], nonce) {
		return "", errors.New("password was encrypted for another server nonce")
	}
	return string(body[:n-len(nonce)]), nil
}
