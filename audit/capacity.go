package audit

import (
	"math"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// Capacity of the audit filesystem (IEC 62443-3-3 SR 2.9 RE1): a warning at
// Options.WarnFillPercent, checked every Options.CapacityInterval, never per
// record. When the filesystem is full, writes fail and are cut back (see
// writeAt): the chain holds, Call reports the failure, and the pipeline
// refuses state-changing calls; once space returns the chain goes on.

// capacityHysteresis is how far under the warning level the fill must drop
// before the warning clears, so that a level hovering at it does not flood
// the log.
const capacityHysteresis = 2

// diskUsage is what statfs tells of a filesystem, in bytes.
type diskUsage struct {
	size  uint64 // all blocks
	free  uint64 // free blocks, including those reserved for root
	avail uint64 // free blocks an unprivileged process may use
}

// fillPercent is the share of the filesystem in use, as df shows it: used
// blocks over used plus available ones.
func (u diskUsage) fillPercent() float64 {
	used := u.size - min(u.free, u.size)
	if used+u.avail == 0 {
		return 0
	}
	return math.Round(1000*float64(used)/float64(used+u.avail)) / 10
}

// capacity is the state of the check; only the maintenance loop uses it.
type capacity struct {
	warned  bool
	pending []capacityRecord // transitions not yet recorded (the log may be full)
	failed  bool             // statfs failed; said once
	errs    gateway.Every    // the log line of a record not written, at most every 10 s
}

type capacityRecord struct {
	state string
	pct   float64
	u     diskUsage
	at    time.Time // measured; the record may be written later (the log was full)
}

// checkCapacity measures the audit filesystem and warns (operational log,
// audit.capacity record, Stats) when it crosses the warning level, and says
// so again when it drops back under it.
func (w *Writer) checkCapacity(c *capacity) {
	u, err := w.opts.statfs(w.dir)
	at := w.opts.now().UTC()
	if err != nil {
		if !c.failed {
			c.failed = true
			w.log.Warn().Err(err).Str("path", w.dir).Msg("audit: cannot measure the audit filesystem; no capacity warnings")
		}
		return
	}
	c.failed = false
	pct := u.fillPercent()
	w.fillPercent.Store(math.Float64bits(pct))
	warn := w.opts.WarnFillPercent
	switch {
	case !c.warned && pct >= warn:
		c.warned = true
		w.capacityWarning.Store(true)
		w.capacityWarnings.Add(1)
		w.log.Warn().Str("path", w.dir).Float64(FieldFillPercent, pct).Float64(FieldWarnFillPercent, warn).
			Uint64(FieldFreeBytes, u.avail).Msg("audit: the audit filesystem is filling up; when it is full, state-changing calls are refused")
		c.pending = append(c.pending, capacityRecord{"warning", pct, u, at})
	case c.warned && pct < warn-capacityHysteresis:
		c.warned = false
		w.capacityWarning.Store(false)
		w.log.Info().Str("path", w.dir).Float64(FieldFillPercent, pct).Msg("audit: the audit filesystem is under the warning level again")
		c.pending = append(c.pending, capacityRecord{"ok", pct, u, at})
	}
	for len(c.pending) > 0 {
		r := c.pending[0]
		err := w.Record(EventCapacity, true, func(e *zerolog.Event) {
			e.Str(FieldState, r.state).
				Str(FieldPath, w.dir).
				Float64(FieldFillPercent, r.pct).
				Float64(FieldWarnFillPercent, warn).
				Uint64(FieldSizeBytes, r.u.size).
				Uint64(FieldUsedBytes, r.u.size-min(r.u.free, r.u.size)).
				Uint64(FieldFreeBytes, r.u.avail)
			appendTime(e, FieldMeasuredAt, r.at)
		})
		if err != nil {
			if n, ok := c.errs.Allow(time.Now()); ok {
				w.log.Error().Err(err).Int("repeats_not_logged", n).Msg("audit: cannot write the audit.capacity record; retrying at the next check")
			}
			return
		}
		c.pending = c.pending[1:]
	}
}

// FillPercent is how full the filesystem that holds dir is, as df shows
// it (ok false where it cannot be measured).
func FillPercent(dir string) (pct float64, ok bool) {
	u, err := statfsDir(dir)
	if err != nil {
		return 0, false
	}
	return u.fillPercent(), true
}
