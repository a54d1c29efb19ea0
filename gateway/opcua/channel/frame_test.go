package channel

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// stutterReader gives its data a few bytes at a time and fails once with
// a passed deadline, at the first read from offset stop on.
type stutterReader struct {
	b       []byte
	off     int
	step    int
	stop    int
	stopped bool
}

func (r *stutterReader) Read(p []byte) (int, error) {
	if !r.stopped && r.off >= r.stop {
		r.stopped = true
		return 0, os.ErrDeadlineExceeded
	}
	if r.off == len(r.b) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b[r.off:])
	r.off += n
	return n, nil
}

// TestFrameReaderResumes: however a deadline cuts two chunks (at every
// offset, in reads of 1 to 9 bytes), the reader returns the deadline error
// and then the same two chunks, whole; the end of the stream after them is
// io.EOF, and in the middle of one io.ErrUnexpectedEOF.
func TestFrameReaderResumes(t *testing.T) {
	one := append([]byte("MSGF\x14\x00\x00\x00"), bytes.Repeat([]byte{1}, 12)...)
	two := append([]byte("MSGC\x0b\x00\x00\x00"), 2, 3, 4)
	stream := append(append([]byte{}, one...), two...)
	for step := 1; step <= 9; step++ {
		for cut := 0; cut < len(stream); cut++ {
			r := &stutterReader{b: stream, step: step, stop: cut}
			fr := frameReader{r: r, limit: 64}
			var got [][]byte
			deadlines := 0
			for len(got) < 2 {
				f, err := fr.next()
				if errors.Is(err, os.ErrDeadlineExceeded) {
					deadlines++
					continue
				}
				if err != nil {
					t.Fatalf("step %d cut %d: %v", step, cut, err)
				}
				got = append(got, f.b)
			}
			if !bytes.Equal(got[0], one) || !bytes.Equal(got[1], two) {
				t.Fatalf("step %d cut %d: chunks % x and % x", step, cut, got[0], got[1])
			}
			_, err := fr.next()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				deadlines++ // the last read ended past the cut
				_, err = fr.next()
			}
			if deadlines != 1 {
				t.Errorf("step %d cut %d: %d deadline errors, want 1", step, cut, deadlines)
			}
			if err != io.EOF {
				t.Fatalf("step %d cut %d: after the last chunk %v, want io.EOF", step, cut, err)
			}
		}
	}
	fr := frameReader{r: &stutterReader{b: one[:10], step: 4, stopped: true}, limit: 64}
	if _, err := fr.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("a chunk cut short: %v, want io.ErrUnexpectedEOF", err)
	}
	fr = frameReader{r: &stutterReader{b: one, step: 4, stopped: true}, limit: 16}
	if _, err := fr.next(); err == nil {
		t.Fatal("a 20 byte chunk read with a 16 byte limit")
	}
}
