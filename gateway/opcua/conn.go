package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// request is one decoded service request of a secure channel.
type request struct {
	ID   uint32 // request id of the message, for the answer
	Body ua.Request
}

// secureChannel is the server side of a secure channel as the engine uses
// it (package channel implements it).
type secureChannel interface {
	// Next reads the next request; one goroutine at a time, and the one
	// holding the turn calls it again until it fails (then the channel has
	// ended: io.EOF when the client closed it).
	Next() (*request, error)
	Send(reqID uint32, resp ua.Response) error
	ID() uint32
	SecurityPolicyURI() string
	SecurityMode() ua.MessageSecurityMode
	RemoteCertificate() []byte
	Close() error
}

// conn is one client connection: a secure channel and the requests in
// flight on it.
type conn struct {
	e          *Engine
	ch         secureChannel
	id         uint32
	policyURI  string
	mode       ua.MessageSecurityMode
	remoteCert []byte
	base       *gateway.Session // the listener's record of the connection
	parked     parked           // Publishes waiting upstream, ended by the stop
}

func newConn(e *Engine, ch secureChannel, base *gateway.Session) *conn {
	c := &conn{e: e, ch: ch, base: base, id: ch.ID(), policyURI: ch.SecurityPolicyURI(),
		mode: ch.SecurityMode(), remoteCert: ch.RemoteCertificate()}
	base.SecurityPolicy = policyName(c.policyURI)
	base.SecurityMode = modeName(c.mode)
	return c
}

// serve answers the channel's requests until it ends. The goroutine that
// reads a request answers it itself and keeps the turn to read; a request
// not answered within handOffAfter, and a Publish at once, hands the turn
// on to a goroutine waiting for it (or a new one), so that the requests
// behind it are read meanwhile and a Publish waiting upstream never holds
// up a Read. At most max_requests_per_session are in flight; one more is
// answered at once (admit).
func (c *conn) serve(ctx context.Context) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	r := &readers{
		c:        c,
		slots:    make(chan struct{}, c.e.opts.Limits.MaxRequestsPerSession),
		turn:     make(chan struct{}),
		done:     make(chan struct{}),
		draining: gateway.Draining(ctx),
	}
	defer func() {
		keep := parent.Err() == nil && channelLost(r.err)
		select {
		case <-r.draining:
			keep = false
		default:
		}
		if keep {
			c.leaveSessions()
		}
		// the requests in flight finish (within their budgets) before ctx
		// ends: the client gone, they are still decided, forwarded and
		// recorded as they happen
		r.wg.Wait()
		cancel()
		for _, s := range c.e.sessions.ofConn(c) {
			// The gateway stopping, or closing the channel for a
			// violation, ends its sessions, and a channel lost those
			// never activated.
			if s.endOn(c) {
				c.e.endSession(ctx, s, errChannelClosed)
			}
		}
	}()
	r.last.Store(time.Now().UnixNano())
	go c.closeWhenIdle(ctx, &r.last)
	stop := context.AfterFunc(ctx, func() { c.ch.Close() }) // shutdown ends the reading
	defer stop()
	r.run(ctx, true, true)
	<-r.done
	select {
	case <-r.draining:
		// The gateway is stopping (its listener shut the reading side):
		// the requests in flight are answered before the channel closes,
		// until the listener cuts what is left.
		r.waitInFlight(ctx)
	default:
	}
	c.base.Log.Debug().Err(r.err).Msg("secure channel ended")
	if errors.Is(r.err, io.EOF) || ctx.Err() != nil {
		return nil
	}
	// recorded before the channel's sessions end, in the name of its session
	c.e.channelError(ctx, c.recordSession(nil), "secure_channel", r.err)
	return r.err
}

// leaveSessions unbinds the activated sessions of a lost channel, for the
// client to take to a new one: at once, so that a client reconnecting
// does not wait for the requests it left in flight here.
func (c *conn) leaveSessions() {
	for _, s := range c.e.sessions.ofConn(c) {
		if s.detach(c) {
			s.session().Log.Debug().Msg("secure channel closed: the session awaits a new one or its timeout")
		}
	}
}

// readers are the goroutines of one channel: the one whose turn it is to
// read, and the ones answering a request or waiting for the next turn.
type readers struct {
	c     *conn
	wg    sync.WaitGroup
	slots chan struct{} // a request in flight holds one
	turn  chan struct{} // the turn to read, to a goroutine waiting for it
	last  atomic.Int64  // when the last request came (UnixNano)
	done  chan struct{} // closed when the channel ends; err is why
	err   error
	// draining is closed when the gateway begins to stop: a request read
	// after that is answered Bad_ServerHalted, not started.
	draining <-chan struct{}
}

// waitInFlight waits until no request of the channel is in flight, or ctx
// ends.
func (r *readers) waitInFlight(ctx context.Context) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for len(r.slots) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readerIdle is how long a goroutine waits for its next turn to read
// before it ends.
const readerIdle = 2 * time.Second

// handOffAfter is how long a request is answered with the turn to read
// held: a quick one (a Read of a few nodes takes a few hundred
// microseconds) costs no hand-over between goroutines, and one that waits
// longer upstream delays the requests behind it by at most this much.
const handOffAfter = time.Millisecond

// run takes turns to read and answer until the channel ends: with the turn
// (read is true) it reads a request and answers it, keeping the turn unless
// the answer takes longer than handOffAfter or the request is a Publish;
// then it waits for the turn again, up to readerIdle unless it is the
// channel's first goroutine (stay), which ends only with the channel.
func (r *readers) run(ctx context.Context, read, stay bool) {
	var idle <-chan time.Time // never, for the goroutine that stays
	var t *time.Timer
	if !stay {
		t = time.NewTimer(readerIdle)
		defer t.Stop()
		idle = t.C
	}
	var held *heldTurn
	for {
		if read {
			read = false
			req, err := r.c.ch.Next()
			if err != nil {
				r.err = err
				// (This goroutine, not serve's, which may be the one
				// answering a Publish.)
				select {
				case <-r.draining:
					// The stop shut the reading. A Publish parked upstream
					// would hold the stop until the listener cuts it off:
					// it is answered Bad_Shutdown now.
					r.c.parked.stop(errStopping)
				default:
					// The client closed the channel (or it failed): no one
					// reads the answers. A Publish parked upstream would
					// hold the socket, this channel's goroutines and its
					// sessions until the server answers it (minutes on a
					// quiet subscription): it is abandoned now, and the
					// socket closed. Other requests in flight finish
					// upstream for their result records; the sessions are
					// free for a new channel meanwhile.
					r.c.parked.stop(errChannelGone)
					r.c.ch.Close()
					if channelLost(err) && ctx.Err() == nil {
						r.c.leaveSessions()
					}
				}
				close(r.done)
				return
			}
			r.last.Store(time.Now().UnixNano())
			if r.halted(ctx, req) || !r.admit(ctx, req) {
				read = true // answered; the turn stays here
				continue
			}
			if _, publish := req.Body.(*ua.PublishRequest); publish {
				r.pass(ctx)
				r.answer(ctx, req)
			} else {
				if held == nil {
					held = r.newHeldTurn(ctx)
					defer held.t.Stop()
				}
				if held.answer(req) {
					read = true
					continue
				}
			}
		}
		if t != nil {
			t.Reset(readerIdle)
		}
		select {
		case <-r.turn:
			read = true
		case <-idle:
			return
		case <-r.done:
			return
		}
	}
}

// pass hands the turn to read to a goroutine waiting for it, or a new one.
func (r *readers) pass(ctx context.Context) {
	select {
	case r.turn <- struct{}{}:
	default:
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.run(ctx, true, false)
		}()
	}
}

// answer handles req, sends the answer and frees its slot.
func (r *readers) answer(ctx context.Context, req *request) {
	r.c.reply(ctx, req, r.c.handleSafe(ctx, req.Body))
	<-r.slots
}

// heldTurn answers requests with the turn to read held, and passes the
// turn on when one takes longer than handOffAfter. One per goroutine: its
// timer is reused.
type heldTurn struct {
	r     *readers
	ctx   context.Context
	t     *time.Timer
	state atomic.Int32
}

const (
	turnIdle   = iota
	turnHeld   // a request is being answered with the turn
	turnPassed // the timer passed it on
)

func (r *readers) newHeldTurn(ctx context.Context) *heldTurn {
	h := &heldTurn{r: r, ctx: ctx}
	h.t = time.AfterFunc(time.Hour, func() {
		// a late run from an earlier request at worst passes the turn early
		if h.state.CompareAndSwap(turnHeld, turnPassed) {
			h.r.pass(h.ctx)
		}
	})
	h.t.Stop()
	return h
}

// answer answers req and reports whether the turn is still held.
func (h *heldTurn) answer(req *request) bool {
	h.state.Store(turnHeld)
	h.t.Reset(handOffAfter)
	h.r.answer(h.ctx, req)
	if h.state.CompareAndSwap(turnHeld, turnIdle) {
		h.t.Stop()
		return true
	}
	return false
}

// admit takes a slot for req, or answers it when max_requests_per_session
// are in flight: a Publish Bad_TooManyPublishRequests (OPC 10000-4
// §5.13.5: the client keeps the Publishes it has out and sends no more),
// any other request Bad_TooManyOperations.
func (r *readers) admit(ctx context.Context, req *request) bool {
	select {
	case r.slots <- struct{}{}:
		return true
	default:
	}
	c := r.c
	code := ua.StatusBadTooManyOperations
	if _, publish := req.Body.(*ua.PublishRequest); publish {
		code = ua.StatusBadTooManyPublishRequests
	}
	c.e.pipeline.Reject(ctx, c.sessionFor(req.Body), c.serviceCall(req.Body),
		"limit", "max_requests_per_session reached", statusName(code))
	c.reply(ctx, req, fault(req.Body.Header(), code))
	return false
}

// halted answers req Bad_ServerHalted when the gateway has begun to stop:
// the requests in flight are answered, and none read after the stop began
// (a client's pipelined requests) is started.
func (r *readers) halted(ctx context.Context, req *request) bool {
	select {
	case <-r.draining:
	default:
		return false
	}
	c := r.c
	c.e.pipeline.Reject(ctx, c.sessionFor(req.Body), c.serviceCall(req.Body), gateway.ReasonShuttingDown,
		"the gateway is stopping: a request read after the stop began is not forwarded", statusName(ua.StatusBadServerHalted))
	c.reply(ctx, req, fault(req.Body.Header(), ua.StatusBadServerHalted))
	return true
}

// closeWhenIdle closes a channel that has no session and has sent nothing
// for the listener's idle timeout (sessions have timeouts of their own).
func (c *conn) closeWhenIdle(ctx context.Context, last *atomic.Int64) {
	idle := c.e.limits.IdleTimeout
	if idle <= 0 {
		idle = gateway.DefaultIdleTimeout
	}
	t := time.NewTicker(min(idle/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(time.Unix(0, last.Load())) > idle && len(c.e.sessions.ofConn(c)) == 0 {
				c.base.Log.Debug().Dur("idle", idle).Msg("closing an idle secure channel")
				c.ch.Close()
				return
			}
		}
	}
}

// reply sends the answer to req. An answer the channel could not encode,
// or one over the client's limits, went out as a ServiceFault
// Bad_EncodingError or Bad_ResponseTooLarge instead, which a
// request.rejected record (reason unencodable, response_too_large) tells.
func (c *conn) reply(ctx context.Context, req *request, resp ua.Response) {
	err := c.ch.Send(req.ID, resp)
	var sc interface{ StatusCode() ua.StatusCode }
	switch {
	case err == nil:
	case errors.As(err, &sc) && sc.StatusCode() == ua.StatusBadEncodingError:
		// answered with a ServiceFault instead: the records so far tell
		// the server's answer
		s := c.sessionFor(req.Body)
		s.Log.Warn().Err(err).Msg("response could not be encoded")
		c.e.pipeline.Reject(ctx, s, c.serviceCall(req.Body), "unencodable", err.Error(), statusName(ua.StatusBadEncodingError))
	case errors.As(err, &sc) && sc.StatusCode() == ua.StatusBadResponseTooLarge:
		c.e.pipeline.Reject(ctx, c.sessionFor(req.Body), c.serviceCall(req.Body), "response_too_large", err.Error(), statusName(ua.StatusBadResponseTooLarge))
	default:
		c.base.Log.Debug().Err(err).Msg("response not sent")
	}
}

// handleSafe answers one request; a panic while handling it is recovered,
// recorded, and answers this request only with Bad_InternalError.
func (c *conn) handleSafe(ctx context.Context, body ua.Request) (resp ua.Response) {
	defer func() {
		if v := recover(); v != nil {
			s := c.sessionFor(body)
			s.Log.Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("request panicked")
			c.e.pipeline.Reject(ctx, s, c.serviceCall(body), "panic", fmt.Sprint(v), "Bad_InternalError")
			resp = fault(body.Header(), ua.StatusBadInternalError)
		}
	}()
	return c.handle(ctx, body)
}

// sessionFor returns the gateway session a request belongs to, or the
// connection's when it belongs to none (yet).
func (c *conn) sessionFor(body ua.Request) *gateway.Session {
	if h := body.Header(); h != nil {
		if s := c.e.sessions.get(h.AuthenticationToken); s != nil && s.conn.Load() == c {
			if gs := s.session(); gs != nil {
				return gs
			}
		}
	}
	return c.base
}

// recordSession is the session a record names for a request the channel
// could not read whole (a body that does not decode, a message over a
// limit): the activated session of this channel its authentication token
// names (nil: unknown), else the channel's one activated session. It is the
// connection's when the channel has no activated session, or several and
// the token names none of them: a record names no principal it cannot
// tell.
func (c *conn) recordSession(token *ua.NodeID) *gateway.Session {
	if s := c.e.sessions.get(token); s != nil && s.conn.Load() == c {
		if gs := s.session(); gs != nil {
			return gs
		}
	}
	var only *gateway.Session
	for _, s := range c.e.sessions.ofConn(c) {
		gs := s.session()
		if gs == nil {
			continue
		}
		if only != nil {
			return c.base
		}
		only = gs
	}
	if only != nil {
		return only
	}
	return c.base
}

// serviceCall is the call recorded for a request refused as a whole.
func (c *conn) serviceCall(body ua.Request) *gateway.Call {
	name := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", body), "*ua."), "Request")
	return &gateway.Call{Target: c.base.Target,
		Operation: gateway.Operation{Function: ServiceFunction(name), Access: gateway.AccessDiagnostic}}
}

// ServiceFunction turns a service name into the policy's function style:
// Read -> read, CreateMonitoredItems -> create_monitored_items. Requests
// refused as a whole are recorded under it.
func ServiceFunction(name string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range name {
		upper := r >= 'A' && r <= 'Z'
		if upper {
			if prevLower {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		prevLower = !upper
		b.WriteRune(r)
	}
	return b.String()
}

// header is a response header for a request.
func header(h *ua.RequestHeader, code ua.StatusCode) *ua.ResponseHeader {
	var handle uint32
	if h != nil {
		handle = h.RequestHandle
	}
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      handle,
		ServiceResult:      code,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		StringTable:        []string{},
		AdditionalHeader:   ua.NewExtensionObject(nil),
	}
}

func fault(h *ua.RequestHeader, code ua.StatusCode) ua.Response {
	return &ua.ServiceFault{ResponseHeader: header(h, code)}
}

// handle answers one request.
func (c *conn) handle(ctx context.Context, body ua.Request) ua.Response {
	h := body.Header()
	if h == nil {
		return fault(nil, ua.StatusBadDecodingError)
	}
	switch body.(type) {
	case *ua.GetEndpointsRequest:
		return &ua.GetEndpointsResponse{ResponseHeader: header(h, ua.StatusOK), Endpoints: c.e.endpoints()}
	case *ua.FindServersRequest:
		return &ua.FindServersResponse{ResponseHeader: header(h, ua.StatusOK),
			Servers: []*ua.ApplicationDescription{c.e.application()}}
	}
	if !c.e.offered(c.policyURI, c.mode) {
		// A discovery channel: nothing but the endpoints.
		c.e.pipeline.Reject(ctx, c.base, c.serviceCall(body), "security_policy_rejected",
			"a session service on a discovery-only None channel", "Bad_SecurityPolicyRejected")
		return fault(h, ua.StatusBadSecurityPolicyRejected)
	}
	switch req := body.(type) {
	case *ua.CreateSessionRequest:
		return c.createSession(ctx, req)
	case *ua.ActivateSessionRequest:
		return c.activateSession(ctx, req)
	case *ua.CloseSessionRequest:
		s, code := c.lookup(h, false)
		if code != ua.StatusOK {
			return c.refuseSession(ctx, body, code)
		}
		c.e.endSession(ctx, s, nil)
		return &ua.CloseSessionResponse{ResponseHeader: header(h, ua.StatusOK)}
	}
	s, code := c.lookup(h, true)
	if code != ua.StatusOK {
		return c.refuseSession(ctx, body, code)
	}
	s.touch()
	defer s.touch() // a long Publish counts as activity until it ends
	if _, ok := body.(*ua.CancelRequest); ok {
		// Requests are forwarded with the gateway's own handles: there is
		// nothing upstream the client's handle could name.
		return &ua.CancelResponse{ResponseHeader: header(h, ua.StatusOK)}
	}
	return c.service(ctx, s, body)
}

// refuseSession records and answers a request whose authentication token
// names no session of this channel that may serve it: a forged or stale
// token, one taken from another secure channel (whose session the record
// names), a closed session, or one not yet activated.
func (c *conn) refuseSession(ctx context.Context, body ua.Request, code ua.StatusCode) ua.Response {
	h := body.Header()
	reason, detail := "session_invalid", "the authentication token names no session"
	switch code {
	case ua.StatusBadSecureChannelIDInvalid:
		reason, detail = "session_of_another_channel", "the authentication token names a session of another secure channel"
		if s := c.e.sessions.get(h.AuthenticationToken); s != nil {
			if gs := s.session(); gs != nil {
				detail += ": session " + gs.ID // as its records name it
			} else if s.id != nil {
				detail += ": session " + s.id.String() + ", not activated yet"
			}
		}
	case ua.StatusBadSessionClosed:
		reason, detail = "session_closed", "the session was closed"
	case ua.StatusBadSessionNotActivated:
		reason, detail = "session_not_activated", "the session is not activated yet"
	}
	call := c.serviceCall(body)
	if _, ok := body.(*ua.ActivateSessionRequest); ok {
		call.Operation.Access = gateway.AccessSession
	}
	c.e.pipeline.Reject(ctx, c.base, call, reason, detail, statusName(code))
	return fault(h, code)
}

// lookup finds the session a request names. A session answers only on the
// secure channel that created it.
func (c *conn) lookup(h *ua.RequestHeader, mustBeActive bool) (*uaSession, ua.StatusCode) {
	s := c.e.sessions.get(h.AuthenticationToken)
	if s == nil {
		return nil, ua.StatusBadSessionIDInvalid
	}
	if s.conn.Load() != c {
		return s, ua.StatusBadSecureChannelIDInvalid
	}
	s.mu.Lock()
	active, closed := s.activated, s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return nil, ua.StatusBadSessionClosed
	case mustBeActive && !active:
		return nil, ua.StatusBadSessionNotActivated
	}
	return s, ua.StatusOK
}
