package channel

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uasc"
)

const (
	tcpHeaderLen    = 8  // MessageType, ChunkType, MessageSize
	secureHeaderLen = 12 // and SecureChannelId
	seqHeaderLen    = 8  // SequenceNumber, RequestId
	maxEndpointURL  = 4096
	maxReasonLen    = 4096
	// readBufferSize holds a typical request whole, so that its header
	// and body come with one read; larger chunks are read straight into
	// their own buffer.
	readBufferSize = 4096
)

// frame is one raw message chunk as read from the socket.
type frame struct {
	typ   string // HEL, OPN, MSG, CLO, ...
	chunk byte   // F, C, A
	b     []byte // the whole chunk, header included
}

// readFrame reads one chunk of at most limit bytes. Violations are *Error
// with the code the ERR answer carries; a passed deadline is Bad_Timeout.
func readFrame(r io.Reader, limit uint32) (*frame, error) {
	fr := frameReader{r: r, limit: limit}
	f, err := fr.next()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, readErr(err, fr.n == 0)
	}
	return f, err
}

// errPeerClosed marks a connection the peer closed between messages.
var errPeerClosed = io.EOF

// readErr maps a socket read error: a close between messages is io.EOF, one
// inside a message is Bad_DecodingError (no answer possible), a passed
// deadline is Bad_Timeout.
func readErr(err error, atBoundary bool) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(ua.StatusBadTimeout, "read timed out")
	case errors.Is(err, net.ErrClosed):
		return net.ErrClosed
	case atBoundary && errors.Is(err, io.EOF):
		return errPeerClosed
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return io.ErrUnexpectedEOF
	}
	return err
}

// encodeERR is an ERR message (Part 6 §7.1.2.5).
func encodeERR(code ua.StatusCode, reason string) []byte {
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	body, _ := (&uacp.Error{ErrorCode: uint32(code), Reason: reason}).Encode()
	b := make([]byte, tcpHeaderLen, tcpHeaderLen+len(body))
	copy(b, "ERRF")
	binary.LittleEndian.PutUint32(b[4:], uint32(tcpHeaderLen+len(body)))
	return append(b, body...)
}

// secureChunk is a parsed OPN, MSG or CLO chunk before its security is checked.
type secureChunk struct {
	*frame
	channelID uint32
	asym      *uasc.AsymmetricSecurityHeader // OPN
	tokenID   uint32                         // MSG, CLO
	head      int                            // bytes up to the end of the security header
}

func parseSecure(f *frame) (*secureChunk, error) {
	if len(f.b) < secureHeaderLen+4 {
		return nil, errorf(ua.StatusBadDecodingError, "%s chunk of %d bytes is too short", f.typ, len(f.b))
	}
	var h uasc.Header
	if _, err := h.Decode(f.b[:secureHeaderLen]); err != nil {
		return nil, errorf(ua.StatusBadDecodingError, "secure header: %v", err)
	}
	c := &secureChunk{frame: f, channelID: h.SecureChannelID}
	switch f.typ {
	case uasc.MessageTypeOpenSecureChannel:
		c.asym = new(uasc.AsymmetricSecurityHeader)
		n, err := c.asym.Decode(f.b[secureHeaderLen:])
		if err != nil {
			return nil, errorf(ua.StatusBadDecodingError, "asymmetric security header: %v", err)
		}
		c.head = secureHeaderLen + n
	default:
		var sh uasc.SymmetricSecurityHeader
		if _, err := sh.Decode(f.b[secureHeaderLen:]); err != nil {
			return nil, errorf(ua.StatusBadDecodingError, "symmetric security header: %v", err)
		}
		c.tokenID = sh.TokenID
		c.head = secureHeaderLen + 4
	}
	return c, nil
}

// frameReader reads chunks like readFrame, but a read that a deadline
// interrupts loses nothing: the next call goes on where it stopped. The
// client channel's readers take turns on one connection and use the read
// deadline to ask the one reading to give up its turn.
type frameReader struct {
	r     io.Reader
	limit uint32
	hb    [tcpHeaderLen]byte
	n     int    // bytes of the current chunk read so far
	b     []byte // the current chunk, once its header is in
	typ   string // and its message type
}

// next returns the next chunk. An error from a passed deadline is returned
// as it is (os.ErrDeadlineExceeded) and the chunk stays half read; any
// other error is final, mapped as readFrame maps it.
func (fr *frameReader) next() (*frame, error) {
	for fr.n < tcpHeaderLen {
		m, err := fr.r.Read(fr.hb[fr.n:])
		fr.n += m
		if err != nil && fr.n < tcpHeaderLen {
			return nil, fr.err(err)
		}
	}
	if fr.b == nil {
		var h uacp.Header
		if _, err := h.Decode(fr.hb[:]); err != nil {
			return nil, errorf(ua.StatusBadDecodingError, "message header: %v", err)
		}
		switch {
		case h.MessageSize < tcpHeaderLen:
			return nil, errorf(ua.StatusBadDecodingError, "message size %d is smaller than its header", h.MessageSize)
		case h.MessageSize > fr.limit:
			return nil, errorf(ua.StatusBadTCPMessageTooLarge, "message size %d exceeds %d", h.MessageSize, fr.limit)
		}
		switch h.ChunkType {
		case 'F', 'C', 'A':
		default:
			return nil, errorf(ua.StatusBadTCPMessageTypeInvalid, "chunk type %q", h.ChunkType)
		}
		fr.b = make([]byte, h.MessageSize)
		fr.typ = h.MessageType
		copy(fr.b, fr.hb[:])
	}
	for fr.n < len(fr.b) {
		m, err := fr.r.Read(fr.b[fr.n:])
		fr.n += m
		if err != nil && fr.n < len(fr.b) {
			return nil, fr.err(err)
		}
	}
	f := &frame{typ: fr.typ, chunk: fr.b[3], b: fr.b}
	fr.n, fr.b = 0, nil
	return f, nil
}

func (fr *frameReader) err(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	return readErr(err, fr.n == 0)
}
