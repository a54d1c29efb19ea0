package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
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

	// BootID names this start of the gateway in checkpoints; gateway.start
	// and gateway.stop carry it too.
	BootID string
	// SigningKey signs checkpoints (doc.go, "Checkpoints"); without it the
	// writer writes none.
	SigningKey ed25519.PrivateKey
	// A checkpoint follows at most CheckpointEvery records (default 1000)
	// and covers a record at most CheckpointInterval (default 60s) after it
	// was written.
	CheckpointEvery    int
	CheckpointInterval time.Duration

	// Rotation: the live file is rotated out once it holds RotateSize bytes,
	// or once its first record is RotateInterval old. Zero turns each off.
	RotateSize     int64
	RotateInterval time.Duration
	// Retention deletes the oldest rotated files, never the live one: those
	// rotated out more than RetainDays ago, and as many as needed to keep
	// the whole log within RetainBytes. Zero keeps everything.
	RetainDays  int
	RetainBytes int64
	// RetainFrom, when set, names the oldest file retention must keep,
	// with every file after it, whatever RetainDays and RetainBytes say
	// ("" keeps nothing more); an error keeps every file. Audit shipping
	// sets it to the oldest file a shipper has not delivered.
	RetainFrom func() (string, error)

	// WarnFillPercent is the fill level of the audit filesystem that raises
	// a warning (default 80), checked every CapacityInterval (default 10s).
	WarnFillPercent  float64
	CapacityInterval time.Duration

	// Clock, when set, is the writer's clock instead of time.Now: for
	// tools and tests that write a log of another time (a clock stepped
	// back across a restart).
	Clock func() time.Time

	// openFile opens or creates the log; tests swap it to inject faults.
	openFile func(path string) (file, error)
	// now is the clock; statfs measures the audit filesystem. Tests swap both.
	now    func() time.Time
	statfs func(dir string) (diskUsage, error)
}

// Defaults of the capacity check.
const (
	DefaultWarnFillPercent  = 80
	DefaultCapacityInterval = 10 * time.Second
)

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
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	// Checkpoints carry the interval in milliseconds; verify must not be
	// stricter than the writer.
	o.CheckpointInterval = max(o.CheckpointInterval.Truncate(time.Millisecond), time.Millisecond)
	if o.WarnFillPercent <= 0 {
		o.WarnFillPercent = DefaultWarnFillPercent
	}
	if o.CapacityInterval <= 0 {
		o.CapacityInterval = DefaultCapacityInterval
	}
	if o.RotateSize < 0 || o.RotateInterval < 0 || o.RetainDays < 0 || o.RetainBytes < 0 {
		return errors.New("audit: rotation and retention limits must not be negative")
	}
	if o.SigningKey != nil {
		if len(o.SigningKey) != ed25519.PrivateKeySize {
			return errors.New("audit: the signing key is not an Ed25519 private key")
		}
		if o.BootID == "" {
			return errors.New("audit: checkpoints need a boot id")
		}
		for _, kv := range [][2]string{{"gateway id", o.Gateway}, {"boot id", o.BootID}} {
			if err := checkSignable(kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	if o.openFile == nil {
		o.openFile = openOSFile
	}
	if o.now == nil {
		o.now = o.Clock
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.statfs == nil {
		o.statfs = statfsDir
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
	dir     string
	gateway string
	log     zerolog.Logger
	opts    Options
	f       file

	mu        sync.Mutex
	closed    bool
	seq       uint64 // seq of the last good record
	prevHex   [hashHexLen]byte
	sum       [sha256.Size]byte // hash of the record being sealed
	last      time.Time         // time of the last record
	off       int64             // end of the last good record in the live file
	tailDirty bool              // a failed write may have left bytes after off
	writeErr  error             // of the last failed write, named while its bytes cannot be removed
	enc       zerolog.Logger
	line      lineBuffer       // the record being encoded
	dec       gateway.Decision // Call's decision while it is encoded, so it need not escape
	next      *round           // the fsync round durable records join

	// pending holds sealed result records not yet written: they go out
	// in front of the next record, or after maxDeferral (see commitDeferred).
	pending    []byte
	flushTimer *time.Timer
	flushErrs  gateway.Every // the log line of a failed flush, at most every 10 s
	beginErrs  gateway.Every // the log line of a live file that cannot be made again
	recordErrs gateway.Every // the log line of a record not written
	// liveLost is set while the live name is held by another file: every
	// record fails until the writer has a live file again.
	liveLost error

	// Checkpoints (nil signer: none).
	signer        *signer
	cp            Checkpoint // the one being written
	sigBuf        []byte
	cpSeq         uint64    // seq of the last checkpoint record
	firstUnsigned time.Time // time of the first record after it

	// Rotation: the live file's first record, and files rotated out whose
	// fsync and close the sync loop still owes.
	fileFirstSeq uint64
	fileStart    time.Time
	gen          uint64 // counts live files, so the sync loop sees a new one
	// checkedEnd is where the records of live file checkedGen ended when
	// liveReplaced last found it intact.
	checkedEnd  int64
	checkedGen  uint64
	holed       uint64 // 1 + the gen of a live file a round found a hole in
	retiring    []file
	rotateRetry time.Time // a failed rotation is retried after this
	lost        lost
	retainMu    sync.Mutex

	kick      chan struct{} // a durable record is waiting, or a file was rotated out
	retention chan struct{} // a file was rotated out: look at retention
	stop      chan struct{}
	done      chan struct{} // the sync loop ended
	maintDone chan struct{} // the maintenance loop ended
	closeErr  error         // of the last fsync, set before done closes

	records          atomic.Uint64
	fsyncs           atomic.Uint64
	writeErrors      atomic.Uint64
	syncErrors       atomic.Uint64
	checkpoints      atomic.Uint64
	rotations        atomic.Uint64
	retentionDeletes atomic.Uint64
	capacityWarnings atomic.Uint64
	fillPercent      atomic.Uint64 // math.Float64bits of the last measurement
	capacityWarning  atomic.Bool
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
	if created {
		// A crash between a rotation's two renames: its next file, which
		// holds the new live file's first record, takes the live name.
		if err := os.Rename(opts.Path+nextSuffix, opts.Path); err == nil {
			created = false
			opts.Log.Warn().Str("path", opts.Path).Msg("audit: completed a rotation cut short by a crash")
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("audit: completing a rotation cut short by a crash: %w", err)
		}
	}
	f, err := opts.openFile(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("audit: opening the audit log: %w", err)
	}
	w := &Writer{
		path:      opts.Path,
		dir:       filepath.Dir(opts.Path),
		gateway:   opts.Gateway,
		log:       opts.Log,
		opts:      opts,
		f:         f,
		kick:      make(chan struct{}, 1),
		retention: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		maintDone: make(chan struct{}),
	}
	if opts.SigningKey != nil {
		w.signer = newSigner(opts.SigningKey)
	}
	w.fillPercent.Store(math.Float64bits(-1))
	w.enc = zerolog.New(&w.line)
	w.flushTimer = time.AfterFunc(time.Hour, w.flushPending)
	w.flushTimer.Stop()
	o, err := w.open(created)
	if err != nil {
		f.Close()
		return nil, err
	}
	go w.syncLoop(opts.SyncInterval, w.off)
	if err := w.start(o); err != nil {
		close(w.maintDone) // never started
		w.shutdown()
		return nil, err
	}
	go w.maintain()
	return w, nil
}

// opening is what Open found that the first records must tell.
type opening struct {
	cut  int64        // bytes of a line cut by a crash, removed
	at   int64        // where they were
	cont *rotatedTail // the empty live file continues this rotated file
}

// open takes the file lock and picks up the chain where the file ends. An
// empty live file beside rotated ones continues the last of them: a
// rotation never leaves the live name empty, so the file was deleted or
// emptied, and the first record says so.
func (w *Writer) open(created bool) (opening, error) {
	var o opening
	if err := lockFile(w.f); err != nil {
		return o, fmt.Errorf("audit: %s: %w", w.path, err)
	}
	if created {
		// The new file's directory entry must survive a crash too.
		if err := syncDir(w.dir); err != nil {
			w.log.Warn().Err(err).Str("path", w.path).Msg("audit: cannot fsync the log's directory")
		}
	}
	// The next file of a rotation that failed or was cut short before the
	// live file was renamed: the live file holds the whole chain.
	if err := os.Remove(w.path + nextSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return o, fmt.Errorf("audit: %w", err)
	}
	t, err := readTail(w.f)
	if err != nil {
		return o, fmt.Errorf("audit: %s: %w", w.path, err)
	}
	w.seq, w.off = t.seq, t.end
	hex.Encode(w.prevHex[:], t.hash[:])
	if t.cut > 0 {
		if err := w.f.Truncate(t.end); err != nil {
			return o, fmt.Errorf("audit: %s: removing a partial last line: %w", w.path, err)
		}
		w.log.Warn().Str("path", w.path).Int64(FieldTruncatedBytes, t.cut).Int64(FieldTruncatedOffset, t.end).
			Msg("audit: removed a partial last line left by a crash")
		o.cut, o.at = t.cut, t.end
	}
	if t.end == 0 {
		if o.cont, err = lastRotated(w.path); err != nil {
			return o, err
		}
		if o.cont != nil {
			w.seq = o.cont.lastSeq
			hex.Encode(w.prevHex[:], o.cont.lastHash[:])
		}
	} else {
		w.fileFirstSeq, w.fileStart = readFileStart(w.f, w.seq, w.log, w.path)
	}
	w.cpSeq = w.seq
	// Records a crashed process left with the OS reach the disk now.
	if err := w.f.Sync(); err != nil {
		return o, fmt.Errorf("audit: fsync %s: %w", w.path, err)
	}
	return o, nil
}

// start writes what Open found, in order: the link to the rotated file an
// empty live file continues, a checkpoint by which this boot vouches for
// the log as it found it, and the removal of a cut line.
func (w *Writer) start(o opening) error {
	if o.cont != nil {
		w.mu.Lock()
		err := w.writeRotated(w.stamp(), RotateMissing, o.cont.name, o.cont.firstSeq, o.cont.lastSeq)
		w.mu.Unlock()
		if err != nil {
			return err
		}
		w.log.Error().Str("path", w.path).Str(FieldPreviousFile, filepath.Base(o.cont.name)).
			Msg("audit: the live file was missing or empty beside rotated files: it was deleted or emptied, and the records it held are gone; " +
				"continuing the chain of the last rotated file (audit verify reports the loss)")
	}
	if w.signer != nil {
		w.mu.Lock()
		err := w.checkpointLocked(w.stamp(), CheckpointOpen)
		var r *round
		if err == nil {
			r = w.join()
		}
		w.mu.Unlock()
		if err != nil {
			return err
		}
		if err := w.wait(context.Background(), r); err != nil {
			return err
		}
	}
	if o.cut > 0 {
		e, err := w.begin(EventRecovered)
		if err != nil {
			return err
		}
		e.Int64(FieldTruncatedBytes, o.cut).Int64(FieldTruncatedOffset, o.at)
		return w.commit(context.Background(), e, false)
	}
	return nil
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
// adds the event's fields and ends with commit, which unlocks. A rotation or
// checkpoint that is due goes first.
func (w *Writer) begin(event string) (*zerolog.Event, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, fmt.Errorf("audit: %s: %w", w.path, ErrClosed)
	}
	if err := w.liveLost; err != nil {
		w.lose(err)
		w.mu.Unlock()
		return nil, err
	}
	now := w.stamp()
	if err := w.beforeRecord(now); err != nil {
		w.lose(err)
		w.mu.Unlock()
		return nil, err
	}
	e := w.envelope(event, now)
	if e == nil {
		w.mu.Unlock()
		return nil, fmt.Errorf("audit: %s: zerolog is disabled by zerolog.SetGlobalLevel", w.path)
	}
	return e, nil
}

// stamp returns the time of the next record; w.mu is held.
func (w *Writer) stamp() time.Time {
	now := w.opts.now().UTC()
	if now.Before(w.last) {
		now = w.last // the wall clock stepped back; time must not go back along seq
	}
	w.last = now
	return now
}

// envelope starts encoding the next record; w.mu is held.
func (w *Writer) envelope(event string, now time.Time) *zerolog.Event {
	w.line.b = w.line.b[:0]
	e := w.enc.Log()
	if e == nil {
		return nil
	}
	var tb [40]byte
	return e.Uint64(FieldSeq, w.seq+1).
		Bytes(FieldTime, now.AppendFormat(tb[:0], timeFormat)).
		Str(FieldEvent, event).
		Str(FieldGateway, w.gateway)
}

// beforeRecord rotates the live file and writes a checkpoint when either is
// due; w.mu is held. A checkpoint that cannot be written fails the record,
// so that no more records than allowed ever follow a checkpoint unsigned. A
// failed rotation only delays the rotation.
func (w *Writer) beforeRecord(now time.Time) error {
	if reason := w.rotationDue(now); reason != "" {
		if err := w.rotateLocked(now, reason); err != nil {
			w.rotateRetry = now.Add(rotateRetryDelay)
			w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot rotate the log; retrying later")
		}
	}
	return w.checkpointIfDue(now)
}

// checkpointIfDue writes the checkpoint a record at now needs first. Like
// the records around it, it reaches the disk with the next fsync: a
// state-changing call's, or the one every SyncInterval. An fsync of its own
// every CheckpointEvery records would cost a fifth of the throughput.
func (w *Writer) checkpointIfDue(now time.Time) error {
	if reason := w.checkpointDue(now); reason != "" {
		return w.checkpointLocked(now, reason)
	}
	return nil
}

// lost counts records that could not be written, for the audit.write_failed
// record that says so once records can be written again.
type lost struct {
	n     uint64
	since time.Time
	err   string
}

// lose counts a record that could not be written; w.mu is held.
func (w *Writer) lose(err error) {
	if w.lost.n == 0 {
		w.lost.since = w.last
	}
	w.lost.n++
	w.lost.err = err.Error()
}

// writeLost follows the first record written after records were lost with
// audit.write_failed: how many since when, and why. It is retried after
// the next record when it cannot be written; w.mu is held.
func (w *Writer) writeLost() {
	now := w.last
	if w.checkpointIfDue(now) != nil {
		return
	}
	e := w.envelope(EventWriteFailed, now)
	if e == nil {
		return
	}
	appendTime(e, FieldSince, w.lost.since)
	e.Uint64(FieldRecordsLost, w.lost.n).Str(FieldError, w.lost.err).Bytes(FieldPrev, w.prevHex[:])
	e.Send()
	if w.write() != nil {
		return
	}
	w.log.Warn().Uint64(FieldRecordsLost, w.lost.n).Time(FieldSince, w.lost.since).
		Msg("audit: the log takes records again; audit.write_failed says how many were lost")
	w.lost = lost{}
}

// checkpointDue says why a checkpoint must come before a record written at
// now, or "".
func (w *Writer) checkpointDue(now time.Time) string {
	if w.signer == nil || w.seq == w.cpSeq {
		return ""
	}
	if w.seq-w.cpSeq >= uint64(w.opts.CheckpointEvery) {
		return CheckpointCount
	}
	if now.Sub(w.firstUnsigned) > w.opts.CheckpointInterval {
		return CheckpointInterval
	}
	return ""
}

// checkpointLocked writes a checkpoint covering the last record, after any
// deferred records; w.mu is held.
func (w *Writer) checkpointLocked(now time.Time, reason string) error {
	var tb [40]byte
	c := &w.cp
	*c = Checkpoint{
		Gateway: w.gateway, Seq: w.seq, Hash: string(w.prevHex[:]),
		Time:   string(now.AppendFormat(tb[:0], timeFormat)),
		BootID: w.opts.BootID, Reason: reason,
		Every: uint64(w.opts.CheckpointEvery), IntervalMS: w.opts.CheckpointInterval.Milliseconds(),
	}
	w.sigBuf = w.signer.sign(c, w.sigBuf)
	e := w.envelope(EventCheckpoint, now)
	if e == nil {
		return fmt.Errorf("audit: %s: zerolog is disabled by zerolog.SetGlobalLevel", w.path)
	}
	e.Object(FieldCheckpoint, checkpointObject{c}).Bytes(FieldSignature, w.sigBuf)
	e.Bytes(FieldPrev, w.prevHex[:])
	e.Send()
	if err := w.write(); err != nil {
		return fmt.Errorf("audit: %s: writing a checkpoint: %w", w.path, err)
	}
	w.cpSeq = w.seq
	w.checkpoints.Add(1)
	return nil
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
		if err != nil {
			w.lose(err)
		}
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
		if n, ok := w.flushErrs.Allow(time.Now()); ok {
			w.log.Error().Err(err).Str("path", w.path).Int("repeats_not_logged", n).
				Msg("audit: cannot write deferred result records; retrying with the next record")
		}
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
	if err != nil {
		w.lose(err)
	} else {
		if w.lost.n > 0 {
			w.writeLost()
		}
		if durable {
			r = w.join()
		}
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
	if w.seq == w.cpSeq+1 {
		w.firstUnsigned = w.last
	}
	if w.fileFirstSeq == 0 {
		w.fileFirstSeq, w.fileStart = w.seq, w.last
	}
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
			return fmt.Errorf("audit: %s: removing a failed write (%v): %w", w.path, w.writeErr, err)
		}
		w.tailDirty = false
	}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		w.writeErrors.Add(1)
		w.writeErr = err
		if terr := w.f.Truncate(w.off); terr != nil {
			w.tailDirty = true
		}
		return fmt.Errorf("audit: writing %s: %w", w.path, err)
	}
	w.off += int64(len(b))
	return nil
}

// Close writes a last checkpoint (when signing), fsyncs and closes the log.
// Records written after Close fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	var err error
	if w.signer != nil && w.seq > 0 {
		if err = w.checkpointLocked(w.stamp(), CheckpointShutdown); err != nil {
			w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot write the shutdown checkpoint")
		}
	}
	// Nothing follows the shutdown checkpoint: verify takes a record after
	// it for one added to the log.
	w.closed = true
	w.mu.Unlock()
	if serr := w.shutdown(); err == nil {
		err = serr
	}
	return err
}

// shutdown refuses further records, stops the background work after its
// last fsync, and closes the file.
func (w *Writer) shutdown() error {
	w.mu.Lock()
	w.closed = true
	w.flushTimer.Stop() // the sync loop writes what is deferred before its last fsync
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	<-w.maintDone
	err := w.closeErr
	if cerr := w.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("audit: closing %s: %w", w.path, cerr)
	}
	return err
}

// Path returns the log's live file name.
func (w *Writer) Path() string { return w.path }

// Stats are counters since Open, for metrics and tests.
type Stats struct {
	Seq         uint64 // seq of the last record written
	Size        int64  // bytes in the live file
	Records     uint64 // records written
	Fsyncs      uint64
	WriteErrors uint64
	SyncErrors  uint64

	Checkpoints       uint64 // audit.checkpoint records written
	LastCheckpointSeq uint64 // seq of the last one (0: none)
	Unsigned          uint64 // records after it
	Rotations         uint64
	RetentionDeletes  uint64 // rotated files deleted by retention
	// FillPercent is the audit filesystem's fill level at the last check
	// (-1 before the first); CapacityWarning says it is at or over
	// Options.WarnFillPercent, CapacityWarnings counts the times it got there.
	FillPercent      float64
	CapacityWarning  bool
	CapacityWarnings uint64
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	seq, size, cp := w.seq, w.off, w.cpSeq
	signing := w.signer != nil
	w.mu.Unlock()
	st := Stats{
		Seq:              seq,
		Size:             size,
		Records:          w.records.Load(),
		Fsyncs:           w.fsyncs.Load(),
		WriteErrors:      w.writeErrors.Load(),
		SyncErrors:       w.syncErrors.Load(),
		Checkpoints:      w.checkpoints.Load(),
		Rotations:        w.rotations.Load(),
		RetentionDeletes: w.retentionDeletes.Load(),
		FillPercent:      math.Float64frombits(w.fillPercent.Load()),
		CapacityWarning:  w.capacityWarning.Load(),
		CapacityWarnings: w.capacityWarnings.Load(),
	}
	if signing {
		st.LastCheckpointSeq, st.Unsigned = cp, seq-cp
	}
	return st
}
