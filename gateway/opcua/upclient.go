package opcua

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"fmt"
	"net"
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
}

// dialUpstream opens a channel to the endpoint ep and a session on it with
// identity id. ctx bounds all of it.
func dialUpstream(ctx context.Context, cfg *upstreamConfig, ep *ua.EndpointDescription, id identity) (*upClient, error) {
	conn, err := dialTCP(ctx, cfg.url, cfg.dialTimeout)
	if err != nil {
		return nil, err
	}
	ccfg := &channel.ClientConfig{
		EndpointURL: cfg.url,
		PolicyURI:   ep.SecurityPolicyURI,
		Mode:        ep.SecurityMode,
	}
	if ep.SecurityPolicyURI != ua.SecurityPolicyURINone {
		ccfg.Certificate, ccfg.PrivateKey, ccfg.ServerCertificate = cfg.cert, cfg.key, ep.ServerCertificate
	}
	ch, err := channel.Dial(ctx, conn, ccfg)
	if err != nil {
		return nil, err
	}
	c := &upClient{ch: ch, token: ua.NewTwoByteNodeID(0)}
	if err := c.openSession(ctx, cfg, ep, id); err != nil {
		ch.Close()
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
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", u.Host)
}

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
		AdditionalHeader:    ua.NewExtensionObject(nil),
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
	var serverKey *rsa.PublicKey
	if len(cs.ServerCertificate) > 0 {
		cert, err := uapolicy.ParseCertificate(cs.ServerCertificate)
		if err != nil {
			return fmt.Errorf("CreateSession: server certificate: %w", err)
		}
		serverKey, _ = cert.PublicKey.(*rsa.PublicKey)
	}

	clientSig := &ua.SignatureData{}
	if secured {
		// the channel's server certificate was validated; the session's
		// signature must come from the same key
		cert, err := uapolicy.ParseCertificate(ep.ServerCertificate)
		if err != nil {
			return fmt.Errorf("server certificate: %w", err)
		}
		chanKey, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("server certificate has a %T key", cert.PublicKey)
		}
		algo, err := uapolicy.Asymmetric(ep.SecurityPolicyURI, cfg.key, chanKey)
		if err != nil {
			return err
		}
		if cs.ServerSignature == nil || algo.VerifySignature(append(append([]byte{}, clientCert...), nonce...), cs.ServerSignature.Signature) != nil {
			return fmt.Errorf("CreateSession: %w", ua.StatusBadApplicationSignatureInvalid)
		}
		sig, err := algo.Signature(append(append([]byte{}, cs.ServerCertificate...), cs.ServerNonce...))
		if err != nil {
			return err
		}
		clientSig = &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: sig}
	}

	policyID, tokenPolicy := userTokenPolicy(ep, tokenType)
	userSig := &ua.SignatureData{}
	var tok any
	switch tokenType {
	case ua.UserTokenTypeUserName:
		t := &ua.UserNameIdentityToken{PolicyID: policyID, UserName: id.user, Password: []byte(id.password)}
		if tokenPolicy != ua.SecurityPolicyURINone {
			if serverKey == nil {
				return fmt.Errorf("CreateSession: no server certificate to encrypt the password with")
			}
			algo, err := uapolicy.Asymmetric(tokenPolicy, cfg.key, serverKey)
			if err != nil {
				return err
			}
			secret := binary.LittleEndian.AppendUint32(nil, uint32(len(id.password)+len(cs.ServerNonce)))
			secret = append(append(secret, id.password...), cs.ServerNonce...)
			if t.Password, err = algo.Encrypt(secret); err != nil {
				return fmt.Errorf("encrypting the password: %w", err)
			}
			t.EncryptionAlgorithm = algo.EncryptionURI()
		}
		tok = t
	case ua.UserTokenTypeCertificate:
		tok = &ua.X509IdentityToken{PolicyID: policyID, CertificateData: cfg.cert}
		if tokenPolicy != ua.SecurityPolicyURINone {
			if serverKey == nil {
				return fmt.Errorf("CreateSession: no server certificate to sign the user token for")
			}
			algo, err := uapolicy.Asymmetric(tokenPolicy, cfg.key, serverKey)
			if err != nil {
				return err
			}
			sig, err := algo.Signature(append(append([]byte{}, cs.ServerCertificate...), cs.ServerNonce...))
			if err != nil {
				return err
			}
			userSig = &ua.SignatureData{Algorithm: algo.SignatureURI(), Signature: sig}
		}
	default:
		tok = &ua.AnonymousIdentityToken{PolicyID: policyID}
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
