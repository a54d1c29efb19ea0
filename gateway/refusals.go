package gateway

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// A refusing listener records (audit and operational log) one refused
// connection per source and reason per refusalInterval; the ones between
// are counted, and the count goes into the next record of that source and
// reason, at the latest once the interval has passed. So a host that
// churns connections at a full listener writes a bounded number of
// records, not one per connection (an audit disk filled by refusals would
// refuse every state-changing call).
const (
	refusalInterval = 10 * time.Second
	// maxRefusalKeys bounds the sources counted apart in one interval;
	// refusals of further sources share one count.
	maxRefusalKeys = 1024
)

type refusalKey struct {
	ip     netip.Addr // the zero Addr: the shared count beyond maxRefusalKeys
	reason string
}

type refusalCount struct {
	last time.Time // when a refusal of this key was last recorded
	held int       // refusals since, not recorded
	s    *Session  // the last of them, recorded with the count
}

// refusals decides which refused connections are recorded. The zero value
// is ready; it is safe for concurrent use.
type refusals struct {
	mu       sync.Mutex
	interval time.Duration // 0: refusalInterval
	by       map[refusalKey]*refusalCount
}

// allow reports whether to record the refusal of s for reason at now, and
// how many like it were not recorded before it.
func (r *refusals) allow(s *Session, reason string, now time.Time) (held int, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = make(map[refusalKey]*refusalCount)
	}
	k := refusalKey{s.Source.IP, reason}
	c := r.by[k]
	if c == nil && len(r.by) >= maxRefusalKeys {
		k.ip = netip.Addr{}
		c = r.by[k]
	}
	if c == nil {
		r.by[k] = &refusalCount{last: now}
		return 0, true
	}
	if now.Sub(c.last) < r.every() {
		c.held++
		c.s = s
		return 0, false
	}
	held, c.held, c.s, c.last = c.held, 0, nil, now
	return held, true
}

func (r *refusals) every() time.Duration {
	if r.interval > 0 {
		return r.interval
	}
	return refusalInterval
}

// due returns the held counts to record at now (all when final) and
// forgets the keys that have been quiet for an interval.
func (r *refusals) due(now time.Time, final bool) []refusalDue {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []refusalDue
	for k, c := range r.by {
		quiet := now.Sub(c.last) >= r.every()
		switch {
		case c.held > 0 && (quiet || final):
			// The last refusal held is the one recorded; the rest are its count.
			out = append(out, refusalDue{s: c.s, reason: k.reason, held: c.held - 1})
			c.held, c.s, c.last = 0, nil, now
		case c.held == 0 && quiet:
			delete(r.by, k)
		}
	}
	return out
}

type refusalDue struct {
	s      *Session
	reason string
	held   int
}

// recordRefusal writes the record and the log line of a refused connection
// with the count of those not recorded before it.
func (l *Listener) recordRefusal(ctx context.Context, s *Session, reason string, held int) {
	s.Log.Warn().Str("reason", reason).Int("repeats_not_logged", held).Msg("connection refused")
	ctx = context.WithoutCancel(ctx)
	if a, ok := l.Pipeline.Auditor.(RefusalAuditor); ok {
		a.ConnRefused(ctx, s, reason, held)
		return
	}
	l.Pipeline.Auditor.SessionStart(ctx, s, nil, reason)
}

// recordHeldRefusals records, every interval until stop is closed and then
// once more for all, the refusals counted but not yet recorded.
func (l *Listener) recordHeldRefusals(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(l.refused.every() / 2)
	defer t.Stop()
	for {
		final := false
		select {
		case <-t.C:
		case <-stop:
			final = true
		}
		for _, d := range l.refused.due(time.Now(), final) {
			l.recordRefusal(ctx, d.s, d.reason, d.held)
		}
		if final {
			return
		}
	}
}
