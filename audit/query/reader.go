package query

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Reader streams the records of audit log files in the order given (for a
// log, audit.LogFiles gives chain order). It does not verify the hash chain:
// `interlock audit verify` does.
//
// A last line without a newline is a record cut short by a crash (or one
// being written right now); it is skipped with a note. So is a later line
// that is not an audit record (a JSON object with seq, time and event),
// which is counted apart (BadLines). A file whose first line is not an
// audit record is not an audit log: Read fails with a *NotLogError. Notes
// go to Warn.
type Reader struct {
	// Warn receives one line per skipped line; nil discards them.
	Warn io.Writer
	// Stdin is read for the file name "-".
	Stdin io.Reader

	files []string
	next  int

	// passLo and passHi bound the times of the lines decoded
	// (PassOverOutside): empty for open, else in the writer's layout.
	passLo, passHi []byte
	passed         int

	name   string
	rc     io.Closer
	br     *bufio.Reader // the file being read; nil between files
	buf    *bufio.Reader // kept across files
	lineNo int
	long   []byte // a line longer than the buffer, being assembled
	inFile int    // lines of the file read so far that were not blank

	records int
	skipped int
	bad     int
	bytes   int64
	warned  int
}

// maxWarnings bounds the notes about skipped lines; the count goes on.
const maxWarnings = 20

// readBuffer is large enough for any record the gateway writes; a longer
// line is still read whole.
const readBuffer = 1 << 20

// NewReader reads files in order ("-" is Stdin, a name ending in .gz is
// decompressed).
func NewReader(files ...string) *Reader {
	return &Reader{files: files}
}

// Records is the number of records read so far.
func (r *Reader) Records() int { return r.records }

// SkippedLines is the number of lines skipped so far: cut short, or not records.
func (r *Reader) SkippedLines() int { return r.skipped }

// BadLines is the number of whole lines skipped so far because they are
// not audit records (a damaged log); a last line cut short is not one.
func (r *Reader) BadLines() int { return r.bad }

// NotLogError is a file whose first line is not an audit record: another
// kind of file given where an audit log was expected.
type NotLogError struct {
	File string
	Line int
	Why  string
}

func (e *NotLogError) Error() string {
	return fmt.Sprintf("%s: line %d is not an audit record (%s): this is not an audit log", e.File, e.Line, e.Why)
}

// CheckFiles reads the first line of each file ("-" excepted) and fails,
// with a *NotLogError, at the first file that is not an audit log, or at
// one that cannot be opened: a command can refuse such a file before it
// writes anything.
func CheckFiles(files ...string) error {
	r := &Reader{}
	for _, f := range files {
		if f == "-" {
			continue
		}
		r.files, r.next = []string{f}, 0
		var rec Record
		err := r.Read(&rec)
		r.close()
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// Bytes is the number of bytes read so far.
func (r *Reader) Bytes() int64 { return r.bytes }

// Files is the number of files given.
func (r *Reader) Files() int { return len(r.files) }

// PassedOver is the number of records passed over so far
// (PassOverOutside).
func (r *Reader) PassedOver() int { return r.passed }

// PassOverOutside makes Read pass over, without decoding them, the
// records before from or at or after to (zero for open), telling their
// time by the writer's layout: a line that begins {"seq":N,"time":"…Z".
// Any other line is decoded. A gateway.start record is decoded whatever
// its time: it names the version of the gateway whose records follow.
//
// This holds for any files in any order: record times of a log do go back
// where a gateway restarted with its clock set back.
func (r *Reader) PassOverOutside(from, to time.Time) {
	r.passLo, r.passHi = nil, nil
	if !from.IsZero() {
		r.passLo = from.UTC().AppendFormat(nil, recordTimeLayout)
	}
	if !to.IsZero() {
		r.passHi = to.UTC().AppendFormat(nil, recordTimeLayout)
	}
}

// outside reports whether line is a record of the writer's whose time is
// outside the range of PassOverOutside, and not a gateway.start.
func (r *Reader) outside(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok {
		return false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"time":"`))
	const n = len(recordTimeLayout) - 5 // 2026-11-26T04:24:57.826370077Z
	if !ok || i == 0 || len(rest) <= n || rest[n] != '"' || rest[n-1] != 'Z' || rest[19] != '.' {
		return false
	}
	t := rest[:n]
	if !(r.passLo != nil && bytes.Compare(t, r.passLo) < 0 || r.passHi != nil && bytes.Compare(t, r.passHi) >= 0) {
		return false
	}
	return !bytes.HasPrefix(rest[n:], []byte(`","event":"`+EventGatewayStart+`"`))
}

// Read decodes the next record into rec, overwriting it (the strings and
// slices of the record before stay valid). It returns
// io.EOF after the last record of the last file, and an error for a file
// that cannot be opened or read.
func (r *Reader) Read(rec *Record) error {
	for {
		if r.br == nil {
			if r.next >= len(r.files) {
				return io.EOF
			}
			if err := r.open(r.files[r.next]); err != nil {
				return err
			}
			r.next++
		}
		line, err := r.readLine()
		switch {
		case err == io.EOF:
			r.close()
			continue
		case err != nil:
			name := r.name
			r.close()
			if nl := (*NotLogError)(nil); errors.As(err, &nl) {
				return err
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r.inFile++
		if (r.passLo != nil || r.passHi != nil) && r.outside(line) {
			r.passed++
			continue
		}
		// One string per line, which the record's strings share: they stay
		// valid when rec is read into again.
		*rec = Record{}
		err = rec.decode(string(line))
		if err == nil {
			err = rec.checkEnvelope()
		}
		if err != nil {
			if r.inFile == 1 {
				// The first line tells what the file is: a file of another
				// kind is refused whole, not read as a log of skipped lines.
				nl := &NotLogError{File: r.name, Line: r.lineNo, Why: err.Error()}
				r.close()
				return nl
			}
			r.bad++
			r.skip("%s:%d: not an audit record (%v): skipped", r.name, r.lineNo, err)
			continue
		}
		rec.File, rec.LineNo = r.name, r.lineNo
		r.records++
		return nil
	}
}

// checkEnvelope fails a JSON object that lacks what every audit record has:
// a seq from 1, a time and an event.
func (rec *Record) checkEnvelope() error {
	var missing []string
	if rec.Seq == 0 {
		missing = append(missing, "seq")
	}
	if rec.Time == "" {
		missing = append(missing, "time")
	}
	if rec.Event == "" {
		missing = append(missing, "event")
	}
	if len(missing) > 0 {
		return fmt.Errorf("a JSON object without %s", strings.Join(missing, ", "))
	}
	return nil
}

// Close closes the file being read, if any.
func (r *Reader) Close() error {
	r.close()
	r.next = len(r.files)
	return nil
}

func (r *Reader) open(name string) error {
	var (
		rd io.Reader
		rc io.Closer
	)
	if name == "-" {
		if r.Stdin == nil {
			return errors.New("-: no standard input")
		}
		rd = r.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		rd, rc = f, f
	}
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			if rc != nil {
				rc.Close()
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		rd = zr
	}
	if r.buf == nil {
		r.buf = bufio.NewReaderSize(rd, readBuffer)
	}
	r.buf.Reset(rd)
	r.br = r.buf
	r.name, r.rc, r.lineNo, r.inFile = name, rc, 0, 0
	return nil
}

func (r *Reader) close() {
	if r.rc != nil {
		r.rc.Close()
	}
	r.rc = nil
	r.br = nil
}

// readLine returns the next line without its newline. The bytes are valid
// until the next call. A last line without a newline is skipped with a note.
func (r *Reader) readLine() ([]byte, error) {
	r.long = r.long[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		r.bytes += int64(len(chunk))
		switch {
		case err == nil:
			r.lineNo++
			if len(r.long) > 0 {
				r.long = append(r.long, chunk[:len(chunk)-1]...)
				return r.long, nil
			}
			return chunk[:len(chunk)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			r.long = append(r.long, chunk...)
		case err == io.EOF:
			if n := len(r.long) + len(chunk); n > 0 {
				if r.inFile == 0 && !startsObject(r.long, chunk) {
					// the file's only line, and no record begins it
					return nil, &NotLogError{File: r.name, Line: r.lineNo + 1, Why: "no JSON object begins it, and it has no end"}
				}
				r.skip("%s: the last line (line %d, %d bytes) has no end: a record cut short by a crash, or being written now: skipped",
					r.name, r.lineNo+1, n)
			}
			return nil, io.EOF
		default:
			return nil, err
		}
	}
}

// startsObject says whether a line (the bytes of long, then chunk) begins,
// after blanks, with '{': a record being written, or cut short.
func startsObject(long, chunk []byte) bool {
	for _, b := range [][]byte{long, chunk} {
		if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 {
			return t[0] == '{'
		}
	}
	return false
}

func (r *Reader) skip(format string, a ...any) {
	r.skipped++
	if r.Warn == nil {
		return
	}
	r.warned++
	switch {
	case r.warned <= maxWarnings:
		fmt.Fprintf(r.Warn, format+"\n", a...)
	case r.warned == maxWarnings+1:
		fmt.Fprintln(r.Warn, "more lines skipped: only the count is given from here on")
	}
}
