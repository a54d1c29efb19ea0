package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Limits bound what one listener takes on.
type Limits struct {
	// MaxConns is the number of client connections served at once; one more
	// is accepted, recorded as refused, told so when its protocol has the
	// words (Refuser), and closed.
	MaxConns int
	// MaxConnsPerSource is the number of those one source address may hold;
	// one more from it is refused like one over MaxConns, so that a single
	// host cannot take every slot. 0: DefaultMaxConnsPerSource(MaxConns).
	MaxConnsPerSource int
	// ConnRatePerSource is the new connections one source address may
	// open a second, after a burst of ConnBurstPerSource at once; one more
	// is refused like one over MaxConns, so that a host that connects and
	// closes over and over costs a bounded number of sessions (and their
	// records) a second. 0: no limit.
	ConnRatePerSource float64
	// ConnBurstPerSource is the new connections one source address may
	// open at once before ConnRatePerSource applies.
	// 0: DefaultConnBurstPerSource(MaxConnsPerSource).
	ConnBurstPerSource int
	// FirstRequestTimeout closes a connection that sends nothing for this
	// long after connecting (Modbus; an OPC UA client has 5 s for its
	// Hello), so that silent sockets do not hold slots for IdleTimeout.
	FirstRequestTimeout time.Duration
	// IdleTimeout ends a session with no request for this long.
	IdleTimeout time.Duration
	// RequestTimeout bounds one upstream round trip.
	RequestTimeout time.Duration
	// RejectedPerSource is how many rejected requests (request.rejected)
	// one source address may leave in full per RejectedWindow; the ones
	// beyond are counted and summed up in one request.rejected_suppressed
	// record (rejections.go), so that malformed input sent in a loop
	// cannot fill the audit disk. It applies when the Pipeline's Auditor
	// is a RejectionSummaryAuditor. 0: DefaultRejectedPerSource.
	RejectedPerSource int
	// RejectedWindow is the window of RejectedPerSource.
	// 0: DefaultRejectedWindow.
	RejectedWindow time.Duration
}

// Default limits.
const (
	DefaultMaxConns            = 100
	DefaultFirstRequestTimeout = 10 * time.Second
	DefaultIdleTimeout         = 5 * time.Minute
	DefaultRequestTimeout      = 2 * time.Second
	DefaultHandshakeTimeout    = 10 * time.Second
)

// DefaultMaxConnsPerSource is the per-source cap when none is configured:
// a quarter of maxConns, at most 16 and at least 2 (a master that keeps a
// second connection for its writes is not refused), never more than
// maxConns. An HMI or a SCADA master holds a few connections; a quarter
// means one host alone never holds more than a quarter of the slots of a
// listener of 8 or more.
func DefaultMaxConnsPerSource(maxConns int) int {
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	return min(maxConns, max(2, min(16, maxConns/4)))
}

// DefaultConnRatePerSource is the rate of new connections per source
// address a configuration gets when it sets none: 10 a second, after a
// burst of DefaultConnBurstPerSource. An HMI or a SCADA master keeps its
// connections open, and one that reconnects after a network or PLC
// outage opens its few connections at once (the burst); a master that
// opens a connection per poll does so a few times a second at most.
const DefaultConnRatePerSource = 10

// DefaultConnBurstPerSource is the burst of new connections per source
// when none is configured: 20, or perSource (the connections one source
// may hold) when more, so that a host may always reopen at once every
// connection it may hold.
func DefaultConnBurstPerSource(perSource int) int { return max(20, perSource) }

// Refusal reasons recorded by the listener.
const (
	RefusedConnLimit   = "limit: max_conns"
	RefusedSourceLimit = "limit: max_conns_per_source"
	RefusedSourceRate  = "limit: conn_rate_per_source"
	// RefusedAuthFailures: the source's TLS handshakes failed FreeFailures
	// times in a row, and it is held back (FailureLimiter); the connection
	// is closed without a handshake.
	RefusedAuthFailures = "limit: failed_handshakes"
	// RefusedPolicy: the policy refused session.open (the session.open
	// record has its reasons).
	RefusedPolicy = "policy"
)

// Listener accepts client connections for one configured listener and runs
// each in its own goroutine, under its limits, with panic containment.
type Listener struct {
	Name     string
	Protocol string
	Gateway  string // gateway id
	Target   Target // default target of its sessions

	Engine   Engine
	Pipeline *Pipeline
	Identify Identifier // nil: every source is unknown (principal.auth "none")
	Limits   Limits
	Log      zerolog.Logger
	// RefusalInterval is how often a refused connection of one source is
	// recorded, per reason; 0: every 10 s (refusals.go).
	RefusalInterval time.Duration
	// TLS, when set, makes every connection a TLS server connection
	// (Modbus/TCP Security): the handshake runs in the connection's own
	// goroutine after the limits admitted it, within HandshakeTimeout, and
	// the session begins only after it succeeded. A failed handshake is a
	// session.auth_failed record, and the connection is closed; a source
	// whose handshakes keep failing is held back (FailureLimiter) and its
	// connections refused without one (RefusedAuthFailures).
	TLS *tls.Config
	// HandshakeTimeout bounds the TLS handshake; 0: DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// CheckTLS checks an open TLS session's client certificate again
	// against the trust in force: until when it passes (the first expiry
	// on its chain), or why it no longer does. Recheck runs it on every
	// session after a reload, and each session is checked again just after
	// its until, so that no session outlives its certificate or a CA of
	// its chain. nil: the chains verified at the handshake, until their
	// expiry.
	CheckTLS func(tls.ConnectionState) (until time.Time, err error)

	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]*served // connections being served, and refused ones being told
	bySource map[netip.Addr]int   // connections served per source address
	rates    *connRates           // new connections per source address
	refusing chan struct{}        // Refuser answers in progress
	refused  refusals             // which refused connections are recorded
	rejected rejections           // which rejected requests are recorded in full
	// handshakes holds back the sources whose TLS handshakes keep failing.
	handshakes FailureLimiter
	clock      func() time.Time // what handshakes reads; nil: time.Now (tests move it)
}

// maxRefusing bounds the refused connections answered at once; under a
// flood the ones beyond are closed without a word.
const maxRefusing = 8

// Serve accepts on ln until ctx is done, then closes ln, drains the
// sessions (drain) and waits for them to end.
func (l *Listener) Serve(ctx context.Context, ln net.Listener) error {
	maxConns := l.Limits.MaxConns
	if maxConns <= 0 {
		maxConns = DefaultMaxConns
	}
	perSource := l.Limits.MaxConnsPerSource
	if perSource <= 0 {
		perSource = DefaultMaxConnsPerSource(maxConns)
	}
	burst := l.Limits.ConnBurstPerSource
	if burst <= 0 {
		burst = DefaultConnBurstPerSource(perSource)
	}
	slots := make(chan struct{}, maxConns)
	l.mu.Lock()
	l.conns = make(map[net.Conn]*served)
	l.bySource = make(map[netip.Addr]int)
	l.rates = newConnRates(l.Limits.ConnRatePerSource, burst)
	l.mu.Unlock()
	l.refusing = make(chan struct{}, maxRefusing)

	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	// Sessions outlive ctx by the drain, so that a request in flight at
	// shutdown is answered rather than cut off after the PLC acted on it.
	connCtx, endConns := context.WithCancel(context.WithoutCancel(ctx))
	defer endConns()
	draining := make(chan struct{})
	connCtx = WithDraining(connCtx, draining)
	// Deferred after the drain: the summaries at stop count the rejections
	// of every session.
	if a, ok := l.Pipeline.Auditor.(RejectionSummaryAuditor); ok {
		l.rejected.init(l, a)
		connCtx = withRejections(connCtx, &l.rejected)
		stopSums, sumsDone := make(chan struct{}), make(chan struct{})
		go func() { defer close(sumsDone); l.rejected.recordDue(connCtx, stopSums) }()
		defer func() { close(stopSums); <-sumsDone }()
	}
	l.refused.interval = l.RefusalInterval
	stopHeld, heldDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(heldDone); l.recordHeldRefusals(connCtx, stopHeld) }()
	defer func() { close(stopHeld); <-heldDone }()

	var err error
	for {
		var conn net.Conn
		conn, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			// Out of file descriptors and similar: back off, keep serving.
			l.Log.Error().Err(err).Msg("accept")
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		src := SourceOf(conn.RemoteAddr()).IP
		// Before a slot: a held-back source costs no handshake, and its
		// connections never keep another source out.
		if l.TLS != nil {
			if _, held := l.handshakes.Blocked(src, l.now()); held {
				l.refuse(ctx, conn, RefusedAuthFailures)
				continue
			}
		}
		select {
		case slots <- struct{}{}:
		default:
			l.refuse(ctx, conn, RefusedConnLimit)
			continue
		}
		if !l.takeSource(src, perSource) {
			<-slots
			l.refuse(ctx, conn, RefusedSourceLimit)
			continue
		}
		// Only a connection that would be served counts against the
		// rate: refused ones cost a bounded number of records already.
		if !l.rates.take(src, time.Now()) {
			l.dropSource(src)
			<-slots
			l.refuse(ctx, conn, RefusedSourceRate)
			continue
		}
		l.track(conn, true)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer func() { <-slots }()
			defer l.dropSource(src)
			defer l.track(conn, false)
			l.serveConn(connCtx, conn)
		}()
	}
	close(draining)
	l.drain(endConns)
	return err
}

type drainingKey struct{}

// Draining is closed when the listener of the connection a ctx serves stops:
// an engine answers the request it is handling and starts no other, even
// one already read (a client's pipelined requests), so that nothing is
// forwarded after the stop began. It is nil (never closed) outside a
// listener.
func Draining(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(drainingKey{}).(<-chan struct{})
	return ch
}

// WithDraining returns a ctx whose Draining is draining (for an engine
// served outside a Listener, and tests).
func WithDraining(ctx context.Context, draining <-chan struct{}) context.Context {
	return context.WithValue(ctx, drainingKey{}, draining)
}

// drain ends the sessions at shutdown: each connection's reading side is
// shut, so no new request is read while the answers to those in flight
// still go out; a session that has not ended within the request timeout
// (and a second) is cut off.
func (l *Listener) drain(endConns context.CancelFunc) {
	l.mu.Lock()
	for c := range l.conns {
		if cr, ok := c.(interface{ CloseRead() error }); !ok || cr.CloseRead() != nil {
			c.Close()
		}
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	wait := l.Limits.RequestTimeout
	if wait <= 0 {
		wait = DefaultRequestTimeout
	}
	t := time.NewTimer(wait + time.Second)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	endConns()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	<-done
}

func (l *Listener) track(c net.Conn, add bool) {
	l.mu.Lock()
	if add {
		l.conns[c] = &served{}
	} else {
		if sv := l.conns[c]; sv != nil && sv.expiry != nil {
			sv.expiry.Stop()
		}
		delete(l.conns, c)
	}
	l.mu.Unlock()
}

// takeSource counts one more connection of src unless it holds limit already.
// A connection without an IP address (not TCP) is not counted.
func (l *Listener) takeSource(src netip.Addr, limit int) bool {
	if !src.IsValid() {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bySource[src] >= limit {
		return false
	}
	l.bySource[src]++
	return true
}

// dropSource counts one connection of src less.
func (l *Listener) dropSource(src netip.Addr) {
	if !src.IsValid() {
		return
	}
	l.mu.Lock()
	if l.bySource[src] <= 1 {
		delete(l.bySource, src)
	} else {
		l.bySource[src]--
	}
	l.mu.Unlock()
}

func (l *Listener) newSession(ctx context.Context, conn net.Conn) *Session {
	s := &Session{
		ID:       NewID(),
		Started:  time.Now().UTC(),
		Gateway:  l.Gateway,
		Listener: l.Name,
		Protocol: l.Protocol,
		Source:   SourceOf(conn.RemoteAddr()),
		Target:   l.Target,
	}
	s.Principal.Auth = AuthNone
	if l.Identify != nil {
		l.Identify.Identify(ctx, conn, s)
	}
	s.Log = l.Log.With().Str("session_id", s.ID).Str("source", conn.RemoteAddr().String()).Logger()
	return s
}

// refuse records and closes a connection the listener will not serve: the
// record and the log line at most once per source and reason every
// RefusalInterval, with the count of those not recorded (refusals.go).
func (l *Listener) refuse(ctx context.Context, conn net.Conn, reason string) {
	s := l.newSession(ctx, conn)
	if held, ok := l.refused.allow(s, reason, time.Now()); ok {
		l.recordRefusal(ctx, s, reason, held)
	}
	r, ok := l.Engine.(Refuser)
	if !ok || reason == RefusedAuthFailures {
		// A held-back source gets no handshake to be told in: sparing
		// that work is what holding it back is for.
		conn.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		conn.Close()
		return
	}
	l.track(conn, true) // shutdown closes it
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer func() { <-l.refusing }()
		defer l.track(conn, false)
		defer conn.Close()
		if l.TLS == nil {
			r.Refuse(conn, reason)
			return
		}
		// The refusal travels inside TLS like any answer; a client that
		// does not complete the handshake is closed without one.
		if tc, _, err := l.serverHandshake(ctx, conn); err == nil {
			r.Refuse(tc, reason)
		}
	}()
}

func (l *Listener) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	raw := conn
	if l.TLS != nil {
		tc, ok := l.handshake(ctx, conn)
		if !ok {
			return
		}
		l.mu.Lock()
		l.conns[raw].tls = tc
		l.mu.Unlock()
		l.checkAgainAt(raw, CertExpiry(tc.ConnectionState().VerifiedChains))
		conn = tc
	}
	s := l.newSession(ctx, conn)
	if so, ok := l.Engine.(SessionOpener); ok && so.OpensSessions() {
		// The engine decides and records its protocol's sessions itself;
		// s stands for the connection, in the records of what is refused
		// before a session exists.
		if err := l.runEngine(ctx, conn, s); err != nil && ctx.Err() == nil {
			s.Log.Debug().Err(err).Msg("connection ended")
		}
		return
	}
	if !l.Pipeline.Open(ctx, s) {
		// Refused by the policy (recorded by Open): told as a connection
		// over a limit is, then closed.
		if r, ok := l.Engine.(Refuser); ok {
			r.Refuse(conn, RefusedPolicy)
		}
		return
	}
	err := l.runEngine(ctx, conn, s)
	if why := l.endedBy(raw); why != nil {
		err = why
	}
	if err != nil && ctx.Err() == nil {
		s.Log.Debug().Err(err).Msg("session ended")
	}
	l.Pipeline.Auditor.SessionEnd(context.WithoutCancel(ctx), s, err)
}

// served is what the listener knows of a connection it tracks.
type served struct {
	tls    *tls.Conn   // after a successful handshake
	ended  error       // why Recheck ended its session
	expiry *time.Timer // checks the session again when its certificate expires
}

// endedBy is why Recheck ended conn's session, or nil.
func (l *Listener) endedBy(conn net.Conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.conns[conn]; c != nil {
		return c.ended
	}
	return nil
}

// Recheck checks every TLS session again (CheckTLS, after a reload) and
// ends each one that no longer passes: its connection is closed at once,
// and its session.close record says why. A request in flight may still
// reach the upstream; its answer is not delivered. It returns how many
// sessions it ended.
func (l *Listener) Recheck() int {
	l.mu.Lock()
	var open []net.Conn
	for c, sv := range l.conns {
		if sv.tls != nil && sv.ended == nil {
			open = append(open, c)
		}
	}
	l.mu.Unlock()
	n := 0
	for _, c := range open {
		if l.recheck(c) {
			n++
		}
	}
	return n
}

// expiryGrace is how long after its until a session is checked again: a
// certificate is still valid at its NotAfter second.
const expiryGrace = time.Second

// recheck checks one TLS session again: it ends the session when its
// certificate no longer passes (and says so), else sets when to check it
// next.
func (l *Listener) recheck(conn net.Conn) (ended bool) {
	l.mu.Lock()
	sv := l.conns[conn]
	if sv == nil || sv.tls == nil || sv.ended != nil {
		l.mu.Unlock()
		return false
	}
	tc := sv.tls
	l.mu.Unlock()
	until, err := l.checkTLS(tc.ConnectionState())
	if err == nil {
		l.checkAgainAt(conn, until)
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if sv.ended != nil || l.conns[conn] != sv {
		return false // ended meanwhile
	}
	if sv.expiry != nil {
		sv.expiry.Stop()
	}
	sv.ended = fmt.Errorf("ended by the gateway: the client certificate no longer passes: %w", err)
	conn.Close()
	return true
}

// checkAgainAt sets a TLS session to be checked again just after until;
// none when until has passed (what passed a check then stays in force).
func (l *Listener) checkAgainAt(conn net.Conn, until time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	sv := l.conns[conn]
	if sv == nil || sv.ended != nil {
		return
	}
	if sv.expiry != nil {
		sv.expiry.Stop()
		sv.expiry = nil
	}
	if d := time.Until(until); d > 0 {
		sv.expiry = time.AfterFunc(d+expiryGrace, func() { l.recheck(conn) })
	}
}

// checkTLS is CheckTLS, or without it the chains verified at the
// handshake until their first expiry.
func (l *Listener) checkTLS(cs tls.ConnectionState) (time.Time, error) {
	if l.CheckTLS != nil {
		return l.CheckTLS(cs)
	}
	until := CertExpiry(cs.VerifiedChains)
	if now := time.Now(); now.After(until) {
		return until, fmt.Errorf("certificate expired: its chain is valid until %s, now is %s",
			until.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return until, nil
}

// CertExpiry is when a certificate verified along chains stops being
// valid: the latest, over the chains, of the earliest NotAfter on each.
func CertExpiry(chains [][]*x509.Certificate) time.Time {
	var until time.Time
	for _, chain := range chains {
		var end time.Time
		for _, c := range chain {
			if end.IsZero() || c.NotAfter.Before(end) {
				end = c.NotAfter
			}
		}
		if end.After(until) {
			until = end
		}
	}
	return until
}

// runEngine runs the engine for one session and turns a panic into the
// session's end: only this session is lost, and the panic is in its record.
func (l *Listener) runEngine(ctx context.Context, conn net.Conn, s *Session) (err error) {
	defer func() {
		if v := recover(); v != nil {
			s.Log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("session panicked")
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return l.Engine.Serve(ctx, conn, s)
}

// handshake runs the TLS handshake of a new connection within the
// handshake timeout. A failure is recorded as session.auth_failed with the
// TLS error, the principal what the client's certificate claimed if it sent
// one (unverified), counted against the source (FailureLimiter), and
// reported as not ok; the caller closes conn. A success clears the source's
// count. A handshake cut by the listener's stop is neither recorded nor
// counted.
func (l *Listener) handshake(ctx context.Context, conn net.Conn) (*tls.Conn, bool) {
	src := SourceOf(conn.RemoteAddr()).IP
	tc, timeout, err := l.serverHandshake(ctx, conn)
	if err == nil {
		l.handshakes.Succeeded(src)
		return tc, true
	}
	select {
	case <-Draining(ctx):
		return nil, false
	default:
	}
	if src.IsValid() { // not TCP: no source to hold back
		l.handshakes.Failed(src, l.now())
	}
	s := l.newSession(ctx, conn) // the plain connection: no principal
	if cert := presentedCert(tc, err); cert != nil {
		s.Principal = CertPrincipal(cert)
	}
	detail := "tls handshake: " + err.Error()
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		detail = fmt.Sprintf("tls handshake not done within the handshake timeout (%v): %v", timeout, err)
	}
	l.Pipeline.AuthFailed(ctx, s, detail)
	return nil, false
}

func (l *Listener) now() time.Time {
	if l.clock != nil {
		return l.clock()
	}
	return time.Now()
}

// serverHandshake runs the TLS server handshake of conn within the
// handshake timeout (returned for messages).
func (l *Listener) serverHandshake(ctx context.Context, conn net.Conn) (*tls.Conn, time.Duration, error) {
	timeout := l.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	tc := tls.Server(conn, l.TLS)
	_ = conn.SetDeadline(time.Now().Add(timeout))
	err := tc.HandshakeContext(ctx)
	if err == nil {
		_ = conn.SetDeadline(time.Time{})
	}
	return tc, timeout, err
}

// presentedCert is the certificate a client sent in a failed handshake:
// one that failed verification, or one that passed it but was refused
// afterwards (tls.Config.VerifyConnection); nil when it sent none.
func presentedCert(tc *tls.Conn, err error) *x509.Certificate {
	if ve, ok := errors.AsType[*tls.CertificateVerificationError](err); ok && len(ve.UnverifiedCertificates) > 0 {
		return ve.UnverifiedCertificates[0]
	}
	if pc := tc.ConnectionState().PeerCertificates; len(pc) > 0 {
		return pc[0]
	}
	return nil
}
