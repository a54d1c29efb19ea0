package opcua

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// fakeUpstream is a server on the gateway's channel package that answers
// CreateSession and ActivateSession and keeps what it was sent.
type fakeUpstream struct {
	endpoint string
	cert     []byte
	key      *rsa.PrivateKey
	badSig   bool // sign CreateSession over the wrong data

	mu       sync.Mutex
	create   *ua.CreateSessionRequest
	activate *ua.ActivateSessionRequest
	nonce    []byte // the server nonce of CreateSession
}

func startFakeUpstream(t *testing.T, badSig bool) *fakeUpstream {
	t.Helper()
	cert, key := ownCert(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeUpstream{endpoint: "opc.tcp://" + l.Addr().String(), cert: cert, key: key, badSig: badSig}
	cfg := &channel.Config{
		EndpointURL:    f.endpoint,
		Offers:         []channel.Offer{{PolicyURI: ua.SecurityPolicyURIBasic256Sha256, Mode: ua.MessageSecurityModeSignAndEncrypt}},
		Certificate:    cert,
		PrivateKey:     key,
		ValidateClient: func([]byte) error { return nil },
		// short tokens for TestUpstreamTokenLifetime; the gateway asks an
		// hour unless told otherwise
		MinTokenLifetime: 500 * time.Millisecond,
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				ch, err := channel.Accept(context.Background(), conn, cfg)
				if err != nil {
					return
				}
				defer ch.Close()
				for {
					req, err := ch.Next()
					if err != nil {
						return
					}
					ch.Send(req.ID, f.answer(req))
				}
			})
		}
	})
	return f
}

func (f *fakeUpstream) answer(req *channel.Request) ua.Response {
	h := &ua.ResponseHeader{RequestHandle: req.Handle}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r := req.Body.(type) {
	case *ua.CreateSessionRequest:
		f.create = r
		f.nonce = make([]byte, 32)
		rand.Read(f.nonce)
		cert, _ := x509.ParseCertificate(r.ClientCertificate)
		algo, _ := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, f.key, cert.PublicKey.(*rsa.PublicKey))
		signed := append(append([]byte{}, r.ClientCertificate...), r.ClientNonce...)
		if f.badSig {
			signed = append(signed, 0)
		}
		sig, _ := algo.Signature(signed)
		return &ua.CreateSessionResponse{ResponseHeader: h, SessionID: ua.NewNumericNodeID(1, 1),
			AuthenticationToken: ua.NewByteStringNodeID(0, f.nonce), RevisedSessionTimeout: r.RequestedSessionTimeout,
			ServerNonce: f.nonce, ServerCertificate: f.cert,
			ServerSignature: &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: sig}}
	case *ua.ActivateSessionRequest:
		f.activate = r
		return &ua.ActivateSessionResponse{ResponseHeader: h, ServerNonce: f.nonce}
	case *ua.BrowseRequest: // a broken server: for TestUpstreamWrongResponseType
		return &ua.ReadResponse{ResponseHeader: h, Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}}}
	}
	h.ServiceResult = ua.StatusBadServiceUnsupported
	return &ua.ServiceFault{ResponseHeader: h}
}

func (f *fakeUpstream) endpointDescription() *ua.EndpointDescription {
	return &ua.EndpointDescription{
		EndpointURL: f.endpoint, ServerCertificate: f.cert,
		SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256, SecurityMode: ua.MessageSecurityModeSignAndEncrypt,
		UserIdentityTokens: []*ua.UserTokenPolicy{
			{PolicyID: "anon", TokenType: ua.UserTokenTypeAnonymous},
			{PolicyID: "pw", TokenType: ua.UserTokenTypeUserName, SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256},
			{PolicyID: "x509", TokenType: ua.UserTokenTypeCertificate, SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256},
		},
	}
}

// ownCert is a fresh application instance certificate for localhost.
func ownCert(t *testing.T) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	st, err := certs.Init(filepath.Join(t.TempDir(), "pki"), certs.InitOptions{ApplicationURI: "urn:interlock:test", Hosts: []string{"localhost", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := st.Own()
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func upstreamConfigFor(t *testing.T, f *fakeUpstream) *upstreamConfig {
	t.Helper()
	cert, key := ownCert(t)
	return &upstreamConfig{url: f.endpoint, policyURI: ua.SecurityPolicyURIBasic256Sha256, mode: ua.MessageSecurityModeSignAndEncrypt,
		cert: cert, key: key, appURI: "urn:interlock:test", connectTimeout: 5 * time.Second, sessionTimeout: time.Minute}
}

// TestUpstreamSessionSignaturesAndTokens: the gateway's ActivateSession
// carries a client signature the server can verify over its certificate
// and nonce, a password the server can decrypt (with its nonce after it),
// and an X.509 token signed the same way.
func TestUpstreamSessionSignaturesAndTokens(t *testing.T) {
	f := startFakeUpstream(t, false)
	cfg := upstreamConfigFor(t, f)
	gwCert, _ := x509.ParseCertificate(cfg.cert)
	gwKey := gwCert.PublicKey.(*rsa.PublicKey)
	verify := func(t *testing.T, what string, sig *ua.SignatureData) {
		t.Helper()
		algo, err := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, f.key, gwKey)
		if err != nil {
			t.Fatal(err)
		}
		if sig == nil || sig.Algorithm != algo.SignatureURI() || algo.VerifySignature(append(append([]byte{}, f.cert...), f.nonce...), sig.Signature) != nil {
			t.Errorf("%s does not verify over the server certificate and nonce: %+v", what, sig)
		}
	}
	for _, id := range []identity{{kind: IdentityAnonymous}, {kind: IdentityService, user: "svc", password: "s3cret"}, {kind: IdentityCertificate}} {
		t.Run(id.kind, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := dialUpstream(ctx, cfg, f.endpointDescription(), id)
			if err != nil {
				t.Fatal(err)
			}
			defer c.close(ctx)
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.create.ClientDescription.ApplicationURI != "urn:interlock:test" || string(f.create.ClientCertificate) != string(cfg.cert) {
				t.Errorf("CreateSession: %+v", f.create.ClientDescription)
			}
			verify(t, "ClientSignature", f.activate.ClientSignature)
			switch tok := f.activate.UserIdentityToken.Value.(type) {
			case *ua.AnonymousIdentityToken:
				if id.kind != IdentityAnonymous || tok.PolicyID != "anon" {
					t.Errorf("token %+v for %s", tok, id.kind)
				}
			case *ua.UserNameIdentityToken:
				if id.kind != IdentityService || tok.PolicyID != "pw" || tok.UserName != "svc" {
					t.Fatalf("token %+v for %s", tok, id.kind)
				}
				algo, _ := uapolicy.Asymmetric(ua.SecurityPolicyURIBasic256Sha256, f.key, gwKey)
				if tok.EncryptionAlgorithm != algo.EncryptionURI() {
					t.Errorf("password encrypted with %q", tok.EncryptionAlgorithm)
				}
				plain, err := algo.Decrypt(tok.Password)
				if err != nil {
					t.Fatal(err)
				}
				n := binary.LittleEndian.Uint32(plain)
				if int(n) != len(plain)-4 || string(plain[4:4+len("s3cret")]) != "s3cret" || string(plain[4+len("s3cret"):]) != string(f.nonce) {
					t.Errorf("decrypted password secret %q", plain)
				}
			case *ua.X509IdentityToken:
				if id.kind != IdentityCertificate || tok.PolicyID != "x509" || string(tok.CertificateData) != string(cfg.cert) {
					t.Errorf("token %+v for %s", tok, id.kind)
				}
				verify(t, "UserTokenSignature", f.activate.UserTokenSignature)
			default:
				t.Errorf("token %T", tok)
			}
		})
	}
}

// TestUpstreamRefusesBadServerSignature: a server whose CreateSession
// signature does not verify with the certificate of its endpoint gets no
// ActivateSession, and the connect fails with
// Bad_ApplicationSignatureInvalid.
func TestUpstreamRefusesBadServerSignature(t *testing.T) {
	f := startFakeUpstream(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := dialUpstream(ctx, upstreamConfigFor(t, f), f.endpointDescription(), identity{kind: IdentityAnonymous})
	if !errors.Is(err, ua.StatusBadApplicationSignatureInvalid) {
		t.Fatalf("connect: %v, want Bad_ApplicationSignatureInvalid", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.activate != nil {
		t.Error("ActivateSession sent to a server whose signature failed")
	}
}

// TestStatusOfUpstreamErrors: what the client is answered for each way a
// forwarded request can fail without a response.
func TestStatusOfUpstreamErrors(t *testing.T) {
	cases := []struct {
		err  error
		want ua.StatusCode
	}{
		{context.DeadlineExceeded, ua.StatusBadTimeout},
		{errUpstreamClosed, ua.StatusBadSessionClosed},
		{&errConnect{errors.New("connection refused")}, ua.StatusBadServerNotConnected},
		// no connection in the connect's or the request's time: not sent,
		// so not connected rather than timed out
		{&errConnect{fmt.Errorf("CreateSession: %w", context.DeadlineExceeded)}, ua.StatusBadServerNotConnected},
		{&errConnect{fmt.Errorf("ActivateSession: %w", ua.StatusBadUserAccessDenied)}, ua.StatusBadUserAccessDenied},
		{&channel.Error{Code: ua.StatusBadRequestTooLarge}, ua.StatusBadRequestTooLarge},
		{&channel.Error{Code: ua.StatusBadResponseTooLarge}, ua.StatusBadResponseTooLarge},
		{&channel.Error{Code: ua.StatusBadEncodingLimitsExceeded}, ua.StatusBadEncodingLimitsExceeded},
		{&channel.Error{Code: ua.StatusBadUnknownResponse}, ua.StatusBadUnknownResponse},
		{&channel.Error{Code: ua.StatusBadEncodingError}, ua.StatusBadEncodingError},
		{&channel.Error{Code: ua.StatusBadConnectionClosed}, ua.StatusBadCommunicationError},
		{errors.New("anything else"), ua.StatusBadCommunicationError},
	}
	for _, c := range cases {
		if got := statusOf(c.err); got != c.want {
			t.Errorf("statusOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestUpstreamTokenLifetime: upstream_token_lifetime is what the gateway's
// channel asks for, and it renews at 75 % of it while the session idles.
func TestUpstreamTokenLifetime(t *testing.T) {
	f := startFakeUpstream(t, false)
	cfg := upstreamConfigFor(t, f)
	cfg.tokenLifetime = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialUpstream(ctx, cfg, f.endpointDescription(), identity{kind: IdentityAnonymous})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close(ctx)
	time.Sleep(3200 * time.Millisecond)
	if id := c.ch.TokenID(); id < 4 {
		t.Errorf("token %d after 3.2 s with a 1 s lifetime: want at least 3 renewals", id)
	}
	// the fake answers a Read Bad_ServiceUnsupported: an answer all the same
	if _, err := c.send(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 2258), AttributeID: ua.AttributeIDValue}}}); err != nil {
		t.Errorf("a request after the renewals: %v", err)
	}
}

// TestUpstreamWrongResponseType: a server that answers a Browse with a
// ReadResponse fails that request with Bad_UnknownResponse, which the
// client is answered; the session goes on.
func TestUpstreamWrongResponseType(t *testing.T) {
	f := startFakeUpstream(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialUpstream(ctx, upstreamConfigFor(t, f), f.endpointDescription(), identity{kind: IdentityAnonymous})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close(ctx)
	resp, err := c.send(ctx, &ua.BrowseRequest{
		View:          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		NodesToBrowse: []*ua.BrowseDescription{{NodeID: ua.NewNumericNodeID(0, 85), ReferenceTypeID: ua.NewTwoByteNodeID(0)}},
	})
	if err == nil || statusOf(err) != ua.StatusBadUnknownResponse {
		t.Fatalf("a Browse answered with a ReadResponse: %T, %v; want Bad_UnknownResponse", resp, err)
	}
	if !c.connected() {
		t.Fatal("the channel was closed")
	}
	// the fake answers a Read Bad_ServiceUnsupported, in a ServiceFault
	resp, err = c.send(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewNumericNodeID(0, 2258), AttributeID: ua.AttributeIDValue}}})
	if _, ok := resp.(*ua.ServiceFault); err != nil || !ok {
		t.Fatalf("the next request: %T, %v", resp, err)
	}
}
