package opcua

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"

	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// upClient is the gateway's session on the server over its own client
// channel: CreateSession and ActivateSession at connect, then every request
// forwarded with the session's token.
type upClient struct {
	ch     *channel.ClientChannel
	token  *ua.NodeID // AuthenticationToken
	handle atomic.Uint32

	// silentAt is 1 + the channel's Received count at which a request
	// timed out with nothing received while it waited; 0: none did. The
	// connection is silent while the count stays there (upstream.send).
	silentAt    atomic.Uint64
	silentSince atomic.Int64 // when, Unix ns
	probing     atomic.Bool
}

// dialUpstream opens a channel to the endpoint ep and a session on it with
// identity id. ctx bounds all of it.
func dialUpstream(ctx context.Context, cfg *upstreamConfig, ep *ua.EndpointDescription, id identity) (*upClient, error) {
	conn, err := dialTCP(ctx, cfg.url, cfg.connectTimeout)
	if err != nil {
		return nil, err
	}
	ccfg := &channel.ClientConfig{
		EndpointURL:    cfg.url,
		PolicyURI:      ep.SecurityPolicyURI,
		Mode:           ep.SecurityMode,
		Lifetime:       cfg.tokenLifetime,
		MaxMessageSize: cfg.maxMessageSize,
		MaxChunkCount:  cfg.maxChunkCount,
		MaxDecodedSize: cfg.maxDecodedSize,
	}
	if ep.SecurityPolicyURI != ua.SecurityPolicyURINone {
		ccfg.Certificate, ccfg.PrivateKey, ccfg.ServerCertificate = cfg.cert, cfg.key, ep.ServerCertificate
	}
	ch, err := channel.Dial(ctx, conn, ccfg)
	if err != nil {
		return nil, err
	}
	none := ua.NewTwoByteNodeID(0)
	c := &upClient{ch: ch, token: none}
	if err := c.openSession(ctx, cfg, ep, id); err != nil {
		if c.token != none {
			// created and not activated (a refused login): the server
			// would hold the session, and one of its slots, until its timeout
			go closeClient(c)
		} else {
			ch.Close()
		}
		return nil, err
	}
	return c, nil
}

// dialTCP connects to the host and port of an opc.tcp URL.
func dialTCP(ctx context.Context, url string, timeout time.Duration) (net.Conn, error) {
	_, u, err := uacp.ResolveEndpoint(ctx, url)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout, Control: lostPathControl}
	return d.DialContext(ctx, "tcp", u.Host)
}

// lostPathAfter is how long bytes sent to the server may stay
// unacknowledged by its TCP stack before the connection is ended (Linux:
// TCP_USER_TIMEOUT). A server that is slow or paused still acknowledges
// what it is sent; a path lost without a reset (a firewall's or NAT's
// state flushed) does not, and without the option such a connection stays
// open to the socket for many minutes (the kernel's retransmissions),
// however often the gateway asks it (probe).
const lostPathAfter = 20 * time.Second

// getEndpoints asks the server at url for its endpoints over a channel
// without security, as every client does before it opens its own.
func getEndpoints(ctx context.Context, url string, dialTimeout time.Duration) ([]*ua.EndpointDescription, error) {
	conn, err := dialTCP(ctx, url, dialTimeout)
	if err != nil {
		return nil, err
	}
	ch, err := channel.Dial(ctx, conn, &channel.ClientConfig{EndpointURL: url, PolicyURI: ua.SecurityPolicyURINone})
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	c := &upClient{ch: ch, token: ua.NewTwoByteNodeID(0)}
	r, err := c.call(ctx, &ua.GetEndpointsRequest{EndpointURL: url})
	if err != nil {
		return nil, fmt.Errorf("GetEndpoints: %w", err)
	}
	resp, ok := r.(*ua.GetEndpointsResponse)
	if !ok {
		return nil, fmt.Errorf("GetEndpoints answered with %T", r)
	}
	return resp.Endpoints, nil
}

// connected reports whether the channel is still open.
func (c *upClient) connected() bool { return c.ch.Err() == nil }

// send forwards req with the session's token and a fresh handle and
// returns the server's response, a ServiceFault included.
func (c *upClient) send(ctx context.Context, req ua.Request) (ua.Response, error) {
	h := &ua.RequestHeader{
		AuthenticationToken: c.token,
		Timestamp:           time.Now(),
		RequestHandle:       c.handle.Add(1),
		AdditionalHeader:    channel.EmptyExtensionObject(),
	}
	if dl, ok := ctx.Deadline(); ok {
		h.TimeoutHint = uint32(max(time.Until(dl), 0) / time.Millisecond)
	}
	req.SetHeader(h)
	v, err := c.ch.Call(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, ok := v.(ua.Response)
	if !ok || resp.Header() == nil {
		return nil, fmt.Errorf("opcua: upstream answered %T with %T", req, v)
	}
	return resp, nil
}

// call is send for the session's own requests: a ServiceFault or a bad
// ServiceResult is an error (the status code).
func (c *upClient) call(ctx context.Context, req ua.Request) (ua.Response, error) {
	resp, err := c.send(ctx, req)
	if err != nil {
		return nil, err
	}
	if sc := resp.Header().ServiceResult; sc != ua.StatusOK {
		return nil, sc
	}
	return resp, nil
}

// openSession runs CreateSession and ActivateSession (Part 4 §5.6.2-3).
func (c *upClient) openSession(ctx context.Context, cfg *upstreamConfig, ep *ua.EndpointDescription, id identity) error {
	secured := ep.SecurityPolicyURI != ua.SecurityPolicyURINone
	tokenType := id.tokenType()
	var clientCert []byte
	if secured || tokenType == ua.UserTokenTypeCertificate {
		clientCert = cfg.cert
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	appURI := cfg.appURI
	if appURI == "" {
		appURI = "urn:interlock:gateway"
	}
	r, err := c.call(ctx, &ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{
			ApplicationURI:  appURI,
			ProductURI:      "urn:interlock",
			ApplicationName: ua.NewLocalizedText("Interlock OPC UA gateway"),
			ApplicationType: ua.ApplicationTypeClient,
		},
		EndpointURL:             cfg.url,
		SessionName:             "interlock",
		ClientNonce:             nonce,
		ClientCertificate:       clientCert,
		RequestedSessionTimeout: float64(cfg.sessionTimeout / time.Millisecond),
	})
	if err != nil {
		return fmt.Errorf("CreateSession: %w", err)
	}
	cs, ok := r.(*ua.CreateSessionResponse)
	if !ok {
		return fmt.Errorf("CreateSession answered with %T", r)
	}
	clientSig, err := sessionSignature(cfg, ep, cs, slices.Concat(clientCert, nonce))
	if err != nil {
		return err
	}
	tok, userSig, err := userIdentity(cfg, ep, id, cs)
	if err != nil {
		return err
	}
	c.token = cs.AuthenticationToken
	if _, err := c.call(ctx, &ua.ActivateSessionRequest{
		ClientSignature:    clientSig,
		UserIdentityToken:  ua.NewExtensionObject(tok),
		UserTokenSignature: userSig,
	}); err != nil {
		return fmt.Errorf("ActivateSession: %w", err)
	}
	return nil
}

// sessionSignature checks the server's CreateSession signature over what
// the gateway sent (its certificate and nonce) and returns the gateway's
// own over the server's certificate and nonce. Both are empty under None.
func sessionSignature(cfg *upstreamConfig, ep *ua.EndpointDescription, cs *ua.CreateSessionResponse, sent []byte) (*ua.SignatureData, error) {
	if ep.SecurityPolicyURI == ua.SecurityPolicyURINone {
		return &ua.SignatureData{}, nil
	}
	// the channel's server certificate was validated; the session's
	// signature must come from the same key
	_, key, err := rsaKey(ep.ServerCertificate)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	algo, err := uapolicy.Asymmetric(ep.SecurityPolicyURI, cfg.key, key)
	if err != nil {
		return nil, err
	}
	if cs.ServerSignature == nil || algo.VerifySignature(sent, cs.ServerSignature.Signature) != nil {
		return nil, fmt.Errorf("CreateSession: %w", ua.StatusBadApplicationSignatureInvalid)
	}
	sig, err := algo.Signature(slices.Concat(cs.ServerCertificate, cs.ServerNonce))
	if err != nil {
		return nil, err
	}
	return &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: sig}, nil
}

// userIdentity is the user token of ActivateSession and its signature:
// anonymous; a user name with the password encrypted under the token
// policy, behind its length and followed by the server nonce; or the
// gateway's certificate, signed over the server's certificate and nonce.
func userIdentity(cfg *upstreamConfig, ep *ua.EndpointDescription, id identity, cs *ua.CreateSessionResponse) (any, *ua.SignatureData, error) {
	tokenType := id.tokenType()
	policyID, tokenPolicy := userTokenPolicy(ep, tokenType)
	if tokenType == ua.UserTokenTypeAnonymous {
		return &ua.AnonymousIdentityToken{PolicyID: policyID}, &ua.SignatureData{}, nil
	}
	var algo *uapolicy.EncryptionAlgorithm // the token policy's, with the server's key
	if tokenPolicy != ua.SecurityPolicyURINone {
		_, key, err := rsaKey(cs.ServerCertificate)
		if err != nil {
			return nil, nil, fmt.Errorf("CreateSession: server certificate: %w", err)
		}
		if algo, err = uapolicy.Asymmetric(tokenPolicy, cfg.key, key); err != nil {
			return nil, nil, err
		}
	}
	if tokenType == ua.UserTokenTypeUserName {
		t := &ua.UserNameIdentityToken{PolicyID: policyID, UserName: id.user, Password: []byte(id.password)}
		if algo != nil {
			secret := binary.LittleEndian.AppendUint32(nil, uint32(len(id.password)+len(cs.ServerNonce)))
			pw, err := algo.Encrypt(slices.Concat(secret, []byte(id.password), cs.ServerNonce))
			if err != nil {
				return nil, nil, fmt.Errorf("encrypting the password: %w", err)
			}
			t.Password, t.EncryptionAlgorithm = pw, algo.EncryptionURI()
		}
		return t, &ua.SignatureData{}, nil
	}
	t := &ua.X509IdentityToken{PolicyID: policyID, CertificateData: cfg.cert}
	if algo == nil {
		return t, &ua.SignatureData{}, nil
	}
	sig, err := algo.Signature(slices.Concat(cs.ServerCertificate, cs.ServerNonce))
	if err != nil {
		return nil, nil, err
	}
	return t, &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: sig}, nil
}

// userTokenPolicy is the PolicyId of the endpoint's first user token policy
// of type t and the security policy its secret is protected with.
func userTokenPolicy(ep *ua.EndpointDescription, t ua.UserTokenType) (string, string) {
	for _, p := range ep.UserIdentityTokens {
		if p.TokenType != t {
			continue
		}
		if p.SecurityPolicyURI != "" {
			return p.PolicyID, p.SecurityPolicyURI
		}
		return p.PolicyID, ep.SecurityPolicyURI
	}
	if t == ua.UserTokenTypeAnonymous {
		return "Anonymous", ua.SecurityPolicyURINone
	}
	return "", ep.SecurityPolicyURI
}

// close ends the session (its subscriptions too) and the channel.
func (c *upClient) close(ctx context.Context) {
	if c.connected() {
		c.send(ctx, &ua.CloseSessionRequest{DeleteSubscriptions: true})
	}
	c.ch.Close()
}
