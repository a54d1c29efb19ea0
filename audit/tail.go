package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// tail is where an existing log ends.
type tail struct {
	seq  uint64            // of the last complete record; 0 for none
	hash [sha256.Size]byte // of the last complete record
	end  int64             // end of the last complete record
	cut  int64             // bytes after end: a line cut by a crash
}

// readTail finds the last complete record of f, reading backwards from the
// end only, and checks it. Bytes after it (at most one record's worth) are a
// line cut by a crash; more than that, or a first line that does not look
// like a record, means the file is not an audit log and is left alone.
func readTail(f file) (tail, error) {
	var t tail
	fi, err := f.Stat()
	if err != nil {
		return t, err
	}
	size := fi.Size()
	if size == 0 {
		return t, nil
	}
	buf := make([]byte, 64<<10)
	nl, err := lastNewline(f, max(0, size-maxRecordSize-1), size, buf)
	if err != nil {
		return t, err
	}
	t.end = nl + 1
	t.cut = size - t.end
	if t.cut > maxRecordSize {
		return t, fmt.Errorf("no line end in the last %d bytes: not an audit log", maxRecordSize)
	}
	if t.end == 0 {
		// Only a cut first record: it must start like one.
		p := buf[:min(size, int64(len(recordPrefix)))]
		if err := readFull(f, p, 0); err != nil {
			return t, err
		}
		if !bytes.HasPrefix([]byte(recordPrefix), p) && !allZero(p) {
			return t, fmt.Errorf("not an audit log: %d bytes without a line end, starting %q", size, p)
		}
		return t, nil
	}
	last := t.end - 1 // its newline
	pnl, err := lastNewline(f, max(0, last-maxRecordSize-1), last, buf)
	if err != nil {
		return t, err
	}
	start := pnl + 1
	if last-start > maxRecordSize {
		return t, fmt.Errorf("the last line, at byte %d, is longer than %d bytes: not an audit log", start, maxRecordSize)
	}
	line := make([]byte, last-start)
	if err := readFull(f, line, start); err != nil {
		return t, err
	}
	h, flt := parseRecord(line)
	if flt != nil {
		return t, fmt.Errorf("the last record, at byte %d, is not a valid audit record: %s", start, flt.msg)
	}
	t.seq, t.hash = h.seq, h.hash
	return t, nil
}

// lastNewline returns the offset of the last '\n' in [lo, hi) of f, or -1.
func lastNewline(f io.ReaderAt, lo, hi int64, buf []byte) (int64, error) {
	for hi > lo {
		n := min(int64(len(buf)), hi-lo)
		from := hi - n
		if err := readFull(f, buf[:n], from); err != nil {
			return -1, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return from + int64(i), nil
		}
		hi = from
	}
	return -1, nil
}

func readFull(f io.ReaderAt, p []byte, off int64) error {
	n, err := f.ReadAt(p, off)
	if n == len(p) && (err == nil || errors.Is(err, io.EOF)) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading at byte %d: %w", off, err)
}

func allZero(p []byte) bool {
	for _, c := range p {
		if c != 0 {
			return false
		}
	}
	return true
}
