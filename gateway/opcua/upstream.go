package opcua

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// upstreamConfig is what every upstream session of a listener shares: the
// server's URL, the gateway's own leg security, and a cache of the server's
// endpoints (asked once, asked again after a failed connect).
type upstreamConfig struct {
	url       string
	policyURI string
	mode      ua.MessageSecurityMode
	cert      []byte          // gateway application instance certificate (DER)
	key       *rsa.PrivateKey // its key
	appURI    string
	// validate checks the server's certificate against the gateway's trust
	// store; nil skips the check (None).
	validate func(cert []byte) error
	// connectTimeout bounds a whole connect, from the dial to
	// ActivateSession (GetEndpoints included): the listener's request
	// timeout.
	connectTimeout time.Duration
	sessionTimeout time.Duration
	// the channel's token lifetime asked for and the largest response
	// taken (zero: the channel's defaults)
	tokenLifetime  time.Duration
	maxMessageSize uint32
	maxChunkCount  uint32
	maxDecodedSize int64

	mu        sync.Mutex
	endpoints []*ua.EndpointDescription
}

// identity is how the gateway logs in upstream for one client session.
type identity struct {
	kind     string // IdentitySame, IdentityService, IdentityCertificate, IdentityAnonymous
	user     string
	password string
}

// errUpstreamClosed is returned after the client session ended.
var errUpstreamClosed = errors.New("opcua: upstream session closed")

// upstream is the gateway's own session on the server for one client
// session (upClient). It never reconnects in the background, which would
// hold requests for as long as the server is away: a request that finds the
// connection lost fails at once, and the next request connects again.
type upstream struct {
	cfg *upstreamConfig
	id  identity

	mu      sync.Mutex
	c       *upClient
	closed  bool
	pending chan struct{} // closed when the connect in progress ends
	lastErr error         // of the last connect
	// retryAt is when the next connect may start after one that failed;
	// until then requests fail at once with lastErr.
	retryAt time.Time
}

func newUpstream(cfg *upstreamConfig, id identity) *upstream {
	return &upstream{cfg: cfg, id: id}
}

// errConnect marks a failure to reach or log into the server.
type errConnect struct{ err error }

func (e *errConnect) Error() string { return "upstream connect: " + e.err.Error() }
func (e *errConnect) Unwrap() error { return e.err }

// client returns a connected client, connecting when there is none or the
// last one was lost. The connect runs on its own time (connectTimeout),
// shared by the requests that arrive meanwhile; each of them waits only as
// long as its own context allows. After a connect that failed, requests
// fail at once for as long as that attempt took (retryAt): a refused
// connection is tried again by the next request, a server that accepts and
// does not answer at most every other connectTimeout.
func (u *upstream) client(ctx context.Context) (*upClient, error) {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil, errUpstreamClosed
	}
	if c := u.c; c != nil {
		if c.connected() {
			u.mu.Unlock()
			return c, nil
		}
		u.c = nil
		go closeClient(c)
	}
	p := u.pending
	if p == nil && u.lastErr != nil {
		if wait := time.Until(u.retryAt); wait > 0 {
			err := u.lastErr
			u.mu.Unlock()
			return nil, &errConnect{fmt.Errorf("next attempt in %v; the last one failed: %w", wait.Round(time.Millisecond), err)}
		}
	}
	if p == nil {
		p = make(chan struct{})
		u.pending = p
		go u.connectInBackground(p)
	}
	u.mu.Unlock()
	select {
	case <-p:
	case <-ctx.Done():
		return nil, &errConnect{fmt.Errorf("no connection within the request's time: %w", ctx.Err())}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.closed:
		return nil, errUpstreamClosed
	case u.c != nil:
		return u.c, nil
	case u.lastErr != nil:
		return nil, &errConnect{u.lastErr}
	}
	return nil, &errConnect{errors.New("connection lost")}
}

func (u *upstream) connectInBackground(p chan struct{}) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), u.cfg.connectTimeout)
	defer cancel()
	c, err := u.connect(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.pending = nil
	u.lastErr = err
	switch {
	case err != nil:
		u.retryAt = time.Now().Add(min(time.Since(start), u.cfg.connectTimeout))
	case u.closed:
		go closeClient(c)
	default:
		u.c = c
	}
	close(p)
}

// drop forgets a client whose connection failed and closes it in the
// background (closing sends CloseSession, which may wait on a dead socket).
func (u *upstream) drop(c *upClient) {
	u.mu.Lock()
	if u.c == c {
		u.c = nil
	}
	u.mu.Unlock()
	go closeClient(c)
}

func closeClient(c *upClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.close(ctx)
}

// Close ends the upstream session.
func (u *upstream) Close() {
	u.mu.Lock()
	c := u.c
	u.c, u.closed = nil, true
	u.mu.Unlock()
	if c != nil {
		closeClient(c)
	}
}

func (u *upstream) connect(ctx context.Context) (*upClient, error) {
	ep, err := u.cfg.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	c, err := dialUpstream(ctx, u.cfg, ep, u.id)
	if err != nil {
		u.cfg.forgetEndpoints()
		return nil, err
	}
	return c, nil
}

// tokenType is the user identity token the identity logs in with.
func (id identity) tokenType() ua.UserTokenType {
	switch id.kind {
	case IdentitySame, IdentityService:
		return ua.UserTokenTypeUserName
	case IdentityCertificate:
		return ua.UserTokenTypeCertificate
	}
	return ua.UserTokenTypeAnonymous
}

// endpoint returns the server's endpoint for the configured policy and mode.
func (cfg *upstreamConfig) endpoint(ctx context.Context) (*ua.EndpointDescription, error) {
	cfg.mu.Lock()
	eps := cfg.endpoints
	cfg.mu.Unlock()
	if eps == nil {
		var err error
		eps, err = getEndpoints(ctx, cfg.url, cfg.connectTimeout)
		if err != nil {
			return nil, err
		}
	}
	for _, ep := range eps {
		if ep.SecurityPolicyURI != cfg.policyURI || ep.SecurityMode != cfg.mode {
			continue
		}
		if cfg.validate != nil {
			if err := cfg.validate(ep.ServerCertificate); err != nil {
				return nil, fmt.Errorf("server certificate: %w", err)
			}
		}
		cfg.mu.Lock()
		cfg.endpoints = eps
		cfg.mu.Unlock()
		return ep, nil
	}
	return nil, fmt.Errorf("the server offers no endpoint with %s/%s", policyName(cfg.policyURI), modeName(cfg.mode))
}

func (cfg *upstreamConfig) forgetEndpoints() {
	cfg.mu.Lock()
	cfg.endpoints = nil
	cfg.mu.Unlock()
}

// send forwards req and returns the server's response, which may be a
// ServiceFault or carry a bad ServiceResult: both go to the client as they
// are. An error means no response: the connection is lost, could not be
// made, or ctx ended first.
func (u *upstream) send(ctx context.Context, req ua.Request) (ua.Response, error) {
	for attempt := 0; ; attempt++ {
		c, err := u.client(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, req)
		if resp != nil {
			switch resp.Header().ServiceResult {
			case ua.StatusBadSessionIDInvalid, ua.StatusBadSessionClosed, ua.StatusBadSecureChannelIDInvalid:
				// The server forgot the gateway's session (restarted, timed
				// out) and did not run the request: connect afresh and try
				// once more.
				u.drop(c)
				if attempt == 0 && ctx.Err() == nil {
					continue
				}
			}
			return resp, nil
		}
		if !c.connected() {
			// the channel failed; a call that failed alone (over a size
			// limit, an undecodable or aborted response, its context
			// ended) leaves the session to the next request
			u.drop(c)
		}
		return nil, err
	}
}

// statusOf maps an upstream failure to the status the client gets.
func statusOf(err error) ua.StatusCode {
	var ce *errConnect
	switch {
	case errors.Is(err, errStopping):
		return ua.StatusBadShutdown
	case errors.Is(err, errUpstreamClosed):
		return ua.StatusBadSessionClosed
	case errors.As(err, &ce):
		// no connection, however it failed (timed out too): the request
		// was never sent
		if sc, ok := errors.AsType[ua.StatusCode](err); ok && isAuthStatus(sc) {
			return sc
		}
		return ua.StatusBadServerNotConnected
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, ua.StatusBadTimeout):
		return ua.StatusBadTimeout
	}
	if sc, ok := errors.AsType[ua.StatusCode](err); ok {
		return sc
	}
	if ce, ok := errors.AsType[*channel.Error](err); ok {
		switch ce.Code {
		case ua.StatusBadRequestTooLarge, // not sent: over the server's limits
			ua.StatusBadResponseTooLarge,       // over the gateway's
			ua.StatusBadEncodingLimitsExceeded, // the same, once decoded
			ua.StatusBadUnknownResponse,        // a response of another service
			ua.StatusBadEncodingError:          // a request value the encoder cannot write
			return ce.Code
		}
	}
	return ua.StatusBadCommunicationError
}

// isAuthStatus reports whether the server refused the identity.
func isAuthStatus(sc ua.StatusCode) bool {
	switch sc {
	case ua.StatusBadUserAccessDenied, ua.StatusBadIdentityTokenRejected, ua.StatusBadIdentityTokenInvalid,
		ua.StatusBadUserSignatureInvalid:
		return true
	}
	return false
}
