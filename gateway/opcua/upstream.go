package opcua

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
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
	validate func(cert []byte) (until time.Time, err error)
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
	// serverCert is the server certificate the last connect validated
	// (recheckServer checks it again when the trust lists change, and
	// after serverUntil, when it or a CA of its chain expires).
	serverCert  []byte
	serverUntil time.Time

	// gate is the connect back-off of the listener, shared by its
	// sessions (one server).
	gate connectGate
}

// connectGate holds back connects to a server that failed to connect for
// every session of a listener: after a failed connect, connects fail at
// once for as long as that attempt took (at most connectTimeout); then one
// session tries while the others still fail at once, so that a server that
// accepts and does not answer costs one wait per back-off, not one per
// session. A connect that succeeds, or that the server refused for the
// identity (it answered), ends the back-off.
type connectGate struct {
	mu      sync.Mutex
	lastErr error
	retryAt time.Time
	trying  bool
}

// admit returns nil when a connect may start now; trial is true when it is
// the one attempt after a back-off, which done must be told of.
func (g *connectGate) admit(now time.Time) (trial bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.lastErr == nil:
		return false, nil
	case now.Before(g.retryAt):
		return false, fmt.Errorf("next attempt in %v; the last one failed: %w", g.retryAt.Sub(now).Round(time.Millisecond), g.lastErr)
	case g.trying:
		return false, fmt.Errorf("another session is trying again; the last attempt failed: %w", g.lastErr)
	}
	g.trying = true
	return true, nil
}

// done records how a connect that took took ended.
func (g *connectGate) done(trial bool, err error, took, maxWait time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if trial {
		g.trying = false
	}
	if sc, ok := errors.AsType[ua.StatusCode](err); err == nil || ok && isAuthStatus(sc) {
		g.lastErr = nil
		return
	}
	g.lastErr = err
	g.retryAt = time.Now().Add(min(took, maxWait))
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
		trial, err := u.cfg.gate.admit(time.Now())
		if err != nil {
			u.mu.Unlock()
			return nil, &errConnect{err}
		}
		p = make(chan struct{})
		u.pending = p
		go u.connectInBackground(p, trial)
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

func (u *upstream) connectInBackground(p chan struct{}, trial bool) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), u.cfg.connectTimeout)
	defer cancel()
	c, err := u.connect(ctx)
	u.cfg.gate.done(trial, err, time.Since(start), u.cfg.connectTimeout)
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

// dropConnection closes the session's connection to the server, if there
// is one, in the background: the next request connects again. It reports
// whether there was one.
func (u *upstream) dropConnection() bool {
	u.mu.Lock()
	c := u.c
	u.c = nil
	u.mu.Unlock()
	if c == nil {
		return false
	}
	go closeClient(c)
	return true
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
		var until time.Time
		if cfg.validate != nil {
			var err error
			if until, err = cfg.validate(ep.ServerCertificate); err != nil {
				return nil, fmt.Errorf("server certificate: %w", err)
			}
		}
		cfg.mu.Lock()
		cfg.endpoints, cfg.serverCert, cfg.serverUntil = eps, ep.ServerCertificate, until
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

// errNotAnswering is the answer to a request on a connection whose server
// has sent nothing since a request on it timed out: the request is not
// sent (a client may send it again safely).
type errNotAnswering struct{ since time.Time }

func (e *errNotAnswering) Error() string {
	return fmt.Sprintf("upstream not answering: nothing received since a request timed out %v ago; the request was not sent",
		time.Since(e.since).Round(time.Millisecond))
}

// silent reports whether the server has sent nothing on c since a request
// on it timed out.
func (c *upClient) silent() bool {
	m := c.silentAt.Load()
	return m != 0 && c.ch.Received() == m-1
}

// markSilent records that a request sent when the channel had received n
// chunks timed out with nothing received since, and starts the probe that
// finds out when the server answers again.
func (u *upstream) markSilent(c *upClient, n uint64) {
	c.silentSince.Store(time.Now().UnixNano())
	c.silentAt.Store(n + 1)
	if c.probing.CompareAndSwap(false, true) {
		go u.probe(c)
	}
}

// probe sends a Read of the server's current time, again each
// connectTimeout, for as long as c is silent, open and the session's: any
// answer (to it or to a request that timed out) ends the silence, and c is
// used again by the next request, with the upstream session and its
// subscriptions. A server that is slow or paused still acknowledges what
// it is sent (its TCP stack does); a connection whose path was lost does
// not, and the probes' unacknowledged bytes end it after lostPathAfter
// (dialTCP): the next request then connects anew, as for any lost one.
func (u *upstream) probe(c *upClient) {
	for {
		for c.silent() && c.connected() && u.holds(c) {
			ctx, cancel := context.WithTimeout(context.Background(), u.cfg.connectTimeout)
			c.send(ctx, &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither, NodesToRead: []*ua.ReadValueID{{
				NodeID: ua.NewNumericNodeID(0, id.Server_ServerStatus_CurrentTime), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}})
			cancel()
		}
		c.probing.Store(false)
		// a request that timed out between the last check and here found
		// the probe still running
		if !c.silent() || !c.connected() || !u.holds(c) || !c.probing.CompareAndSwap(false, true) {
			return
		}
	}
}

// mayMarkSilentKey marks the context of a request whose budget (not what
// is left of it) is about the listener's request timeout or more: only
// such a request, waiting in vain, says the server stopped answering. A
// request given less (a client's short TimeoutHint) says only that the
// server is slower than that request allowed; the gateway's browse-path
// lookups (which take part of a request's time) never mark a connection.
type mayMarkSilentKey struct{}

func withMayMarkSilent(ctx context.Context) context.Context {
	return context.WithValue(ctx, mayMarkSilentKey{}, true)
}

func mayMarkSilent(ctx context.Context) bool { return ctx.Value(mayMarkSilentKey{}) != nil }

// holds reports whether c is the session's connection.
func (u *upstream) holds(c *upClient) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.c == c && !u.closed
}

// send forwards req and returns the server's response, which may be a
// ServiceFault or carry a bad ServiceResult: both go to the client as they
// are. An error means no response: the connection is lost, could not be
// made, is silent, or ctx ended first.
//
// A request (other than a Publish, which waits upstream by design) that
// times out with nothing at all received on the connection meanwhile makes
// the connection silent: the requests after it are answered at once
// (errNotAnswering) instead of each waiting its whole time, until the
// server sends anything again (probe).
func (u *upstream) send(ctx context.Context, req ua.Request) (ua.Response, error) {
	_, publish := req.(*ua.PublishRequest)
	for attempt := 0; ; attempt++ {
		c, err := u.client(ctx)
		if err != nil {
			return nil, err
		}
		if !publish && c.silent() {
			return nil, &errNotAnswering{since: time.Unix(0, c.silentSince.Load())}
		}
		n := c.ch.Received()
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
		switch {
		case !c.connected():
			// the channel failed; a call that failed alone (over a size
			// limit, an undecodable or aborted response, its context
			// ended) leaves the session to the next request
			u.drop(c)
		case !publish && mayMarkSilent(ctx) && errors.Is(err, context.DeadlineExceeded) && c.ch.Received() == n:
			u.markSilent(c, n)
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
	case errors.Is(err, errChannelGone):
		return ua.StatusBadSecureChannelClosed
	case errors.Is(err, errUpstreamClosed):
		return ua.StatusBadSessionClosed
	case errors.As(err, new(*errNotAnswering)):
		// not sent: the connection is there, the server does not answer
		return ua.StatusBadServerNotConnected
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
