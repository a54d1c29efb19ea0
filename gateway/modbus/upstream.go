package modbus

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	mb "github.com/grid-x/modbus"
	"github.com/grid-x/serial"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// Upstream schemes.
const (
	SchemeTCP        = "tcp"
	SchemeRTUOverTCP = "rtuovertcp"
	SchemeRTU        = "rtu"
)

// UpstreamOptions bound an Upstream.
type UpstreamOptions struct {
	Conns          int           // connections to the device, shared by all clients
	Timeout        time.Duration // one request, including the wait for a free connection
	ConnectTimeout time.Duration
	IdleTimeout    time.Duration
	// TLS is the client configuration for a tls:// upstream (required for
	// one); without a ServerName, the upstream's host is checked.
	TLS *tls.Config
	// Log gets what an operator must see that no call record says in full:
	// failed TLS handshakes with the device.
	Log zerolog.Logger
}

// Upstream forwards re-encoded requests to one device through grid-x/modbus.
// Each of its connections carries one request at a time; clients beyond the
// number of connections wait, within their request timeout, for a free one.
type Upstream struct {
	url     string
	serial  bool // rtu:// or rtuovertcp://: a Modbus serial line
	timeout time.Duration
	free    chan *link
	all     []*link
	tls     *tlsSide // tls://: the client configuration in force
}

var _ gateway.Upstream = (*Upstream)(nil)

// link is one connection to the device: grid-x's packager and transporter.
type link struct {
	pk      mb.Packager
	tr      mb.Transporter
	connect func(context.Context) error
	close   func() error
	// setTimeout sets the transporter's read/write timeout for the next Send;
	// grid-x bounds reads by this field, not by the context.
	setTimeout func(time.Duration)
	// dialDeadline bounds a dial made during the current exchange (the link
	// is used by one request at a time).
	dialDeadline time.Time
	// sent counts the writes of the current exchange on a TCP connection:
	// grid-x sends a request again when the answer carries a transaction id
	// it cannot place, and the gateway sends each request once (onceConn).
	sent int
	// unbounded marks a transport whose Send the request deadline cannot
	// stop (a serial port applies its timeout per byte, set when it opens):
	// RoundTrip then answers at the deadline and takes the link back when
	// its Send returns.
	unbounded bool
	// conn is the TCP connection last dialed and used when the link was
	// last used: one the device closed while idle is dialed again before a
	// request goes into it.
	conn net.Conn
	used time.Time
	// tls: conn carries a TLS session (tls://); tlsLog reports its failures.
	tls    bool
	tlsLog *tlsLog
	// side is the tls:// upstream's configuration in force, and open the
	// TLS session open on the link: one of a configuration no longer in
	// force is closed before the next request and when its request ends.
	side *tlsSide
	open atomic.Pointer[onceConn]
}

// idleCheckAfter is how long a connection must have been idle before it is
// checked for a close by the device (a look at the socket, no traffic): a
// polling client's back-to-back requests skip it.
const idleCheckAfter = time.Millisecond

// closedWhileIdle reports whether the device closed (or reset) the link's
// connection since its last use, so that the request goes out on a new one
// instead of failing with 0x0A: many PLCs close a connection idle for a few
// seconds.
func (l *link) closedWhileIdle() bool {
	if l.conn == nil || time.Since(l.used) < idleCheckAfter {
		return false
	}
	if l.tls {
		// Bytes waiting on an idle TLS connection are the device's
		// close_notify, or a late answer: either way the request goes out
		// on a new session (the peek cannot tell records apart).
		closed, data := peerState(l.conn)
		return closed || data
	}
	return peerClosed(l.conn)
}

// NewUpstream parses an upstream URL (tcp://host:port, rtuovertcp://host:port,
// tls://host[:port], rtu:///dev/ttyS0?baud=19200&parity=N&data_bits=8&stop_bits=1)
// and prepares its connections; nothing is dialed until the first request.
func NewUpstream(raw string, o UpstreamOptions) (*Upstream, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL (want tcp://host:port, rtuovertcp://host:port, tls://host:port or rtu:///dev/ttyXXX?baud=19200): %v", raw, err)
	}
	if o.Conns <= 0 {
		o.Conns = DefaultUpstreamConns
	}
	if o.Timeout <= 0 {
		o.Timeout = gateway.DefaultRequestTimeout
	}
	if u.Scheme != SchemeRTU && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		// nothing but host and port is read: the rest would be ignored without a word
		return nil, fmt.Errorf("%q: want %s://host:port and nothing after it (no path, query or user)", raw, u.Scheme)
	}
	var mk func() (*link, error)
	var ts *tlsSide
	switch u.Scheme {
	case SchemeTCP, SchemeRTUOverTCP:
		if u.Hostname() == "" || u.Port() == "" {
			return nil, fmt.Errorf("%q: want %s://host:port", raw, u.Scheme)
		}
		mk = func() (*link, error) { return tcpLink(u.Scheme, u.Host, o, nil), nil }
	case SchemeTLS:
		if u.Hostname() == "" {
			return nil, fmt.Errorf("%q: want tls://host:port (port %s when none is given)", raw, DefaultTLSPort)
		}
		if o.TLS == nil {
			return nil, fmt.Errorf("%q: a tls:// upstream needs modbus.upstream_tls (ca: the CA certificates that issued the PLC's certificate; cert, key: the gateway's client certificate)", raw)
		}
		addr := net.JoinHostPort(u.Hostname(), cmp.Or(u.Port(), DefaultTLSPort))
		ts = &tlsSide{host: u.Hostname(), log: &tlsLog{log: o.Log, upstream: raw}}
		ts.set(o.TLS)
		mk = func() (*link, error) { return tcpLink(SchemeTCP, addr, o, ts), nil }
	case SchemeRTU:
		if u.Path == "" {
			return nil, fmt.Errorf("%q: want rtu:///dev/ttyXXX?baud=19200", raw)
		}
		if o.Conns != 1 {
			o.Conns = 1 // a serial line carries one request at a time
		}
		mk = func() (*link, error) { return rtuLink(u, o) }
	default:
		return nil, fmt.Errorf("%q: unsupported scheme %q (want tcp, rtuovertcp, tls or rtu)", raw, u.Scheme)
	}
	up := &Upstream{url: raw, serial: u.Scheme == SchemeRTU || u.Scheme == SchemeRTUOverTCP, timeout: o.Timeout, free: make(chan *link, o.Conns), tls: ts}
	for range o.Conns {
		l, err := mk()
		if err != nil {
			return nil, fmt.Errorf("%q: %v", raw, err)
		}
		up.all = append(up.all, l)
		up.free <- l
	}
	return up, nil
}

// tlsSide is what a tls:// upstream's links share: the client
// configuration in force, with the server name set, and the log of
// failures.
type tlsSide struct {
	cfg  atomic.Pointer[tls.Config]
	host string // the server name when the configuration has none
	log  *tlsLog
}

// set puts cfg in force for the next TLS sessions.
func (ts *tlsSide) set(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	if c.ServerName == "" {
		c.ServerName = ts.host
	}
	ts.cfg.Store(c)
	return c
}

// SetTLS puts a new client configuration in force for the upstream's TLS
// sessions (tls:// only; its server name as at NewUpstream) and closes the
// sessions of the one before: idle ones at once, one carrying a request
// when its answer is in (the request is not cut off). It returns how many
// sessions it closed or will close.
func (u *Upstream) SetTLS(cfg *tls.Config) int {
	if u.tls == nil {
		return 0
	}
	c := u.tls.set(cfg)
	// The idle links are taken out of the pool for the time it takes to
	// close their sessions; a request waits for them as for a busy one.
	var idle []*link
drain:
	for len(idle) < len(u.all) {
		select {
		case l := <-u.free:
			idle = append(idle, l)
		default:
			break drain
		}
	}
	n := 0
	for _, l := range u.all {
		if o := l.open.Load(); o != nil && o.cfg != c {
			n++
		}
	}
	for _, l := range idle {
		l.closeStale()
		u.free <- l
	}
	return n
}

// closeStale closes the link's TLS session when it was made under a
// configuration no longer in force; the link is held by the caller.
func (l *link) closeStale() {
	if l.side == nil {
		return
	}
	if o := l.open.Load(); o != nil && o.cfg != l.side.cfg.Load() {
		_ = l.close() // closes o, which clears l.open
		l.conn = nil
	}
}

// release puts a link back in the pool, its session closed first when a
// new TLS configuration came in force during its request.
func (u *Upstream) release(l *link) {
	l.closeStale()
	u.free <- l
}

// tcpLink is a link to addr; with ts, each connection is a TLS session
// whose handshake ends within the dial (dialTLS).
func tcpLink(scheme, addr string, o UpstreamOptions, ts *tlsSide) *link {
	l := &link{side: ts}
	dial := func(ctx context.Context, network, address string) (net.Conn, error) {
		d := net.Dialer{Timeout: o.ConnectTimeout, Deadline: l.dialDeadline}
		if ts != nil {
			cfg := ts.cfg.Load()
			raw, tc, err := dialTLS(ctx, &d, address, cfg, o.ConnectTimeout)
			if err != nil {
				ts.log.failed(err)
				return nil, err
			}
			ts.log.established(tc)
			l.conn, l.tls, l.tlsLog = raw, true, ts.log
			c := &onceConn{Conn: tc, l: l, cfg: cfg}
			l.open.Store(c)
			return c, nil
		}
		c, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		l.conn = c
		return &onceConn{Conn: c, l: l}, nil
	}
	if scheme == SchemeRTUOverTCP {
		h := mb.NewRTUOverTCPClientHandler(addr)
		h.Dial = dial
		h.IdleTimeout = o.IdleTimeout
		l.pk, l.tr, l.connect, l.close = h, h, h.Connect, h.Close
		l.setTimeout = func(d time.Duration) { h.Timeout = d }
		return l
	}
	h := mb.NewTCPClientHandler(addr, mb.WithDialer(dial))
	h.IdleTimeout = o.IdleTimeout
	// A late answer to a timed-out request is skipped by its transaction id
	// instead of being taken for the next request's answer.
	h.ProtocolRecoveryTimeout = o.Timeout
	l.pk, l.tr, l.connect, l.close = h, h, h.Connect, h.Close
	l.setTimeout = func(d time.Duration) { h.Timeout = d }
	return l
}

// errResend is the refusal of a second write of one request: the device
// answered with a transaction id that belongs to no request the gateway
// sent, and grid-x would send the request again. A write must reach the
// device once, so the exchange ends (0x0B) and the connection is closed.
var errResend = errors.New("modbus: the device answered with a transaction id the gateway did not send: the request is not sent again")

// onceConn lets one write through per exchange.
type onceConn struct {
	net.Conn
	l *link
	// read: the device has sent application data on this connection.
	read bool
	// cfg is the TLS configuration the session was made with (tls://).
	cfg *tls.Config
}

// Close also tells the link that its TLS session is gone, whoever closes
// it (an error, the idle timer, a new configuration).
func (c *onceConn) Close() error {
	c.l.open.CompareAndSwap(c, nil)
	return c.Conn.Close()
}

func (c *onceConn) Write(b []byte) (int, error) {
	if c.l.sent > 0 {
		return 0, errResend
	}
	c.l.sent++
	return c.Conn.Write(b)
}

func (c *onceConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.l.tls {
		if rerr := sessionRefused(err, c.read); rerr != err {
			c.l.tlsLog.failed(rerr)
			err = rerr
		}
	}
	c.read = c.read || n > 0
	return n, err
}

// rtuParams are the settings an rtu:// URL may carry: a misspelt one would
// leave its default in force without a word.
var rtuParams = []string{"baud", "parity", "data_bits", "stop_bits"}

func rtuLink(u *url.URL, o UpstreamOptions) (*link, error) {
	h := mb.NewRTUClientHandler(u.Path)
	h.IdleTimeout = o.IdleTimeout
	h.Timeout = o.Timeout
	q := u.Query()
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(rtuParams, k) {
			return nil, fmt.Errorf("%q is not a serial line setting (want %s)", k, strings.Join(rtuParams, ", "))
		}
	}
	num := func(key string, def int) (int, error) {
		v := q.Get(key)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q is not a number", key, v)
		}
		return n, nil
	}
	var err error
	if h.BaudRate, err = num("baud", 19200); err != nil {
		return nil, err
	}
	if h.BaudRate <= 0 {
		return nil, fmt.Errorf("baud=%d is not a positive number", h.BaudRate)
	}
	if h.DataBits, err = num("data_bits", 8); err != nil {
		return nil, err
	}
	if h.DataBits < 5 || h.DataBits > 8 {
		return nil, fmt.Errorf("data_bits=%d is not one of 5, 6, 7, 8", h.DataBits)
	}
	if h.StopBits, err = num("stop_bits", 1); err != nil {
		return nil, err
	}
	if h.StopBits != 1 && h.StopBits != 2 {
		return nil, fmt.Errorf("stop_bits=%d is not 1 or 2", h.StopBits)
	}
	h.Parity = strings.ToUpper(q.Get("parity"))
	if h.Parity == "" {
		h.Parity = "E" // Modbus over serial line V1.02: even parity is the default
	}
	if h.Parity != "N" && h.Parity != "E" && h.Parity != "O" {
		return nil, fmt.Errorf("parity=%q is not one of N, E, O", h.Parity)
	}
	return &link{pk: h, tr: h, connect: h.Connect, close: h.Close, setTimeout: func(time.Duration) {}, unbounded: true}, nil
}

// RoundTrip sends the call's re-encoded PDU to its unit and returns the
// device's answer. Failures come back as Modbus gateway exceptions: 0x0A
// when there is no path (connection refused or lost, every connection busy
// for the whole timeout), 0x0B when the device did not answer in time or
// answered with a frame that does not fit the request.
func (u *Upstream) RoundTrip(ctx context.Context, c *gateway.Call) (*gateway.Result, error) {
	req, ok := c.Request.([]byte)
	if !ok || len(req) == 0 {
		return nil, errors.New("modbus: call carries no request PDU")
	}
	dl := time.Now().Add(u.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	l, err := u.acquire(ctx, dl)
	if err != nil {
		return exception(ExGatewayPathUnavailable), err
	}
	if l.unbounded {
		ctx, cancel := context.WithDeadline(ctx, dl)
		defer cancel()
		return u.roundTripBounded(ctx, l, dl, c.Target.UnitID, req)
	}
	defer u.release(l)
	return u.exchange(ctx, l, dl, c.Target.UnitID, req)
}

// acquire takes a free connection, waiting until dl at most. The common
// case, a free connection at hand, sets no timer.
func (u *Upstream) acquire(ctx context.Context, dl time.Time) (*link, error) {
	select {
	case l := <-u.free:
		return l, nil
	default:
	}
	t := time.NewTimer(time.Until(dl))
	defer t.Stop()
	select {
	case l := <-u.free:
		return l, nil
	case <-t.C:
	case <-ctx.Done():
	}
	return nil, errors.New("modbus: every upstream connection busy for the whole request timeout")
}

// roundTripBounded runs the exchange on its own goroutine so that the client
// is answered 0x0B at the deadline even while the link is still busy.
func (u *Upstream) roundTripBounded(ctx context.Context, l *link, dl time.Time, unit int, req []byte) (*gateway.Result, error) {
	type answer struct {
		r   *gateway.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := u.exchange(context.WithoutCancel(ctx), l, dl, unit, req)
		done <- answer{r, err}
	}()
	select {
	case a := <-done:
		u.free <- l
		if a.err != nil && !time.Now().Before(dl) {
			// The exchange gave up at the deadline (a serial port's own
			// read timeout ends with it): the device did not answer in time.
			return exception(ExGatewayTargetNoResponse), a.err
		}
		return a.r, a.err
	case <-ctx.Done():
		go func() { <-done; u.free <- l }()
		return exception(ExGatewayTargetNoResponse), errors.New("modbus: no answer within the request timeout")
	}
}

// exchange sends one request on l and checks the answer; dl bounds the
// dial (when the connection is down) and the exchange.
func (u *Upstream) exchange(ctx context.Context, l *link, dl time.Time, unit int, req []byte) (*gateway.Result, error) {
	l.dialDeadline = dl

	l.pk.SetSlave(byte(unit))
	adu, err := l.pk.Encode(&mb.ProtocolDataUnit{FunctionCode: req[0], Data: req[1:]})
	if err != nil {
		return exception(ExGatewayPathUnavailable), fmt.Errorf("modbus: encode: %w", err)
	}
	// A TLS configuration put in force since the link's last request
	// applies to this one.
	l.closeStale()
	if l.closedWhileIdle() {
		// Reset rather than close: the device closed its side already, and
		// a FIN now would leave its socket in TIME_WAIT, which a PLC with
		// few sockets (or a restarted server binding its port) pays for.
		if tc, ok := l.conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = l.close() // Connect dials again
		l.conn = nil
	}
	defer func() { l.used = time.Now() }()
	// Connect first so that a refused or unreachable device is told apart
	// from one that accepted the request and did not answer.
	if err := l.connect(ctx); err != nil {
		return exception(ExGatewayPathUnavailable), fmt.Errorf("modbus: connect: %w", err)
	}
	l.setTimeout(time.Until(dl))
	l.sent = 0
	raw, err := l.tr.Send(ctx, adu)
	if err != nil {
		return exception(classify(err)), err
	}
	if err := l.pk.Verify(adu, raw); err != nil {
		return exception(ExGatewayTargetNoResponse), err
	}
	pdu, err := l.pk.Decode(raw)
	if err != nil {
		return exception(ExGatewayTargetNoResponse), err
	}
	resp := make([]byte, 0, 1+len(pdu.Data))
	resp = append(append(resp, pdu.FunctionCode), pdu.Data...)
	if err := CheckResponse(req, resp); err != nil {
		return exception(ExGatewayTargetNoResponse), fmt.Errorf("modbus: malformed answer: %w", err)
	}
	if resp[0]&0x80 != 0 {
		return &gateway.Result{Status: gateway.StatusException, Code: int(resp[1]), Response: resp}, nil
	}
	return &gateway.Result{Status: gateway.StatusOK, Response: resp}, nil
}

func exception(code byte) *gateway.Result {
	return &gateway.Result{Status: gateway.StatusError, Code: int(code)}
}

// classify maps an error of an exchange with a connected device to the
// gateway exception the client gets: a timeout, or an answer that does not
// fit the request (another transaction, unit or protocol id, a bad length),
// means the target did not respond; a lost or refused connection means
// there is no path.
func classify(err error) byte {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, serial.ErrTimeout) || (errors.As(err, &ne) && ne.Timeout()):
		return ExGatewayTargetNoResponse
	case errors.Is(err, errResend):
		return ExGatewayTargetNoResponse
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.As(err, new(*net.OpError)) || errors.As(err, new(*os.PathError)):
		return ExGatewayPathUnavailable
	}
	return ExGatewayTargetNoResponse // grid-x's checks of the answer
}

// Close closes every connection to the device.
func (u *Upstream) Close() error {
	var errs []error
	for _, l := range u.all {
		errs = append(errs, l.close())
	}
	return errors.Join(errs...)
}

// String returns the upstream URL.
func (u *Upstream) String() string { return u.url }

// Serial says whether the upstream is a Modbus serial line (rtu://,
// rtuovertcp://), where unit id 0 is a broadcast that no device answers.
func (u *Upstream) Serial() bool { return u.serial }
