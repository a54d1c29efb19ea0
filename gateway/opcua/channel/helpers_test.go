package channel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// testCert is an application instance certificate with its key.
type testCert struct {
	der []byte
	key *rsa.PrivateKey
}

var (
	certsOnce                               sync.Once
	serverCert, clientCert, otherClientCert testCert
	ecdsaCertDER                            []byte
)

func loadCerts(t testing.TB) {
	t.Helper()
	certsOnce.Do(func() {
		serverCert = newRSACert(t, "urn:interlock:test:gateway", 2048)
		clientCert = newRSACert(t, "urn:interlock:test:client", 2048)
		otherClientCert = newRSACert(t, "urn:interlock:test:other", 2048)
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ecdsaCertDER = selfSigned(t, "urn:interlock:test:ecdsa", &k.PublicKey, k)
	})
}

func newRSACert(t testing.TB, uri string, bits int) testCert {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{der: selfSigned(t, uri, &k.PublicKey, k), key: k}
}

func selfSigned(t testing.TB, uri string, pub, priv any) []byte {
	t.Helper()
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: uri, Organization: []string{"Interlock test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment | x509.KeyUsageContentCommitment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var allOffers = []Offer{
	{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
	{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign},
	{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
	{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSign},
	{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSignAndEncrypt},
	{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSign},
	{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSignAndEncrypt},
}

// baseConfig offers everything and trusts the test client certificate only.
func baseConfig(t testing.TB) *Config {
	loadCerts(t)
	return &Config{
		Offers:      allOffers,
		Certificate: serverCert.der,
		PrivateKey:  serverCert.key,
		ValidateClient: func(chain []byte) error {
			c, err := x509.ParseCertificate(chain)
			if err != nil {
				return &Error{Code: ua.StatusBadCertificateInvalid, Reason: err.Error()}
			}
			if string(c.Raw) != string(clientCert.der) {
				return &Error{Code: ua.StatusBadCertificateUntrusted, Reason: "not in the trust list"}
			}
			return nil
		},
	}
}

// testServer accepts channels and answers them with a tiny responder.
type testServer struct {
	t        testing.TB
	l        net.Listener
	cfg      *Config
	endpoint string
	wg       sync.WaitGroup

	mu          sync.Mutex
	channels    []*Channel
	acceptErrs  []error
	receiveErrs []error
	sendErrs    []error
	big         []byte // value of node ns=1;s=big
	noClose     bool   // leave channels to close themselves when Serve ends
}

// waitSendErrs waits up to 5 s for an error of Send and returns them: Send
// records its error after the fault is on its way, so the client may read
// the fault first.
func (s *testServer) waitSendErrs() []error {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		errs := slices.Clone(s.sendErrs)
		s.mu.Unlock()
		if len(errs) > 0 || time.Now().After(deadline) {
			return errs
		}
	}
}

// waitEnded waits until n channels ended their Serve and returns the errors.
func (s *testServer) waitEnded(t testing.TB, n int) []error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		errs := append([]error(nil), s.receiveErrs...)
		s.mu.Unlock()
		if len(errs) >= n {
			return errs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d channels ended, want %d", len(errs), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startServer(t testing.TB, cfg *Config) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, l: l, cfg: cfg, endpoint: "opc.tcp://" + l.Addr().String()}
	cfg.EndpointURL = s.endpoint
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) stop() {
	s.l.Close()
	s.mu.Lock()
	chs := append([]*Channel(nil), s.channels...)
	s.mu.Unlock()
	for _, ch := range chs {
		ch.Close()
	}
	s.wg.Wait()
}

func (s *testServer) serve(conn net.Conn) {
	ch, err := Accept(context.Background(), conn, s.cfg)
	s.mu.Lock()
	if err != nil {
		s.acceptErrs = append(s.acceptErrs, err)
		s.mu.Unlock()
		return
	}
	s.channels = append(s.channels, ch)
	noClose := s.noClose
	s.mu.Unlock()
	if !noClose {
		defer ch.Close()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	err = ch.Serve(func(req *Request) {
		// answer concurrently: Send must be safe from many goroutines
		wg.Go(func() { s.answer(ch, req) })
	})
	s.mu.Lock()
	s.receiveErrs = append(s.receiveErrs, err)
	s.mu.Unlock()
}

func (s *testServer) lastChannel() *Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.channels) == 0 {
		return nil
	}
	return s.channels[len(s.channels)-1]
}

func okHeader(handle uint32) *ua.ResponseHeader {
	return &ua.ResponseHeader{RequestHandle: handle}
}

func (s *testServer) endpoints() []*ua.EndpointDescription {
	var eps []*ua.EndpointDescription
	for _, o := range s.cfg.Offers {
		eps = append(eps, &ua.EndpointDescription{
			EndpointURL:       s.endpoint,
			Server:            &ua.ApplicationDescription{ApplicationURI: "urn:interlock:test:gateway", ApplicationName: ua.NewLocalizedText("test"), ApplicationType: ua.ApplicationTypeServer},
			ServerCertificate: s.cfg.Certificate,
			SecurityMode:      o.Mode,
			SecurityPolicyURI: o.PolicyURI,
			UserIdentityTokens: []*ua.UserTokenPolicy{
				{PolicyID: "anonymous", TokenType: ua.UserTokenTypeAnonymous},
			},
			TransportProfileURI: "http://opcfoundation.org/UA-Profile/Transport/uatcp-uasc-uabinary",
			SecurityLevel:       uapolicy.SecurityLevel(o.PolicyURI, o.Mode),
		})
	}
	return eps
}

func (s *testServer) answer(ch *Channel, req *Request) {
	var resp ua.Response
	switch r := req.Body.(type) {
	case *ua.GetEndpointsRequest:
		resp = &ua.GetEndpointsResponse{ResponseHeader: okHeader(req.Handle), Endpoints: s.endpoints()}
	case *ua.CreateSessionRequest:
		sig := &ua.SignatureData{}
		if ch.SecurityPolicyURI() != ua.SecurityPolicyURINone {
			cert, err := x509.ParseCertificate(r.ClientCertificate)
			if err == nil {
				algo, err := uapolicy.Asymmetric(ch.SecurityPolicyURI(), s.cfg.PrivateKey, cert.PublicKey.(*rsa.PublicKey))
				if err == nil {
					b, _ := algo.Signature(append(append([]byte{}, r.ClientCertificate...), r.ClientNonce...))
					sig = &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: b}
				}
			}
		}
		nonce := make([]byte, 32)
		rand.Read(nonce)
		resp = &ua.CreateSessionResponse{
			ResponseHeader:        okHeader(req.Handle),
			SessionID:             ua.NewNumericNodeID(1, 1),
			AuthenticationToken:   ua.NewByteStringNodeID(0, nonce),
			RevisedSessionTimeout: r.RequestedSessionTimeout,
			ServerNonce:           nonce,
			ServerCertificate:     s.cfg.Certificate,
			ServerEndpoints:       s.endpoints(),
			ServerSignature:       sig,
		}
	case *ua.ActivateSessionRequest:
		nonce := make([]byte, 32)
		rand.Read(nonce)
		resp = &ua.ActivateSessionResponse{ResponseHeader: okHeader(req.Handle), ServerNonce: nonce}
	case *ua.CloseSessionRequest:
		resp = &ua.CloseSessionResponse{ResponseHeader: okHeader(req.Handle)}
	case *ua.ReadRequest:
		var results []*ua.DataValue
		for _, n := range r.NodesToRead {
			var v *ua.Variant
			switch n.NodeID.String() {
			case "i=2255": // NamespaceArray
				v = ua.MustVariant([]string{"http://opcfoundation.org/UA/", "urn:interlock:test"})
			case "ns=1;s=big":
				v = ua.MustVariant(s.big)
			case "ns=1;s=struct": // a structure of a type gopcua does not know
				v = ua.MustVariant(&ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(7, 4242), EncodingMask: ua.ExtensionObjectBinary, Value: &Opaque{Body: []byte{1, 2, 3}}})
			case "ns=1;s=unencodable": // an ExtensionObject without its value
				v = ua.MustVariant(&ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(7, 4242), EncodingMask: ua.ExtensionObjectBinary})
			default:
				v = ua.MustVariant(int32(req.Handle))
			}
			results = append(results, &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v})
		}
		resp = &ua.ReadResponse{ResponseHeader: okHeader(req.Handle), Results: results}
	case *ua.WriteRequest:
		var results []ua.StatusCode
		for _, w := range r.NodesToWrite {
			code := ua.StatusOK
			if b, ok := w.Value.Value.Value().([]byte); ok && len(b) == 0 {
				code = ua.StatusBadTypeMismatch
			}
			results = append(results, code)
		}
		resp = &ua.WriteResponse{ResponseHeader: okHeader(req.Handle), Results: results}
	default:
		ch.SendFault(req.ID, req.Handle, ua.StatusBadServiceUnsupported)
		return
	}
	if err := ch.Send(req.ID, resp); err != nil {
		s.mu.Lock()
		s.sendErrs = append(s.sendErrs, err)
		s.mu.Unlock()
	}
}

// dialUASC opens a channel with gopcua's client secure channel.
func dialUASC(t testing.TB, endpoint, policy string, mode ua.MessageSecurityMode, client testCert, lifetime time.Duration) (*uasc.SecureChannel, chan error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := uacp.Dial(ctx, endpoint)
	if err != nil {
		return nil, nil, err
	}
	cfg := &uasc.Config{
		SecurityPolicyURI: policy,
		SecurityMode:      mode,
		Lifetime:          uint32(lifetime / time.Millisecond),
		RequestTimeout:    5 * time.Second,
	}
	if policy != ua.SecurityPolicyURINone {
		cfg.Certificate = client.der
		cfg.LocalKey = client.key
		cfg.RemoteCertificate = serverCert.der
		cfg.Thumbprint = uapolicy.Thumbprint(serverCert.der)
	}
	errc := make(chan error, 8)
	sc, err := uasc.NewSecureChannel(endpoint, conn, cfg, errc)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if err := sc.Open(ctx); err != nil {
		conn.Close()
		return nil, errc, err
	}
	t.Cleanup(func() { sc.Close(); conn.Close() })
	return sc, errc, nil
}

func requestHeader(handle uint32) *ua.RequestHeader {
	return &ua.RequestHeader{
		AuthenticationToken: ua.NewTwoByteNodeID(0),
		Timestamp:           time.Now(),
		RequestHandle:       handle,
		TimeoutHint:         5000,
		AdditionalHeader:    ua.NewExtensionObject(nil),
	}
}

func readRequest(nodes ...*ua.NodeID) *ua.ReadRequest {
	r := &ua.ReadRequest{RequestHeader: requestHeader(0), TimestampsToReturn: ua.TimestampsToReturnNeither}
	for _, n := range nodes {
		r.NodesToRead = append(r.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}})
	}
	return r
}

// readOnce sends one Read through a gopcua client channel.
func readOnce(sc *uasc.SecureChannel, node *ua.NodeID) (*ua.ReadResponse, error) {
	var out *ua.ReadResponse
	err := sc.SendRequest(context.Background(), readRequest(node), nil, func(v ua.Response) error {
		r, ok := v.(*ua.ReadResponse)
		if !ok {
			return errors.New("not a ReadResponse")
		}
		out = r
		return nil
	})
	return out, err
}

// waitErr returns the first error the gopcua client reported.
func waitErr(errc chan error, d time.Duration) error {
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return nil
	}
}

// isEOF reports a closed connection as the client sees it.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF)
}
