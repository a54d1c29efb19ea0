package audit

import (
	"context"
	"fmt"
	"os"
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
// A failed fsync is reported to the callers of its round only. The next
// round is a fresh attempt for later records; whether the failed records
// survived is for Verify to tell.
//
// synced is the end of the log as Open fsynced it, read before any record
// can be written after it.
func (w *Writer) syncLoop(interval time.Duration, synced int64) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
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
			w.log.Error().Err(err).Str("path", w.path).Msg("audit: cannot write deferred result records")
		}
		r, end := w.next, w.off
		w.next = nil
		w.mu.Unlock()
		if r != nil || end > synced {
			err := w.f.Sync()
			w.fsyncs.Add(1)
			if err != nil {
				w.syncErrors.Add(1)
				w.log.Error().Err(err).Str("path", w.path).Msg("audit: fsync failed")
			} else {
				synced = end
			}
			if r != nil {
				r.err = err
				close(r.done)
			}
			if stopping && err != nil {
				w.closeErr = fmt.Errorf("audit: fsync %s: %w", w.path, err)
			}
		}
		if stopping {
			return
		}
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
