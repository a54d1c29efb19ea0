package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// readRequest reads chunks until one service request is complete. Renewals,
// aborted messages and requests that do not decode (answered with a
// ServiceFault) are handled here; CloseSecureChannel ends with io.EOF.
func (c *Channel) readRequest() (*Request, error) {
	for {
		c.mu.Lock()
		deadline := c.current.expiresAt()
		c.mu.Unlock()
		if !deadline.Equal(c.readDeadline) { // it changes with renewals only
			c.readDeadline = deadline
			c.conn.SetReadDeadline(deadline)
		}
		f, err := readFrame(c.r, c.recvChunk)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Code == ua.StatusBadTimeout {
				return nil, ErrTokenExpired
			}
			return nil, err
		}
		switch f.typ {
		case uasc.MessageTypeOpenSecureChannel:
			if err := c.handleOPN(f, false); err != nil {
				return nil, err
			}
			continue
		case uasc.MessageTypeMessage, uasc.MessageTypeCloseSecureChannel:
		default:
			return nil, errorf(ua.StatusBadTCPMessageTypeInvalid, "message type %q", f.typ)
		}
		sc, err := parseSecure(f)
		if err != nil {
			return nil, err
		}
		if sc.channelID != c.id {
			return nil, errorf(ua.StatusBadTCPSecureChannelUnknown, "secure channel id %d", sc.channelID)
		}
		tok, err := c.receiveToken(sc.tokenID)
		if err != nil {
			return nil, err
		}
		plain, err := openSym(f.b, c.mode, tok.sym)
		if err != nil {
			return nil, err
		}
		c.tokenUsed(tok)
		if len(plain) < seqHeaderLen {
			return nil, errorf(ua.StatusBadDecodingError, "chunk without sequence header")
		}
		var sh uasc.SequenceHeader
		sh.Decode(plain)
		if err := c.in.check(sh.SequenceNumber); err != nil {
			return nil, err
		}
		body := plain[seqHeaderLen:]

		if f.typ == uasc.MessageTypeCloseSecureChannel {
			return nil, errPeerClosed
		}
		switch f.chunk {
		case 'A': // Part 6 §6.7.3: drop the message, keep the channel
			c.dropPartial(sh.RequestID)
			continue
		case 'C':
			if err := c.addPartial(sh.RequestID, body); err != nil {
				return nil, err
			}
			continue
		}
		if p := c.partial[sh.RequestID]; p != nil {
			if err := c.addPartial(sh.RequestID, body); err != nil {
				return nil, err
			}
			body = p.join()
			c.dropPartial(sh.RequestID)
		} else if max, when := c.maxRequest(); uint32(len(body)) > max {
			return nil, errorf(ua.StatusBadRequestTooLarge, "request of %d bytes exceeds %d%s", len(body), max, when)
		}
		req, err := c.decodeRequest(sh.RequestID, body)
		if err != nil {
			return nil, err
		}
		if req != nil {
			return req, nil
		}
	}
}

// receiveToken finds the token a chunk is secured with.
func (c *Channel) receiveToken(tokenID uint32) (*token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	switch {
	case tokenID == c.current.id:
		if now.After(c.current.expiresAt()) {
			return nil, errorf(ua.StatusBadSecureChannelTokenUnknown, "token %d expired", tokenID)
		}
		return c.current, nil
	case c.previous != nil && tokenID == c.previous.id:
		if now.After(c.previous.expiresAt()) {
			return nil, errorf(ua.StatusBadSecureChannelTokenUnknown, "token %d expired", tokenID)
		}
		return c.previous, nil
	}
	return nil, errorf(ua.StatusBadSecureChannelTokenUnknown, "token %d", tokenID)
}

// tokenUsed records that a verified chunk used tok: the first use of a
// renewed token retires the previous one and makes the new one secure what
// the gateway sends.
func (c *Channel) tokenUsed(tok *token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok == c.current && c.sendTok != tok {
		c.previous, c.sendTok = nil, tok
	}
}

// addPartial adds a chunk of a request in chunks. All incomplete messages
// of the channel together are held to MaxChunkCount chunks and the size
// maxRequest allows, and those of all channels sharing the PartialBudget
// to its size. The chunk is kept as it came; join copies the parts once,
// into a body of the size needed, when the message is complete.
func (c *Channel) addPartial(reqID uint32, body []byte) error {
	n := uint32(len(body))
	if c.partChunks >= c.cfg.MaxChunkCount {
		return errorf(ua.StatusBadRequestTooLarge, "more than %d chunks", c.cfg.MaxChunkCount)
	}
	if max, when := c.maxRequest(); uint64(c.partBytes)+uint64(n) > uint64(max) {
		return errorf(ua.StatusBadRequestTooLarge, "request larger than %d bytes%s", max, when)
	}
	if !c.cfg.PartialBudget.take(int64(n)) {
		b := c.cfg.PartialBudget
		return errorf(ua.StatusBadTCPNotEnoughResources, "the listener's connections would hold more than %s in incomplete requests (max partial bytes; %d held)", sizeText(b.Max()), b.Used())
	}
	c.partChunks++
	c.partBytes += n
	p := c.partial[reqID]
	if p == nil {
		p = &partialRequest{}
		c.partial[reqID] = p
	}
	p.parts = append(p.parts, body)
	p.size += n
	return nil
}

// dropPartial forgets an incomplete (or just completed) message and returns
// its bytes to the budget.
func (c *Channel) dropPartial(reqID uint32) {
	if p := c.partial[reqID]; p != nil {
		c.partChunks -= uint32(len(p.parts))
		c.partBytes -= p.size
		c.cfg.PartialBudget.give(int64(p.size))
		delete(c.partial, reqID)
	}
}

// dropPartials forgets every incomplete message: the channel has ended.
func (c *Channel) dropPartials() {
	for id := range c.partial {
		c.dropPartial(id)
	}
}

// maxRequest is the largest request body the channel accepts now, and the
// words that say why when it is the limit before a session.
func (c *Channel) maxRequest() (uint32, string) {
	if m := c.cfg.MaxMessageSizeBeforeSession; m != 0 && m < c.cfg.MaxMessageSize && !c.sessionActive.Load() {
		return m, " before a session is active on the channel"
	}
	return c.cfg.MaxMessageSize, ""
}

// SessionActivated lifts MaxMessageSizeBeforeSession for the rest of the
// channel's life: its owner calls it when a session has been activated on
// the channel, before answering the ActivateSession.
func (c *Channel) SessionActivated() { c.sessionActive.Store(true) }

// decodeRequest decodes a complete request body. A body that does not decode
// is answered with a ServiceFault and yields (nil, nil): the channel goes on.
func (c *Channel) decodeRequest(reqID uint32, body []byte) (*Request, error) {
	typeID, svc, err := decodeService(body, c.cfg.MaxDecodedSize)
	var code ua.StatusCode
	switch {
	case err != nil && errors.Is(err, ua.StatusBadServiceUnsupported):
		code = ua.StatusBadServiceUnsupported
	case err != nil:
		code = statusOr(err, ua.StatusBadDecodingError)
		if code != ua.StatusBadEncodingLimitsExceeded && code != ua.StatusBadNodeIDInvalid {
			code = ua.StatusBadDecodingError
		}
	}
	req, ok := svc.(ua.Request)
	if code == ua.StatusOK {
		switch svc.(type) {
		case *ua.OpenSecureChannelRequest, *ua.CloseSecureChannelRequest:
			ok = false
		}
		if !ok || req.Header() == nil {
			code = ua.StatusBadServiceUnsupported
			err = fmt.Errorf("%T is not a service request the channel passes on", svc)
		}
	}
	if code == ua.StatusOK && c.discoveryOnly {
		switch svc.(type) {
		case *ua.GetEndpointsRequest, *ua.FindServersRequest, *ua.FindServersOnNetworkRequest:
		default:
			code = ua.StatusBadSecurityPolicyRejected
			err = fmt.Errorf("%T on a discovery-only None channel", svc)
		}
	}
	if code != ua.StatusOK {
		handle := requestHandle(body)
		if c.cfg.Refused != nil {
			var tid ua.ExpandedNodeID
			var n uint32
			if _, err := tid.Decode(body); err == nil && tid.NodeID != nil {
				n = tid.NodeID.IntID()
			}
			c.cfg.Refused(handle, n, requestToken(body), code, err)
		}
		if err := c.SendFault(reqID, handle, code); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return &Request{ID: reqID, Handle: req.Header().RequestHandle, Body: req, TypeID: typeID}, nil
}

// requestHandle reads the RequestHandle of a request body that did not
// decode as a whole; 0 when even the start of its RequestHeader does not
// decode. It reads no further than the handle: the rest of the header (an
// ExtensionObject) is what a hostile body may use to make gopcua's decoder
// allocate without bound.
func requestHandle(body []byte) uint32 {
	var tid ua.ExpandedNodeID
	n, err := tid.Decode(body)
	if err != nil {
		return 0
	}
	var token ua.NodeID // AuthenticationToken
	m, err := token.Decode(body[n:])
	if err != nil {
		return 0
	}
	at := n + m + 8 // then the Timestamp
	if len(body) < at+4 {
		return 0
	}
	return binary.LittleEndian.Uint32(body[at:])
}

// requestToken reads the AuthenticationToken of a request body that did not
// decode as a whole, as requestHandle reads the handle; nil when it does not
// decode.
func requestToken(body []byte) *ua.NodeID {
	var tid ua.ExpandedNodeID
	n, err := tid.Decode(body)
	if err != nil {
		return nil
	}
	token := new(ua.NodeID)
	if _, err := token.Decode(body[n:]); err != nil {
		return nil
	}
	return token
}

// decodeService is ua.DecodeService behind the limits check of the body
// (decoded, it may take at most maxDecoded bytes), with a recover: a codec
// panic answers one request, it does not end the process.
func decodeService(body []byte, maxDecoded int64) (typeID *ua.ExpandedNodeID, svc any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errorf(ua.StatusBadDecodingError, "decoder panic: %v", r)
		}
	}()
	if typeID, svc, ok, err := decodeRead(body, maxDecoded); ok {
		return typeID, svc, err // checked part by part as it decodes
	}
	opaque, err := scanMessage(body, maxDecoded)
	if err != nil {
		return nil, nil, err
	}
	if typeID, svc, err = ua.DecodeService(body); err != nil {
		return nil, nil, err
	}
	if err := fillOpaque(svc, opaque); err != nil {
		return nil, nil, err
	}
	return typeID, svc, nil
}

// DecodeRequest decodes a service request body (its binary encoding id and
// the request) as the channel decodes what a client sends: scanned first,
// so that a body claiming 2^31 elements is an error and not an allocation,
// and refused when it would take more than maxDecoded bytes decoded
// (DefaultMaxDecodedSize when 0). For tools and tests that must decode
// bodies from anywhere.
func DecodeRequest(body []byte, maxDecoded int64) (ua.Request, error) {
	if maxDecoded <= 0 {
		maxDecoded = DefaultMaxDecodedSize
	}
	_, v, err := decodeService(body, maxDecoded)
	if err != nil {
		return nil, err
	}
	req, ok := v.(ua.Request)
	if !ok || req.Header() == nil {
		return nil, errorf(ua.StatusBadDecodingError, "%T is not a request", v)
	}
	return req, nil
}

// encodeService is the binary encoding id followed by the encoded service.
// gopcua's encoder panics on values it cannot write (an ExtensionObject
// left without its value, a nil pointer in a built message); what the
// channel decodes does not hold them (opaque.go), but a panic here is an
// error all the same (Bad_EncodingError).
func encodeService(typeID uint16, v any) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, errorf(ua.StatusBadEncodingError, "encoder panic: %v", r)
		}
	}()
	if b, ok, err := encodeRead(typeID, v); ok {
		return b, err
	}
	tid, err := ua.NewFourByteExpandedNodeID(0, typeID).Encode()
	if err != nil {
		return nil, err
	}
	b, err := ua.Encode(v)
	if err != nil {
		return nil, err
	}
	return append(tid, b...), nil
}

// typeIDs caches the service type ids: ua.ServiceTypeID parses the id's
// text under the registry's global lock on every call, which the sessions of
// a busy gateway queue on.
var typeIDs sync.Map // reflect.Type → uint16

// serviceTypeID is ua.ServiceTypeID, remembered per type; 0 for a type that
// is not a registered service.
func serviceTypeID(v any) uint16 {
	t := reflect.TypeOf(v)
	if id, ok := typeIDs.Load(t); ok {
		return id.(uint16)
	}
	id := ua.ServiceTypeID(v)
	if id != 0 {
		typeIDs.Store(t, id)
	}
	return id
}

// EmptyExtensionObject is ua.NewExtensionObject(nil), the AdditionalHeader
// of every request and response, without its registry look-up.
func EmptyExtensionObject() *ua.ExtensionObject {
	return &ua.ExtensionObject{TypeID: ua.NewTwoByteExpandedNodeID(0), EncodingMask: ua.ExtensionObjectEmpty}
}

func responseHeader(handle uint32, code ua.StatusCode) *ua.ResponseHeader {
	return &ua.ResponseHeader{
		Timestamp:          time.Now(),
		RequestHandle:      handle,
		ServiceResult:      code,
		ServiceDiagnostics: &ua.DiagnosticInfo{},
		AdditionalHeader:   EmptyExtensionObject(),
	}
}

// Send answers request reqID with resp, split into chunks within the
// client's buffer size. A response larger than the client's MaxMessageSize
// or MaxChunkCount is replaced by a ServiceFault with Bad_ResponseTooLarge,
// and one the encoder cannot write by a ServiceFault with Bad_EncodingError
// (Send then returns an error with that code, the fault sent).
// Missing ResponseHeader parts (header, timestamp, diagnostics, additional
// header) are filled in on resp. Safe for concurrent use.
func (c *Channel) Send(reqID uint32, resp ua.Response) error {
	if resp == nil {
		return errors.New("opcua channel: nil response")
	}
	typeID := serviceTypeID(resp)
	if typeID == 0 {
		return fmt.Errorf("opcua channel: %T is not a registered service", resp)
	}
	h := resp.Header()
	if h == nil {
		h = responseHeader(0, ua.StatusOK)
		resp.SetHeader(h)
	}
	if h.Timestamp.IsZero() {
		h.Timestamp = time.Now()
	}
	if h.ServiceDiagnostics == nil {
		h.ServiceDiagnostics = &ua.DiagnosticInfo{}
	}
	if h.AdditionalHeader == nil {
		h.AdditionalHeader = EmptyExtensionObject()
	}
	body, err := encodeService(typeID, resp)
	if err != nil {
		if typeID == id.ServiceFault_Encoding_DefaultBinary {
			return fmt.Errorf("opcua channel: encode %T: %w", resp, err)
		}
		// a value the encoder cannot write: the request is answered all
		// the same, and the caller told
		if ferr := c.SendFault(reqID, h.RequestHandle, ua.StatusBadEncodingError); ferr != nil {
			return ferr
		}
		return &Error{Code: ua.StatusBadEncodingError, Reason: fmt.Sprintf("%T answered with a ServiceFault instead: %v", resp, err)}
	}
	if c.tooLarge(len(body)) {
		if typeID == id.ServiceFault_Encoding_DefaultBinary {
			return errorf(ua.StatusBadResponseTooLarge, "ServiceFault of %d bytes", len(body))
		}
		if ferr := c.SendFault(reqID, h.RequestHandle, ua.StatusBadResponseTooLarge); ferr != nil {
			return ferr
		}
		return &Error{Code: ua.StatusBadResponseTooLarge, Reason: fmt.Sprintf("%T of %d bytes answered with a ServiceFault instead: over the client's limits", resp, len(body))}
	}
	return c.writeMessage(reqID, body)
}

// SendFault answers request reqID with a ServiceFault carrying code.
func (c *Channel) SendFault(reqID, handle uint32, code ua.StatusCode) error {
	body, err := encodeService(id.ServiceFault_Encoding_DefaultBinary, &ua.ServiceFault{ResponseHeader: responseHeader(handle, code)})
	if err != nil {
		return fmt.Errorf("opcua channel: encode ServiceFault: %w", err)
	}
	return c.writeMessage(reqID, body)
}

func (c *Channel) tooLarge(n int) bool {
	if c.peerMaxMsg != 0 && uint64(n) > uint64(c.peerMaxMsg) {
		return true
	}
	chunks := (n + c.maxBody - 1) / c.maxBody
	return c.peerMaxChunks != 0 && uint64(chunks) > uint64(c.peerMaxChunks)
}

// writeMessage sends body as MSG chunks under the writer lock, secured with
// the token the client last showed it holds.
func (c *Channel) writeMessage(reqID uint32, body []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.closing:
		return errorf(ua.StatusBadSecureChannelClosed, "channel closed")
	default:
	}
	c.mu.Lock()
	tok := c.sendTok
	c.mu.Unlock()
	for {
		n, chunkType := splitChunk(body, c.maxBody)
		b, err := buildSym("MSG", chunkType, c.id, tok, c.out.next(), reqID, body[:n], c.sendChunk, c.mode)
		if err != nil {
			c.closeConn()
			return errorf(ua.StatusBadSecurityChecksFailed, "securing response: %v", err)
		}
		if err := c.writeLocked(b); err != nil {
			// a partly written message breaks the framing for good
			c.closeConn()
			return fmt.Errorf("opcua channel: write: %w", err)
		}
		body = body[n:]
		if len(body) == 0 {
			return nil
		}
	}
}
