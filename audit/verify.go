package audit

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// BreakKind says how the chain is broken.
type BreakKind string

// Kinds of Break.
const (
	BreakHashMismatch BreakKind = "hash_mismatch" // a record's bytes were changed
	BreakPrevMismatch BreakKind = "prev_mismatch" // a record does not link to the one before it
	BreakSeqGap       BreakKind = "seq_gap"       // records are missing
	BreakSeqReorder   BreakKind = "seq_reorder"   // records are out of order or repeated
	BreakMalformed    BreakKind = "malformed"     // a line is not an audit record
	BreakTruncated    BreakKind = "truncated"     // the last line was cut mid-record
)

// Break is the first place where the chain does not hold. It is also the
// error Verify returns.
type Break struct {
	File    string    `json:"file,omitempty"` // as given to VerifyFiles; empty for Verify
	Line    int       `json:"line"`           // 1-based line number in File
	Offset  int64     `json:"offset"`         // byte offset of the line in File
	Seq     uint64    `json:"seq,omitempty"`  // seq of the record, when it could be read
	Kind    BreakKind `json:"kind"`
	Message string    `json:"message"` // one line, such as "audit.jsonl:57 (seq 57): hash does not match the record: the record was changed"
}

func (b *Break) Error() string { return b.Message }

// Report is what Verify checked.
type Report struct {
	Files    int    `json:"files"`
	Records  uint64 `json:"records"` // records that passed, up to the first break
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// FirstPrev is prev of the first record: 64 zeros for the start of a
	// log, otherwise the LastHash of the file rotated out before it.
	FirstPrev string `json:"first_prev"`
	LastHash  string `json:"last_hash"`
	Break     *Break `json:"break,omitempty"` // nil when the whole chain holds
}

// String summarizes the report on one line, for `interlock audit verify`.
func (r Report) String() string {
	if r.Records == 0 {
		s := fmt.Sprintf("no records in %d file(s)", r.Files)
		if r.Break != nil {
			s += "; " + r.Break.Message
		}
		return s
	}
	s := fmt.Sprintf("%d records in %d file(s), seq %d to %d, last hash %s", r.Records, r.Files, r.FirstSeq, r.LastSeq, r.LastHash)
	if r.FirstPrev != GenesisPrev {
		s += ", continuing a log whose last hash is " + r.FirstPrev
	}
	if r.Break != nil {
		s += "; then " + r.Break.Message
	}
	return s
}

// Verify checks the hash chain of one log read from r: every line is a record
// whose hash matches its canonical bytes, links by prev to the record before
// it, and carries the next seq. The first record may start at any seq (a
// rotated file); its prev is in Report.FirstPrev. It stops at the first break
// and returns it as a *Break error.
func Verify(r io.Reader) (Report, error) {
	var v verifier
	err := v.stream("", r)
	return v.rep, err
}

// VerifyFiles verifies files in order as one chain, so that each file must
// continue the one before it.
func VerifyFiles(paths ...string) (Report, error) {
	var v verifier
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return v.rep, fmt.Errorf("audit: %w", err)
		}
		err = v.stream(p, f)
		f.Close()
		if err != nil {
			return v.rep, err
		}
	}
	return v.rep, nil
}

type verifier struct {
	rep  Report
	have bool // last holds a verified record
	last head
	lr   lineReader
}

func (v *verifier) stream(name string, r io.Reader) error {
	v.rep.Files++
	v.lr.reset(r)
	for lineNo := 1; ; lineNo++ {
		line, off, end, err := v.lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: reading %s: %w", displayName(name), err)
		}
		switch end {
		case lineTooLong:
			return v.fail(name, lineNo, off, line, nil, BreakMalformed,
				fmt.Sprintf("line is longer than %d bytes", maxRecordSize))
		case lineCut:
			return v.fail(name, lineNo, off, line, nil, BreakTruncated,
				fmt.Sprintf("the last line ends without a newline after %d bytes: the log was cut mid-record", len(line)))
		}
		h, f := parseRecord(line)
		if f != nil {
			return v.fail(name, lineNo, off, line, nil, f.kind, f.msg)
		}
		if v.have {
			if err := v.link(name, lineNo, off, line, &h); err != nil {
				return err
			}
		} else {
			v.rep.FirstSeq = h.seq
			v.rep.FirstPrev = hex.EncodeToString(h.prev[:])
		}
		v.have, v.last = true, h
		v.rep.Records++
		v.rep.LastSeq = h.seq
		v.rep.LastHash = hex.EncodeToString(h.hash[:])
	}
}

// link checks that h follows the last verified record.
func (v *verifier) link(name string, lineNo int, off int64, line []byte, h *head) error {
	want := v.last.seq + 1
	switch {
	case h.seq > want:
		// A swap also starts with a jump ahead; the missing seq turning up
		// later tells it from a deletion.
		if seq, ahead, ok := v.lr.findSeq(want, h.seq); ok {
			return v.fail(name, lineNo, off, line, h, BreakSeqReorder, fmt.Sprintf(
				"seq %d where %d was expected, and seq %d comes %d line(s) later: records are out of order",
				h.seq, want, seq, ahead))
		}
		missing := h.seq - want
		what := fmt.Sprintf("%d records (seq %d to %d) missing", missing, want, h.seq-1)
		if missing == 1 {
			what = fmt.Sprintf("1 record (seq %d) missing", want)
		}
		return v.fail(name, lineNo, off, line, h, BreakSeqGap,
			fmt.Sprintf("seq %d follows seq %d: %s: records were deleted", h.seq, v.last.seq, what))
	case h.seq < want:
		return v.fail(name, lineNo, off, line, h, BreakSeqReorder,
			fmt.Sprintf("seq %d follows seq %d: records are out of order or repeated", h.seq, v.last.seq))
	case h.prev != v.last.hash:
		return v.fail(name, lineNo, off, line, h, BreakPrevMismatch, fmt.Sprintf(
			"prev does not match the hash of seq %d before it: a record was replaced, or the files are not in order",
			v.last.seq))
	}
	return nil
}

func (v *verifier) fail(name string, lineNo int, off int64, line []byte, h *head, kind BreakKind, msg string) error {
	b := &Break{File: name, Line: lineNo, Offset: off, Kind: kind}
	where := fmt.Sprintf("%s:%d", name, lineNo)
	if name == "" {
		where = fmt.Sprintf("line %d", lineNo)
	}
	seq, ok := uint64(0), false
	if h != nil {
		seq, ok = h.seq, true
	} else {
		seq, ok = peekSeq(line)
	}
	if ok {
		b.Seq = seq
		where += fmt.Sprintf(" (seq %d)", seq)
	}
	b.Message = where + ": " + msg
	v.rep.Break = b
	return b
}

func displayName(name string) string {
	if name == "" {
		return "audit log"
	}
	return name
}

// How a line read by lineReader ends.
const (
	lineEnded   = iota // with a newline
	lineCut            // at the end of input, without a newline
	lineTooLong        // over maxRecordSize; the rest is not read
)

// lineReader reads lines of at most maxRecordSize into one reused buffer.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	off int64 // offset of the next line
}

func (l *lineReader) reset(r io.Reader) {
	if l.r == nil {
		l.r = bufio.NewReaderSize(r, 64<<10)
	} else {
		l.r.Reset(r)
	}
	l.off = 0
}

// next returns the next line without its newline, and its offset. The line
// is valid until the next call. err is io.EOF only when no bytes are left.
func (l *lineReader) next() (line []byte, off int64, end int, err error) {
	l.buf, off = l.buf[:0], l.off
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.off += int64(len(chunk))
		l.buf = append(l.buf, chunk...)
		switch {
		case err == nil:
			return l.buf[:len(l.buf)-1], off, lineEnded, nil
		case len(l.buf) > maxRecordSize:
			return l.buf, off, lineTooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(l.buf) == 0 {
				return nil, off, lineEnded, io.EOF
			}
			return l.buf, off, lineCut, nil
		default:
			return nil, off, lineEnded, err
		}
	}
}

// findSeq reads on and reports the first record whose seq is in [lo, hi),
// and how many lines after the current one it is. The reader is spent.
func (l *lineReader) findSeq(lo, hi uint64) (seq uint64, ahead int, ok bool) {
	for ahead = 1; ; ahead++ {
		line, _, end, err := l.next()
		if err != nil {
			return 0, 0, false
		}
		if s, ok := peekSeq(line); ok && s >= lo && s < hi {
			return s, ahead, true
		}
		if end != lineEnded {
			return 0, 0, false
		}
	}
}
