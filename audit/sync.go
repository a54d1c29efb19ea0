package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// round is one fsync that every durable record joined before it started
// shares (group commit).
type round struct {
	done chan struct{}
	err  error // set before done is closed
}

// join adds the record just written to the next fsync round. w.mu is held,
// so the syncer cannot take the round between the write and the join.
func (w *Writer) join() *round {
	if w.next == nil {
		w.next = &round{done: make(chan struct{})}
	}
	select {
	case w.kick <- struct{}{}:
	default: // a kick is already pending
	}
	return w.next
}

// wait returns when the round's fsync is done, or when ctx ends first.
func (w *Writer) wait(ctx context.Context, r *round) error {
	select {
	case <-r.done:
		if r.err != nil {
			return fmt.Errorf("audit: fsync %s: %w", w.path, r.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: waiting for fsync of %s: %w", w.path, context.Cause(ctx))
	}
}

// syncLoop runs every fsync of the log, so that durable callers that arrive
// while one runs share the next, and records that need not be durable at
// once reach the disk every interval.
//
// The live file is checked before the fsync (under w.mu, beginning it
// again when it was taken away or cut) and again after it, before durable
// callers are told their records are on disk (roundGone).
//
// A failed fsync is reported to the callers of its round only. The next
// round is a fresh attempt for later records; whether the failed records
// survived is for Verify to tell.
//
// Files rotated out are fsynced and closed here, with the directory that
// holds their new names, before the live file: no durable record of a new
// file is acknowledged while the end of the chain before it could still be
// lost.
//
// synced is the end of the log as Open fsynced it, read before any record
// can be written after it.
func (w *Writer) syncLoop(interval time.Duration, synced int64) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var gen uint64
	var live file // the file liveInfo describes
	var liveInfo fs.FileInfo
	// The live file of generation scanGen holds no hole before scanEnd.
	scanGen, scanEnd := uint64(0), synced
	var buf [64 << 10]byte
	for {
		stopping := false
		select {
		case <-w.kick:
		case <-t.C:
		case <-w.stop:
			stopping = true
		}
		w.mu.Lock()
		if err := w.flushLocked(); err != nil {
			if n, ok := w.flushErrs.Allow(time.Now()); ok {
				w.log.Error().Err(err).Str("path", w.path).Int("repeats_not_logged", n).Msg("audit: cannot write deferred result records")
			}
		}
		var gone error
		if replaced, cut := w.liveReplaced(); replaced || cut {
			if !w.closed {
				gone = w.beginAgainLocked(cut)
			} else {
				// Closing: nothing begins again, Close tells the loss.
				gone = liveGone(w.path, w.fileFirstSeq)
			}
		}
		r, end, f, g, retiring := w.next, w.off, w.f, w.gen, w.retiring
		firstSeq := w.fileFirstSeq
		w.next, w.retiring = nil, nil
		w.mu.Unlock()
		var err error
		if len(retiring) > 0 {
			err = w.retire(retiring)
		}
		if r != nil || g != gen || end > synced || len(retiring) > 0 {
			serr := f.Sync()
			w.fsyncs.Add(1)
			if serr != nil {
				w.syncErrors.Add(1)
				w.log.Error().Err(serr).Str("path", w.path).Msg("audit: fsync failed")
			} else {
				synced, gen = end, g
			}
			if err == nil {
				err = serr
			}
			lost := gone // the round's records went with the file
			if lost == nil && err == nil {
				// What was written since the last round, read back: a cut
				// among those records, written past since, left zeros.
				if g != scanGen {
					scanGen, scanEnd = g, 0
				}
				if holed(f, scanEnd, end, buf[:]) {
					lost = liveGone(w.path, firstSeq)
					w.mu.Lock()
					w.holed = g + 1
					w.mu.Unlock()
				} else {
					scanEnd = max(scanEnd, end)
				}
			}
			if lost == nil && err == nil && (r != nil || stopping) {
				if f != live {
					live, liveInfo = f, nil
					if fi, serr := f.Stat(); serr == nil {
						liveInfo = fi
					}
				}
				lost = w.roundGone(f, liveInfo, end, g, firstSeq)
			}
			if lost != nil && gone == nil && !stopping {
				// The next round begins again now, before more
				// records go into the file that was taken away.
				select {
				case w.kick <- struct{}{}:
				default:
				}
			}
			if r != nil {
				r.err = err
				if lost != nil {
					r.err = lost
				}
				close(r.done)
			}
			if stopping && err != nil {
				w.closeErr = fmt.Errorf("audit: fsync %s: %w", w.path, err)
			}
			if stopping && lost != nil {
				w.closeErr = lost
			}
		}
		if stopping {
			if w.closeErr == nil {
				w.closeErr = gone
			}
			return
		}
	}
}

// retire fsyncs and closes files rotated out, then fsyncs the directory so
// that their new names and the new live file are durable.
func (w *Writer) retire(files []file) error {
	var first error
	for _, f := range files {
		err := f.Sync()
		w.fsyncs.Add(1)
		if err != nil {
			w.syncErrors.Add(1)
			w.log.Error().Err(err).Str("path", w.path).Msg("audit: fsync of a rotated file failed")
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if first == nil && err != nil {
			first = err
		}
	}
	if err := syncDir(w.dir); err != nil {
		w.log.Error().Err(err).Str("path", w.dir).Msg("audit: fsync of the log's directory failed")
		if first == nil {
			first = err
		}
	}
	return first
}

// maintain runs the work that is due by time rather than by record:
// checkpoints of an idle log, rotation of an old live file, retention, and
// the capacity check.
func (w *Writer) maintain() {
	defer close(w.maintDone)
	var cpC, rotC, capC <-chan time.Time
	if w.signer != nil {
		t := time.NewTicker(w.opts.CheckpointInterval)
		defer t.Stop()
		cpC = t.C
	}
	if w.opts.RotateInterval > 0 || w.opts.RetainDays > 0 {
		t := time.NewTicker(housekeepingPeriod(w.opts.RotateInterval))
		defer t.Stop()
		rotC = t.C
	}
	var c capacity
	w.checkCapacity(&c)
	ct := time.NewTicker(w.opts.CapacityInterval)
	defer ct.Stop()
	capC = ct.C
	w.retain()
	for {
		select {
		case <-w.stop:
			return
		case <-cpC:
			w.timedCheckpoint()
		case <-rotC:
			w.timedRotation()
			w.retain()
		case <-w.retention:
			w.retain()
		case <-capC:
			w.checkCapacity(&c)
		}
	}
}

// housekeepingPeriod is how often an idle live file's age and the rotated
// files' ages are looked at.
func housekeepingPeriod(rotate time.Duration) time.Duration {
	p := time.Minute
	if rotate > 0 {
		p = min(p, max(rotate/20, 10*time.Millisecond))
	}
	return p
}

// timedCheckpoint signs records written since the last checkpoint when no
// record came to trigger it.
func (w *Writer) timedCheckpoint() {
	w.mu.Lock()
	if w.closed || w.seq == w.cpSeq {
		w.mu.Unlock()
		return
	}
	err := w.checkpointLocked(w.stamp(), CheckpointInterval)
	var r *round
	if err == nil {
		r = w.join()
	}
	w.mu.Unlock()
	if err == nil {
		err = w.wait(context.Background(), r)
	}
	if err != nil {
		w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot write a checkpoint; retrying")
	}
}

// syncDir fsyncs a directory, so that a new file's entry in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// liveReplaced reports whether the live name no longer names the file the
// writer writes (replaced: deleted, renamed away as logrotate does, or
// another file put there), or names it but the file was cut under the
// writer (cut: emptied in place, as logrotate's copytruncate does, or cut
// short; the writer's next record would leave a hole of zeros before it,
// and one written since did, or a round found the zeros of one among the
// records it read back). w.mu is held, so no rotation of the writer's own
// is half done.
func (w *Writer) liveReplaced() (replaced, cut bool) {
	fi, err := os.Stat(w.path)
	if err != nil {
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR), false
	}
	ofi, err := w.f.Stat()
	if err != nil {
		return false, false
	}
	if !os.SameFile(fi, ofi) {
		return true, false
	}
	if ofi.Size() < w.off || w.holed == w.gen+1 {
		return false, true
	}
	var b [1]byte
	if w.off > 0 {
		if _, err := w.f.ReadAt(b[:], 0); err == nil && b[0] != '{' {
			return false, true
		}
	}
	// A cut below where the last look found the records intact, written
	// past since (each record goes at the writer's own offset), left
	// zeros there: the size alone does not show it. (A cut above it, among
	// the records written since, the round finds when it reads them back.)
	if w.checkedGen == w.gen && w.checkedEnd > 0 && w.checkedEnd <= w.off {
		if _, err := w.f.ReadAt(b[:], w.checkedEnd-1); err == nil && b[0] != '\n' {
			return false, true
		}
	}
	w.checkedEnd, w.checkedGen = w.off, w.gen
	return false, false
}

// holed reports whether f holds a NUL byte in [from, to), read through
// buf. No record holds one (JSON escapes control characters); the zeros of
// a hole do, left where a cut was written past. One pread per len(buf)
// bytes, without w.mu: the writer only writes past to (a failed write is
// cut back to its own start), and a file rotated out stays open until the
// sync loop retires it.
func holed(f file, from, to int64, buf []byte) bool {
	for off := from; off < to; {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		if bytes.IndexByte(buf[:n], 0) >= 0 {
			return true
		}
		if err != nil || n == 0 {
			return false // cut below to and not written past: roundGone and the size tell
		}
		off += int64(n)
	}
	return false
}

// roundGone tells, after the fsync of a round's records (f's bytes before
// end), whether they are still in the live file: it may have been taken
// away or cut after the round's check under w.mu, and then only the next
// round would notice. The live name must still name f (info: f's, nil if
// unknown) and f must still end a record at end (a cut followed by a later
// record leaves zeros there). The writer's own rotation since the check
// (gen moved on from g) keeps the records, in a rotated file. One stat and
// one pread per durable round; w.mu is not held.
func (w *Writer) roundGone(f file, info fs.FileInfo, end int64, g, firstSeq uint64) error {
	if info != nil {
		fi, err := os.Stat(w.path)
		replaced := err == nil && !os.SameFile(fi, info) ||
			errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
		if replaced {
			w.mu.Lock()
			rotated := w.gen != g
			w.mu.Unlock()
			if !rotated {
				return liveGone(w.path, firstSeq)
			}
		}
	}
	var b [1]byte
	n, err := f.ReadAt(b[:], end-1)
	if n == 1 && b[0] != '\n' || n == 0 && errors.Is(err, io.EOF) {
		return liveGone(w.path, firstSeq)
	}
	return nil
}

// liveGone is the error of durable records that went with a live file
// taken away or cut; firstSeq is the file's first record.
func liveGone(path string, firstSeq uint64) error {
	return fmt.Errorf("audit: the live file %s was deleted, renamed, replaced or cut while the gateway wrote it: records since seq %d went with it",
		path, firstSeq)
}

// beginAgainLocked puts a new live file under the live name after the old
// one was taken away (or cut: an emptied file is begun again, one cut
// short is moved aside, keepCut),
// beginning with audit.rotated reason live_file_missing for the records
// that went with it (verify reports the loss). It returns the error for the
// durable records of the round that wrote into the old file. A name taken
// by a file that is not empty is left alone: every record fails (the
// writer takes none, reads and writes alike, as with a full disk) until an
// operator moves that file away, and the next round begins again.
func (w *Writer) beginAgainLocked(cut bool) error {
	gone := liveGone(w.path, w.fileFirstSeq)
	var nf file
	var err error
	if len(w.pending) > 0 {
		// Deferred result records come after the old file's last record:
		// they go into the old file (kept when it was renamed away) or with
		// it, not in front of the new file's first record.
		if !cut && !unlinked(w.f) {
			_ = w.writeAt(w.pending)
		}
		w.pending = w.pending[:0]
		w.flushTimer.Stop()
	}
	if !cut && unlinked(w.f) {
		// Deleted: its records are gone from the log already, but the
		// descriptor the writer holds keeps its blocks, which a full disk
		// (the likely reason it was deleted) needs for the new live file.
		// A file renamed away keeps its records and is left alone.
		if terr := w.f.Truncate(0); terr != nil {
			w.log.Warn().Err(terr).Str("path", w.path).Msg("audit: cannot free the blocks of the deleted live file")
		}
	}
	kept := ""
	if cut {
		kept = w.keepCut()
	}
	fresh := !cut || kept != "" // nf is a file of its own, not the old one emptied
	if !fresh {
		nf, err = w.f, w.f.Truncate(0)
	} else if err = os.MkdirAll(w.dir, 0o750); err == nil {
		if nf, err = w.opts.openFile(w.path); err == nil {
			if err = lockFile(nf); err == nil {
				if fi, serr := nf.Stat(); serr != nil || fi.Size() != 0 {
					err = fmt.Errorf("%s is another file, not empty: not writing into it", w.path)
				}
			}
			if err != nil {
				nf.Close()
			}
		}
	}
	if err != nil {
		w.liveLost = gone
		w.cannotBeginAgain(err)
		return gone
	}
	old, oldOff, oldDirty := w.f, w.off, w.tailDirty
	chain := w.chainState()
	w.f, w.off, w.tailDirty = nf, 0, false
	if err := w.writeRotated(w.stamp(), RotateMissing, w.path, chain.fileFirstSeq, w.seq); err != nil {
		if fresh {
			nf.Close()
		}
		w.f, w.off, w.tailDirty = old, oldOff, oldDirty
		w.restoreChain(chain)
		w.liveLost = gone
		w.cannotBeginAgain(err)
		return gone
	}
	w.liveLost = nil
	if fresh {
		w.retiring = append(w.retiring, old)
	}
	w.gen++
	ev := w.log.Error()
	if kept != "" {
		ev = ev.Str("kept_as", kept)
	}
	ev.Str("path", w.path).Uint64(FieldPreviousFirstSeq, chain.fileFirstSeq).Uint64(FieldPreviousLastSeq, chain.seq).
		Str(FieldPreviousFile, filepath.Base(w.path)).Bool("cut", cut).
		Msg("audit: the live file was deleted, renamed, replaced or cut while the gateway wrote it; its records are gone from the log; " +
			"a new live file continues the chain (audit verify reports the loss)")
	return gone
}

// keepCut moves a live file cut short, but not emptied, aside under a name
// outside the log's files (<live name>.cut-<UTC time>-<its first seq>), so
// that what the cut left stays for an investigator instead of being
// emptied with it; the log itself goes on as after an emptied file
// (verify reports the loss). It returns the new name, "" when there is
// nothing to keep or the file cannot move (then it is emptied). w.mu is
// held.
func (w *Writer) keepCut() string {
	fi, err := w.f.Stat()
	if err != nil || fi.Size() == 0 {
		return ""
	}
	var b [1]byte
	if _, err := w.f.ReadAt(b[:], 0); err != nil || b[0] != '{' {
		return "" // no record left at its start: nothing of the log to keep
	}
	name := fmt.Sprintf("%s.cut-%s-%015d", w.path, time.Now().UTC().Format("20060102T150405Z"), w.fileFirstSeq)
	if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err := os.Rename(w.path, name); err != nil {
		w.log.Warn().Err(err).Str("path", w.path).Msg("audit: cannot move the live file cut short aside: emptying it")
		return ""
	}
	return name
}

// cannotBeginAgain logs that the live file could not be made again, at most
// every 10 s (it is tried at every fsync round); w.mu is held.
func (w *Writer) cannotBeginAgain(err error) {
	if n, ok := w.beginErrs.Allow(time.Now()); ok {
		w.log.Error().Err(err).Str("path", w.path).Int("repeats_not_logged", n).
			Msg("audit: the live file was taken away and cannot be made again; state-changing calls are denied")
	}
}
