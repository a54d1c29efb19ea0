package ship

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Message formats.
const (
	FormatJSON  = "json"  // syslog: MSG is the record line as written
	FormatCEF   = "cef"   // syslog: MSG is an ArcSight CEF event
	FormatJSONL = "jsonl" // http: the record lines, one per line
)

// Syslog header fields (RFC 5424 §6).
const (
	AppName = "interlock"
	// DefaultSDID names the structured data element. 32473 is the private
	// enterprise number RFC 5612 reserves for examples; set your own with
	// SyslogOptions.SDID when you have one.
	DefaultSDID = "interlock@32473"
	// FacilityLogAudit is facility 13, "log audit" (RFC 5424 table 1).
	FacilityLogAudit = 13
)

// SyslogOptions configure a syslog sink.
type SyslogOptions struct {
	Address      string      // host:port of the receiver
	TLS          *tls.Config // nil: plain TCP (RFC 6587); else TLS (RFC 5425)
	Format       string      // FormatJSON (default) or FormatCEF
	Hostname     string      // HOSTNAME of every message; default each record's gateway id
	Facility     int         // 1..23; 0 means FacilityLogAudit (facility 0, kern, is the kernel's)
	SDID         string      // default DefaultSDID
	Version      string      // the gateway's version, for the CEF header
	DialTimeout  time.Duration
	WriteTimeout time.Duration
}

// Syslog sends each record as one RFC 5424 message over TCP or TLS with
// octet-counting framing (RFC 6587 §3.4.1, the framing RFC 5425 requires
// for TLS): "<length> <message>".
//
// TCP syslog has no acknowledgement. Send returns nil once a batch is
// written and flushed on a connection that was open before the write; the
// shipper counts it as delivered only once the receiver's TCP acknowledged
// its bytes (Probe) and the connection was still open ConfirmAfter after
// that, and sends everything after the cursor again when it is not. At
// stop, Close half-closes the connection and waits for the receiver to
// close its side: a receiver that read to the end confirms the last
// batches that way.
type Syslog struct {
	opts    SyslogOptions
	raw     net.Conn // the TCP connection
	conn    net.Conn // what records are written on: raw counted, or TLS over it
	w       *bufio.Writer
	written int64 // bytes written on raw
	msg     []byte
}

// countConn counts the bytes written on a connection.
type countConn struct {
	net.Conn
	n *int64
}

func (c countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	*c.n += int64(n)
	return n, err
}

var _ Unacked = (*Syslog)(nil)

// NewSyslog checks the options and makes a sink; it connects on first use.
func NewSyslog(o SyslogOptions) (*Syslog, error) {
	host, _, err := net.SplitHostPort(o.Address)
	if err != nil {
		return nil, fmt.Errorf("ship: syslog address: %w", err)
	}
	switch o.Format {
	case "":
		o.Format = FormatJSON
	case FormatJSON, FormatCEF:
	default:
		return nil, fmt.Errorf("ship: syslog format %q is not one of json, cef", o.Format)
	}
	if o.Facility <= 0 || o.Facility > 23 {
		o.Facility = FacilityLogAudit
	}
	if o.SDID == "" {
		o.SDID = DefaultSDID
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.TLS != nil && o.TLS.ServerName == "" {
		o.TLS = o.TLS.Clone()
		o.TLS.ServerName = host
	}
	return &Syslog{opts: o}, nil
}

// Send writes one message per record and flushes. A connection that the
// receiver closed since the last Send is an error, not quietly replaced:
// what was written on it may be lost, and the shipper sends it again.
func (s *Syslog) Send(ctx context.Context, recs []Record) error {
	if s.conn != nil {
		if _, err := s.Probe(); err != nil {
			s.drop()
			return fmt.Errorf("syslog %s: %w: %w", s.opts.Address, ErrConnectionClosed, err)
		}
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(s.opts.WriteTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn := s.conn
	_ = conn.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	var n [20]byte
	for i := range recs {
		s.msg = s.AppendMessage(s.msg[:0], &recs[i])
		// Octet counting: MSG-LEN SP SYSLOG-MSG. A write error sticks in
		// the buffer and shows at Flush.
		s.w.Write(strconv.AppendInt(n[:0], int64(len(s.msg)), 10))
		s.w.WriteByte(' ')
		s.w.Write(s.msg)
	}
	if err := s.w.Flush(); err != nil {
		s.drop()
		return fmt.Errorf("syslog %s: %w", s.opts.Address, err)
	}
	if cap(s.msg) > 1<<20 {
		s.msg = nil
	}
	return nil
}

func (s *Syslog) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("syslog %s: %w", s.opts.Address, err)
	}
	s.written = 0
	var conn net.Conn = countConn{Conn: raw, n: &s.written}
	if s.opts.TLS != nil {
		tc := tls.Client(conn, s.opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return fmt.Errorf("syslog %s: TLS: %w", s.opts.Address, err)
		}
		conn = tc
	}
	s.raw, s.conn, s.w = raw, conn, bufio.NewWriterSize(conn, 64<<10)
	return nil
}

// errNoConn: nothing was sent on a connection that is still there.
var errNoConn = errors.New("not connected")

// Probe reports whether the receiver still has the connection open, at
// once: end of file or a reset means it closed it, and what was written
// lately may not have been read. Bytes from the receiver (a TLS alert or
// session ticket; syslog receivers do not talk otherwise) are read to see
// which they are. It also returns how many of the bytes written on the
// connection (Written) the receiver's TCP acknowledged: bytes still in the
// send queue (a network that stopped carrying packets, a receiver that
// stopped reading) are not delivered however long the connection stays
// open. Where the send queue cannot be looked at, that is all of them.
func (s *Syslog) Probe() (acked int64, err error) {
	if s.conn == nil {
		return 0, errNoConn
	}
	pending, err := peek(s.raw)
	switch {
	case errors.Is(err, io.EOF):
		return 0, errClosed
	case err != nil:
		return 0, err
	case pending:
		_ = s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		var b [512]byte
		n, err := s.conn.Read(b[:])
		_ = s.conn.SetReadDeadline(time.Time{})
		var ne net.Error
		switch {
		case n > 0 || err == nil:
		case errors.As(err, &ne) && ne.Timeout():
		case errors.Is(err, io.EOF):
			return 0, errClosed
		default:
			return 0, err
		}
	}
	if n, ok := unackedBytes(s.raw); ok {
		return max(0, s.written-n), nil
	}
	return s.written, nil
}

// Written is how many bytes went on the connection so far.
func (s *Syslog) Written() int64 { return s.written }

var errClosed = errors.New("the receiver closed the connection")

// ErrConnectionClosed is returned by Send when the receiver closed the
// connection since the last Send (an idle timeout, a restart): what was
// sent on it and not confirmed must be sent again, on a new connection.
var ErrConnectionClosed = errors.New("connection closed by the receiver")

// Close half-closes the connection and waits, until ctx is done, for the
// receiver to close its side after reading everything: nil means it did.
func (s *Syslog) Close(ctx context.Context) error {
	if s.conn == nil {
		return errNoConn
	}
	defer s.drop()
	var err error
	if tc, ok := s.conn.(*tls.Conn); ok {
		err = tc.CloseWrite() // close_notify; a TLS receiver closes on it
	} else if tc, ok := s.raw.(*net.TCPConn); ok {
		err = tc.CloseWrite()
	}
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = s.conn.SetReadDeadline(d)
	}
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	_, err = io.Copy(io.Discard, s.conn)
	if err == nil {
		return nil // io.Copy turns io.EOF into nil: the receiver closed after reading it all
	}
	return err
}

func (s *Syslog) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.raw, s.conn, s.w = nil, nil, nil
	}
}

// AppendMessage appends the RFC 5424 message for r (without framing):
//
//	<PRI>1 TIMESTAMP HOSTNAME interlock - MSGID [interlock@32473 seq="…" gateway="…" event="…"] MSG
//
// PRI is facility×8 + the record's severity, TIMESTAMP the record's time
// (cut to the microseconds RFC 5424 allows), MSGID the event, and MSG the
// record line or its CEF form. The JSON MSG carries no BOM: it is UTF-8,
// but a BOM would break the JSON parsers on the receiving side.
func (s *Syslog) AppendMessage(b []byte, r *Record) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.opts.Facility*8+int(r.Severity)), 10)
	b = append(b, ">1 "...)
	if r.Time.IsZero() {
		b = append(b, '-')
	} else {
		b = r.Time.UTC().Truncate(time.Microsecond).AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	}
	b = append(b, ' ')
	host := s.opts.Hostname
	if host == "" {
		host = r.Gateway
	}
	b = appendHeaderField(b, host, 255)
	b = append(b, ' ')
	b = append(b, AppName...)
	b = append(b, " - "...)
	b = appendHeaderField(b, r.Event, 32)
	b = append(b, ' ')
	if r.Seq == 0 {
		b = append(b, '-')
	} else {
		b = append(b, '[')
		b = append(b, s.opts.SDID...)
		b = append(b, ` seq="`...)
		b = strconv.AppendUint(b, r.Seq, 10)
		b = append(b, '"')
		b = appendParam(b, "gateway", r.Gateway)
		b = appendParam(b, "event", r.Event)
		b = append(b, ']')
	}
	b = append(b, ' ')
	if s.opts.Format == FormatCEF {
		return AppendCEF(b, r, s.opts.Version)
	}
	return append(b, r.Line...)
}

// appendHeaderField appends a header field: printable US-ASCII without
// spaces, at most max characters, "-" when empty.
func appendHeaderField(b []byte, v string, max int) []byte {
	n := 0
	for i := 0; i < len(v) && n < max; i++ {
		c := v[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		b = append(b, c)
		n++
	}
	if n == 0 {
		b = append(b, '-')
	}
	return b
}

// appendParam appends ` name="value"` with '"', '\' and ']' escaped (RFC
// 5424 §6.3.3); an empty value is left out.
func appendParam(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, `="`...)
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
