package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Rotation (see files.go for the names of rotated files). The live file is
// closed with a checkpoint, renamed, and a new live file begins with an
// audit.rotated record whose prev is the rotated file's last hash, so one
// chain runs through all files. Under the writer's lock this costs a write,
// a rename and a file creation; the fsyncs of the old file and of the
// directory are the sync loop's, before any durable record of the new file
// is acknowledged.

// rotateRetryDelay spaces out attempts at a rotation that failed.
const rotateRetryDelay = time.Second

// Why a file was rotated out (audit.rotated reason).
const (
	RotateSize = "size" // rotate_size reached
	RotateTime = "time" // rotate_interval passed
	// RotateRecovered: the live file was found missing or empty beside
	// rotated files, by a version that rotated by rename first.
	RotateRecovered = "recovered"
	// RotateMissing: the live file was missing, emptied or replaced (at
	// start, or while the gateway wrote it): the records it held are gone
	// from the log, and verify reports it.
	RotateMissing = "live_file_missing"
)

// NextSuffix names the file a rotation writes before it takes the live
// name (the live file's name and this suffix).
const NextSuffix = ".next"

const nextSuffix = NextSuffix

// chain is the writer's place in the chain, kept across a step that may
// have to be undone.
type chain struct {
	seq           uint64
	prevHex       [hashHexLen]byte
	fileFirstSeq  uint64
	fileStart     time.Time
	firstUnsigned time.Time
}

func (w *Writer) chainState() chain {
	return chain{w.seq, w.prevHex, w.fileFirstSeq, w.fileStart, w.firstUnsigned}
}

func (w *Writer) restoreChain(c chain) {
	w.seq, w.prevHex, w.fileFirstSeq, w.fileStart, w.firstUnsigned = c.seq, c.prevHex, c.fileFirstSeq, c.fileStart, c.firstUnsigned
}

// rotationDue says why the live file must be rotated before a record
// written at now, or "". A file holding nothing but its first record is
// not rotated.
func (w *Writer) rotationDue(now time.Time) string {
	if now.Before(w.rotateRetry) || w.fileFirstSeq == 0 || w.seq <= w.fileFirstSeq {
		return ""
	}
	if w.opts.RotateSize > 0 && w.off+int64(len(w.pending)) >= w.opts.RotateSize {
		return RotateSize
	}
	if w.opts.RotateInterval > 0 && now.Sub(w.fileStart) >= w.opts.RotateInterval {
		return RotateTime
	}
	return ""
}

// rotateLocked rotates the live file out; w.mu is held. On failure the old
// file stays the live one and nothing of the chain is lost.
func (w *Writer) rotateLocked(now time.Time, reason string) error {
	// A live name that no longer names the writer's file is the sync
	// loop's to deal with: renaming it would make another file a rotated
	// file of the log.
	if replaced, cut := w.liveReplaced(); replaced || cut {
		return fmt.Errorf("%s is not the file the gateway writes (deleted, replaced or cut): not rotating it", w.path)
	}
	if w.signer != nil {
		if err := w.checkpointLocked(now, CheckpointRotation); err != nil {
			return err
		}
	} else if err := w.flushLocked(); err != nil {
		return err
	}
	if w.tailDirty { // a failed write's bytes must not go out with the file
		if err := w.f.Truncate(w.off); err != nil {
			return err
		}
		w.tailDirty = false
	}
	rotated := RotatedName(w.path, now, w.fileFirstSeq)
	if _, err := os.Lstat(rotated); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s exists: not overwriting it", rotated)
	}
	// The new file gets its first record under a name of its own and then
	// takes the live name, so that the live name never stands for a missing
	// or empty file: Open, finding one beside rotated files, knows it was
	// deleted or emptied (a crash between the two renames leaves the next
	// file, which Open completes the rotation with).
	next := w.path + nextSuffix
	os.Remove(next) // a leftover of an attempt that failed
	nf, err := w.opts.openFile(next)
	if err != nil {
		return err
	}
	if err := lockFile(nf); err != nil {
		nf.Close()
		os.Remove(next)
		return err
	}
	old, oldOff, oldDirty := w.f, w.off, w.tailDirty
	chain := w.chainState()
	w.f, w.off, w.tailDirty = nf, 0, false
	err = w.writeRotated(now, reason, rotated, chain.fileFirstSeq, w.seq)
	if err == nil {
		if err = os.Rename(w.path, rotated); err == nil {
			if err = os.Rename(next, w.path); err != nil {
				if rerr := os.Rename(rotated, w.path); rerr != nil {
					err = fmt.Errorf("%w; and renaming %s back failed: %v", err, rotated, rerr)
				}
			}
		}
	}
	if err != nil {
		nf.Close()
		os.Remove(next)
		w.f, w.off, w.tailDirty = old, oldOff, oldDirty
		w.restoreChain(chain)
		return err
	}
	w.retiring = append(w.retiring, old)
	w.gen++
	w.rotations.Add(1)
	for _, c := range []chan struct{}{w.kick, w.retention} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return nil
}

// writeRotated writes audit.rotated, the first record of a new live file;
// w.mu is held.
func (w *Writer) writeRotated(now time.Time, reason, previous string, firstSeq, lastSeq uint64) error {
	e := w.envelope(EventRotated, now)
	if e == nil {
		return fmt.Errorf("audit: %s: zerolog is disabled by zerolog.SetGlobalLevel", w.path)
	}
	e.Str(FieldReason, reason).
		Str(FieldPreviousFile, filepath.Base(previous)).
		Uint64(FieldPreviousFirstSeq, firstSeq).
		Uint64(FieldPreviousLastSeq, lastSeq).
		Bytes(FieldPrev, w.prevHex[:])
	e.Send()
	w.fileFirstSeq = 0 // the record about to be written is the file's first
	if err := w.write(); err != nil {
		return err
	}
	return nil
}

// timedRotation rotates a live file that has grown old while idle.
func (w *Writer) timedRotation() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	now := w.opts.now().UTC()
	if now.Before(w.last) {
		now = w.last
	}
	if w.rotationDue(now) != RotateTime {
		return
	}
	w.last = now
	if err := w.rotateLocked(now, RotateTime); err != nil {
		w.rotateRetry = now.Add(rotateRetryDelay)
		w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot rotate the log; retrying later")
	}
}

// rotatedTail is where a rotated file ends.
type rotatedTail struct {
	name     string
	firstSeq uint64
	lastSeq  uint64
	lastHash [sha256.Size]byte
	size     int64
}

// describeRotated reads a rotated file's first and last record (of a file
// an operator compressed with gzip, decompressed; its size is the
// compressed size on disk).
func describeRotated(name string) (*rotatedTail, error) {
	if strings.HasSuffix(name, gzipExt) {
		return describeGzipped(name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := readTail(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if t.seq == 0 || t.cut > 0 {
		return nil, fmt.Errorf("%s: does not end with a whole record", name)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	first, _ := readFileStart(f, t.seq, zerolog.Nop(), name)
	return &rotatedTail{name: name, firstSeq: first, lastSeq: t.seq, lastHash: t.hash, size: fi.Size()}, nil
}

// describeGzipped is describeRotated for a rotated file compressed with
// gzip: it reads the whole stream, keeping only its first and last line.
func describeGzipped(name string) (*rotatedTail, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	rc, err := OpenLogFile(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64<<10)
	var first, last []byte
	for {
		line, err := readLine(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if first == nil {
			first = bytes.Clone(line)
		}
		last = append(last[:0], line...)
	}
	if first == nil {
		return nil, fmt.Errorf("%s: does not end with a whole record", name)
	}
	fh, flt := parseRecord(first)
	if flt != nil {
		return nil, fmt.Errorf("%s: the first record is not a valid audit record: %s", name, flt.msg)
	}
	lh, flt := parseRecord(last)
	if flt != nil {
		return nil, fmt.Errorf("%s: the last record is not a valid audit record: %s", name, flt.msg)
	}
	return &rotatedTail{name: name, firstSeq: fh.seq, lastSeq: lh.seq, lastHash: lh.hash, size: fi.Size()}, nil
}

// readLine reads one whole line of a log, without its newline; a line
// without one at the end of the stream, or longer than a record can be,
// is an error.
func readLine(br *bufio.Reader) ([]byte, error) {
	var long []byte
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if long == nil {
				return b[:len(b)-1], nil
			}
			return append(long, b[:len(b)-1]...), nil
		case err == bufio.ErrBufferFull:
			if len(long)+len(b) > maxRecordSize {
				return nil, fmt.Errorf("a line longer than %d bytes: not an audit log", maxRecordSize)
			}
			long = append(long, b...)
		case err == io.EOF && len(b) == 0 && long == nil:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("does not end with a whole record")
		default:
			return nil, err
		}
	}
}

// lastRotated describes the newest rotated file of the log whose live file
// is path, or returns nil when there is none.
func lastRotated(path string) (*rotatedTail, error) {
	files, err := LogFiles(path)
	if err != nil {
		return nil, err
	}
	if n := len(files); n > 0 && files[n-1] == path {
		files = files[:n-1]
	}
	if len(files) == 0 {
		return nil, nil
	}
	rt, err := describeRotated(files[len(files)-1])
	if err != nil {
		return nil, fmt.Errorf("audit: continuing the rotated file: %w", err)
	}
	return rt, nil
}

// readFileStart returns the seq and time of a file's first record, for the
// rotated name and the rotation interval. A first line that cannot be read
// is logged; the file is then taken to begin at lastSeq, now.
func readFileStart(f file, lastSeq uint64, log zerolog.Logger, name string) (uint64, time.Time) {
	buf := make([]byte, 64<<10)
	var line []byte
	for off := int64(0); len(line) <= maxRecordSize; {
		n, err := f.ReadAt(buf, off)
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			line = append(line, buf[:i]...)
			if h, flt := parseRecord(line); flt == nil {
				return h.seq, h.time
			}
			break
		}
		line = append(line, buf[:n]...)
		off += int64(n)
		if err != nil {
			break
		}
	}
	log.Warn().Str("path", name).Msg("audit: cannot read the file's first record; taking its last as its start")
	return lastSeq, time.Now().UTC()
}

// retain deletes the oldest rotated files that retention no longer keeps,
// each after a durable audit.retention record that says what it held.
func (w *Writer) retain() {
	if w.opts.RetainDays <= 0 && w.opts.RetainBytes <= 0 {
		return
	}
	w.retainMu.Lock() // one pass at a time: a file is deleted, and recorded, once
	defer w.retainMu.Unlock()
	// The retention records may rotate the live file out: look again, a
	// bounded number of times.
	for range 3 {
		if !w.retainPass() {
			return
		}
	}
}

// retainPass deletes what retention no longer keeps of the files there are
// now, and reports whether it deleted any.
func (w *Writer) retainPass() (deleted bool) {
	days, maxBytes := w.opts.RetainDays, w.opts.RetainBytes
	// Rotated files an operator compressed with gzip count and go too.
	files, err := LogFilesWithGzip(w.path)
	if err != nil {
		w.log.Error().Err(err).Msg("audit: retention cannot list the log's files")
		return false
	}
	var rotated []string
	var total int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		total += fi.Size()
		if f != w.path {
			rotated = append(rotated, f)
		}
	}
	keep := ""
	if w.opts.RetainFrom != nil {
		if keep, err = w.opts.RetainFrom(); err != nil {
			w.log.Error().Err(err).Msg("audit: retention cannot tell which files are still needed; keeping them all")
			return false
		}
	}
	now := w.opts.now()
	for _, name := range rotated {
		reason := ""
		if at, ok := rotatedTime(name); days > 0 && ok && now.Sub(at) >= time.Duration(days)*24*time.Hour {
			reason = "age"
		} else if maxBytes > 0 && total > maxBytes {
			reason = RotateSize
		}
		if reason == "" {
			return deleted // files are in chain order: the rest are newer
		}
		if keep != "" && strings.TrimSuffix(filepath.Base(name), gzipExt) == strings.TrimSuffix(filepath.Base(keep), gzipExt) {
			w.log.Warn().Str(FieldFile, name).Str(FieldReason, reason).Int64("log_bytes", total).
				Msg("audit: retention keeps this file and those after it: they are not delivered to every SIEM yet (audit.ship)")
			return deleted
		}
		rt, err := describeRotated(name)
		if err != nil {
			w.log.Error().Err(err).Msg("audit: retention cannot read the oldest rotated file; keeping it")
			return false
		}
		err = w.Record(EventRetention, true, func(e *zerolog.Event) {
			var hb [hashHexLen]byte
			hex.Encode(hb[:], rt.lastHash[:])
			e.Str(FieldReason, reason).
				Str(FieldFile, filepath.Base(name)).
				Uint64(FieldFirstSeq, rt.firstSeq).
				Uint64(FieldLastSeq, rt.lastSeq).
				Bytes(FieldLastHash, hb[:]).
				Int64(FieldBytes, rt.size).
				Int(FieldRetainDays, days).
				Int64(FieldRetainBytes, maxBytes)
		})
		if err != nil {
			w.log.Error().Err(err).Str(FieldFile, name).Msg("audit: retention cannot record the deletion; keeping the file")
			return false
		}
		if err := os.Remove(name); err != nil {
			w.log.Error().Err(err).Str(FieldFile, name).Msg("audit: retention cannot delete the file")
			return false
		}
		if err := syncDir(w.dir); err != nil {
			w.log.Warn().Err(err).Str("path", w.dir).Msg("audit: cannot fsync the log's directory")
		}
		total -= rt.size
		deleted = true
		w.retentionDeletes.Add(1)
		w.log.Info().Str(FieldFile, name).Str(FieldReason, reason).Uint64(FieldFirstSeq, rt.firstSeq).
			Uint64(FieldLastSeq, rt.lastSeq).Msg("audit: retention deleted a rotated file")
	}
	return deleted
}

// rotatedTime parses the time of rotation out of a rotated file's name.
func rotatedTime(name string) (time.Time, bool) {
	base := filepath.Base(name)
	ext := filepath.Ext(base)
	rest := base[:len(base)-len(ext)]
	// <stem>-<time>-<seq>: the time is the second field from the end.
	j := bytes.LastIndexByte([]byte(rest), '-')
	if j < 0 {
		return time.Time{}, false
	}
	i := bytes.LastIndexByte([]byte(rest[:j]), '-')
	if i < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(rotatedTimeFormat, rest[i+1:j])
	return t, err == nil
}
