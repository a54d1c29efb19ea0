// Package shiptest has a syslog receiver and a test PKI for the tests of
// audit shipping: those of package ship and the end-to-end tests of the
// gateway.
package shiptest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Message is one RFC 5424 message as the receiver parsed it.
type Message struct {
	Conn      int // the connection it came on, counting from 1
	Raw       []byte
	Facility  int
	Severity  int
	Timestamp string
	Hostname  string
	AppName   string
	ProcID    string
	MsgID     string
	SDID      string            // of the first structured data element, "" for "-"
	Params    map[string]string // of the first element, unescaped
	Msg       []byte
}

// MaxFrame bounds one frame: larger is a framing error.
const MaxFrame = 32 << 20

// ReadFrame reads one octet-counted frame (RFC 6587 §3.4.1): MSG-LEN SP
// SYSLOG-MSG, where MSG-LEN is a non-zero number without leading zeros.
func ReadFrame(r *bufio.Reader) ([]byte, error) {
	n := 0
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if c == ' ' && i > 0 {
			break
		}
		if c < '0' || c > '9' || (i == 0 && c == '0') || i > 9 {
			return nil, fmt.Errorf("framing: byte %q where MSG-LEN should be", c)
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxFrame {
		return nil, fmt.Errorf("framing: MSG-LEN %d over %d", n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("framing: %d of %d bytes: %w", len(b), n, err)
	}
	return b, nil
}

// Parse parses an RFC 5424 message strictly: PRI, VERSION 1, the header
// fields as printable US-ASCII within their lengths, structured data with
// escaped param values.
func Parse(b []byte) (Message, error) {
	m := Message{Raw: b}
	if len(b) < 1 || b[0] != '<' {
		return m, errors.New("no PRI")
	}
	end := bytes.IndexByte(b, '>')
	if end < 2 || end > 4 {
		return m, errors.New("bad PRI")
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri > 191 || (end > 2 && b[1] == '0') {
		return m, fmt.Errorf("bad PRI %q", b[1:end])
	}
	m.Facility, m.Severity = pri/8, pri%8
	rest := b[end+1:]
	if !bytes.HasPrefix(rest, []byte("1 ")) {
		return m, errors.New("VERSION is not 1")
	}
	rest = rest[2:]
	fields := []struct {
		dst *string
		max int
	}{{&m.Timestamp, 64}, {&m.Hostname, 255}, {&m.AppName, 48}, {&m.ProcID, 128}, {&m.MsgID, 32}}
	for _, f := range fields {
		i := bytes.IndexByte(rest, ' ')
		if i < 1 {
			return m, errors.New("header cut short")
		}
		v := rest[:i]
		if len(v) > f.max {
			return m, fmt.Errorf("header field %q longer than %d", v, f.max)
		}
		for _, c := range v {
			if c < 33 || c > 126 {
				return m, fmt.Errorf("header field %q has a byte outside PRINTUSASCII", v)
			}
		}
		*f.dst = string(v)
		rest = rest[i+1:]
	}
	if m.Timestamp != "-" {
		if _, err := time.Parse(time.RFC3339Nano, m.Timestamp); err != nil {
			return m, fmt.Errorf("TIMESTAMP: %w", err)
		}
		if dot := bytes.IndexByte([]byte(m.Timestamp), '.'); dot >= 0 {
			frac := m.Timestamp[dot+1:]
			for i, c := range frac {
				if c < '0' || c > '9' {
					frac = frac[:i]
					break
				}
			}
			if len(frac) > 6 {
				return m, errors.New("TIMESTAMP has more than 6 fractional digits")
			}
		}
	}
	rest, err = m.parseSD(rest)
	if err != nil {
		return m, err
	}
	switch {
	case len(rest) == 0:
	case rest[0] == ' ':
		m.Msg = rest[1:]
	default:
		return m, errors.New("no space before MSG")
	}
	return m, nil
}

// parseSD parses STRUCTURED-DATA and keeps the first element's params.
func (m *Message) parseSD(b []byte) ([]byte, error) {
	if len(b) > 0 && b[0] == '-' {
		return b[1:], nil
	}
	if len(b) == 0 || b[0] != '[' {
		return nil, errors.New("no STRUCTURED-DATA")
	}
	for len(b) > 0 && b[0] == '[' {
		b = b[1:]
		id, rest, ok := sdName(b)
		if !ok {
			return nil, errors.New("bad SD-ID")
		}
		first := m.SDID == ""
		if first {
			m.SDID, m.Params = id, map[string]string{}
		}
		b = rest
		for len(b) > 0 && b[0] == ' ' {
			name, rest, ok := sdName(b[1:])
			if !ok || len(rest) < 2 || rest[0] != '=' || rest[1] != '"' {
				return nil, errors.New("bad SD-PARAM")
			}
			b = rest[2:]
			var v []byte
			for {
				if len(b) == 0 {
					return nil, errors.New("unterminated PARAM-VALUE")
				}
				c := b[0]
				b = b[1:]
				if c == '\\' && len(b) > 0 && (b[0] == '"' || b[0] == '\\' || b[0] == ']') {
					v = append(v, b[0])
					b = b[1:]
					continue
				}
				if c == '"' {
					break
				}
				if c == ']' {
					return nil, errors.New("unescaped ] in PARAM-VALUE")
				}
				v = append(v, c)
			}
			if first {
				m.Params[name] = string(v)
			}
		}
		if len(b) == 0 || b[0] != ']' {
			return nil, errors.New("SD-ELEMENT not closed")
		}
		b = b[1:]
	}
	return b, nil
}

// sdName reads an SD-NAME: 1..32 PRINTUSASCII but '=', ' ', ']', '"'.
func sdName(b []byte) (string, []byte, bool) {
	i := 0
	for i < len(b) && i < 33 {
		c := b[i]
		if c < 33 || c > 126 || c == '=' || c == ' ' || c == ']' || c == '"' {
			break
		}
		i++
	}
	if i == 0 || i > 32 {
		return "", nil, false
	}
	return string(b[:i]), b[i:], true
}

// Receiver is a syslog receiver on a fixed local port that a test can stop
// and start again, as a SIEM that goes down and comes back. It parses every
// message strictly and keeps them in arrival order. A stopped receiver acts
// as a stopped process: it closes its connections, and what it had not
// parsed yet is lost.
type Receiver struct {
	addr string
	tls  *tls.Config

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]*connState
	nconn  int
	msgs   []Message
	errs   []error
	closes int // connections the sender closed cleanly (end of file)
	wg     sync.WaitGroup
}

type connState struct {
	id      int
	stopped bool
}

// NewReceiver starts a receiver on 127.0.0.1 on a free port; with cfg, it
// speaks TLS (RFC 5425).
func NewReceiver(cfg *tls.Config) (*Receiver, error) {
	r := &Receiver{addr: "127.0.0.1:0", tls: cfg, conns: map[net.Conn]*connState{}}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// Addr is the receiver's host:port; it stays the same across Stop and Start.
func (r *Receiver) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addr
}

// Start listens again on the same port.
func (r *Receiver) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		return nil
	}
	var ln net.Listener
	var err error
	for try := 0; try < 50; try++ {
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	r.addr = ln.Addr().String()
	if r.tls != nil {
		ln = tls.NewListener(ln, r.tls)
	}
	r.ln = ln
	r.wg.Add(1)
	go r.accept(ln)
	return nil
}

// Stop closes the listener and every connection.
func (r *Receiver) Stop() {
	r.mu.Lock()
	ln := r.ln
	r.ln = nil
	for c, st := range r.conns {
		st.stopped = true
		c.Close()
	}
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	r.wg.Wait()
}

// CloseConnections closes every open connection but goes on listening, as a
// receiver whose idle timeout ends connections. Like Stop, what it had not
// parsed yet is lost.
func (r *Receiver) CloseConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c, st := range r.conns {
		st.stopped = true
		c.Close()
	}
}

func (r *Receiver) accept(ln net.Listener) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.ln != ln {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.nconn++
		st := &connState{id: r.nconn}
		r.conns[c] = st
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(c, st)
	}
}

func (r *Receiver) serve(c net.Conn, st *connState) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 64<<10)
	for {
		frame, err := ReadFrame(br)
		r.mu.Lock()
		if st.stopped {
			r.mu.Unlock()
			return
		}
		if errors.Is(err, io.EOF) {
			r.closes++
			r.mu.Unlock()
			return
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				r.errs = append(r.errs, fmt.Errorf("connection %d: %w", st.id, err))
			}
			r.mu.Unlock()
			return
		}
		m, perr := Parse(frame)
		m.Conn = st.id
		if perr != nil {
			r.errs = append(r.errs, fmt.Errorf("connection %d: %w: %q", st.id, perr, frame))
		} else {
			r.msgs = append(r.msgs, m)
		}
		r.mu.Unlock()
	}
}

// Messages returns what arrived so far, in arrival order.
func (r *Receiver) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// Errors returns framing and parse errors seen so far.
func (r *Receiver) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// Connections returns how many connections were accepted, and how many of
// them the sender closed cleanly.
func (r *Receiver) Connections() (accepted, closedBySender int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nconn, r.closes
}
