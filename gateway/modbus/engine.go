package modbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
)

// Protocol is the registered protocol name.
const Protocol = "modbus"

func init() { gateway.Register(Protocol, New) }

// Options is a modbus listener's own configuration section (`modbus:`).
type Options struct {
	// DenyAction answers a denied call with an exception ("exception", the
	// default) or closes the connection ("close").
	DenyAction string `yaml:"deny_action"`
	// DenyException is the exception code for a denied call (default 0x01,
	// Illegal Function). A pointer so that a 0 in the file is refused rather
	// than taken for "not given".
	DenyException *int `yaml:"deny_exception"`
	// FrameTimeout bounds the time from a frame's first byte to its last.
	FrameTimeout time.Duration `yaml:"frame_timeout"`
	// UpstreamConns is how many connections the gateway opens to each
	// upstream; client requests share them. PLCs often allow very few.
	UpstreamConns int `yaml:"upstream_conns"`
	// ConnectTimeout bounds dialing an upstream (within the request timeout).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// UpstreamIdleTimeout closes an unused upstream connection.
	UpstreamIdleTimeout time.Duration `yaml:"upstream_idle_timeout"`
	// Routes send some unit ids to other upstreams.
	Routes []Route `yaml:"routes"`
	// UpstreamTLS is the gateway's side of Modbus/TCP Security toward its
	// tls:// upstreams (the listener's and its routes'); required for one.
	UpstreamTLS *UpstreamTLS `yaml:"upstream_tls"`
}

// Route maps unit ids to an upstream of their own.
type Route struct {
	UnitIDs  []int  `yaml:"unit_ids"`
	Upstream string `yaml:"upstream"`
	// Target names the device behind the route in policy and audit; the
	// default is the listener name.
	Target string `yaml:"target"`
}

// Deny actions.
const (
	DenyException = "exception"
	DenyClose     = "close"
)

// Reasons of the request.rejected records the engine writes.
const (
	// ReasonBroadcast: unit id 0 to a serial-line upstream, not forwarded.
	ReasonBroadcast = "broadcast"
	// ReasonClosedAfterDenial: a request received behind one that was
	// denied with deny_action close, not forwarded.
	ReasonClosedAfterDenial = "closed_after_denial"
)

// Defaults.
const (
	DefaultFrameTimeout        = 5 * time.Second
	DefaultUpstreamConns       = 1
	DefaultConnectTimeout      = time.Second
	DefaultUpstreamIdleTimeout = 30 * time.Second
)

// Engine serves Modbus TCP clients of one listener.
type Engine struct {
	opts      Options
	limits    gateway.Limits
	pipeline  *gateway.Pipeline
	routes    [256]*route
	upstreams []*Upstream
	warnings  []string
	// upTLS is modbus.upstream_tls as read last (reload); nil without.
	upTLS upstreamTLS
}

var _ gateway.Engine = (*Engine)(nil)

type route struct {
	target   gateway.Target
	upstream *Upstream
	// broadcast: unit id 0 to a serial line, where every device acts on a
	// write and none answers; the gateway refuses it rather than forward it.
	broadcast bool
}

// New builds the engine of one listener (gateway.NewEngine).
func New(spec gateway.EngineSpec) (gateway.Engine, error) {
	var o Options
	if spec.Options != nil {
		if err := spec.Options(&o); err != nil {
			return nil, err
		}
	}
	if err := o.checkAndSetDefaults(); err != nil {
		return nil, err
	}
	e := &Engine{opts: o, limits: spec.Limits, pipeline: spec.Pipeline}
	var clientTLS *tls.Config
	if t := o.UpstreamTLS; t != nil {
		if err := o.checkTLSUpstreams(spec.Upstream); err != nil {
			return nil, err
		}
		f, err := t.clientTLS(spec.BaseDir)
		if err != nil {
			return nil, err
		}
		leaf := f.leaf
		f.cfg.ServerName = t.ServerName
		clientTLS = f.cfg
		e.upTLS = upstreamTLS{section: t, baseDir: spec.BaseDir, inForce: f}
		e.warnings = append(e.warnings, clientCertWarnings(leaf, t.Cert, time.Now())...)
		e.warnings = append(e.warnings, staleCRLWarnings(f.crls, t.CRL, time.Now())...)
		for _, s := range certs.StaleCRLs(f.crls, time.Now()) {
			spec.Log.Warn().Str("crl", t.CRL).Msg("modbus.upstream_tls.crl: " + s + "; it still revokes what it lists")
		}
		if leaf != nil && time.Now().After(leaf.NotAfter) {
			spec.Log.Error().Str("cert", t.Cert).Time("not_after", leaf.NotAfter).
				Msg("modbus.upstream_tls.cert has expired: tls:// upstreams will refuse the gateway")
		}
	}
	byURL := map[string]*Upstream{}
	upstream := func(raw string) (*Upstream, error) {
		if u, ok := byURL[raw]; ok {
			return u, nil
		}
		u, err := NewUpstream(raw, UpstreamOptions{
			Conns:          o.UpstreamConns,
			Timeout:        spec.Limits.RequestTimeout,
			ConnectTimeout: o.ConnectTimeout,
			IdleTimeout:    o.UpstreamIdleTimeout,
			TLS:            clientTLS,
			Log:            spec.Log,
		})
		if err != nil {
			return nil, err
		}
		byURL[raw] = u
		e.upstreams = append(e.upstreams, u)
		return u, nil
	}
	if spec.Upstream != "" {
		u, err := upstream(spec.Upstream)
		if err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		for i := range e.routes {
			t := spec.Target
			t.UnitID = i
			e.routes[i] = &route{target: t, upstream: u, broadcast: i == 0 && u.Serial()}
		}
	} else if len(o.Routes) == 0 {
		return nil, errors.New("upstream: missing: a URL such as tcp://127.0.0.1:502, or modbus.routes")
	}
	for i, r := range o.Routes {
		u, err := upstream(r.Upstream)
		if err != nil {
			return nil, fmt.Errorf("routes[%d].upstream: %w", i, err)
		}
		t := gateway.Target{Name: spec.Target.Name, Upstream: r.Upstream}
		if r.Target != "" {
			t.Name = r.Target
		}
		for _, id := range r.UnitIDs {
			t.UnitID = id
			e.routes[id] = &route{target: t, upstream: u, broadcast: id == 0 && u.Serial()}
			if id == 0 && u.Serial() {
				e.warnings = append(e.warnings, fmt.Sprintf("routes[%d].unit_ids: unit id 0 is a broadcast on the serial line behind %s (every device would act on it and none answers): the gateway refuses it", i, r.Upstream))
			}
		}
	}
	return e, nil
}

// checkTLSUpstreams refuses an upstream_tls section that no upstream of
// the listener uses: the section would suggest a secured link to the PLC
// where the gateway speaks plain Modbus.
func (o *Options) checkTLSUpstreams(upstream string) error {
	ups := []string{}
	if upstream != "" {
		ups = append(ups, upstream)
	}
	for _, r := range o.Routes {
		ups = append(ups, r.Upstream)
	}
	if len(ups) == 0 {
		return nil // upstream: missing, said below
	}
	for _, u := range ups {
		if strings.HasPrefix(strings.ToLower(u), SchemeTLS+"://") {
			return nil
		}
	}
	return fmt.Errorf("upstream_tls: no upstream of this listener is tls:// (%s): the section would secure nothing and the gateway would speak plain Modbus to the PLC; make the upstream tls://host:port or remove the section",
		strings.Join(ups, ", "))
}

func (o *Options) checkAndSetDefaults() error {
	switch o.DenyAction {
	case "":
		o.DenyAction = DenyException
	case DenyException, DenyClose:
	default:
		return fmt.Errorf("deny_action: %q is not one of exception, close", o.DenyAction)
	}
	if o.DenyException == nil {
		code := int(ExIllegalFunction)
		o.DenyException = &code
	}
	if c := *o.DenyException; c < 1 || c > 0xFF {
		return fmt.Errorf("deny_exception: %d is not an exception code (1..255)", c)
	}
	for _, t := range []struct {
		key string
		d   time.Duration
	}{{"frame_timeout", o.FrameTimeout}, {"connect_timeout", o.ConnectTimeout}, {"upstream_idle_timeout", o.UpstreamIdleTimeout}} {
		if t.d < 0 {
			return fmt.Errorf("%s: %v is negative", t.key, t.d)
		}
	}
	if o.FrameTimeout == 0 {
		o.FrameTimeout = DefaultFrameTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.UpstreamIdleTimeout == 0 {
		o.UpstreamIdleTimeout = DefaultUpstreamIdleTimeout
	}
	if o.UpstreamConns < 0 || o.UpstreamConns > 64 {
		return fmt.Errorf("upstream_conns: %d is outside 1..64", o.UpstreamConns)
	}
	if o.UpstreamConns == 0 {
		o.UpstreamConns = DefaultUpstreamConns
	}
	seen := map[int]int{}
	for i, r := range o.Routes {
		if len(r.UnitIDs) == 0 {
			return fmt.Errorf("routes[%d].unit_ids: missing: the unit ids this route serves", i)
		}
		if r.Upstream == "" {
			return fmt.Errorf("routes[%d].upstream: missing", i)
		}
		for _, id := range r.UnitIDs {
			if id < 0 || id > 255 {
				return fmt.Errorf("routes[%d].unit_ids: %d is not a unit id (0..255)", i, id)
			}
			if j, dup := seen[id]; dup {
				return fmt.Errorf("routes[%d].unit_ids: unit id %d is also in routes[%d]", i, id, j)
			}
			seen[id] = i
		}
	}
	return nil
}

// ConfigWarnings implements gateway.ConfigWarner: routes that are valid
// but do not do what they seem to.
func (e *Engine) ConfigWarnings() []string { return e.warnings }

// Name implements gateway.Engine.
func (e *Engine) Name() string { return Protocol }

// refuseWait bounds how long Refuse answers a refused connection.
const refuseWait = time.Second

// Refuse answers what a connection the listener will not serve (over a
// connection limit, or its session.open refused by the policy) asks in its
// first second with exception 0x0A, gateway path
// unavailable: the client hears why instead of seeing the connection drop.
// The listener closes conn.
func (e *Engine) Refuse(conn net.Conn, _ string) {
	end := time.Now().Add(refuseWait)
	fr := NewFrameReader(conn, refuseWait, refuseWait)
	var out []byte
	for time.Now().Before(end) {
		h, pdu, err := fr.Next()
		if err != nil {
			return // gone, silent, or not Modbus: closed without a word
		}
		out = AppendADU(out[:0], h.TransactionID, h.UnitID, ExceptionPDU(pdu[0], ExGatewayPathUnavailable))
		conn.SetWriteDeadline(end)
		if _, err := conn.Write(out); err != nil {
			return
		}
	}
}

// Close closes the upstream connections.
func (e *Engine) Close() error {
	var errs []error
	for _, u := range e.upstreams {
		errs = append(errs, u.Close())
	}
	return errors.Join(errs...)
}

// errDeniedClose ends a session whose call was denied with deny_action close.
var errDeniedClose = errors.New("modbus: call denied, connection closed (deny_action close)")

// Serve reads requests in order and answers each before reading the next, so
// pipelined requests are answered in the order sent.
func (e *Engine) Serve(ctx context.Context, conn net.Conn, s *gateway.Session) error {
	fr := NewFrameReader(conn, e.limits.IdleTimeout, e.opts.FrameTimeout)
	fr.First = e.firstWait()
	out := make([]byte, 0, MaxADU)
	draining := gateway.Draining(ctx)
	for {
		h, pdu, err := fr.Next()
		if err != nil {
			return e.readEnded(ctx, s, h, err)
		}
		rt, c, req, rerr := e.callOf(s, h, pdu)
		select {
		case <-draining:
			// The gateway is stopping: a request read but not begun is not
			// forwarded and not answered (the client sees the connection
			// end, never a write half done); its record says it came. The
			// reading side is shut, so what follows is what was received.
			e.pipeline.Reject(ctx, s, c, gateway.ReasonShuttingDown,
				"the gateway is stopping: a request read after the stop began is not forwarded", "close")
			continue
		default:
		}
		var answer []byte
		switch {
		case rerr != nil:
			e.pipeline.Reject(ctx, s, c, rerr.Reason, rerr.Detail, fmt.Sprintf("exception 0x%02x", rerr.Exception))
			answer = ExceptionPDU(pdu[0], rerr.Exception)
		case rt == nil:
			e.pipeline.Reject(ctx, s, c, "no_route", fmt.Sprintf("no upstream for unit id %d", h.UnitID), "exception 0x0a")
			answer = ExceptionPDU(pdu[0], ExGatewayPathUnavailable)
		case rt.broadcast:
			// Forwarded, it would hold the shared line for request_timeout
			// waiting for an answer that never comes.
			e.pipeline.Reject(ctx, s, c, ReasonBroadcast, fmt.Sprintf("unit id 0 is a broadcast on the serial line behind %s: every device would act on it and none answers; the gateway does not forward broadcasts", rt.upstream), "exception 0x0a")
			answer = ExceptionPDU(pdu[0], ExGatewayPathUnavailable)
		default:
			c.Request = req
			r := e.pipeline.Handle(ctx, s, c, rt.upstream)
			switch {
			case r.Status == gateway.StatusDenied && e.opts.DenyAction == DenyClose:
				e.rejectReceived(ctx, s, fr)
				return errDeniedClose
			case r.Status == gateway.StatusDenied:
				answer = ExceptionPDU(pdu[0], byte(*e.opts.DenyException))
			case r.Status == gateway.StatusError:
				answer = ExceptionPDU(pdu[0], byte(r.Code))
			default:
				answer = r.Response.([]byte)
			}
		}
		out = AppendADU(out[:0], h.TransactionID, h.UnitID, answer)
		if err := conn.SetWriteDeadline(deadline(e.opts.FrameTimeout)); err != nil {
			return err
		}
		if _, err := conn.Write(out); err != nil {
			return err
		}
	}
}

// callOf is the call a request frame asks for, the route of its unit (nil:
// none), and its re-encoded request or why it is refused.
func (e *Engine) callOf(s *gateway.Session, h Header, pdu []byte) (*route, *gateway.Call, []byte, *RequestError) {
	rt := e.routes[h.UnitID]
	target := gateway.Target{Name: s.Target.Name, UnitID: int(h.UnitID)}
	if rt != nil {
		target = rt.target
	}
	c := &gateway.Call{Time: time.Now().UTC(), Target: target}
	op, req, rerr := DecodeRequest(pdu)
	c.Operation = op
	return rt, c, req, rerr
}

// rejectReceived records the requests received behind one denied with
// deny_action close (pipelined, already in the reader's buffer): the
// connection closes without forwarding them, and each leaves its record.
// The connection is not read for more.
func (e *Engine) rejectReceived(ctx context.Context, s *gateway.Session, fr *FrameReader) {
	for {
		h, pdu, ok := fr.Buffered()
		if !ok {
			return
		}
		_, c, _, _ := e.callOf(s, h, pdu)
		e.pipeline.Reject(ctx, s, c, ReasonClosedAfterDenial,
			"the connection was closed after a denied request (deny_action: close): this request, received before the close, was not forwarded", "close")
	}
}

// firstWait is how long a new connection may stay silent: the first
// request timeout, or the idle timeout when that is shorter.
func (e *Engine) firstWait() time.Duration {
	first := e.limits.FirstRequestTimeout
	if first <= 0 {
		first = gateway.DefaultFirstRequestTimeout
	}
	if e.limits.IdleTimeout > 0 {
		first = min(first, e.limits.IdleTimeout)
	}
	return first
}

// readEnded records why reading stopped and returns the session's end cause.
func (e *Engine) readEnded(ctx context.Context, s *gateway.Session, h Header, err error) error {
	var fe *FrameError
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &fe):
		c := &gateway.Call{Time: time.Now().UTC(), Target: s.Target,
			Operation: gateway.Operation{Function: "invalid_frame", Access: gateway.AccessDiagnostic}}
		c.Operation.Int("transaction_id", int64(h.TransactionID))
		c.Operation.Int("protocol_id", int64(h.ProtocolID))
		c.Operation.Int("length", int64(h.Length))
		e.pipeline.Reject(ctx, s, c, fe.Reason, fe.Detail, "close")
	case errors.Is(err, ErrNoRequest):
		c := &gateway.Call{Time: time.Now().UTC(), Target: s.Target,
			Operation: gateway.Operation{Function: "invalid_frame", Access: gateway.AccessDiagnostic}}
		e.pipeline.Reject(ctx, s, c, "first_request_timeout",
			fmt.Sprintf("no byte within limits.first_request_timeout (%v) of connecting", e.firstWait()), "close")
	case errors.Is(err, ErrStalled), errors.Is(err, io.ErrUnexpectedEOF):
		c := &gateway.Call{Time: time.Now().UTC(), Target: s.Target,
			Operation: gateway.Operation{Function: "invalid_frame", Access: gateway.AccessDiagnostic}}
		reason := "stalled_frame"
		if errors.Is(err, io.ErrUnexpectedEOF) {
			reason = "truncated_frame"
		}
		e.pipeline.Reject(ctx, s, c, reason, err.Error(), "close")
	}
	return err
}
