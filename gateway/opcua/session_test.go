package opcua

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// fakeChannel is a secure channel's identity, for requests handed to a
// conn directly.
type fakeChannel struct {
	id      uint32
	policy  string
	mode    ua.MessageSecurityMode
	cert    []byte
	sendErr error // what Send returns
}

func (f *fakeChannel) Next() (*request, error)              { select {} }
func (f *fakeChannel) Send(uint32, ua.Response) error       { return f.sendErr }
func (f *fakeChannel) ID() uint32                           { return f.id }
func (f *fakeChannel) SecurityPolicyURI() string            { return f.policy }
func (f *fakeChannel) SecurityMode() ua.MessageSecurityMode { return f.mode }
func (f *fakeChannel) RemoteCertificate() []byte            { return f.cert }
func (f *fakeChannel) Close() error                         { return nil }

type harness struct {
	e     *Engine
	audit *gatewaytest.Auditor
}

// newHarness builds an engine with a users file (alice/secret, engineer)
// and anonymous logins, on an upstream nobody listens on.
func newHarness(t testing.TB, o Options) *harness {
	return newHarnessOn(t, o, "opc.tcp://127.0.0.1:1")
}

// newHarnessFor is an engine with anonymous logins on a real upstream.
func newHarnessFor(t testing.TB, upstream string) *harness {
	return newHarnessOn(t, Options{Anonymous: true}, upstream)
}

func newHarnessOn(t testing.TB, o Options, upstream string) *harness {
	t.Helper()
	st, err := certs.Init(filepath.Join(t.TempDir(), "pki"), certs.InitOptions{ApplicationURI: "urn:interlock:unit", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := st.Own()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	uf := filepath.Join(t.TempDir(), "users.yaml")
	os.WriteFile(uf, []byte("- name: alice\n  password_hash: \""+string(h)+"\"\n  roles: [engineer]\n"), 0o600)
	if o.SecurityPolicies == nil {
		o.SecurityPolicies = []string{"None", "Basic256Sha256"}
	}
	o.PKI = st.Dir()
	if o.Users == "" {
		o.Users = uf
	}
	if err := o.checkAndSetDefaults(""); err != nil {
		t.Fatal(err)
	}
	users, err := LoadUsers(o.Users)
	if err != nil {
		t.Fatal(err)
	}
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	e := newEngine(o, gateway.EngineSpec{Upstream: upstream, Pipeline: p, Log: zerolog.Nop(),
		Limits: gateway.Limits{RequestTimeout: 2 * time.Second}},
		cert, key, (&pki{store: st}).validate, users, "opc.tcp://localhost:4840")
	t.Cleanup(func() { e.Close() })
	return &harness{e: e, audit: a}
}

func (h *harness) conn(id uint32) *conn {
	base := &gateway.Session{ID: gateway.NewID(), Protocol: Protocol, Listener: "l",
		Source: gateway.Source{IP: netip.MustParseAddr("192.0.2.7"), Port: 4000}, Log: zerolog.Nop()}
	return newConn(h.e, &fakeChannel{id: id, policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone}, base)
}

func hdr(token *ua.NodeID) *ua.RequestHeader {
	if token == nil {
		token = ua.NewTwoByteNodeID(0)
	}
	return &ua.RequestHeader{AuthenticationToken: token, RequestHandle: 7, AdditionalHeader: ua.NewExtensionObject(nil)}
}

func create(t testing.TB, c *conn) *ua.CreateSessionResponse {
	t.Helper()
	resp := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil),
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client"}, ClientNonce: make([]byte, 32),
		RequestedSessionTimeout: 60000})
	cs, ok := resp.(*ua.CreateSessionResponse)
	if !ok {
		t.Fatalf("CreateSession: %+v", resp.Header().ServiceResult)
	}
	if cs.ResponseHeader.RequestHandle != 7 || len(cs.ServerNonce) != 32 || cs.RevisedSessionTimeout != 60000 {
		t.Fatalf("CreateSession response %+v", cs)
	}
	return cs
}

// userToken encrypts a password the way clients do, for a server nonce.
func userToken(t *testing.T, e *Engine, user, password string, nonce []byte) *ua.ExtensionObject {
	t.Helper()
	pub, err := uapolicy.PublicKey(e.cert)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, nil, pub)
	if err != nil {
		t.Fatal(err)
	}
	plain := binary.LittleEndian.AppendUint32(nil, uint32(len(password)+len(nonce)))
	plain = append(append(plain, password...), nonce...)
	ct, err := enc.Encrypt(plain)
	if err != nil {
		t.Fatal(err)
	}
	return ua.NewExtensionObject(&ua.UserNameIdentityToken{PolicyID: tokenUserName, UserName: user, Password: ct, EncryptionAlgorithm: enc.EncryptionURI()})
}

func activate(c *conn, token *ua.NodeID, tok *ua.ExtensionObject) ua.Response {
	return c.handle(context.Background(), &ua.ActivateSessionRequest{RequestHeader: hdr(token),
		ClientSignature: &ua.SignatureData{}, UserIdentityToken: tok, UserTokenSignature: &ua.SignatureData{}})
}

func TestActivateUserNameAndBinding(t *testing.T) {
	h := newHarness(t, Options{})
	c1, c2 := h.conn(1), h.conn(2)
	cs := create(t, c1)

	// Another channel may not activate (or use) the session.
	if r := activate(c2, cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", cs.ServerNonce)); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("activate from another channel: %v", r.Header().ServiceResult)
	}
	// Before activation no service is answered.
	rd := &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken)}
	if r := c1.handle(context.Background(), rd); r.Header().ServiceResult != ua.StatusBadSessionNotActivated {
		t.Errorf("read before activation: %v", r.Header().ServiceResult)
	}
	// A token encrypted for another nonce is refused.
	if r := activate(c1, cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", make([]byte, 32))); r.Header().ServiceResult != ua.StatusBadIdentityTokenInvalid {
		t.Errorf("token for another nonce: %v", r.Header().ServiceResult)
	}
	r := activate(c1, cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", cs.ServerNonce))
	as, ok := r.(*ua.ActivateSessionResponse)
	if !ok || len(as.ServerNonce) != 32 {
		t.Fatalf("activate: %v", r.Header().ServiceResult)
	}
	open := h.audit.Events("session.open")
	if len(open) != 1 || open[0].Session.Principal.User != "alice" || open[0].Session.Principal.Roles[0] != "engineer" ||
		open[0].Session.Principal.ApplicationURI != "urn:client" || open[0].Session.SecurityPolicy != "None" {
		t.Fatalf("session.open: %+v", open)
	}
	// The session's token is no good on another channel either.
	if r := c2.handle(context.Background(), &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken)}); r.Header().ServiceResult != ua.StatusBadSecureChannelIDInvalid {
		t.Errorf("read from another channel: %v", r.Header().ServiceResult)
	}
	// The upstream is down: the client hears so at once.
	rd = &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 2258), AttributeID: ua.AttributeIDValue}}}
	if r := c1.handle(context.Background(), rd); r.Header().ServiceResult != ua.StatusBadServerNotConnected {
		t.Errorf("read with the upstream down: %v", r.Header().ServiceResult)
	}
	if res := h.audit.Events("result"); len(res) != 1 || res[0].Result.Status != gateway.StatusError ||
		res[0].Result.Code != int(uint32(ua.StatusBadServerNotConnected)) {
		t.Errorf("result records %+v", res)
	}

	if r := c1.handle(context.Background(), &ua.CloseSessionRequest{RequestHeader: hdr(cs.AuthenticationToken)}); r.Header().ServiceResult != ua.StatusOK {
		t.Errorf("close: %v", r.Header().ServiceResult)
	}
	if cl := h.audit.Events("session.close"); len(cl) != 1 || cl[0].Err != nil {
		t.Errorf("session.close: %+v", cl)
	}
	if r := c1.handle(context.Background(), rd); r.Header().ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Errorf("read after close: %v", r.Header().ServiceResult)
	}
	if r := c1.handle(context.Background(), &ua.CloseSessionRequest{RequestHeader: hdr(ua.NewGUIDNodeID(0, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"))}); r.Header().ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Errorf("close of a forged token: %v", r.Header().ServiceResult)
	}

	// Each refusal of a token is recorded (the ActivateSession from another
	// channel by the login's own record), naming the session a stolen token
	// belongs to.
	var got []string
	for _, rec := range h.audit.Events("request.rejected") {
		got = append(got, rec.Call.Operation.Function+" "+rec.Reason+" "+rec.Response)
		if rec.Call.Operation.Function == "read" && rec.Reason == "session_of_another_channel" && !strings.HasSuffix(rec.Detail, ": session "+open[0].Session.ID) {
			t.Errorf("the record of a token from another channel does not name its session %s: %q", open[0].Session.ID, rec.Detail)
		}
		if rec.Call.Operation.Function == "activate_session" && (rec.Call.Operation.Access != gateway.AccessSession || !strings.HasSuffix(rec.Detail, ", not activated yet")) {
			t.Errorf("the record of an activation from another channel: %+v", rec)
		}
	}
	want := []string{
		"activate_session session_of_another_channel Bad_SecureChannelIdInvalid",
		"read session_not_activated Bad_SessionNotActivated",
		"session.auth_failed auth_failed refused", // the token for another nonce: a failed login
		"read session_of_another_channel Bad_SecureChannelIdInvalid",
		"read session_invalid Bad_SessionIdInvalid",
		"close_session session_invalid Bad_SessionIdInvalid",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("request.rejected records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestFailedLoginsAuditedAndHeldBack(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.conn(1)
	for i := range freeLogins {
		cs := create(t, c)
		if r := activate(c, cs.AuthenticationToken, userToken(t, h.e, "alice", "guess", cs.ServerNonce)); r.Header().ServiceResult != ua.StatusBadUserAccessDenied {
			t.Fatalf("wrong password %d: %v", i, r.Header().ServiceResult)
		}
	}
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, userToken(t, h.e, "alice", "secret", cs.ServerNonce)); r.Header().ServiceResult != ua.StatusBadUserAccessDenied {
		t.Errorf("right password while held back: %v", r.Header().ServiceResult)
	}
	failed := 0
	for _, r := range h.audit.Events("request.rejected") {
		if r.Reason == gateway.ReasonAuthFailed && r.Session.Principal.User == "alice" {
			failed++
		}
	}
	if failed != freeLogins+1 {
		t.Errorf("auth_failed records: %d, want %d", failed, freeLogins+1)
	}
}

func TestAnonymousDisabled(t *testing.T) {
	h := newHarness(t, Options{})
	c := h.conn(1)
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: tokenAnonymous})); r.Header().ServiceResult != ua.StatusBadIdentityTokenRejected {
		t.Errorf("anonymous: %v", r.Header().ServiceResult)
	}
}

// TestUnknownUserToken: a UserIdentityToken that is no user token (a
// structure of a type the codec does not know, kept as its bytes, or
// another structure) is refused with Bad_IdentityTokenInvalid and audited,
// even with anonymous logins on: only a null token is anonymous.
func TestUnknownUserToken(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	// a null token is anonymous (first: the failed logins below hold the
	// source back)
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, channel.EmptyExtensionObject()); r.Header().ServiceResult != ua.StatusOK {
		t.Errorf("null token: %v, want an anonymous session", r.Header().ServiceResult)
	}
	for _, tok := range []*ua.ExtensionObject{
		{TypeID: ua.NewFourByteExpandedNodeID(7, 321), EncodingMask: ua.ExtensionObjectBinary, Value: &channel.Opaque{Body: []byte("token")}},
		{TypeID: ua.NewFourByteExpandedNodeID(7, 321), EncodingMask: ua.ExtensionObjectBinary},
		ua.NewExtensionObject(&ua.Argument{Name: "x"}),
	} {
		cs := create(t, c)
		if r := activate(c, cs.AuthenticationToken, tok); r.Header().ServiceResult != ua.StatusBadIdentityTokenInvalid {
			t.Errorf("token %v: %v, want Bad_IdentityTokenInvalid", tok.TypeID, r.Header().ServiceResult)
		}
	}
	failed := 0
	for _, r := range h.audit.Events("request.rejected") {
		if r.Reason == gateway.ReasonAuthFailed {
			failed++
		}
	}
	if failed != 3 || len(h.audit.Events("session.open")) != 1 {
		t.Errorf("%d auth_failed records, %d session.open, want 3 and 1 (the null token's)", failed, len(h.audit.Events("session.open")))
	}
}

func TestTooManySessions(t *testing.T) {
	h := newHarness(t, Options{Limits: LimitOptions{MaxSessions: 2}})
	c := h.conn(1)
	create(t, c)
	create(t, c)
	r := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusBadTooManySessions {
		t.Errorf("third session: %v", r.Header().ServiceResult)
	}
	if rej := h.audit.Events("request.rejected"); len(rej) != 1 || rej[0].Reason != "limit" {
		t.Errorf("records %+v", rej)
	}
}

func TestNonRSACertificateInCreateSession(t *testing.T) {
	h := newHarness(t, Options{})
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	base := &gateway.Session{ID: gateway.NewID(), Log: zerolog.Nop()}
	c := newConn(h.e, &fakeChannel{id: 3, policy: ua.SecurityPolicyURIBasic256Sha256, mode: ua.MessageSecurityModeSignAndEncrypt, cert: der}, base)
	r := c.handleSafe(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: der, ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusBadCertificateInvalid {
		t.Errorf("ECDSA certificate: %v", r.Header().ServiceResult)
	}
}

func TestPanicAnswersOnlyThatRequest(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	cs := anonymousSession(t, c)
	// A nil item cannot come from the decoder; here it makes the handler panic.
	r := c.handleSafe(context.Background(), &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{nil}})
	if r.Header().ServiceResult != ua.StatusBadInternalError || r.Header().RequestHandle != 7 {
		t.Errorf("panicking request: %+v", r.Header())
	}
	rej := h.audit.Events("request.rejected")
	if len(rej) != 1 || rej[0].Reason != "panic" || rej[0].Session.Principal.Auth != gateway.AuthAnonymous {
		t.Errorf("records %+v", rej)
	}
	// The session goes on.
	r = c.handleSafe(context.Background(), &ua.BrowseNextRequest{RequestHeader: hdr(cs.AuthenticationToken)})
	if r.Header().ServiceResult != ua.StatusBadNothingToDo {
		t.Errorf("next request: %v", r.Header().ServiceResult)
	}
}

func TestSessionTimeoutEndsSession(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	cs := create(t, c)
	activate(c, cs.AuthenticationToken, nil)
	expired := h.e.sessions.expired(time.Now().Add(2 * time.Minute))
	if len(expired) != 1 {
		t.Fatalf("expired sessions: %d", len(expired))
	}
	h.e.endSession(context.Background(), expired[0], errSessionTimeout)
	if cl := h.audit.Events("session.close"); len(cl) != 1 || cl[0].Err != errSessionTimeout {
		t.Errorf("session.close %+v", cl)
	}
	if r := c.handle(context.Background(), &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken)}); r.Header().ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Errorf("read after timeout: %v", r.Header().ServiceResult)
	}
}

func TestX509UserToken(t *testing.T) {
	h := newHarness(t, Options{})
	user, err := certs.Init(filepath.Join(t.TempDir(), "user"), certs.InitOptions{ApplicationURI: "urn:user:carol", CommonName: "carol", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ucert, ukey, _ := user.Own()
	x509Login(t, h, ucert, ukey, func() {
		st, _ := certs.Open(h.e.opts.PKI)
		if _, err := st.Trust(certs.Thumbprint(ucert)); err != nil {
			t.Fatal(err)
		}
	})
}

// With user_pki, a certificate trusted as a client application is not a
// user's: only the user store's trust counts for X.509 user tokens.
func TestX509UserTokenUserPKI(t *testing.T) {
	dir := t.TempDir()
	app, err := certs.Init(filepath.Join(dir, "pki"), certs.InitOptions{ApplicationURI: "urn:interlock:unit", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	users, err := certs.Init(filepath.Join(dir, "pki-users"), certs.InitOptions{ApplicationURI: "urn:interlock:users", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	a := &gatewaytest.Auditor{}
	eng, err := New(gateway.EngineSpec{Listener: "l", Upstream: "opc.tcp://127.0.0.1:1", Listen: "127.0.0.1:4840", BaseDir: dir,
		Pipeline: &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}, Log: zerolog.Nop(),
		Limits: gateway.Limits{RequestTimeout: 2 * time.Second},
		Options: func(into any) error {
			*into.(*Options) = Options{PKI: "pki", UserPKI: "pki-users", Anonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{e: eng.(*Engine), audit: a}
	t.Cleanup(func() { h.e.Close() })
	carol, err := certs.Init(filepath.Join(dir, "carol"), certs.InitOptions{ApplicationURI: "urn:user:carol", CommonName: "carol", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ucert, ukey, _ := carol.Own()
	// Trusted as an application: still no user.
	if _, err := app.TrustFile(carol.OwnCertPath()); err != nil {
		t.Fatal(err)
	}
	x509Login(t, h, ucert, ukey, func() {
		if _, err := users.TrustFile(carol.OwnCertPath()); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := New(gateway.EngineSpec{Upstream: "opc.tcp://127.0.0.1:1", BaseDir: dir, Options: func(into any) error {
		*into.(*Options) = Options{PKI: "pki", UserPKI: "./pki", Anonymous: true}
		return nil
	}}); err == nil || !strings.Contains(err.Error(), "user_pki: the same folder as pki") {
		t.Errorf("user_pki = pki: %v", err)
	}
}

// x509Login logs carol in with an X.509 user token: refused before trust()
// makes her certificate trusted, refused for a signature over another
// nonce, then in.
func x509Login(t *testing.T, h *harness, ucert []byte, ukey *rsa.PrivateKey, trust func()) {
	t.Helper()
	pub, _ := uapolicy.PublicKey(h.e.cert)
	sign := func(nonce []byte) []byte {
		enc, err := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, ukey, pub)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := enc.Signature(append(append([]byte{}, h.e.cert...), nonce...))
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	act := func(c *conn, cs *ua.CreateSessionResponse, sig []byte) ua.StatusCode {
		return c.handle(context.Background(), &ua.ActivateSessionRequest{RequestHeader: hdr(cs.AuthenticationToken),
			ClientSignature:    &ua.SignatureData{},
			UserIdentityToken:  ua.NewExtensionObject(&ua.X509IdentityToken{PolicyID: tokenX509, CertificateData: ucert}),
			UserTokenSignature: &ua.SignatureData{Algorithm: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", Signature: sig}}).Header().ServiceResult
	}
	c := h.conn(1)
	// Not in the trust list yet.
	cs := create(t, c)
	if got := act(c, cs, sign(cs.ServerNonce)); got != ua.StatusBadIdentityTokenRejected {
		t.Errorf("untrusted user certificate: %v", got)
	}
	trust()
	cs = create(t, c)
	if got := act(c, cs, sign(make([]byte, 32))); got != ua.StatusBadUserSignatureInvalid {
		t.Errorf("signature over another nonce: %v", got)
	}
	cs = create(t, c)
	if got := act(c, cs, sign(cs.ServerNonce)); got != ua.StatusOK {
		t.Fatalf("X.509 user: %v", got)
	}
	open := h.audit.Events("session.open")
	if len(open) != 1 || open[0].Session.Principal.User != "carol" || open[0].Session.Principal.Auth != gateway.AuthX509 {
		t.Errorf("session.open %+v", open)
	}
}

func TestCreateSessionChecksApplicationURI(t *testing.T) {
	h := newHarness(t, Options{})
	client, err := certs.Init(filepath.Join(t.TempDir(), "client"), certs.InitOptions{ApplicationURI: "urn:client:a", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, _, _ := client.Own()
	st, _ := certs.Open(h.e.opts.PKI)
	h.e.validate(cert, "") // untrusted: copied to rejected/, then trusted from there
	if _, err := st.Trust(certs.Thumbprint(cert)); err != nil {
		t.Fatal(err)
	}
	base := &gateway.Session{ID: gateway.NewID(), Log: zerolog.Nop()}
	c := newConn(h.e, &fakeChannel{id: 4, policy: ua.SecurityPolicyURIBasic256Sha256, mode: ua.MessageSecurityModeSignAndEncrypt, cert: cert}, base)
	req := func(uri string) ua.Response {
		return c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: cert,
			ClientNonce: make([]byte, 32), ClientDescription: &ua.ApplicationDescription{ApplicationURI: uri}})
	}
	if r := req("urn:client:b"); r.Header().ServiceResult != ua.StatusBadSecurityChecksFailed {
		t.Errorf("wrong ApplicationURI: %v", r.Header().ServiceResult)
	}
	rej := h.audit.Events("request.rejected")
	if len(rej) != 1 || rej[0].Reason != "certificate_invalid" {
		t.Errorf("records %+v", rej)
	}
	r := req("urn:client:a")
	cs, ok := r.(*ua.CreateSessionResponse)
	if !ok || cs.ServerSignature == nil || len(cs.ServerSignature.Signature) == 0 {
		t.Fatalf("CreateSession: %v", r.Header().ServiceResult)
	}
	// The signature is over the client's certificate and nonce, with the
	// gateway's key.
	pub, _ := uapolicy.PublicKey(h.e.cert)
	enc, _ := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, nil, pub)
	if err := enc.VerifySignature(append(append([]byte{}, cert...), make([]byte, 32)...), cs.ServerSignature.Signature); err != nil {
		t.Errorf("server signature: %v", err)
	}
	// Another certificate than the channel's is refused.
	other, _ := certs.Init(filepath.Join(t.TempDir(), "other"), certs.InitOptions{ApplicationURI: "urn:client:a", Hosts: []string{"localhost"}})
	oc, _, _ := other.Own()
	r = c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: oc,
		ClientNonce: make([]byte, 32), ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client:a"}})
	if r.Header().ServiceResult != ua.StatusBadSecurityChecksFailed {
		t.Errorf("certificate other than the channel's: %v", r.Header().ServiceResult)
	}
}

// activatedOnTestServer is a connection of an engine in front of the
// node-opcua test server with an anonymous session created and activated.
func activatedOnTestServer(t *testing.T) (*harness, *conn, *ua.CreateSessionResponse) {
	t.Helper()
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	h := newHarnessFor(t, srv.Endpoint)
	c := h.conn(1)
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, nil); r.Header().ServiceResult != ua.StatusOK {
		t.Fatal(r.Header().ServiceResult)
	}
	return h, c, cs
}

// The server forgets the gateway's upstream session: the request that
// finds out is sent again on a new upstream session, and the client never
// sees Bad_SessionIdInvalid.
func TestUpstreamSessionLostIsRetried(t *testing.T) {
	h, c, cs := activatedOnTestServer(t)
	rd := func() ua.StatusCode {
		r := c.handle(context.Background(), &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{
			{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}})
		if rr, ok := r.(*ua.ReadResponse); ok && len(rr.Results) == 1 && rr.Results[0].Status != ua.StatusOK {
			return rr.Results[0].Status
		}
		return r.Header().ServiceResult
	}
	if got := rd(); got != ua.StatusOK {
		t.Fatalf("read: %v", got)
	}
	s := h.e.sessions.get(cs.AuthenticationToken)
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	up.mu.Lock()
	gc := up.c
	up.mu.Unlock()
	if _, err := gc.call(context.Background(), &ua.CloseSessionRequest{}); err != nil { // behind the gateway's back
		t.Fatal(err)
	}
	if got := rd(); got != ua.StatusOK {
		t.Errorf("read after the upstream session was lost: %v", got)
	}
}

func TestActivateVerifiesClientSignature(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	client, err := certs.Init(filepath.Join(t.TempDir(), "client"), certs.InitOptions{ApplicationURI: "urn:client:a", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, _ := client.Own()
	st, _ := certs.Open(h.e.opts.PKI)
	h.e.validate(cert, "")
	if _, err := st.Trust(certs.Thumbprint(cert)); err != nil {
		t.Fatal(err)
	}
	base := &gateway.Session{ID: gateway.NewID(), Log: zerolog.Nop()}
	c := newConn(h.e, &fakeChannel{id: 5, policy: ua.SecurityPolicyURIBasic256Sha256, mode: ua.MessageSecurityModeSign, cert: cert}, base)
	r := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientCertificate: cert,
		ClientNonce: make([]byte, 32), ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client:a"}})
	cs, ok := r.(*ua.CreateSessionResponse)
	if !ok {
		t.Fatalf("CreateSession: %v", r.Header().ServiceResult)
	}
	pub, _ := uapolicy.PublicKey(h.e.cert)
	enc, _ := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, key, pub)
	act := func(sig []byte) ua.StatusCode {
		return c.handle(context.Background(), &ua.ActivateSessionRequest{RequestHeader: hdr(cs.AuthenticationToken),
			ClientSignature:   &ua.SignatureData{Algorithm: enc.SignatureURI(), Signature: sig},
			UserIdentityToken: ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: tokenAnonymous})}).Header().ServiceResult
	}
	wrong, _ := enc.Signature(append(append([]byte{}, h.e.cert...), make([]byte, 32)...))
	if got := act(wrong); got != ua.StatusBadApplicationSignatureInvalid {
		t.Errorf("signature over another nonce: %v", got)
	}
	if got := act(nil); got != ua.StatusBadApplicationSignatureInvalid {
		t.Errorf("no signature: %v", got)
	}
	right, _ := enc.Signature(append(append([]byte{}, h.e.cert...), cs.ServerNonce...))
	if got := act(right); got != ua.StatusOK {
		t.Errorf("right signature: %v", got)
	}
	open := h.audit.Events("session.open")
	if len(open) != 1 || open[0].Session.SecurityMode != "Sign" || open[0].Session.Principal.CertThumbprint != certs.Thumbprint(cert) {
		t.Errorf("session.open %+v", open)
	}
}

// A channel that only creates sessions holds at most MaxPendingPerChannel
// slots, each for ActivationTimeout: it cannot fill max_sessions for the
// other clients.
func TestPendingSessionsBounded(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	var first *ua.CreateSessionResponse
	for i := range MaxPendingPerChannel {
		cs := create(t, c)
		if i == 0 {
			first = cs
		}
	}
	r := c.handle(context.Background(), &ua.CreateSessionRequest{RequestHeader: hdr(nil), ClientNonce: make([]byte, 32)})
	if r.Header().ServiceResult != ua.StatusBadTooManySessions {
		t.Fatalf("a third session not activated on one channel: %v, want Bad_TooManySessions", r.Header().ServiceResult)
	}
	if other := create(t, h.conn(2)); other == nil {
		t.Fatal("another channel cannot create a session")
	}
	// Activating one frees its pending slot.
	if r := activate(c, first.AuthenticationToken, ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: tokenAnonymous})); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate: %v", r.Header().ServiceResult)
	}
	create(t, c)

	// Sessions never activated expire after ActivationTimeout even when the
	// client asked for a long session timeout; the activated one stays.
	later := time.Now().Add(ActivationTimeout + time.Second)
	for _, s := range h.e.sessions.all() {
		s.lastUsed.Store(later.UnixNano()) // not idle
	}
	expired := h.e.sessions.expired(later)
	if want := h.e.sessions.count() - 1; len(expired) != want {
		t.Errorf("%d sessions expire at the activation timeout, want the %d never activated", len(expired), want)
	}
	for _, s := range expired {
		if s.live.Load() {
			t.Error("an activated session expired at the activation timeout")
		}
	}
}

// anonymousSession creates and activates an anonymous session on c.
func anonymousSession(t *testing.T, c *conn) *ua.CreateSessionResponse {
	t.Helper()
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: tokenAnonymous})); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("anonymous: %v", r.Header().ServiceResult)
	}
	return cs
}

// replyFaulted answers a Read of an anonymous session on a channel whose
// Send went out as a ServiceFault of code instead.
func replyFaulted(t *testing.T, code ua.StatusCode) (*harness, *conn, *ua.ReadRequest) {
	t.Helper()
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	cs := anonymousSession(t, c)
	c.ch.(*fakeChannel).sendErr = &channel.Error{Code: code, Reason: "*ua.ReadResponse answered with a ServiceFault instead"}
	req := &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken)}
	c.reply(context.Background(), &request{ID: 9, Body: req}, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{RequestHandle: 7}})
	return h, c, req
}

// TestUnencodableAnswerRecorded: an answer the channel replaced by a
// ServiceFault Bad_EncodingError (a value from upstream gopcua cannot
// encode) is recorded, since the call's result record tells the server's
// answer, not the client's.
func TestUnencodableAnswerRecorded(t *testing.T) {
	h, c, req := replyFaulted(t, ua.StatusBadEncodingError)
	rej := h.audit.Events("request.rejected")
	if len(rej) != 1 || rej[0].Reason != "unencodable" || rej[0].Response != "Bad_EncodingError" || rej[0].Session.Principal.Auth != gateway.AuthAnonymous {
		t.Fatalf("records %+v", rej)
	}
	// an answer not sent for another reason (the client gone) is no record
	c.ch.(*fakeChannel).sendErr = &channel.Error{Code: ua.StatusBadSecureChannelClosed}
	c.reply(context.Background(), &request{ID: 10, Body: req}, &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{RequestHandle: 7}})
	if rej := h.audit.Events("request.rejected"); len(rej) != 1 {
		t.Fatalf("records %+v", rej)
	}
}

// An answer over the client's MaxMessageSize or MaxChunkCount, which went
// out as a ServiceFault Bad_ResponseTooLarge, is recorded too: the call's
// result record tells the server's answer, which the client did not get.
func TestTooLargeAnswerRecorded(t *testing.T) {
	h, _, _ := replyFaulted(t, ua.StatusBadResponseTooLarge)
	rej := h.audit.Events("request.rejected")
	if len(rej) != 1 || rej[0].Reason != "response_too_large" || rej[0].Response != "Bad_ResponseTooLarge" || rej[0].Session.Principal.Auth != gateway.AuthAnonymous {
		t.Fatalf("records %+v, want one request.rejected, reason response_too_large, of the session", rej)
	}
}

// recordSession, the session named by the record of a request the channel
// could not read whole: the channel's session its token names, else the
// channel's one activated session, else (none, or several and no token of
// theirs) the connection.
func TestRecordSessionOfChannel(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c, other := h.conn(1), h.conn(2)
	if got := c.recordSession(nil); got != c.base {
		t.Errorf("no session: %+v, want the connection", got)
	}
	pending := create(t, c)
	if got := c.recordSession(pending.AuthenticationToken); got != c.base {
		t.Errorf("a session not activated: %+v, want the connection", got)
	}
	a := anonymousSession(t, c)
	sa := h.e.sessions.get(a.AuthenticationToken).session()
	if got := c.recordSession(nil); got != sa {
		t.Errorf("one activated session, no token: %+v, want it", got)
	}
	o := anonymousSession(t, other)
	if got := c.recordSession(o.AuthenticationToken); got != sa {
		t.Errorf("the token of another channel's session: %+v, want this channel's session", got)
	}
	b := anonymousSession(t, c)
	sb := h.e.sessions.get(b.AuthenticationToken).session()
	if got := c.recordSession(nil); got != c.base {
		t.Errorf("two activated sessions, no token: %+v, want the connection", got)
	}
	if got := c.recordSession(b.AuthenticationToken); got != sb {
		t.Errorf("two activated sessions, the token of one: %+v, want that one", got)
	}
}

// A session that ends while its first activation is decided (its
// activation timeout, the gateway stopping) answers the activation
// Bad_SessionClosed, and the session.open recorded for it is followed by
// its session.close.
func TestSessionEndedDuringActivationRecorded(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	cs := create(t, c)
	s := h.e.sessions.get(cs.AuthenticationToken)
	h.e.pipeline.Decider = gatewaytest.Decider(func(_ context.Context, _ *gateway.Session, _ *gateway.Call) (gateway.Decision, error) {
		h.e.endSession(context.Background(), s, errSessionTimeout) // as expireSessions would meanwhile
		return gateway.Decision{Allow: true}, nil
	})
	if r := activate(c, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusBadSessionClosed {
		t.Fatalf("activation of a session ended meanwhile: %v, want Bad_SessionClosed", r.Header().ServiceResult)
	}
	opens, closes := h.audit.Events("session.open"), h.audit.Events("session.close")
	if len(opens) != 1 || len(closes) != 1 || closes[0].Session.ID != opens[0].Session.ID || closes[0].Err != errSessionTimeout {
		t.Errorf("session.open %+v, session.close %+v: want one of each for the session, closed by its timeout", opens, closes)
	}
}

// Two ActivateSessions of a new session at once (a client's pipelined
// requests) activate it once: one session.open, one upstream session; the
// other is a re-activation. Both first activations used to open the session
// (two session.open records of two ids, one never closed; with users
// passthrough, two upstream sessions, the first never closed).
func TestConcurrentFirstActivationsOpenOnce(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	c := h.conn(1)
	cs := create(t, c)
	arrived := make(chan struct{}, 2)
	h.e.pipeline.DecisionTimeout = 5 * time.Second
	h.e.pipeline.Decider = gatewaytest.Decider(func(_ context.Context, _ *gateway.Session, k *gateway.Call) (gateway.Decision, error) {
		if k.Operation.Function == gateway.FunctionSessionOpen {
			arrived <- struct{}{}
			// both activations decided at once, if they can be
			for deadline := time.Now().Add(300 * time.Millisecond); len(arrived) < 2 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
		return gateway.Decision{Allow: true}, nil
	})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if r := activate(c, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
				t.Errorf("activate: %v", r.Header().ServiceResult)
			}
		})
	}
	wg.Wait()
	h.e.endSession(context.Background(), h.e.sessions.get(cs.AuthenticationToken), nil)
	opens, closes := h.audit.Events("session.open"), h.audit.Events("session.close")
	if len(opens) != 1 || len(closes) != 1 {
		t.Errorf("%d session.open and %d session.close records of one session activated twice at once, want 1 and 1", len(opens), len(closes))
	}
}
