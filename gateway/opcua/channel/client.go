package channel

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// ClientConfig is the client side of a secure channel the gateway opens to
// a server. Dial works on a copy with the defaults filled in.
type ClientConfig struct {
	// EndpointURL goes into the Hello.
	EndpointURL string
	PolicyURI   string
	Mode        ua.MessageSecurityMode
	// Certificate and PrivateKey are the gateway's application instance
	// certificate (DER) and key; ServerCertificate is the server's, from
	// its endpoint description, already validated. All three are required
	// unless PolicyURI is None.
	Certificate       []byte
	PrivateKey        *rsa.PrivateKey
	ServerCertificate []byte

	// Lifetime is the token lifetime asked for; default 1 h. The token is
	// renewed at 75 % of the lifetime the server grants.
	Lifetime time.Duration
	// ReceiveBufferSize is the largest chunk accepted (and the send buffer
	// offered); default 65535, at least 8192.
	ReceiveBufferSize uint32
	MaxMessageSize    uint32 // largest response body accepted; default 16 MiB
	MaxChunkCount     uint32 // most chunks in one response; default 512
	// MaxDecodedSize bounds what one response may take decoded, about, in
	// bytes (see Config.MaxDecodedSize); default DefaultMaxDecodedSize.
	MaxDecodedSize int64
	// WriteTimeout bounds writing one message; default 30 s.
	WriteTimeout time.Duration
}

func (cfg *ClientConfig) setDefaults() error {
	if cfg.Lifetime <= 0 {
		cfg.Lifetime = time.Hour
	}
	if cfg.ReceiveBufferSize == 0 {
		cfg.ReceiveBufferSize = defaultBufferSize
	}
	cfg.ReceiveBufferSize = max(cfg.ReceiveBufferSize, minBufferSize)
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = defaultMaxMessageSize
	}
	if cfg.MaxChunkCount == 0 {
		cfg.MaxChunkCount = defaultMaxChunkCount
	}
	if err := defaultDecodedSize(&cfg.MaxDecodedSize); err != nil {
		return err
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if !supportedPolicies[cfg.PolicyURI] {
		return fmt.Errorf("opcua channel: security policy %q is not supported", cfg.PolicyURI)
	}
	if cfg.PolicyURI == ua.SecurityPolicyURINone {
		if cfg.Mode == ua.MessageSecurityModeInvalid {
			cfg.Mode = ua.MessageSecurityModeNone
		}
		if cfg.Mode != ua.MessageSecurityModeNone {
			return fmt.Errorf("opcua channel: mode %s with SecurityPolicy None", cfg.Mode)
		}
		return nil
	}
	if cfg.Mode != ua.MessageSecurityModeSign && cfg.Mode != ua.MessageSecurityModeSignAndEncrypt {
		return fmt.Errorf("opcua channel: mode %s with %s", cfg.Mode, cfg.PolicyURI)
	}
	if len(cfg.Certificate) == 0 || cfg.PrivateKey == nil || len(cfg.ServerCertificate) == 0 {
		return fmt.Errorf("opcua channel: %s needs the gateway's certificate and key and the server's certificate", cfg.PolicyURI)
	}
	return nil
}

// ClientChannel is the client side of one secure channel over one
// connection: Call sends a request and waits for its response; any number
// of calls may be in flight, from any number of goroutines. The token is
// renewed in the background. A channel that fails stays failed: Err says
// why, and every call returns that error.
//
// The channel has no goroutine of its own that reads. A caller waiting for
// its response takes the turn to read and reads until its response is in,
// handing on the responses of other callers as they come; then the turn
// goes to the next caller waiting. A single caller so reads its own answer,
// without a hand-over between goroutines on every call. When nobody has
// waited for idleWatch, a watcher takes the turn and reads what the server
// sends meanwhile (a renewal's response, an ERR, the close), and gives the
// turn up as soon as a caller comes: it sets a passed read deadline, which
// the frameReader survives without losing a byte.
type ClientChannel struct {
	conn net.Conn
	r    *bufio.Reader
	fr   frameReader
	cfg  ClientConfig
	asym *asymmetric // nil under None
	id   uint32

	// received counts the chunks read from the server: whether it
	// answered anything since a moment.
	received atomic.Uint64

	sendChunk     int    // largest chunk we send (ACK.ReceiveBufferSize)
	recvChunk     uint32 // largest chunk we accept
	peerMaxMsg    uint32 // server's MaxMessageSize for requests, 0 = none
	peerMaxChunks uint32 // server's MaxChunkCount for requests, 0 = none
	maxBody       int

	wmu       sync.Mutex // one writer: sequence numbers, request ids, socket writes
	out       seqOut
	w         timedWriter
	lastReqID uint32

	mu       sync.Mutex
	current  *token // newest token; secures what we send once issued
	previous *token // still accepted for responses
	pending  map[uint32]*pendingCall
	renewal  *renewal // the OpenSecureChannel renewal in flight
	renewT   *time.Timer
	err      error
	done     chan struct{} // closed when the channel fails or is closed

	// the turn to read: a token in turn while nobody reads. Whoever holds
	// it owns fr, in and partial.
	turn    chan struct{}
	in      seqIn
	partial map[uint32]*partialMessage

	rmu      sync.Mutex // the read deadline, waiting and watching
	waiting  int        // callers (and a renewal) waiting for a response
	watching bool       // the watcher holds the turn
	idleT    *time.Timer
}

// idleWatch is how long the connection goes unread, when nobody waits
// for a response, before the watcher reads it.
const idleWatch = 10 * time.Millisecond

// renewalTimeout bounds the wait for a renewal's response.
const renewalTimeout = 30 * time.Second

type pendingCall struct {
	ch chan callResult // buffered: whoever reads never waits on it
}

type callResult struct {
	resp any
	err  error
}

type renewal struct {
	reqID uint32
	nonce []byte
	done  chan error // buffered
}

// Dial runs the Hello/Acknowledge exchange and opens a secure channel on
// conn. ctx bounds the handshake. On error conn is closed.
func Dial(ctx context.Context, conn net.Conn, cfg *ClientConfig) (*ClientChannel, error) {
	c := &ClientChannel{
		conn:    conn,
		cfg:     *cfg,
		pending: make(map[uint32]*pendingCall),
		partial: make(map[uint32]*partialMessage),
		done:    make(chan struct{}),
		turn:    make(chan struct{}, 1),
	}
	if err := c.cfg.setDefaults(); err != nil {
		conn.Close()
		return nil, err
	}
	c.r = bufio.NewReaderSize(conn, readBufferSize)
	c.w = timedWriter{conn: conn, timeout: c.cfg.WriteTimeout}
	c.recvChunk = c.cfg.ReceiveBufferSize
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err := c.handshake()
	if !stop() && err == nil {
		err = fmt.Errorf("opcua channel: dial: %w", ctx.Err())
	}
	if err != nil {
		c.fail(err) // closes conn, stops a renewal the handshake armed
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	c.w.deadline = time.Time{} // the next write sets its own
	c.fr = frameReader{r: c.r, limit: c.recvChunk}
	c.mu.Lock()
	c.idleT = time.AfterFunc(idleWatch, c.watch)
	c.mu.Unlock()
	c.turn <- struct{}{}
	return c, nil
}

func (c *ClientChannel) handshake() error {
	hel := &uacp.Hello{
		ReceiveBufSize: c.recvChunk,
		SendBufSize:    c.recvChunk,
		MaxMessageSize: c.cfg.MaxMessageSize,
		MaxChunkCount:  c.cfg.MaxChunkCount,
		EndpointURL:    c.cfg.EndpointURL,
	}
	body, err := hel.Encode()
	if err != nil {
		return err
	}
	b := make([]byte, tcpHeaderLen, tcpHeaderLen+len(body))
	copy(b, "HELF")
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)+len(body)))
	if _, err := c.conn.Write(append(b, body...)); err != nil {
		return fmt.Errorf("opcua channel: Hello: %w", err)
	}
	f, err := readFrame(c.r, minBufferSize)
	if err != nil {
		return fmt.Errorf("opcua channel: Acknowledge: %w", err)
	}
	switch f.typ {
	case uacp.MessageTypeAcknowledge:
	case uacp.MessageTypeError:
		return errFrame(f)
	default:
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "%s%c instead of Acknowledge", f.typ, f.chunk)
	}
	var ack uacp.Acknowledge
	if _, err := ack.Decode(f.b[tcpHeaderLen:]); err != nil {
		return errorf(ua.StatusBadDecodingError, "Acknowledge: %v", err)
	}
	if ack.ReceiveBufSize < minBufferSize || ack.SendBufSize > c.recvChunk {
		return errorf(ua.StatusBadTCPNotEnoughResources, "server buffers %d/%d do not fit ours (%d)", ack.ReceiveBufSize, ack.SendBufSize, c.recvChunk)
	}
	c.sendChunk = int(min(ack.ReceiveBufSize, c.recvChunk))
	c.peerMaxMsg = ack.MaxMessageSize
	c.peerMaxChunks = ack.MaxChunkCount

	if c.cfg.PolicyURI != ua.SecurityPolicyURINone {
		var err error
		if c.asym, _, err = newAsymmetric(c.cfg.PolicyURI, c.cfg.PrivateKey, c.cfg.ServerCertificate, "server"); err != nil {
			return err
		}
	}

	nonce, err := c.nonce()
	if err != nil {
		return err
	}
	reqID, err := c.writeOPN(ua.SecurityTokenRequestTypeIssue, nonce, nil)
	if err != nil {
		return err
	}
	f, err = readFrame(c.r, c.recvChunk)
	if err != nil {
		return fmt.Errorf("opcua channel: OpenSecureChannel response: %w", err)
	}
	switch f.typ {
	case uasc.MessageTypeOpenSecureChannel:
	case uacp.MessageTypeError:
		return errFrame(f)
	default:
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "%s%c instead of the OpenSecureChannel response", f.typ, f.chunk)
	}
	gotID, resp, err := c.readOPN(f)
	if err != nil {
		return err
	}
	if gotID != reqID {
		return errorf(ua.StatusBadSecurityChecksFailed, "OpenSecureChannel response to request %d, sent %d", gotID, reqID)
	}
	tok, err := c.tokenOf(resp, nonce)
	if err != nil {
		return err
	}
	c.id = resp.SecurityToken.ChannelID
	c.maxBody = symMaxBody(c.sendChunk, c.cfg.Mode, tok.sym)
	if c.maxBody <= 0 {
		return errorf(ua.StatusBadTCPNotEnoughResources, "server buffer of %d bytes", c.sendChunk)
	}
	c.current = tok
	c.scheduleRenewal(tok.lifetime)
	return nil
}

// errFrame is the error an ERR message from the server carries.
func errFrame(f *frame) error {
	var e uacp.Error
	if _, err := e.Decode(f.b[tcpHeaderLen:]); err != nil {
		return errorf(ua.StatusBadDecodingError, "ERR message: %v", err)
	}
	return &Error{Code: ua.StatusCode(e.ErrorCode), Reason: "server: " + e.Reason}
}

func (c *ClientChannel) nonce() ([]byte, error) {
	if c.asym == nil {
		return []byte{}, nil
	}
	n := make([]byte, c.asym.algo.NonceLength())
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}

// writeOPN sends an OpenSecureChannel request, secured asymmetrically, and
// returns its request id.
func (c *ClientChannel) writeOPN(typ ua.SecurityTokenRequestType, nonce []byte, r *renewal) (uint32, error) {
	req := &ua.OpenSecureChannelRequest{
		RequestHeader: &ua.RequestHeader{
			AuthenticationToken: ua.NewTwoByteNodeID(0),
			Timestamp:           time.Now(),
			TimeoutHint:         10000,
			AdditionalHeader:    EmptyExtensionObject(),
		},
		RequestType:       typ,
		SecurityMode:      c.cfg.Mode,
		ClientNonce:       nonce,
		RequestedLifetime: uint32(c.cfg.Lifetime / time.Millisecond),
	}
	body, err := encodeService(id.OpenSecureChannelRequest_Encoding_DefaultBinary, req)
	if err != nil {
		return 0, errorf(ua.StatusBadEncodingError, "OpenSecureChannel request: %v", err)
	}
	hdr := &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: c.cfg.PolicyURI}
	if c.asym != nil {
		sum := sha1.Sum(c.cfg.ServerCertificate)
		hdr.SenderCertificate = c.cfg.Certificate
		hdr.ReceiverCertificateThumbprint = sum[:]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	reqID := c.nextReqID()
	if r != nil {
		// registered before the request goes out: whoever reads takes it from here
		r.reqID = reqID
		c.mu.Lock()
		c.renewal = r
		c.mu.Unlock()
	}
	b, err := buildOPN(c.id, hdr, c.out.next(), reqID, body, c.asym)
	if err != nil {
		return 0, err
	}
	if c.sendChunk > 0 && len(b) > c.sendChunk {
		return 0, errorf(ua.StatusBadTCPMessageTooLarge, "OpenSecureChannel request of %d bytes exceeds the server's %d byte buffer", len(b), c.sendChunk)
	}
	return reqID, c.w.write(b)
}

// readOPN checks and decodes an OpenSecureChannel response chunk.
func (c *ClientChannel) readOPN(f *frame) (uint32, *ua.OpenSecureChannelResponse, error) {
	if f.chunk != 'F' {
		return 0, nil, errorf(ua.StatusBadTCPMessageTypeInvalid, "OpenSecureChannel response in chunks")
	}
	sc, err := parseSecure(f)
	if err != nil {
		return 0, nil, err
	}
	if sc.asym.SecurityPolicyURI != c.cfg.PolicyURI {
		return 0, nil, errorf(ua.StatusBadSecurityPolicyRejected, "response with policy %q", sc.asym.SecurityPolicyURI)
	}
	plain := f.b[sc.head:]
	if c.asym != nil {
		if plain, err = c.asym.open(f.b, sc.head); err != nil {
			return 0, nil, err
		}
	}
	if len(plain) < seqHeaderLen {
		return 0, nil, errorf(ua.StatusBadDecodingError, "OpenSecureChannel response without sequence header")
	}
	var sh uasc.SequenceHeader
	sh.Decode(plain)
	if err := c.in.check(sh.SequenceNumber); err != nil {
		return 0, nil, err
	}
	_, svc, err := decodeService(plain[seqHeaderLen:], c.cfg.MaxDecodedSize)
	if err != nil {
		return 0, nil, errorf(ua.StatusBadDecodingError, "OpenSecureChannel response: %v", err)
	}
	switch r := svc.(type) {
	case *ua.OpenSecureChannelResponse:
		if r.ResponseHeader == nil || r.SecurityToken == nil {
			return 0, nil, errorf(ua.StatusBadDecodingError, "OpenSecureChannel response without header or token")
		}
		if sc := r.ResponseHeader.ServiceResult; sc != ua.StatusOK {
			return 0, nil, &Error{Code: sc, Reason: "server refused OpenSecureChannel"}
		}
		return sh.RequestID, r, nil
	case *ua.ServiceFault:
		if r.ResponseHeader != nil {
			return 0, nil, &Error{Code: r.ResponseHeader.ServiceResult, Reason: "server refused OpenSecureChannel"}
		}
	}
	return 0, nil, errorf(ua.StatusBadDecodingError, "OPN message carries %T", svc)
}

// tokenOf is the token an OpenSecureChannel response issues, with keys
// from our nonce and the server's.
func (c *ClientChannel) tokenOf(resp *ua.OpenSecureChannelResponse, nonce []byte) (*token, error) {
	st := resp.SecurityToken
	if c.id != 0 && st.ChannelID != c.id {
		return nil, errorf(ua.StatusBadSecureChannelIDInvalid, "renewal for channel %d on channel %d", st.ChannelID, c.id)
	}
	tok := &token{id: st.TokenID, createdAt: time.Now(), lifetime: time.Duration(st.RevisedLifetime) * time.Millisecond}
	if tok.lifetime <= 0 {
		tok.lifetime = c.cfg.Lifetime
	}
	if c.asym == nil {
		return tok, nil
	}
	if n := c.asym.algo.NonceLength(); len(resp.ServerNonce) != n {
		return nil, errorf(ua.StatusBadNonceInvalid, "server nonce of %d bytes, want %d", len(resp.ServerNonce), n)
	}
	sym, err := uapolicy.Symmetric(c.cfg.PolicyURI, nonce, resp.ServerNonce)
	if err != nil {
		return nil, errorf(ua.StatusBadInternalError, "key derivation: %v", err)
	}
	tok.sym = sym
	return tok, nil
}

// scheduleRenewal renews the token at 75 % of its lifetime.
func (c *ClientChannel) scheduleRenewal(lifetime time.Duration) {
	d := lifetime * 3 / 4
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if c.renewT == nil {
		c.renewT = time.AfterFunc(d, c.renew)
	} else {
		c.renewT.Reset(d)
	}
}

// renew asks for a new token; a channel whose renewal fails is failed.
// Whoever reads installs the new token when the response comes
// (handleOPN); renew waits for it like a call, reading in turn.
func (c *ClientChannel) renew() {
	nonce, err := c.nonce()
	if err != nil {
		c.fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), renewalTimeout)
	defer cancel()
	c.enter()
	defer c.leave()
	r := &renewal{nonce: nonce, done: make(chan error, 1)}
	if _, err := c.writeOPN(ua.SecurityTokenRequestTypeRenew, nonce, r); err != nil {
		c.fail(fmt.Errorf("opcua channel: token renewal: %w", err))
		return
	}
	for {
		select {
		case err := <-r.done:
			if err != nil {
				c.fail(fmt.Errorf("opcua channel: token renewal: %w", err))
			}
			return
		case <-c.turn:
			c.lead(ctx, func() bool { return len(r.done) > 0 })
		case <-ctx.Done():
			c.fail(errorf(ua.StatusBadTimeout, "token renewal unanswered"))
			return
		case <-c.done:
			return
		}
	}
}

// handleOPN installs the token a renewal response issues.
func (c *ClientChannel) handleOPN(f *frame) error {
	reqID, resp, err := c.readOPN(f)
	if err != nil {
		return err
	}
	c.mu.Lock()
	r := c.renewal
	c.mu.Unlock()
	if r == nil || r.reqID != reqID {
		return errorf(ua.StatusBadSecurityChecksFailed, "unrequested OpenSecureChannel response")
	}
	tok, err := c.tokenOf(resp, r.nonce)
	if err != nil {
		r.done <- err
		return err
	}
	c.mu.Lock()
	c.previous, c.current, c.renewal = c.current, tok, nil
	c.mu.Unlock()
	r.done <- nil
	c.scheduleRenewal(tok.lifetime)
	return nil
}

func (c *ClientChannel) nextReqID() uint32 {
	c.lastReqID++
	if c.lastReqID == 0 {
		c.lastReqID = 1
	}
	return c.lastReqID
}

// Call sends req and returns the server's response: the service response,
// or a *ua.ServiceFault. The caller fills in the RequestHeader. An error
// means no response: ctx ended first (ctx.Err()), the request could not be
// sent, or the channel failed.
func (c *ClientChannel) Call(ctx context.Context, req ua.Request) (any, error) {
	typeID := serviceTypeID(req)
	if typeID == 0 {
		return nil, fmt.Errorf("opcua channel: %T is not a registered service", req)
	}
	body, err := encodeService(typeID, req)
	if err != nil {
		return nil, errorf(ua.StatusBadEncodingError, "%T: %v", req, err)
	}
	if c.peerMaxMsg != 0 && uint64(len(body)) > uint64(c.peerMaxMsg) ||
		c.peerMaxChunks != 0 && uint64((len(body)+c.maxBody-1)/c.maxBody) > uint64(c.peerMaxChunks) {
		return nil, errorf(ua.StatusBadRequestTooLarge, "request of %d bytes exceeds the server's limits", len(body))
	}
	p := &pendingCall{ch: make(chan callResult, 1)}
	c.enter()
	defer c.leave()
	reqID, err := c.writeMessage("MSG", body, p)
	if err != nil {
		return nil, err
	}
	for {
		select {
		case r := <-p.ch:
			return r.answer(req)
		case <-c.turn:
			c.lead(ctx, func() bool { return len(p.ch) > 0 })
		case <-ctx.Done():
			c.mu.Lock()
			delete(c.pending, reqID)
			c.mu.Unlock()
			return nil, ctx.Err()
		case <-c.done:
			select {
			case r := <-p.ch:
				return r.answer(req)
			default:
			}
			return nil, c.Err()
		}
	}
}

// answer returns the response to req, which must be req's own response
// type (a ReadResponse to a ReadRequest) or a ServiceFault: a server that
// answers a Publish with a ReadResponse gets Bad_UnknownResponse, not its
// response passed on to a client that asked for something else.
func (r callResult) answer(req ua.Request) (any, error) {
	if r.err != nil {
		return nil, r.err
	}
	if _, ok := r.resp.(*ua.ServiceFault); ok {
		return r.resp, nil
	}
	q, s := reflect.TypeOf(req), reflect.TypeOf(r.resp)
	if s != nil && q.Kind() == reflect.Pointer && s.Kind() == reflect.Pointer {
		service, isReq := strings.CutSuffix(q.Elem().Name(), "Request")
		answered, isResp := strings.CutSuffix(s.Elem().Name(), "Response")
		if isReq && isResp && service == answered {
			return r.resp, nil
		}
	}
	return nil, errorf(ua.StatusBadUnknownResponse, "%T answered with %T", req, r.resp)
}

// enter counts a caller that is about to wait for a response and takes the
// turn back from the watcher.
func (c *ClientChannel) enter() {
	c.rmu.Lock()
	c.waiting++
	if c.watching {
		c.conn.SetReadDeadline(time.Unix(1, 0))
	}
	c.rmu.Unlock()
}

// leave ends enter; the last caller to leave lets the watcher come after
// idleWatch.
func (c *ClientChannel) leave() {
	c.rmu.Lock()
	c.waiting--
	idle := c.waiting == 0
	c.rmu.Unlock()
	if idle {
		c.mu.Lock()
		if c.err == nil {
			c.idleT.Reset(idleWatch)
		}
		c.mu.Unlock()
	}
}

// interrupt makes the read in progress, if any, return with a passed
// deadline, so that its reader looks again at why it reads.
func (c *ClientChannel) interrupt() {
	c.rmu.Lock()
	c.conn.SetReadDeadline(time.Unix(1, 0))
	c.rmu.Unlock()
}

// interrupted clears the deadline an interrupt set.
func (c *ClientChannel) interrupted() {
	c.rmu.Lock()
	c.conn.SetReadDeadline(time.Time{})
	c.rmu.Unlock()
}

// lead reads, holding the turn, until have says the awaited response is
// in, ctx ends or the channel fails; then it hands the turn back.
func (c *ClientChannel) lead(ctx context.Context, have func() bool) {
	defer func() { c.turn <- struct{}{} }()
	if ctx.Err() != nil {
		return
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, c.interrupt)
		defer stop()
	}
	for !have() {
		err := c.readOne()
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			c.interrupted()
			if ctx.Err() != nil {
				return
			}
		default:
			c.readFailed(err)
			return
		}
	}
}

// watch reads while no caller waits, from idleWatch after the last one
// left until the next one comes.
func (c *ClientChannel) watch() {
	select {
	case <-c.turn:
	default:
		return // a caller reads
	}
	c.rmu.Lock()
	if c.waiting > 0 {
		c.rmu.Unlock()
		c.turn <- struct{}{}
		return
	}
	c.watching = true
	c.rmu.Unlock()
	for {
		err := c.readOne()
		if err == nil {
			continue
		}
		c.rmu.Lock()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.conn.SetReadDeadline(time.Time{})
			if c.waiting == 0 {
				c.rmu.Unlock()
				continue
			}
		}
		c.watching = false
		c.rmu.Unlock()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			c.readFailed(err)
		}
		c.turn <- struct{}{}
		return
	}
}

// writeMessage sends body as chunks of type typ (MSG, CLO) under the
// writer lock, registering p for the response before the first byte goes
// out, and returns the request id.
func (c *ClientChannel) writeMessage(typ string, body []byte, p *pendingCall) (uint32, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return 0, err
	}
	tok := c.current
	reqID := c.nextReqID()
	if p != nil {
		c.pending[reqID] = p
	}
	c.mu.Unlock()
	for {
		n, chunkType := splitChunk(body, c.maxBody)
		b, err := buildSym(typ, chunkType, c.id, tok, c.out.next(), reqID, body[:n], c.sendChunk, c.cfg.Mode)
		if err == nil {
			err = c.w.write(b)
		}
		if err != nil {
			// a partly written message breaks the framing for good
			err = fmt.Errorf("opcua channel: write: %w", err)
			c.fail(err)
			return 0, err
		}
		body = body[n:]
		if len(body) == 0 {
			return reqID, nil
		}
	}
}

// readFailed fails the channel with the error a read ended with.
func (c *ClientChannel) readFailed(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = errorf(ua.StatusBadConnectionClosed, "the server closed the connection")
	}
	c.fail(err)
}

// readOne reads and handles one chunk. A passed read deadline comes back
// as os.ErrDeadlineExceeded with nothing lost.
func (c *ClientChannel) readOne() error {
	f, err := c.fr.next()
	if err != nil {
		return err
	}
	c.received.Add(1)
	switch f.typ {
	case uasc.MessageTypeMessage:
	case uasc.MessageTypeOpenSecureChannel:
		return c.handleOPN(f)
	case uacp.MessageTypeError:
		return errFrame(f)
	default:
		return errorf(ua.StatusBadTCPMessageTypeInvalid, "message type %q", f.typ)
	}
	sc, err := parseSecure(f)
	if err != nil {
		return err
	}
	if sc.channelID != c.id {
		return errorf(ua.StatusBadTCPSecureChannelUnknown, "secure channel id %d", sc.channelID)
	}
	c.mu.Lock()
	tok := c.current
	if tok.id != sc.tokenID && c.previous != nil && c.previous.id == sc.tokenID {
		tok = c.previous
	}
	c.mu.Unlock()
	if tok.id != sc.tokenID {
		return errorf(ua.StatusBadSecureChannelTokenUnknown, "token %d", sc.tokenID)
	}
	plain, err := openSym(f.b, c.cfg.Mode, tok.sym)
	if err != nil {
		return err
	}
	if len(plain) < seqHeaderLen {
		return errorf(ua.StatusBadDecodingError, "chunk without sequence header")
	}
	var sh uasc.SequenceHeader
	sh.Decode(plain)
	if err := c.in.check(sh.SequenceNumber); err != nil {
		return err
	}
	body := plain[seqHeaderLen:]
	switch f.chunk {
	case 'A':
		delete(c.partial, sh.RequestID)
		c.deliver(sh.RequestID, callResult{err: errorf(ua.StatusBadCommunicationError, "the server aborted its response")})
		return nil
	case 'C':
		return c.addPartial(sh.RequestID, body)
	}
	if p := c.partial[sh.RequestID]; p != nil {
		if err := c.addPartial(sh.RequestID, body); err != nil {
			return err
		}
		delete(c.partial, sh.RequestID)
		if p.dropped {
			return nil
		}
		body = p.body
	} else if uint32(len(body)) > c.cfg.MaxMessageSize {
		c.deliver(sh.RequestID, callResult{err: errorf(ua.StatusBadResponseTooLarge, "response of %d bytes exceeds %d", len(body), c.cfg.MaxMessageSize)})
		return nil
	}
	_, svc, err := decodeService(body, c.cfg.MaxDecodedSize)
	if err != nil {
		code := ua.StatusBadDecodingError
		if StatusOf(err) == ua.StatusBadEncodingLimitsExceeded { // too deep, too large decoded
			code = ua.StatusBadEncodingLimitsExceeded
		}
		c.deliver(sh.RequestID, callResult{err: errorf(code, "response: %v", err)})
		return nil
	}
	c.deliver(sh.RequestID, callResult{resp: svc})
	return nil
}

// addPartial adds one chunk of a response in chunks. A response that goes
// over our MaxChunkCount or MaxMessageSize (which the server was told in the
// Hello, and should have answered Bad_ResponseTooLarge itself) fails its
// call with Bad_ResponseTooLarge; the rest of its chunks are read and
// dropped, and the channel goes on.
func (c *ClientChannel) addPartial(reqID uint32, body []byte) error {
	p := c.partial[reqID]
	if p == nil {
		if len(c.partial) >= 64 {
			return errorf(ua.StatusBadTCPMessageTooLarge, "more than 64 responses in chunks at once")
		}
		p = &partialMessage{}
		c.partial[reqID] = p
	}
	if p.dropped {
		return nil
	}
	p.chunks++
	p.body = append(p.body, body...)
	var err error
	switch {
	case p.chunks > c.cfg.MaxChunkCount:
		err = errorf(ua.StatusBadResponseTooLarge, "response of more than %d chunks", c.cfg.MaxChunkCount)
	case uint32(len(p.body)) > c.cfg.MaxMessageSize:
		err = errorf(ua.StatusBadResponseTooLarge, "response of more than %d bytes", c.cfg.MaxMessageSize)
	}
	if err != nil {
		p.dropped, p.body = true, nil
		c.deliver(reqID, callResult{err: err})
	}
	return nil
}

func (c *ClientChannel) deliver(reqID uint32, r callResult) {
	c.mu.Lock()
	p := c.pending[reqID]
	delete(c.pending, reqID)
	c.mu.Unlock()
	if p != nil {
		p.ch <- r
	}
}

// fail ends the channel with err (the first error wins) and closes the
// connection; calls in flight return err.
func (c *ClientChannel) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.renewT != nil {
		c.renewT.Stop()
	}
	if c.idleT != nil {
		c.idleT.Stop()
	}
	c.pending = map[uint32]*pendingCall{}
	close(c.done)
	c.mu.Unlock()
	c.conn.Close()
}

// Err is why the channel ended, or nil while it is open.
func (c *ClientChannel) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// TokenID is the id of the channel's newest security token: 1 after the
// open, one more with every renewal.
func (c *ClientChannel) TokenID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current.id
}

// Received is the number of chunks read from the server so far: a caller
// that sees it unchanged over a time knows the server sent nothing in it.
func (c *ClientChannel) Received() uint64 { return c.received.Load() }

// Done is closed when the channel has ended.
func (c *ClientChannel) Done() <-chan struct{} { return c.done }

// ErrClosed is the error of calls on a channel Close ended.
var ErrClosed = errors.New("opcua channel: closed")

// Close sends CloseSecureChannel and closes the connection.
func (c *ClientChannel) Close() error {
	if c.Err() == nil {
		req := &ua.CloseSecureChannelRequest{RequestHeader: &ua.RequestHeader{
			AuthenticationToken: ua.NewTwoByteNodeID(0),
			Timestamp:           time.Now(),
			AdditionalHeader:    EmptyExtensionObject(),
		}}
		if body, err := encodeService(id.CloseSecureChannelRequest_Encoding_DefaultBinary, req); err == nil {
			c.writeMessage("CLO", body, nil)
		}
	}
	c.fail(ErrClosed)
	return nil
}
