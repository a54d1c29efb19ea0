package channel

import (
	"encoding/binary"
	"math"
	"net"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// What both sides of a channel share: sequence numbers, timed writes and
// the building of secured chunks.

// seqIn checks the sequence numbers the peer sends (Part 6 §6.7.2.4): each
// chunk's is one more than the last, and wraps only after
// UInt32.MaxValue-1024 to a value below 1024.
type seqIn struct {
	started bool
	last    uint32
}

func (s *seqIn) check(seq uint32) error {
	if !s.started {
		s.started, s.last = true, seq
		return nil
	}
	last := s.last
	if (last != math.MaxUint32 && seq == last+1) || (last > math.MaxUint32-1024 && seq < 1024) {
		s.last = seq
		return nil
	}
	return errorf(ua.StatusBadSequenceNumberInvalid, "sequence number %d after %d", seq, last)
}

// seqOut numbers the chunks we send.
type seqOut uint32

func (s *seqOut) next() uint32 {
	if *s > math.MaxUint32-1024 {
		*s = 1
	} else {
		*s++
	}
	return uint32(*s)
}

// timedWriter writes to conn within timeout. The deadline is moved only
// when less than half the timeout is left, not for every message: a write
// gets between half and all of the timeout. Its user serializes the writes.
type timedWriter struct {
	conn     net.Conn
	timeout  time.Duration
	deadline time.Time // last set on conn
}

func (w *timedWriter) write(b []byte) error {
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.conn.SetWriteDeadline(w.deadline)
	}
	_, err := w.conn.Write(b)
	return err
}

// splitChunk is how much of body the next chunk of at most maxBody bytes
// carries, and its chunk type: C when more follow, F for the last.
func splitChunk(body []byte, maxBody int) (int, byte) {
	if len(body) > maxBody {
		return maxBody, 'C'
	}
	return len(body), 'F'
}

// buildSym builds and secures one MSG or CLO chunk carrying body.
func buildSym(typ string, chunkType byte, channelID uint32, tok *token, seq, reqID uint32, body []byte, maxChunk int, mode ua.MessageSecurityMode) ([]byte, error) {
	// room for the headers, padding and signature
	b := make([]byte, 0, min(maxChunk, secureHeaderLen+4+seqHeaderLen+len(body)+aesBlock+64))
	b = append(b, typ...)
	b = append(b, chunkType, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, channelID)
	b = binary.LittleEndian.AppendUint32(b, tok.id)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, reqID)
	b = append(b, body...)
	return sealSym(b, mode, tok.sym)
}

// buildOPN builds and secures (asym nil: None) one OpenSecureChannel chunk
// carrying body, an encoded request or response.
func buildOPN(channelID uint32, hdr *uasc.AsymmetricSecurityHeader, seq, reqID uint32, body []byte, asym *asymmetric) ([]byte, error) {
	ah, err := hdr.Encode()
	if err != nil {
		return nil, errorf(ua.StatusBadEncodingError, "asymmetric header: %v", err)
	}
	b := make([]byte, secureHeaderLen, 1024+len(ah)+len(body))
	copy(b, "OPNF")
	binary.LittleEndian.PutUint32(b[8:], channelID)
	b = append(b, ah...)
	head := len(b)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, reqID)
	b = append(b, body...)
	if asym == nil {
		binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
		return b, nil
	}
	if b, err = asym.seal(b, head); err != nil {
		return nil, errorf(ua.StatusBadSecurityChecksFailed, "securing OpenSecureChannel message: %v", err)
	}
	return b, nil
}
