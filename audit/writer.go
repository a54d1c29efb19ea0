package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// DefaultSyncInterval is how often records that need not be durable at once
// are fsynced when Options.SyncInterval is not set.
const DefaultSyncInterval = time.Second

// ErrClosed is returned for records written after Close.
var ErrClosed = errors.New("audit log is closed")

// timeFormat writes the record time with all nine fractional digits, so that
// records also sort by time as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Options configure a Writer.
type Options struct {
	Path    string // the JSONL file; parent directories are created
	Gateway string // gateway id, written into every record
	// SyncInterval is how often records that are not durable on return
	// (everything but state-changing calls) are fsynced. Default 1s.
	SyncInterval time.Duration
	// Log is the operational log, for failures nobody can be told about.
	Log zerolog.Logger

	// openFile opens or creates the log; tests swap it to inject faults.
	openFile func(path string) (file, error)
}

// CheckAndSetDefaults reports missing required options and fills in the rest.
func (o *Options) CheckAndSetDefaults() error {
	if o.Path == "" {
		return errors.New("audit: no path for the audit log")
	}
	if o.Gateway == "" {
		return errors.New("audit: no gateway id")
	}
	if o.SyncInterval <= 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.openFile == nil {
		o.openFile = openOSFile
	}
	return nil
}

// file is what the writer needs of an *os.File.
type file interface {
	io.ReaderAt
	io.WriterAt
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

func openOSFile(path string) (file, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Writer is the audit log: it implements gateway.Auditor and writes
// gateway-level events through Record. It is safe for concurrent use.
//
// Records are encoded and written one at a time under a short lock, with a
// positional write at the end of the last good record: a failed write is cut
// back off and the chain does not advance, so the file never holds half a
// record. A state-changing call's record is fsynced before Call returns;
// concurrent callers share one fsync (group commit). Everything else reaches
// the OS at once and is fsynced every SyncInterval.
type Writer struct {
	path    string
	gateway string
	log     zerolog.Logger
	f       file

	mu        sync.Mutex
	closed    bool
	seq       uint64 // seq of the last good record
	prevHex   [hashHexLen]byte
	sum       [sha256.Size]byte // hash of the record being sealed
	last      time.Time         // time of the last record
	off       int64             // end of the last good record
	tailDirty bool              // a failed write may have left bytes after off
	enc       zerolog.Logger
	line      lineBuffer       // the record being encoded
	dec       gateway.Decision // Call's decision while it is encoded, so it need not escape
	next      *round           // the fsync round durable records join

	// pending holds sealed result records not yet written: they go out
	// in front of the next record, or after maxDeferral (see commitDeferred).
	pending    []byte
	flushTimer *time.Timer

	kick     chan struct{} // a durable record is waiting
	stop     chan struct{}
	done     chan struct{}
	closeErr error // of the last fsync, set before done closes

	records     atomic.Uint64
	fsyncs      atomic.Uint64
	writeErrors atomic.Uint64
	syncErrors  atomic.Uint64
}

var _ gateway.Auditor = (*Writer)(nil)

// lineBuffer receives the encoded record from zerolog.
type lineBuffer struct{ b []byte }

func (l *lineBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	return len(p), nil
}

// Open opens the log at opts.Path, creating it and its directories if needed.
// An existing log is continued: seq and prev come from its last record, read
// from the tail only. A line cut by a crash is removed and an audit.recovered
// record says how many bytes were lost. A last line that is not a valid
// record is an error: the log is not ours, or it was damaged.
func Open(opts Options) (*Writer, error) {
	if err := opts.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	if err := checkEncoder(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(opts.Path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	_, statErr := os.Stat(opts.Path)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := opts.openFile(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("audit: opening the audit log: %w", err)
	}
	w := &Writer{
		path:    opts.Path,
		gateway: opts.Gateway,
		log:     opts.Log,
		f:       f,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	w.enc = zerolog.New(&w.line)
	w.flushTimer = time.AfterFunc(time.Hour, w.flushPending)
	w.flushTimer.Stop()
	if err := w.open(created); err != nil {
		f.Close()
		return nil, err
	}
	go w.syncLoop(opts.SyncInterval, w.off)
	return w, nil
}

// open takes the file lock and picks up the chain where the file ends.
func (w *Writer) open(created bool) error {
	if err := lockFile(w.f); err != nil {
		return fmt.Errorf("audit: %s: %w", w.path, err)
	}
	if created {
		// The new file's directory entry must survive a crash too.
		if err := syncDir(filepath.Dir(w.path)); err != nil {
			w.log.Warn().Err(err).Str("path", w.path).Msg("audit: cannot fsync the log's directory")
		}
	}
	t, err := readTail(w.f)
	if err != nil {
		return fmt.Errorf("audit: %s: %w", w.path, err)
	}
	w.seq, w.off = t.seq, t.end
	hex.Encode(w.prevHex[:], t.hash[:])
	if t.cut > 0 {
		if err := w.removeCutLine(t); err != nil {
			return err
		}
	}
	// Records a crashed process left with the OS reach the disk now.
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("audit: fsync %s: %w", w.path, err)
	}
	return nil
}

// removeCutLine removes a line cut by a crash and records that it did.
func (w *Writer) removeCutLine(t tail) error {
	if err := w.f.Truncate(t.end); err != nil {
		return fmt.Errorf("audit: %s: removing a partial last line: %w", w.path, err)
	}
	w.log.Warn().Str("path", w.path).Int64(FieldTruncatedBytes, t.cut).Int64(FieldTruncatedOffset, t.end).
		Msg("audit: removed a partial last line left by a crash")
	e, err := w.begin(EventRecovered)
	if err != nil {
		return err
	}
	e.Int64(FieldTruncatedBytes, t.cut).Int64(FieldTruncatedOffset, t.end)
	return w.commit(context.Background(), e, false)
}

// checkEncoder makes sure zerolog writes JSON: built with the binary_log tag
// it writes CBOR, which is not the contract.
func checkEncoder() error {
	var b lineBuffer
	l := zerolog.New(&b)
	l.Log().Bool("a", true).Send()
	if string(b.b) != "{\"a\":true}\n" {
		return errors.New("audit: zerolog does not write JSON (built with binary_log?) or is disabled by zerolog.SetGlobalLevel")
	}
	return nil
}

// Record writes a gateway-level event (gateway.start, policy.load …). fields
// adds the event's fields and must not call Msg or Send, nor use names of the
// envelope (seq, time, event, gateway, prev, hash). A durable record is on
// disk when Record returns.
func (w *Writer) Record(event string, durable bool, fields func(e *zerolog.Event)) error {
	if event == "" {
		return errors.New("audit: record without an event name")
	}
	e, err := w.begin(event)
	if err != nil {
		return err
	}
	if fields != nil {
		ok := false
		defer func() {
			if !ok { // fields panicked: keep the writer usable
				w.line.b = w.line.b[:0]
				w.mu.Unlock()
			}
		}()
		fields(e)
		ok = true
	}
	return w.commit(context.Background(), e, durable)
}

// begin locks the writer and starts a record with its envelope. The caller
// adds the event's fields and ends with commit, which unlocks.
func (w *Writer) begin(event string) (*zerolog.Event, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, fmt.Errorf("audit: %s: %w", w.path, ErrClosed)
	}
	w.line.b = w.line.b[:0]
	e := w.enc.Log()
	if e == nil {
		w.mu.Unlock()
		return nil, fmt.Errorf("audit: %s: zerolog is disabled by zerolog.SetGlobalLevel", w.path)
	}
	now := time.Now().UTC()
	if now.Before(w.last) {
		now = w.last // the wall clock stepped back; time must not go back along seq
	}
	w.last = now
	var tb [40]byte
	e.Uint64(FieldSeq, w.seq+1).
		Bytes(FieldTime, now.AppendFormat(tb[:0], timeFormat)).
		Str(FieldEvent, event).
		Str(FieldGateway, w.gateway)
	return e, nil
}

// Deferral of result records.
const (
	// maxDeferral bounds how long a result record waits in memory when no
	// other record follows it.
	maxDeferral = 5 * time.Millisecond
	// maxPending bounds the deferred bytes; past it records go out at once.
	maxPending = 256 << 10
)

// commitDeferred ends a record that may wait in memory, sealed into the
// chain, until the next record is written (in the same write) or
// maxDeferral passes. Under load a call's result record then shares the
// write of the next call record instead of costing a write of its own; a
// crash of the process loses at most maxDeferral of result records, never a
// call record (those are written before the call is forwarded).
func (w *Writer) commitDeferred(ctx context.Context, e *zerolog.Event) error {
	e.Bytes(FieldPrev, w.prevHex[:])
	e.Send()
	if !w.seal() {
		err := fmt.Errorf("audit: %s: bad record", w.path)
		w.mu.Unlock()
		return err
	}
	if len(w.pending)+len(w.line.b) > maxPending {
		err := w.writeSealed()
		w.mu.Unlock()
		return err
	}
	if len(w.pending) == 0 {
		w.flushTimer.Reset(maxDeferral)
	}
	w.pending = append(w.pending, w.line.b...)
	w.advance()
	w.mu.Unlock()
	return nil
}

// flushPending writes the deferred records (maxDeferral passed).
func (w *Writer) flushPending() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushLocked(); err != nil {
		w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot write deferred result records; retrying with the next record")
		w.flushTimer.Reset(maxDeferral * 20)
	}
}

// flushLocked writes the deferred records; w.mu is held.
func (w *Writer) flushLocked() error {
	if len(w.pending) == 0 {
		return nil
	}
	if err := w.writeAt(w.pending); err != nil {
		return err
	}
	w.pending = w.pending[:0]
	if cap(w.pending) > maxPending {
		w.pending = nil
	}
	return nil
}

// commit ends the record begun by begin, writes it (after any deferred
// records, in one write), unlocks, and for a durable record waits for the
// fsync that covers it.
func (w *Writer) commit(ctx context.Context, e *zerolog.Event, durable bool) error {
	e.Bytes(FieldPrev, w.prevHex[:])
	e.Send()
	err := w.write()
	var r *round
	if err == nil && durable {
		r = w.join()
	}
	if cap(w.line.b) > 1<<20 {
		w.line.b = nil // do not keep a rare huge record's buffer
	}
	w.mu.Unlock()
	if err != nil || r == nil {
		return err
	}
	return w.wait(ctx, r)
}

// write seals the encoded record with its hash and writes it, after any
// deferred records, at the end of the last good record. On failure the file
// is cut back and the chain does not advance, so the next record retries at
// the same offset.
func (w *Writer) write() error {
	n := len(w.line.b)
	if !w.seal() {
		if n+hashFieldLen > maxRecordSize {
			return fmt.Errorf("audit: %s: record of %d bytes is over the %d byte limit", w.path, n, maxRecordSize)
		}
		return fmt.Errorf("audit: %s: zerolog did not produce a JSON object", w.path)
	}
	return w.writeSealed()
}

// seal appends the hash field to the encoded record in w.line.b and keeps
// its hash in w.sum; it reports false for a record that cannot be written.
func (w *Writer) seal() bool {
	b := w.line.b
	n := len(b)
	if n < 2 || !bytes.HasSuffix(b, []byte("}\n")) || n+hashFieldLen > maxRecordSize {
		return false
	}
	w.sum = sha256.Sum256(b[:n-1])
	b = append(b[:n-2], hashKey...)
	b = hex.AppendEncode(b, w.sum[:])
	b = append(b, hashEnd+"\n"...)
	w.line.b = b
	return true
}

// advance moves the chain past the record just sealed.
func (w *Writer) advance() {
	w.seq++
	hex.Encode(w.prevHex[:], w.sum[:])
	w.records.Add(1)
}

// writeSealed writes the deferred records and the sealed record in one write
// and advances the chain past the record.
func (w *Writer) writeSealed() error {
	var err error
	if len(w.pending) == 0 {
		err = w.writeAt(w.line.b)
	} else {
		keep := len(w.pending)
		w.pending = append(w.pending, w.line.b...)
		if err = w.writeAt(w.pending); err != nil {
			w.pending = w.pending[:keep] // still sealed in the chain; they go out with the next record
		} else {
			w.pending = w.pending[:0]
			w.flushTimer.Stop()
		}
	}
	if err != nil {
		return err
	}
	w.advance()
	return nil
}

// writeAt writes b at the end of the last good write; on failure it cuts
// the file back so that no partial record stays.
func (w *Writer) writeAt(b []byte) error {
	if w.tailDirty {
		if err := w.f.Truncate(w.off); err != nil {
			w.writeErrors.Add(1)
			return fmt.Errorf("audit: %s: removing a failed write: %w", w.path, err)
		}
		w.tailDirty = false
	}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		w.writeErrors.Add(1)
		if terr := w.f.Truncate(w.off); terr != nil {
			w.tailDirty = true
		}
		return fmt.Errorf("audit: writing %s: %w", w.path, err)
	}
	w.off += int64(len(b))
	return nil
}

// Close fsyncs and closes the log. Records written after Close fail with
// ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.flushTimer.Stop() // the sync loop writes what is deferred before its last fsync
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	err := w.closeErr
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("audit: closing %s: %w", w.path, cerr)
	}
	return err
}

// Path returns the log's file name.
func (w *Writer) Path() string { return w.path }

// Stats are counters since Open, for metrics and tests.
type Stats struct {
	Seq         uint64 // seq of the last record written
	Size        int64  // bytes in the log
	Records     uint64 // records written
	Fsyncs      uint64
	WriteErrors uint64
	SyncErrors  uint64
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	seq, size := w.seq, w.off
	w.mu.Unlock()
	return Stats{
		Seq:         seq,
		Size:        size,
		Records:     w.records.Load(),
		Fsyncs:      w.fsyncs.Load(),
		WriteErrors: w.writeErrors.Load(),
		SyncErrors:  w.syncErrors.Load(),
	}
}
