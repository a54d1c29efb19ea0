package channel

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
)

// Request is one decoded service request.
type Request struct {
	ID     uint32             // request id of the message, to answer with Send
	Handle uint32             // RequestHeader.RequestHandle
	Body   ua.Request         // ReadRequest, CreateSessionRequest, ...
	TypeID *ua.ExpandedNodeID // the request's binary encoding id
}

// Channel is the server side of one OPC UA secure channel over one
// connection. Next reads it, one goroutine at a time; Send, SendFault and
// Close may be called from any number of goroutines.
type Channel struct {
	conn net.Conn
	r    *bufio.Reader // conn's reads: a request's header and body in one syscall
	cfg  Config
	id   uint32

	// negotiated with the Hello
	recvChunk     uint32 // largest chunk we accept (ACK.ReceiveBufferSize)
	sendChunk     int    // largest chunk we send (ACK.SendBufferSize)
	peerMaxMsg    uint32 // client's MaxMessageSize for responses, 0 = none
	peerMaxChunks uint32 // client's MaxChunkCount for responses, 0 = none

	// fixed by the first OpenSecureChannel
	policy        string
	mode          ua.MessageSecurityMode
	asym          *asymmetric // nil under None
	discoveryOnly bool        // a None channel for discovery services only (Config.DiscoveryOverNone)
	remoteCert    []byte
	remoteThumb   []byte
	localThumb    []byte
	maxBody       int // largest body per sent chunk

	// the goroutine whose turn it is to read (Next), under rmu
	rmu          sync.Mutex
	readStarted  bool
	readDeadline time.Time // last set on conn
	in           seqIn
	partial      map[uint32]*partialRequest
	partChunks   uint32 // chunks held in partial
	partBytes    uint32 // bytes held in partial (and taken from Config.PartialBudget)

	sessionActive atomic.Bool // SessionActivated was called

	mu          sync.Mutex // guards the tokens
	current     *token     // newest token issued
	previous    *token     // the one before: still accepted until the client uses current
	sendTok     *token     // token responses are secured with
	nextTokenID uint32

	wmu sync.Mutex // one writer: sequence numbers and socket writes
	out seqOut
	w   timedWriter

	reading   atomic.Bool // a reader owns readDone (claimRead)
	closing   chan struct{}
	readDone  chan struct{}
	readErr   error
	closeOnce sync.Once
}

// partialRequest is a request whose final chunk has not come yet: its
// chunks' bodies as they came.
type partialRequest struct {
	parts [][]byte
	size  uint32 // their bytes together
}

// join is the parts in one body of the size needed.
func (p *partialRequest) join() []byte {
	b := make([]byte, 0, p.size)
	for _, part := range p.parts {
		b = append(b, part...)
	}
	return b
}

// partialMessage is a response in chunks (ClientChannel).
type partialMessage struct {
	chunks uint32
	body   []byte
	// dropped: the message went over a limit and its caller has been
	// answered; its remaining chunks are read and thrown away (client side)
	dropped bool
}

// Accept runs the Hello/Acknowledge exchange and the first
// OpenSecureChannel on conn and returns the open channel. On error the
// client has been answered with an ERR message (when it could be), conn is
// closed, and the error carries the status code (StatusOf).
func Accept(ctx context.Context, conn net.Conn, cfg *Config) (*Channel, error) {
	if cfg == nil {
		conn.Close()
		return nil, errors.New("opcua channel: no config")
	}
	c := &Channel{
		conn:        conn,
		r:           bufio.NewReaderSize(conn, readBufferSize),
		cfg:         *cfg,
		nextTokenID: 1,
		partial:     make(map[uint32]*partialRequest),
		closing:     make(chan struct{}),
		readDone:    make(chan struct{}),
	}
	if err := c.cfg.checkAndSetDefaults(); err != nil {
		conn.Close()
		return nil, err
	}
	c.w = timedWriter{conn: conn, timeout: c.cfg.WriteTimeout}
	if len(c.cfg.Certificate) > 0 {
		sum := sha1.Sum(c.cfg.Certificate)
		c.localThumb = sum[:]
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	err := c.handshake(ctx)
	if !stop() {
		// ctx ended during the handshake; its deadline may hit the socket at any time
		err = errorf(ua.StatusBadTimeout, "accept cancelled: %v", ctx.Err())
	}
	if err != nil {
		c.abort(err)
		close(c.readDone)
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	return c, nil // reading starts with Next
}

// handshakeDeadline gives the next handshake read HelloTimeout, unless ctx
// has ended: Accept's cancellation may have set its past deadline just
// before, and this one must not undo it (ctx reports the end before that
// deadline is set, so checking after setting is enough).
func (c *Channel) handshakeDeadline(ctx context.Context) {
	c.conn.SetReadDeadline(time.Now().Add(c.cfg.HelloTimeout))
	if ctx.Err() != nil {
		c.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// handshake reads the Hello, answers the Acknowledge and opens the channel
// with the first OpenSecureChannel request.
func (c *Channel) handshake(ctx context.Context) error {
	c.handshakeDeadline(ctx)
	f, err := readFrame(c.r, min(c.cfg.ReceiveBufferSize, minBufferSize))
	if err != nil {
		if errors.Is(err, errPeerClosed) {
			return errorf(ua.StatusBadTCPInternalError, "closed before Hello")
		}
		return err
	}
	if f.typ != uacp.MessageTypeHello || f.chunk != 'F' {
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "%s%c before Hello", f.typ, f.chunk)
	}
	var hel uacp.Hello
	if _, err := hel.Decode(f.b[tcpHeaderLen:]); err != nil {
		return errorf(ua.StatusBadDecodingError, "Hello: %v", err)
	}
	if len(hel.EndpointURL) > maxEndpointURL {
		return errorf(ua.StatusBadTCPEndpointURLInvalid, "endpoint URL of %d bytes", len(hel.EndpointURL))
	}
	if hel.ReceiveBufSize < minBufferSize || hel.SendBufSize < minBufferSize {
		return errorf(ua.StatusBadTCPNotEnoughResources, "client buffers %d/%d are below %d bytes", hel.ReceiveBufSize, hel.SendBufSize, minBufferSize)
	}
	ack := &uacp.Acknowledge{
		Version:        0,
		ReceiveBufSize: min(c.cfg.ReceiveBufferSize, hel.SendBufSize),
		SendBufSize:    min(c.cfg.SendBufferSize, hel.ReceiveBufSize),
		MaxMessageSize: c.cfg.MaxMessageSize,
		MaxChunkCount:  c.cfg.MaxChunkCount,
	}
	c.recvChunk = ack.ReceiveBufSize
	c.sendChunk = int(ack.SendBufSize)
	c.peerMaxMsg = hel.MaxMessageSize
	c.peerMaxChunks = hel.MaxChunkCount
	body, _ := ack.Encode()
	b := make([]byte, tcpHeaderLen, tcpHeaderLen+len(body))
	copy(b, "ACKF")
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)+len(body)))
	if err := c.write(append(b, body...)); err != nil {
		return err
	}

	c.handshakeDeadline(ctx)
	f, err = readFrame(c.r, c.recvChunk)
	if err != nil {
		if errors.Is(err, errPeerClosed) {
			return io.EOF
		}
		return err
	}
	if f.typ != "OPN" {
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "%s%c before OpenSecureChannel", f.typ, f.chunk)
	}
	return c.handleOPN(f, true)
}

// nonzeroRandom is a channel id that is unlikely to repeat across restarts.
func nonzeroRandom() uint32 {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		if v := binary.LittleEndian.Uint32(b[:]); v != 0 {
			return v
		}
	}
}

// write writes b as one unit; wmu must not be held.
func (c *Channel) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.writeLocked(b)
}

// writeLocked writes b within WriteTimeout; wmu must be held.
func (c *Channel) writeLocked(b []byte) error { return c.w.write(b) }

// abort answers err with an ERR message when it carries a status code,
// lets the client read it, and closes the socket.
func (c *Channel) abort(err error) {
	var e *Error
	if errors.As(err, &e) && e.Code != ua.StatusOK {
		reason := e.Reason
		if e.Code == ua.StatusBadSecurityChecksFailed || e.private {
			reason = "" // Part 6 §6.7.3: tell nothing about which check failed
		}
		c.wmu.Lock()
		c.w.deadline = time.Now().Add(time.Second)
		c.conn.SetWriteDeadline(c.w.deadline)
		_, werr := c.conn.Write(encodeERR(e.Code, reason))
		c.wmu.Unlock()
		if werr == nil {
			linger(c.conn)
		}
	}
	c.closeConn()
}

// linger half-closes the socket and discards what the client still sends
// for a moment, so that the ERR message is not lost to a TCP reset.
func linger(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	io.CopyN(io.Discard, conn, 1<<20)
}

func (c *Channel) closeConn() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.conn.Close()
	})
}

// claimRead reports whether the caller is the first to read the channel
// (Next) or to close it unread: the one that owns readDone.
func (c *Channel) claimRead() bool { return c.reading.CompareAndSwap(false, true) }

// Next reads the channel until one service request is complete and returns
// it. Renewals, aborted messages, requests that do not decode (answered
// with a ServiceFault) and CloseSecureChannel are handled on the way. One
// goroutine at a time may read, but any goroutine may take the next turn,
// so that the one that read a request can answer it while another reads on.
//
// Next returns io.EOF when the client closed the channel (CloseSecureChannel
// or end of connection) or Close was called, and an error carrying a status
// code when the channel was closed for a protocol or security violation.
// After an error the channel is closed and every later call returns the
// same error. Close waits for the reading to end, so whoever holds the turn
// must call Next until it fails.
func (c *Channel) Next() (*Request, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	switch {
	case c.readErr != nil:
		return nil, c.readErr
	case !c.readStarted:
		if !c.claimRead() { // closed before the first read
			c.readErr = io.EOF
			return nil, c.readErr
		}
		c.readStarted = true
	}
	req, err := c.readRequest()
	if err == nil {
		return req, nil
	}
	select {
	case <-c.closing: // closed locally
		err = io.EOF
	default:
	}
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	c.readErr = err
	c.dropPartials()
	if err != io.EOF || !c.cfg.OpenAtEOF {
		c.abort(err)
	}
	close(c.readDone)
	return nil, err
}

// Serve calls Next on the calling goroutine until the channel ends and
// passes every request to handle, which runs on the reading goroutine: it
// must hand the request on and return, since the channel reads nothing
// (renewals included) while it runs. It returns Next's error.
func (c *Channel) Serve(handle func(*Request)) error {
	for {
		req, err := c.Next()
		if err != nil {
			return err
		}
		handle(req)
	}
}

// Close closes the channel and its socket and waits for its reader to end;
// it is idempotent. Do not call it while holding the turn to read (from a
// Serve handler, or between Next calls of the goroutine that reads next).
func (c *Channel) Close() error {
	c.closeConn()
	if c.claimRead() {
		close(c.readDone) // never read
	}
	<-c.readDone
	return nil
}

// ID is the SecureChannelId.
func (c *Channel) ID() uint32 { return c.id }

// SecurityPolicyURI is the channel's security policy.
func (c *Channel) SecurityPolicyURI() string { return c.policy }

// SecurityMode is the channel's message security mode.
func (c *Channel) SecurityMode() ua.MessageSecurityMode { return c.mode }

// RemoteCertificate is the client application certificate (DER, as sent,
// possibly with its chain); nil under SecurityPolicy None.
func (c *Channel) RemoteCertificate() []byte { return c.remoteCert }

// LocalCertificate is the gateway certificate the channel was opened with;
// nil under SecurityPolicy None.
func (c *Channel) LocalCertificate() []byte {
	if c.policy == ua.SecurityPolicyURINone {
		return nil
	}
	return c.cfg.Certificate
}

// DiscoveryOnly reports a SecurityPolicy None channel accepted only for the
// discovery services (Config.DiscoveryOverNone); Next returns nothing
// else from it.
func (c *Channel) DiscoveryOnly() bool { return c.discoveryOnly }

// RemoteAddr is the client's network address.
func (c *Channel) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }
