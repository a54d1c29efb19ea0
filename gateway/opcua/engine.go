// Package opcua is Interlock's OPC UA engine: it terminates the client's
// secure channel and session (package channel carries the secure
// conversation), authenticates the user, decides every operation item
// through gateway.Pipeline, and forwards what is allowed through its own
// session on the upstream server (one per client session, over the client
// side of package channel).
package opcua

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// Protocol is the registered protocol name.
const Protocol = "opcua"

func init() { gateway.Register(Protocol, New) }

// Engine serves the OPC UA clients of one listener.
type Engine struct {
	opts     Options
	limits   gateway.Limits
	pipeline *gateway.Pipeline
	log      zerolog.Logger
	// handleSeq numbers the client handles the gateway gives monitored
	// items upstream (itemHandle): one is never given twice.
	handleSeq atomic.Uint32

	endpointURL string
	cert        []byte // gateway application instance certificate (DER)
	key         *rsa.PrivateKey
	appURI      string
	// validate checks a client (or X.509 user) certificate chain against
	// the trust store; appURI "" skips the ApplicationURI check. It returns
	// an error with a StatusCode() method when the certificate is refused,
	// else until when the chain passes by time alone (its first expiry).
	validate validator
	// validateUser checks an X.509 user token's certificate: against
	// user_pki when it is set, else validate.
	validateUser func(chain []byte) (until time.Time, err error)
	// pki and userPKI are the stores behind validate and validateUser
	// (nil in tests that validate otherwise; userPKI nil without user_pki).
	pki, userPKI *pki

	// users is the users file in force (nil: passthrough or anonymous
	// only); ReloadUsers swaps it, and each login reads it once.
	users atomic.Pointer[Users]
	up    *upstreamConfig

	sessions *sessionTable
	paths    *pathCache
	logins   *gateway.FailureLimiter // holds back a source whose logins keep failing
	// partials bounds what all channels hold in incomplete requests
	// (limits.max_partial_bytes).
	partials *channel.PartialBudget

	stopOnce sync.Once
	stop     chan struct{}
}

var (
	_ gateway.Engine        = (*Engine)(nil)
	_ gateway.SessionOpener = (*Engine)(nil)
)

// optionsOf reads the listener's opcua section, checked, with defaults.
func optionsOf(spec gateway.EngineSpec) (Options, error) {
	var o Options
	if spec.Options != nil {
		if err := spec.Options(&o); err != nil {
			return o, err
		}
	}
	err := o.checkAndSetDefaults(spec.BaseDir)
	return o, err
}

// New builds the engine of one listener (gateway.NewEngine).
func New(spec gateway.EngineSpec) (gateway.Engine, error) {
	o, err := optionsOf(spec)
	if err != nil {
		return nil, err
	}
	if spec.Upstream == "" {
		return nil, errors.New("upstream: missing: the server's URL, such as opc.tcp://10.0.0.20:4840")
	}
	if u, err := url.Parse(spec.Upstream); err != nil || u.Scheme != "opc.tcp" || u.Hostname() == "" {
		return nil, fmt.Errorf("upstream: %q is not an opc.tcp://host:port URL", spec.Upstream)
	}
	store, err := openPKI(o.PKI)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cert, key, err := store.Own()
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var users *Users
	if o.Users != "" && o.Users != UsersPassthrough {
		if users, err = LoadUsers(o.Users); err != nil {
			return nil, fmt.Errorf("users: %w", err)
		}
	}
	endpoint := o.EndpointURL
	if endpoint == "" {
		endpoint = endpointFromListen(spec.Listen)
	}
	e := newEngine(o, spec, cert, key, store.validate, users, endpoint)
	e.pki = store
	if o.UserPKI != "" {
		us, err := openPKI(o.UserPKI)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("user_pki: %w", err)
		}
		e.validateUser = func(c []byte) (time.Time, error) { return us.validate(c, "") }
		e.userPKI = us
	}
	return e, nil
}

// validator checks a certificate chain (Engine.validate).
type validator func(chain []byte, appURI string) (until time.Time, err error)

// newEngine builds an engine from checked options and a loaded PKI.
func newEngine(o Options, spec gateway.EngineSpec, cert []byte, key *rsa.PrivateKey,
	validate validator, users *Users, endpoint string) *Engine {
	e := &Engine{
		opts: o, limits: spec.Limits, pipeline: spec.Pipeline, log: spec.Log,
		endpointURL: endpoint, cert: cert, key: key, validate: validate,
		sessions: newSessionTable(o.Limits.MaxSessions, o.Limits.MaxSessionsPerSource),
		paths:    newPathCache(),
		logins:   &gateway.FailureLimiter{},
		partials: channel.NewPartialBudget(o.Limits.MaxPartialBytes),
		stop:     make(chan struct{}),
	}
	e.users.Store(users)
	if e.limits.RequestTimeout <= 0 {
		e.limits.RequestTimeout = gateway.DefaultRequestTimeout
	}
	if c, err := x509.ParseCertificate(cert); err == nil && len(c.URIs) > 0 {
		e.appURI = c.URIs[0].String()
	}
	e.up = &upstreamConfig{
		url: spec.Upstream, policyURI: o.upstreamURI, mode: o.upstreamMod,
		cert: cert, key: key, appURI: e.appURI,
		// a connect is bounded as one request is, whatever the
		// TimeoutHint of the request that needs it
		connectTimeout: e.limits.RequestTimeout,
		// Longer than any client session: an upstream session ends with
		// its client session, never before it.
		sessionTimeout: o.Limits.SessionTimeout + time.Minute,
		tokenLifetime:  o.UpstreamTokenLifetime,
		// what a client may send, the server may answer
		maxMessageSize: o.Limits.MaxMessageSize,
		maxChunkCount:  o.Limits.MaxChunkCount,
		maxDecodedSize: o.Limits.MaxDecodedSize,
	}
	if validate != nil {
		e.validateUser = func(c []byte) (time.Time, error) { return validate(c, "") }
	}
	if o.upstreamURI != ua.SecurityPolicyURINone && validate != nil {
		e.up.validate = func(c []byte) (time.Time, error) { return validate(c, "") }
	}
	go e.expireSessions()
	return e
}

// endpointFromListen makes the announced URL from the listen address.
func endpointFromListen(listen string) string {
	if strings.HasPrefix(listen, "opc.tcp://") {
		return listen
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "opc.tcp://" + listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "opc.tcp://" + net.JoinHostPort(host, port)
}

// Name implements gateway.Engine.
func (e *Engine) Name() string { return Protocol }

// OpensSessions implements gateway.SessionOpener: OPC UA sessions open and
// are recorded by the engine once the user is known.
func (e *Engine) OpensSessions() bool { return true }

// Refuse answers a connection the listener will not serve (too many
// connections) with an ERR message, Bad_TcpNotEnoughResources, after its
// Hello.
func (e *Engine) Refuse(conn net.Conn, _ string) {
	channel.Refuse(conn, ua.StatusBadTCPNotEnoughResources, "the server is busy")
}

// Close ends every session and its upstream session.
func (e *Engine) Close() error {
	e.stopOnce.Do(func() { close(e.stop) })
	e.endTogether(e.sessions.all(), errors.New("gateway stopping"))
	return nil
}

// endTogether ends sessions at once, not one after another: each
// CloseSession upstream may wait 2 s on a silent server.
func (e *Engine) endTogether(ss []*uaSession, cause error) {
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Go(func() { e.endSession(context.Background(), s, cause) })
	}
	wg.Wait()
}

// expireSessions ends sessions whose client sent nothing for their timeout.
func (e *Engine) expireSessions() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			e.endTogether(e.sessions.expired(now), errSessionTimeout)
			e.checkExpiredCerts(now)
		}
	}
}

var (
	errSessionTimeout = errors.New("opcua: session timed out")
	errChannelClosed  = errors.New("opcua: secure channel closed")
)

// evictedBy ends a session between secure channels whose slot a new
// session took when bound was reached.
func evictedBy(bound string) error {
	return fmt.Errorf("ended by the gateway: %s while the session waited for a new secure channel; a new session took its slot", bound)
}

// endSession removes s, closes its upstream session and writes
// session.close for an activated session (cause nil: the client closed
// it). It is safe to call more than once: it reports whether this call
// ended the session.
func (e *Engine) endSession(ctx context.Context, s *uaSession, cause error) bool {
	if !e.sessions.remove(s) {
		return false
	}
	e.closeSession(ctx, s, cause)
	return true
}

// closeSession ends a session already taken out of the table: its
// upstream session closes and its session.close is written.
func (e *Engine) closeSession(ctx context.Context, s *uaSession, cause error) {
	s.mu.Lock()
	gs, up := s.gs, s.up
	s.closed, s.endCause = true, cause
	s.mu.Unlock()
	if up != nil {
		up.Close()
	}
	if gs != nil {
		e.pipeline.Auditor.SessionEnd(context.WithoutCancel(ctx), gs, cause)
	}
}

// policyRevision names the policy decisions are made with, "" when the
// decider does not say.
func (e *Engine) policyRevision() string {
	if r, ok := e.pipeline.Decider.(gateway.Revisioner); ok {
		return r.Revision()
	}
	return ""
}
