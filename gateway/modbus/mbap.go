// Package modbus is Interlock's Modbus TCP engine: it terminates client
// connections with its own MBAP codec, decodes every request into a call,
// passes it through the gateway pipeline, and forwards allowed requests,
// re-encoded from their checked fields, through grid-x/modbus.
package modbus

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// MBAP framing limits (Modbus Messaging on TCP/IP Implementation Guide V1.0b).
const (
	HeaderLen = 7   // transaction id, protocol id, length, unit id
	MaxADU    = 260 // header + 253-byte PDU
	minLength = 2   // the length field counts unit id + function code at least
	maxLength = 254 // unit id + 253-byte PDU
)

// Header is the MBAP header of one frame.
type Header struct {
	TransactionID uint16
	ProtocolID    uint16
	Length        uint16 // unit id + PDU
	UnitID        byte
}

// FrameError is a header that cannot be trusted. After one, the byte stream
// cannot be resynchronised: the session answers nothing and ends.
type FrameError struct {
	Reason string // stable code: bad_protocol_id, bad_length
	Detail string
	Header Header
}

func (e *FrameError) Error() string { return "modbus: " + e.Detail }

// Session-ending read conditions.
var (
	// ErrIdle: no request began within the idle timeout.
	ErrIdle = errors.New("modbus: idle timeout")
	// ErrStalled: a frame began but did not complete within the frame
	// timeout (half a frame, then silence; or a length longer than the bytes sent).
	ErrStalled = errors.New("modbus: partial frame stalled")
	// ErrNoRequest: the connection sent no byte within the first request
	// timeout (FrameReader.First).
	ErrNoRequest = errors.New("modbus: no request within the first request timeout")
)

// FrameReader reads MBAP frames from a client connection. Several frames in
// one segment and one frame split over segments are both fine; what is
// buffered but not yet returned stays for the next call.
type FrameReader struct {
	conn  net.Conn
	br    *bufio.Reader
	idle  time.Duration
	frame time.Duration
	buf   [MaxADU]byte

	// First, when set, bounds the wait for the connection's first byte in
	// place of the idle timeout: a socket that never sends would otherwise
	// hold its slot for the whole idle timeout.
	First time.Duration
	begun bool // a byte has come
}

// NewFrameReader reads from conn. idle bounds the wait for a frame to begin,
// frame the time from its first byte to its last.
func NewFrameReader(conn net.Conn, idle, frame time.Duration) *FrameReader {
	return &FrameReader{conn: conn, br: bufio.NewReaderSize(conn, 4096), idle: idle, frame: frame}
}

// Next returns the next frame's header and PDU (function code and data).
// The PDU is valid until the next call. At a clean end of stream it returns
// io.EOF; a connection closed mid-frame is io.ErrUnexpectedEOF.
func (r *FrameReader) Next() (Header, []byte, error) {
	if r.br.Buffered() == 0 {
		wait, timedOut := r.idle, ErrIdle
		if !r.begun && r.First > 0 {
			wait, timedOut = r.First, ErrNoRequest
		}
		if err := r.conn.SetReadDeadline(deadline(wait)); err != nil {
			return Header{}, nil, err
		}
		if _, err := r.br.Peek(1); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Header{}, nil, timedOut
			}
			return Header{}, nil, err
		}
	}
	r.begun = true
	if err := r.conn.SetReadDeadline(deadline(r.frame)); err != nil {
		return Header{}, nil, err
	}
	if err := r.readFull(r.buf[:HeaderLen]); err != nil {
		return Header{}, nil, err
	}
	h := Header{
		TransactionID: binary.BigEndian.Uint16(r.buf[0:]),
		ProtocolID:    binary.BigEndian.Uint16(r.buf[2:]),
		Length:        binary.BigEndian.Uint16(r.buf[4:]),
		UnitID:        r.buf[6],
	}
	if h.ProtocolID != 0 {
		return h, nil, &FrameError{Reason: "bad_protocol_id", Header: h,
			Detail: fmt.Sprintf("MBAP protocol id %d, want 0", h.ProtocolID)}
	}
	if h.Length < minLength || h.Length > maxLength {
		return h, nil, &FrameError{Reason: "bad_length", Header: h,
			Detail: fmt.Sprintf("MBAP length %d outside %d..%d", h.Length, minLength, maxLength)}
	}
	pdu := r.buf[HeaderLen : HeaderLen+int(h.Length)-1]
	if err := r.readFull(pdu); err != nil {
		return h, nil, err
	}
	return h, pdu, nil
}

// Buffered returns the next frame when the whole of it has been received
// already (it is in the reader's buffer), without reading the connection;
// ok is false when no whole, well-formed frame is there. The PDU is valid
// until the next call.
func (r *FrameReader) Buffered() (h Header, pdu []byte, ok bool) {
	if r.br.Buffered() < HeaderLen {
		return Header{}, nil, false
	}
	b, _ := r.br.Peek(HeaderLen)
	h = Header{
		TransactionID: binary.BigEndian.Uint16(b[0:]),
		ProtocolID:    binary.BigEndian.Uint16(b[2:]),
		Length:        binary.BigEndian.Uint16(b[4:]),
		UnitID:        b[6],
	}
	if h.ProtocolID != 0 || h.Length < minLength || h.Length > maxLength || r.br.Buffered() < HeaderLen+int(h.Length)-1 {
		return Header{}, nil, false
	}
	n := HeaderLen + int(h.Length) - 1
	if _, err := io.ReadFull(r.br, r.buf[:n]); err != nil { // from the buffer: no read of the connection
		return Header{}, nil, false
	}
	return h, r.buf[HeaderLen:n], true
}

func (r *FrameReader) readFull(b []byte) error {
	_, err := io.ReadFull(r.br, b)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrStalled
	case errors.Is(err, io.EOF):
		return io.ErrUnexpectedEOF
	}
	return err
}

func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// AppendADU appends an MBAP frame carrying pdu to dst.
func AppendADU(dst []byte, transactionID uint16, unitID byte, pdu []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, transactionID)
	dst = binary.BigEndian.AppendUint16(dst, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(1+len(pdu)))
	dst = append(dst, unitID)
	return append(dst, pdu...)
}
