package ship

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// maxLine bounds one line: the writer refuses records over 16 MiB.
const maxLine = 16<<20 + 1

// position is a place in the log: just past the record seq (hash) whose
// line ends at off in file.
type position struct {
	file string
	off  int64
	seq  uint64
	hash string
}

// errShrunk means the file being read became shorter than what was already
// read from it: someone truncated or replaced it.
var errShrunk = errors.New("the audit log file became shorter than what was already shipped: it was truncated or replaced")

// follower reads the lines of a log in chain order: to the end of a file,
// then on to the next one (audit.LogFiles), following the live file when it
// is rotated. It only ever hands out complete lines.
type follower struct {
	path string // the live file
	dir  string
	log  zerolog.Logger

	f     *os.File
	name  string // base name of f as last seen (the live name until it is rotated)
	off   int64  // just past the last line handed out
	seq   uint64 // of the last record handed out, 0 before the first
	hash  string
	final bool // f was rotated and the next file has begun: after one more read to its end, move on

	buf  []byte
	recs []Record

	gaps, malformed, diverged uint64 // counters, read by the shipper's goroutine only

	// onRename is told when f turns out to have been rotated to a new name,
	// so that positions naming its old name can follow.
	onRename func(old, newName string)
}

func newFollower(path string, log zerolog.Logger) *follower {
	return &follower{path: path, dir: filepath.Dir(path), log: log}
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

func (fl *follower) pos() position {
	return position{file: fl.name, off: fl.off, seq: fl.seq, hash: fl.hash}
}

func (fl *follower) setFile(f *os.File, name string, p position) {
	fl.close()
	fl.f, fl.name, fl.off, fl.seq, fl.hash, fl.final = f, name, p.off, p.seq, p.hash, false
}

// seek positions the follower just past the record p names. Fast path: the
// file p names still has that record ending at p.off. Otherwise (the live
// file was rotated since) the record is looked up by seq. When the log no
// longer holds it (truncated, rewritten or started anew) the follower goes
// back to the start of the file where it would have been, so that what
// replaced it is shipped too.
func (fl *follower) seek(p position) error { return fl.seekTry(p, 3) }

func (fl *follower) seekTry(p position, tries int) error {
	fl.close()
	if p.seq == 0 {
		// Nothing delivered yet: from the start of the log, whatever the
		// name says (the live name may be another file by now).
		return fl.openFirst()
	}
	if p.file != "" {
		if f, err := os.Open(filepath.Join(fl.dir, p.file)); err == nil {
			if recordEndsAt(f, p.off, p.seq, p.hash) {
				fl.setFile(f, p.file, p)
				return nil
			}
			f.Close()
		}
	}
	files, err := audit.LogFiles(fl.path)
	if err != nil {
		return err
	}
	at := -1
	for i, name := range files {
		if first, ok := firstSeq(name); ok && first != 0 && first <= p.seq {
			at = i
		}
	}
	if at >= 0 {
		off, hash, found, err := findRecord(files[at], p.seq)
		if err != nil {
			return err
		}
		if found && hash == p.hash {
			f, err := os.Open(files[at])
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err == nil && recordEndsAt(f, off, p.seq, hash) {
				fl.setFile(f, filepath.Base(files[at]), position{off: off, seq: p.seq, hash: hash})
				return nil
			}
			if f != nil {
				f.Close()
			}
			// Rotated between the lookup and the open: look again.
			if tries > 0 {
				return fl.seekTry(p, tries-1)
			}
		}
	}
	if at < 0 && len(files) > 0 {
		// Retention deleted the file that ended with p, after every
		// record in it was delivered: the oldest file left goes on from
		// p (its first record's prev is p's hash).
		if seq, prev, ok := firstRecord(files[0]); ok && seq == p.seq+1 && prev == p.hash {
			f, err := openExpect(files[0], seq)
			if err != nil || f == nil {
				return err
			}
			fl.setFile(f, filepath.Base(files[0]), position{seq: p.seq, hash: p.hash})
			return nil
		}
	}
	fl.diverged++
	from := fl.path
	if at >= 0 {
		from = files[at]
	} else if len(files) > 0 {
		from = files[0]
	}
	fl.log.Error().Uint64("seq", p.seq).Str("hash", p.hash).Str("from", from).
		Msg("ship: the audit log no longer holds the last shipped record (truncated, rewritten or started anew); shipping again from the start of the file where it was")
	f, err := os.Open(from)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fl.setFile(f, filepath.Base(from), position{})
	return nil
}

// openFirst positions the follower at the start of the oldest file.
func (fl *follower) openFirst() error {
	files, err := audit.LogFiles(fl.path)
	if err != nil || len(files) == 0 {
		return err
	}
	first, _ := firstSeq(files[0])
	f, err := openExpect(files[0], first)
	if err != nil || f == nil {
		return err // nil: rotated or removed between the listing and the open: try again later
	}
	fl.setFile(f, filepath.Base(files[0]), position{})
	return nil
}

// openExpect opens the file of the log at path that begins with the record
// first (0: whatever it begins with). The live file's name passes from file
// to file at each rotation: a file found under it a moment ago may be
// under another name now, and another file under it. A nil file without an
// error means path no longer names that file: look again.
func openExpect(path string, first uint64) (*os.File, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil || first == 0 {
		return f, err
	}
	var b [32]byte
	n, _ := f.ReadAt(b[:], 0)
	if seq, ok := peekSeq(b[:n]); !ok || seq != first {
		f.Close()
		return nil, nil
	}
	return f, nil
}

// read returns the next complete lines, at most maxRecords of them and at
// most maxBytes (but always a whole line), or none when the follower is at
// the end of the log. The records are valid until the next read.
func (fl *follower) read(maxRecords, maxBytes int) ([]Record, error) {
	if fl.f == nil {
		if err := fl.openFirst(); err != nil || fl.f == nil {
			return nil, err
		}
	}
	for {
		recs, err := fl.readLines(maxRecords, maxBytes)
		if err != nil || len(recs) > 0 {
			return recs, err
		}
		moved, err := fl.advance()
		if err != nil || !moved {
			return nil, err
		}
	}
}

// readLines reads complete lines of f from off.
func (fl *follower) readLines(maxRecords, maxBytes int) ([]Record, error) {
	fi, err := fl.f.Stat()
	if err != nil {
		return nil, err
	}
	avail := fi.Size() - fl.off
	if avail < 0 {
		return nil, errShrunk
	}
	if avail == 0 {
		return nil, nil
	}
	n := min(avail, int64(maxBytes))
	if cap(fl.buf) > 2*maxBytes {
		fl.buf = nil // a rare long record's buffer is not kept
	}
	for {
		if int64(cap(fl.buf)) < n {
			fl.buf = make([]byte, n)
		}
		b := fl.buf[:n]
		if err := readFullAt(fl.f, b, fl.off); err != nil {
			return nil, err
		}
		if bytes.IndexByte(b, '\n') >= 0 {
			return fl.cut(b, maxRecords), nil
		}
		switch {
		case n == avail:
			return nil, nil // a line still being written (or cut by a crash)
		case n >= maxLine:
			return nil, fl.skipLongLine(n)
		}
		n = min(avail, 2*n, maxLine) // one line longer than maxBytes: hand it out alone
	}
}

// cut splits b, read at off, into records up to its last complete line.
func (fl *follower) cut(b []byte, maxRecords int) []Record {
	fl.recs = fl.recs[:0]
	start := 0
	for len(fl.recs) < maxRecords {
		i := bytes.IndexByte(b[start:], '\n')
		if i < 0 {
			break
		}
		line := b[start : start+i]
		start += i + 1
		fl.recs = append(fl.recs, Record{})
		r := &fl.recs[len(fl.recs)-1]
		parseRecord(r, line)
		r.file, r.end = fl.name, fl.off+int64(start)
		fl.note(r)
	}
	fl.off += int64(start)
	return fl.recs
}

// note moves the follower's place past r, and says so when the chain of
// seqs is broken: records missing or going back.
func (fl *follower) note(r *Record) {
	if r.Seq == 0 {
		fl.malformed++
		fl.log.Warn().Str("file", r.file).Int64("end", r.end).Msg("ship: a line of the audit log is not an audit record; shipping it as it is")
		return
	}
	if fl.seq != 0 && r.Seq != fl.seq+1 {
		fl.gaps++
		fl.log.Warn().Uint64("after", fl.seq).Uint64("seq", r.Seq).Str("file", r.file).
			Msg("ship: the seq of the audit log jumps here; shipping on (audit verify tells why)")
	}
	fl.seq, fl.hash = r.Seq, r.hash
}

// skipLongLine steps over a line longer than any record can be.
func (fl *follower) skipLongLine(read int64) error {
	from := fl.off
	fl.off += read
	var chunk [64 << 10]byte
	for {
		n, err := fl.f.ReadAt(chunk[:], fl.off)
		if i := bytes.IndexByte(chunk[:n], '\n'); i >= 0 {
			fl.off += int64(i + 1)
			break
		}
		fl.off += int64(n)
		if err != nil {
			fl.off = from
			return nil // no end yet: look again later
		}
	}
	fl.malformed++
	fl.log.Error().Str("file", fl.name).Int64("offset", from).Int64("bytes", fl.off-from).
		Msg("ship: skipped a line longer than any audit record can be")
	return nil
}

// advance is called at the end of f. When f is no longer the live file and
// the next file of the log has begun, the writer is done with f: read it to
// its end once more, then move on to the next file. It reports whether
// there may be more to read now.
func (fl *follower) advance() (bool, error) {
	fi, err := fl.f.Stat()
	if err != nil {
		return false, err
	}
	if li, err := os.Stat(fl.path); err == nil && os.SameFile(fi, li) {
		fl.final = false
		return false, nil
	}
	next, first, err := fl.nextFile(fi)
	if err != nil || next == "" {
		return false, err
	}
	if !fl.final {
		fl.final = true
		return true, nil
	}
	if fi.Size() > fl.off {
		fl.log.Warn().Str("file", fl.name).Int64("bytes", fi.Size()-fl.off).
			Msg("ship: a rotated audit log file ends in an incomplete line; it is not shipped")
	}
	// f is read to its end: the next file begins with the seq after its
	// last record. A rotation between the listing and the look at each
	// name can make a name point past that file (the live name, rotated
	// again meanwhile): list again before accepting a jump in seqs. A
	// jump that remains is real (note reports it).
	for try := 0; try < 3 && fl.seq != 0 && first != fl.seq+1; try++ {
		n, fs, err := fl.nextFile(fi)
		if err != nil {
			return false, err
		}
		if n == "" {
			return false, nil
		}
		next, first = n, fs
	}
	f, err := openExpect(next, first)
	if err != nil || f == nil {
		return f == nil && err == nil, err // renamed since the listing: look again
	}
	fl.f.Close()
	fl.f, fl.name, fl.off, fl.final = f, filepath.Base(next), 0, false
	return true, nil
}

// nextFile returns the file after f (whose info is fi) in chain order once
// it has a complete first line, and the seq of that line; or "". It also
// learns f's rotated name.
func (fl *follower) nextFile(fi os.FileInfo) (string, uint64, error) {
	files, err := audit.LogFiles(fl.path)
	if err != nil {
		return "", 0, err
	}
	idx := -1
	for i, p := range files {
		if st, err := os.Stat(p); err == nil && os.SameFile(st, fi) {
			idx = i
			if name := filepath.Base(p); name != fl.name {
				old := fl.name
				fl.name = name
				if fl.onRename != nil {
					fl.onRename(old, name)
				}
			}
			break
		}
	}
	for i, p := range files {
		if i <= idx {
			continue
		}
		first, begun := firstSeq(p)
		if !begun {
			continue
		}
		// f itself is gone from the listing: go by seq instead.
		if idx < 0 && first != 0 && first <= fl.seq {
			continue
		}
		return p, first, nil
	}
	return "", 0, nil
}

// firstSeq returns the seq of a file's first line; begun is false while
// the file has no complete line. A first line that is not a record gives 0.
func firstSeq(path string) (seq uint64, begun bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4<<10), maxLine)
	sc.Split(completeLines)
	if !sc.Scan() {
		return 0, false
	}
	seq, _ = peekSeq(sc.Bytes())
	return seq, true
}

// firstRecord returns the seq and prev of a file's first record.
func firstRecord(path string) (seq uint64, prev string, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4<<10), maxLine)
	sc.Split(completeLines)
	if !sc.Scan() {
		return 0, "", false
	}
	line := sc.Bytes()
	if seq, ok = peekSeq(line); !ok {
		return 0, "", false
	}
	const key = `,"prev":"`
	i := bytes.LastIndex(line, []byte(key))
	if i < 0 || len(line) < i+len(key)+hashHexLen {
		return 0, "", false
	}
	return seq, string(line[i+len(key) : i+len(key)+hashHexLen]), true
}

// findRecord scans a file for the record seq and returns the offset just
// past it and its hash.
func findRecord(path string, seq uint64) (end int64, hash string, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	sc.Split(completeLines)
	for sc.Scan() {
		line := sc.Bytes()
		end += int64(len(line)) + 1
		if s, ok := peekSeq(line); ok && s == seq {
			return end, hashOf(line), true, nil
		} else if ok && s > seq {
			break
		}
	}
	return 0, "", false, sc.Err()
}

// recordEndsAt reports whether the line that ends at off in f is the
// record seq with hash.
func recordEndsAt(f *os.File, off int64, seq uint64, hash string) bool {
	if off < 1 {
		return false
	}
	for win := int64(64 << 10); ; win *= 2 {
		from := max(0, off-win)
		b := make([]byte, off-from)
		if readFullAt(f, b, from) != nil || b[len(b)-1] != '\n' {
			return false
		}
		line := b[:len(b)-1]
		if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
			line = line[i+1:]
		} else if from > 0 && win < maxLine {
			continue
		}
		s, ok := peekSeq(line)
		return ok && s == seq && hashOf(line) == hash
	}
}

// completeLines is a bufio.SplitFunc for lines that end in a newline: a
// last line without one is not a line yet.
func completeLines(data []byte, _ bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	return 0, nil, nil
}

// peekSeq reads seq from the start of a record line.
func peekSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(`{"seq":`))
	if !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && n < 20 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	return seq, err == nil
}

func readFullAt(f io.ReaderAt, b []byte, off int64) error {
	n, err := f.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading at byte %d: %w", off, err)
}
