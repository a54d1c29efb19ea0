package gateway

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// A listener records the rejected requests (Pipeline.Reject) of one source
// address in full up to Limits.RejectedPerSource per Limits.RejectedWindow;
// the ones beyond are counted by reason and written as one summary
// (RejectedSummary) when the window ends or the listener stops. So a host
// that sends malformed frames in a loop writes a bounded number of records,
// and every rejection is still accounted for: the full records and the
// summaries' counts add up to the rejections.
//
// A summary is not written when the source's last connection closes: a
// host that connects, sends one bad frame and is closed, over and over,
// would then cost a record per frame again.

// Default cap on the rejected requests recorded in full.
const (
	DefaultRejectedPerSource = 20
	DefaultRejectedWindow    = time.Minute
)

// Why a RejectedSummary was written.
const (
	SummaryWindowEnd = "window_end" // the source's window ended
	SummaryShutdown  = "shutdown"   // the listener stopped
)

const (
	// maxRejectionKeys bounds the sources counted apart at once; the
	// rejections of further sources share one count (and one cap), under
	// the zero Addr, as those of connections without an IP address do.
	maxRejectionKeys = 4096
	// maxSummaryReasons bounds the reasons a summary counts apart; further
	// reasons are counted as ReasonOther.
	maxSummaryReasons = 32
	// ReasonOther counts, in a RejectedSummary, the reasons beyond the
	// ones counted apart.
	ReasonOther = "other"
)

// RejectedSummary counts the rejected requests of one source address that a
// listener did not record one by one in one window (request.rejected_suppressed).
type RejectedSummary struct {
	Listener string
	Protocol string
	// Source is the address (no port) with its inventory name and owner;
	// an invalid IP stands for sources without an address or beyond the
	// ones counted apart.
	Source Source
	Target Target // the listener's target
	// Count is the rejections not recorded one by one; Recorded the ones
	// of the same source and window that were, at most Limit.
	Count    int
	Recorded int
	Limit    int
	// WindowStart is when the window began, Window its length.
	WindowStart time.Time
	Window      time.Duration
	// First and Last are when the first and the last rejection counted
	// were made.
	First, Last time.Time
	// Reasons counts the rejections counted by reason (request.rejected's
	// reason); they add up to Count.
	Reasons map[string]int
	// Cause is why the summary was written: SummaryWindowEnd or
	// SummaryShutdown.
	Cause string
}

type rejectionCount struct {
	start    time.Time // the window's start
	recorded int       // recorded in full in the window
	held     int       // counted, not recorded
	first    time.Time
	last     time.Time
	reasons  map[string]int
	source   Source
}

// rejections decides which rejected requests of one listener are recorded
// in full. Use after init; safe for concurrent use.
type rejections struct {
	limit  int
	window time.Duration
	// What a summary says about the listener.
	listener, protocol string
	target             Target
	auditor            RejectionSummaryAuditor
	log                zerolog.Logger

	mu     sync.Mutex
	by     map[netip.Addr]*rejectionCount
	closed bool // the listener stopped: every rejection is recorded in full
}

func (r *rejections) init(l *Listener, a RejectionSummaryAuditor) {
	r.limit = l.Limits.RejectedPerSource
	if r.limit <= 0 {
		r.limit = DefaultRejectedPerSource
	}
	r.window = l.Limits.RejectedWindow
	if r.window <= 0 {
		r.window = DefaultRejectedWindow
	}
	r.listener, r.protocol, r.target = l.Name, l.Protocol, l.Target
	r.auditor, r.log = a, l.Log
	r.by = make(map[netip.Addr]*rejectionCount)
}

// take counts one rejection of src for reason at now. full says whether to
// record it in full; began that it is the first of the window not to be;
// ended, when not nil, is the summary of the source's window that ended
// before now, to be written first.
func (r *rejections) take(src Source, reason string, now time.Time) (full, began bool, ended *RejectedSummary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return true, false, nil
	}
	k := src.IP
	c := r.by[k]
	if c == nil && len(r.by) >= maxRejectionKeys {
		k = netip.Addr{}
		c = r.by[k]
	}
	if c != nil && now.Sub(c.start) >= r.window {
		if c.held > 0 {
			ended = r.summary(c, SummaryWindowEnd)
		}
		c = nil
	}
	if c == nil {
		c = &rejectionCount{start: now}
		r.by[k] = c
	}
	if c.recorded < r.limit {
		c.recorded++
		return true, false, ended
	}
	if c.held == 0 {
		c.first, c.reasons, began = now, make(map[string]int), true
		c.source = Source{IP: k}
		if k.IsValid() {
			c.source.Name, c.source.Owner = src.Name, src.Owner
		}
	}
	c.held++
	c.last = now
	if _, ok := c.reasons[reason]; !ok && len(c.reasons) >= maxSummaryReasons {
		reason = ReasonOther
	}
	c.reasons[reason]++
	return false, began, ended
}

// due returns the summaries of the windows that have ended at now (all
// when final), and forgets those windows; after a final call every
// rejection is recorded in full.
func (r *rejections) due(now time.Time, final bool) []*RejectedSummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*RejectedSummary
	for k, c := range r.by {
		if !final && now.Sub(c.start) < r.window {
			continue
		}
		if c.held > 0 {
			cause := SummaryWindowEnd
			if final && now.Sub(c.start) < r.window {
				cause = SummaryShutdown
			}
			out = append(out, r.summary(c, cause))
		}
		delete(r.by, k)
	}
	if final {
		r.closed = true
	}
	return out
}

func (r *rejections) summary(c *rejectionCount, cause string) *RejectedSummary {
	return &RejectedSummary{
		Listener: r.listener, Protocol: r.protocol, Source: c.source, Target: r.target,
		Count: c.held, Recorded: c.recorded, Limit: r.limit,
		WindowStart: c.start.UTC(), Window: r.window, First: c.first.UTC(), Last: c.last.UTC(),
		Reasons: c.reasons, Cause: cause,
	}
}

type rejectionsKey struct{}

// withRejections returns a ctx whose Pipeline.Reject calls go through r.
func withRejections(ctx context.Context, r *rejections) context.Context {
	return context.WithValue(ctx, rejectionsKey{}, r)
}

// rejectionsOf is the cap on the rejections of the listener whose
// connection ctx serves; nil outside a listener, or when its Auditor
// cannot write summaries (every rejection is recorded in full).
func rejectionsOf(ctx context.Context) *rejections {
	r, _ := ctx.Value(rejectionsKey{}).(*rejections)
	return r
}

// admit reports whether the rejection of a request of s for reason is to
// be recorded in full; otherwise it is counted for a summary.
func (r *rejections) admit(ctx context.Context, s *Session, reason string) bool {
	full, began, ended := r.take(s.Source, reason, time.Now())
	if ended != nil {
		r.record(ctx, ended)
	}
	if began {
		// Once per source and window: the rejections that follow leave no
		// log line either.
		s.Log.Warn().Int("limit", r.limit).Dur("window", r.window).
			Msg("rejected requests: this source's rejections beyond limits.rejected_records_per_source are counted, not recorded one by one, until its window ends (request.rejected_suppressed)")
	}
	return full
}

// record writes sum to the audit log and the operational log.
func (r *rejections) record(ctx context.Context, sum *RejectedSummary) {
	r.log.Warn().Str("source_ip", sum.Source.IP.String()).Int("count", sum.Count).Int("recorded", sum.Recorded).
		Str("cause", sum.Cause).Time("first", sum.First).Time("last", sum.Last).
		Msg("rejected requests counted, not recorded one by one: request.rejected_suppressed written")
	r.auditor.RejectedSummary(context.WithoutCancel(ctx), sum)
}

// recordDue writes, every quarter window until stop is closed and then
// once more for all, the summaries of the windows that ended.
func (r *rejections) recordDue(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(max(r.window/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		final := false
		select {
		case <-t.C:
		case <-stop:
			final = true
		}
		for _, sum := range r.due(time.Now(), final) {
			r.record(ctx, sum)
		}
		if final {
			return
		}
	}
}
