package opcua

import (
	"context"
	"crypto/rsa"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

func anonymousToken() *ua.ExtensionObject {
	return ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: tokenAnonymous})
}

// detached is an anonymous session created and activated on a None channel
// that then closed under it.
func detached(t *testing.T, h *harness) (*uaSession, *ua.CreateSessionResponse) {
	t.Helper()
	return detachedOn(t, h, h.conn(1))
}

// detachedOn is the same on channel c.
func detachedOn(t *testing.T, h *harness, c *conn) (*uaSession, *ua.CreateSessionResponse) {
	t.Helper()
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate: %v", r.Header().ServiceResult)
	}
	s := h.e.sessions.get(cs.AuthenticationToken)
	if !s.detach(c) {
		t.Fatal("an activated session did not detach from its closing channel")
	}
	return s, cs
}

// A session whose channel closed is activated on a new one with the same
// user: it is bound there (same id, session.open decided again with
// resumed 1), and the old channel cannot use it. A session still on its
// channel, or never activated, does not move.
func TestSessionMovesWhenDetached(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	s, cs := detached(t, h)
	c2 := h.conn(2)
	if r := activate(c2, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate on a new channel: %v", r.Header().ServiceResult)
	}
	if s.conn.Load() != c2 {
		t.Fatal("the session is not bound to the new channel")
	}
	opens := h.audit.Events("session.open")
	if len(opens) != 2 || opens[1].Session.ID != opens[0].Session.ID || opens[1].Session.Resumed != 1 || opens[0].Session.Resumed != 0 {
		t.Fatalf("session.open records %+v, want the session's, then resumed 1", opens)
	}
	if r := activate(h.conn(3), cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("activate on a third channel while bound to the second: %v, want Bad_SecureChannelIdInvalid", r.Header().ServiceResult)
	}
	pending := create(t, c2)
	if r := activate(h.conn(4), pending.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("first activation on another channel: %v, want Bad_SecureChannelIdInvalid", r.Header().ServiceResult)
	}
}

// What may not move is refused with a record: another user, a channel of
// another security policy or mode, Sign, another certificate; and the
// policy may refuse the session on its new channel, which ends it.
func TestSessionMoveRefused(t *testing.T) {
	t.Run("another user", func(t *testing.T) {
		h := newHarness(t, Options{Anonymous: true})
		s, cs := detached(t, h)
		r := activate(h.conn(2), cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", s.nonce))
		if r.Header().ServiceResult != ua.StatusBadIdentityChangeNotSupported {
			t.Errorf("alice takes an anonymous session: %v, want Bad_IdentityChangeNotSupported", r.Header().ServiceResult)
		}
	})
	t.Run("another password, users passthrough", func(t *testing.T) {
		h := newHarness(t, Options{UpstreamIdentity: IdentitySame})
		c1 := h.conn(1)
		cs := create(t, c1)
		if r := activate(c1, cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", cs.ServerNonce)); r.Header().ServiceResult != ua.StatusOK {
			t.Fatalf("alice: %v", r.Header().ServiceResult)
		}
		s := h.e.sessions.get(cs.AuthenticationToken)
		if s.up.id.password != "secret" || !s.detach(c1) {
			t.Fatal("alice's session holds no password upstream, or did not detach")
		}
		h.e.opts.Users = UsersPassthrough // as if the server had checked it
		if r := activate(h.conn(2), cs.AuthenticationToken, userToken(t, h.e, "alice", "guess", s.nonce)); r.Header().ServiceResult != ua.StatusBadUserAccessDenied {
			t.Errorf("alice's session with another password: %v, want Bad_UserAccessDenied", r.Header().ServiceResult)
		}
		failed := 0
		for _, r := range h.audit.Events("request.rejected") {
			if r.Reason == gateway.ReasonAuthFailed && r.Session.Principal.User == "alice" {
				failed++
			}
		}
		if failed != 1 {
			t.Errorf("%d auth_failed records of alice, want 1", failed)
		}
		if r := activate(h.conn(3), cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", s.nonce)); r.Header().ServiceResult != ua.StatusOK {
			t.Errorf("alice's session with her password: %v", r.Header().ServiceResult)
		}
	})
	t.Run("another security policy", func(t *testing.T) {
		h := newHarness(t, Options{Anonymous: true})
		_, cs := detached(t, h)
		c2 := newConn(h.e, &fakeChannel{id: 2, policy: ua.SecurityPolicyURIBasic256Sha256, mode: ua.MessageSecurityModeSignAndEncrypt}, h.conn(2).base)
		if r := activate(c2, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadSecurityPolicyRejected {
			t.Errorf("a None session on a Basic256Sha256 channel: %v, want Bad_SecurityPolicyRejected", r.Header().ServiceResult)
		}
		checkRejected(t, h, "security_policy_rejected")
	})
	t.Run("policy", func(t *testing.T) {
		h := newHarness(t, Options{Anonymous: true})
		s, cs := detached(t, h)
		h.e.pipeline.Decider = gatewaytest.Decider(func(_ context.Context, gs *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
			if gs.Resumed > 0 {
				return gateway.Decision{Reasons: []string{"no moves"}}, nil
			}
			return gateway.Decision{Allow: true}, nil
		})
		if r := activate(h.conn(2), cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadUserAccessDenied {
			t.Errorf("refused by the policy: %v, want Bad_UserAccessDenied", r.Header().ServiceResult)
		}
		if h.e.sessions.get(cs.AuthenticationToken) != nil || !s.closed {
			t.Error("the session refused on its new channel is still open")
		}
		closes := h.audit.Events("session.close")
		if len(closes) != 1 || closes[0].Err == nil || !strings.Contains(closes[0].Err.Error(), "policy refused the session on a new secure channel") {
			t.Errorf("session.close records %+v, want one saying the policy refused the move", closes)
		}
	})
	for _, tc := range []struct {
		name       string
		mode       ua.MessageSecurityMode
		sameCert   bool
		want       ua.StatusCode
		wantRecord string
	}{
		{"Sign", ua.MessageSecurityModeSign, true, ua.StatusBadSecurityModeInsufficient, "security_mode_insufficient"},
		{"another certificate", ua.MessageSecurityModeSignAndEncrypt, false, ua.StatusBadSecurityChecksFailed, "certificate_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Anonymous: true})
			cert, key := trustedApp(t, h, "urn:client:a")
			other, _ := trustedApp(t, h, "urn:client:a")
			c1 := secureConn(h, 1, tc.mode, cert)
			cs := c1.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: cert,
				ClientNonce: make([]byte, 32), ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client:a"}}).(*ua.CreateSessionResponse)
			if r := signedActivate(t, h, c1, cs.AuthenticationToken, cs.ServerNonce, key); r.Header().ServiceResult != ua.StatusOK {
				t.Fatalf("activate: %v", r.Header().ServiceResult)
			}
			if !h.e.sessions.get(cs.AuthenticationToken).detach(c1) {
				t.Fatal("no detach")
			}
			newCert := cert
			if !tc.sameCert {
				newCert = other
			}
			nonce := h.e.sessions.get(cs.AuthenticationToken).nonce
			if r := signedActivate(t, h, secureConn(h, 2, tc.mode, newCert), cs.AuthenticationToken, nonce, key); r.Header().ServiceResult != tc.want {
				t.Errorf("activate on the new channel: %v, want %v", r.Header().ServiceResult, tc.want)
			}
			checkRejected(t, h, tc.wantRecord)
		})
	}
}

// A session left without a channel ends at its timeout, as an idle one.
func TestDetachedSessionTimesOut(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	s, _ := detached(t, h)
	s.lastUsed.Store(time.Now().Add(-s.timeout).UnixNano()) // its last request a timeout ago
	deadline := time.Now().Add(5 * time.Second)
	for len(h.audit.Events("session.close")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	closes := h.audit.Events("session.close")
	if len(closes) != 1 || closes[0].Err != errSessionTimeout {
		t.Fatalf("session.close records %+v, want one at the session's timeout", closes)
	}
}

// A client whose old channel the gateway still holds open (a network
// break it has not noticed) takes its session to a new channel at
// SignAndEncrypt, where the new channel proves the session's certificate:
// the old channel cannot use the session after, and closing it does not
// end the session. At Sign (and None) a session on an open channel does
// not move, and at SignAndEncrypt not with another certificate.
func TestSessionMovesFromAnOpenChannel(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	cert, key := trustedApp(t, h, "urn:client:a")
	other, otherKey := trustedApp(t, h, "urn:client:a")
	session := func(c *conn) (*uaSession, *ua.CreateSessionResponse) {
		t.Helper()
		cs := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: c.remoteCert,
			ClientNonce: make([]byte, 32), ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client:a"}}).(*ua.CreateSessionResponse)
		if r := signedActivate(t, h, c, cs.AuthenticationToken, cs.ServerNonce, key); r.Header().ServiceResult != ua.StatusOK {
			t.Fatalf("activate: %v", r.Header().ServiceResult)
		}
		return h.e.sessions.get(cs.AuthenticationToken), cs
	}

	c1 := secureConn(h, 1, ua.MessageSecurityModeSignAndEncrypt, cert)
	s, cs := session(c1)
	if r := signedActivate(t, h, secureConn(h, 2, ua.MessageSecurityModeSignAndEncrypt, other), cs.AuthenticationToken, s.nonce, otherKey); r.Header().ServiceResult != ua.StatusBadSecurityChecksFailed {
		t.Errorf("another certificate takes the session: %v, want Bad_SecurityChecksFailed", r.Header().ServiceResult)
	}
	c3 := secureConn(h, 3, ua.MessageSecurityModeSignAndEncrypt, cert)
	if r := signedActivate(t, h, c3, cs.AuthenticationToken, s.nonce, key); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate on a new channel while the old one is open: %v", r.Header().ServiceResult)
	}
	if s.conn.Load() != c3 {
		t.Fatal("the session is not bound to the new channel")
	}
	if opens := h.audit.Events("session.open"); len(opens) != 2 || opens[1].Session.Resumed != 1 {
		t.Fatalf("session.open records %+v, want the session's, then resumed 1", opens)
	}
	read := &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewStringNodeID(1, "x"), AttributeID: ua.AttributeIDValue}}}
	if r := c1.handle(context.Background(), read); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("a Read on the channel the session left: %v, want Bad_SecureChannelIdInvalid", r.Header().ServiceResult)
	}
	if s.endOn(c1) || s.closed {
		t.Error("the channel the session left could end it")
	}

	sign := secureConn(h, 4, ua.MessageSecurityModeSign, cert)
	signed, scs := session(sign)
	if r := signedActivate(t, h, secureConn(h, 5, ua.MessageSecurityModeSign, cert), scs.AuthenticationToken, signed.nonce, key); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("a Sign session taken from its open channel: %v, want Bad_SecureChannelIdInvalid", r.Header().ServiceResult)
	}
	if signed.conn.Load() != sign {
		t.Error("the Sign session left its channel")
	}
}

// At max_sessions a new session takes the slot of the session that has
// waited longest for a new secure channel, which ends (session.close says
// why; its token finds nothing after); sessions on channels are never
// given up: with none between channels, CreateSession is refused.
func TestFullTableGivesUpADetachedSession(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true, Limits: LimitOptions{MaxSessions: 3, MaxSessionsPerSource: 3}})
	older, olderCS := detached(t, h)
	newer, newerCS := detached(t, h)
	older.lastUsed.Store(time.Now().Add(-time.Minute).UnixNano())
	// Idle longer still, but on its channel: never given up.
	c3 := h.conn(3)
	onChannel := create(t, c3)
	if r := activate(c3, onChannel.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate: %v", r.Header().ServiceResult)
	}
	h.e.sessions.get(onChannel.AuthenticationToken).lastUsed.Store(time.Now().Add(-2 * time.Minute).UnixNano())

	c4 := h.conn(4) // from another source: the table's bound, not the share, is reached
	c4.base.Source.IP = netip.MustParseAddr("192.0.2.9")
	create(t, c4)
	if h.e.sessions.get(olderCS.AuthenticationToken) != nil || !older.closed {
		t.Fatal("the session that waited longest for a channel still holds its slot")
	}
	if h.e.sessions.get(newerCS.AuthenticationToken) != newer || newer.closed {
		t.Fatal("a session that waited less was given up")
	}
	closes := h.audit.Events("session.close")
	if len(closes) != 1 || closes[0].Err == nil || closes[0].Session.ID != older.gs.ID ||
		!strings.Contains(closes[0].Err.Error(), "max_sessions (3) reached while the session waited for a new secure channel") {
		t.Fatalf("session.close records %+v, want one of the older session saying it was given up", closes)
	}
	if r := activate(h.conn(5), olderCS.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Errorf("activating the session given up: %v, want Bad_SessionIdInvalid", r.Header().ServiceResult)
	}

	create(t, h.conn(6)) // takes the newer one's slot
	if h.e.sessions.get(newerCS.AuthenticationToken) != nil {
		t.Fatal("the second session between channels was not given up")
	}
	r := h.conn(7).handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil),
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client"}, ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusBadTooManySessions {
		t.Errorf("CreateSession with every slot on a channel: %v, want Bad_TooManySessions", r.Header().ServiceResult)
	}
	if n := h.e.sessions.count(); n != 3 {
		t.Errorf("%d sessions, want max_sessions (3)", n)
	}
}

// One source address holds at most max_sessions_per_source sessions (one
// connection may carry many): one more from it is refused while other
// sources are served, unless one of its own sessions waits for a new
// secure channel, which then gives its slot up.
func TestSessionsPerSource(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true, Limits: LimitOptions{MaxSessions: 10, MaxSessionsPerSource: 2}})
	waiting, waitingCS := detached(t, h)
	// Another source's session has waited longer: not this source's to give up.
	c8 := h.conn(8)
	c8.base.Source.IP = netip.MustParseAddr("192.0.2.8")
	elsewhere, cs8 := detachedOn(t, h, c8)
	elsewhere.lastUsed.Store(time.Now().Add(-time.Minute).UnixNano())
	c := h.conn(2)
	create(t, c)
	r := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("a session from a source at its share, one of which waits for a channel: %v", r.Header().ServiceResult)
	}
	if h.e.sessions.get(waitingCS.AuthenticationToken) != nil || !waiting.closed {
		t.Fatal("the source's session between channels still holds its slot")
	}
	if h.e.sessions.get(cs8.AuthenticationToken) != elsewhere {
		t.Fatal("another source's session between channels was given up")
	}
	if closes := h.audit.Events("session.close"); len(closes) != 1 || closes[0].Err == nil ||
		!strings.Contains(closes[0].Err.Error(), "max_sessions_per_source (2) reached by 192.0.2.7 while the session waited") {
		t.Errorf("session.close records %+v, want one naming the source's share", closes)
	}
	r = c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusBadTooManySessions {
		t.Errorf("a third session from one source: %v, want Bad_TooManySessions", r.Header().ServiceResult)
	}
	var detail string
	for _, rec := range h.audit.Events("request.rejected") {
		if rec.Reason == "limit" {
			detail = rec.Detail
		}
	}
	if !strings.Contains(detail, "max_sessions_per_source (2) reached by 192.0.2.7") {
		t.Errorf("the refusal's detail %q does not name the limit and the source", detail)
	}
	other := h.conn(3)
	other.base.Source.IP = netip.MustParseAddr("192.0.2.8")
	create(t, other)
}

func checkRejected(t *testing.T, h *harness, reason string) {
	t.Helper()
	for _, r := range h.audit.Events("request.rejected") {
		if r.Reason == reason && r.Call != nil && r.Call.Operation.Function == "activate_session" {
			return
		}
	}
	t.Errorf("no request.rejected record of activate_session with reason %s: %+v", reason, h.audit.Events("request.rejected"))
}

// trustedApp makes a client application certificate for uri, trusted by
// the harness's store.
func trustedApp(t *testing.T, h *harness, uri string) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	client, err := certs.Init(filepath.Join(t.TempDir(), "client"), certs.InitOptions{ApplicationURI: uri, Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _ := client.Own()
	st, _ := certs.Open(h.e.opts.PKI)
	if _, err := st.TrustFile(client.OwnCertPath()); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func secureConn(h *harness, id uint32, mode ua.MessageSecurityMode, cert []byte) *conn {
	base := &gateway.Session{ID: gateway.NewID(), Log: zerolog.Nop()}
	return newConn(h.e, &fakeChannel{id: id, policy: ua.SecurityPolicyURIBasic256Sha256, mode: mode, cert: cert}, base)
}

// signedActivate activates a session anonymously with the client's
// signature over the gateway's certificate and nonce.
func signedActivate(t *testing.T, h *harness, c *conn, token *ua.NodeID, nonce []byte, key *rsa.PrivateKey) ua.Response {
	t.Helper()
	pub, _ := uapolicy.PublicKey(h.e.cert)
	enc, err := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, key, pub)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := enc.Signature(append(append([]byte{}, h.e.cert...), nonce...))
	if err != nil {
		t.Fatal(err)
	}
	return c.handle(context.Background(), &ua.ActivateSessionRequest{RequestHeader: hdr(token),
		ClientSignature: &ua.SignatureData{Algorithm: enc.SignatureURI(), Signature: sig}, UserIdentityToken: anonymousToken()})
}
