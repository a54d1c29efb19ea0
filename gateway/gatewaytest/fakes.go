// Package gatewaytest holds fakes of the gateway interfaces that every
// engine's tests share: a decider driven by a function, an auditor that keeps
// its records in memory, and an upstream driven by a function.
package gatewaytest

import (
	"context"
	"errors"
	"sync"

	"github.com/interlock-ics/interlock/gateway"
)

// Decider decides with a function; nil allows everything.
type Decider func(ctx context.Context, s *gateway.Session, c *gateway.Call) (gateway.Decision, error)

// Decide implements gateway.Decider.
func (f Decider) Decide(ctx context.Context, s *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
	if f == nil {
		return gateway.Decision{Allow: true, ID: gateway.NewID(), Revision: "test"}, nil
	}
	return f(ctx, s, c)
}

// AllowAll allows every call.
var AllowAll Decider

// Record is one auditor event kept in memory.
type Record struct {
	Event    string // session.open, call, result, request.rejected, request.rejected_suppressed, session.close
	Session  *gateway.Session
	Call     *gateway.Call // nil for session events
	Decision *gateway.Decision
	Result   *gateway.Result
	Reason   string // refusal or rejection reason
	Detail   string
	Response string
	Err      error
	Repeats  int                      // ConnRefused: like refusals not recorded before this one
	Summary  *gateway.RejectedSummary // request.rejected_suppressed
}

// Auditor keeps every record in memory. Set Fail to make Call return an error.
type Auditor struct {
	mu      sync.Mutex
	records []Record
	Fail    error
}

var (
	_ gateway.Auditor                 = (*Auditor)(nil)
	_ gateway.RefusalAuditor          = (*Auditor)(nil)
	_ gateway.RejectionSummaryAuditor = (*Auditor)(nil)
)

func (a *Auditor) add(r Record) {
	a.mu.Lock()
	a.records = append(a.records, r)
	a.mu.Unlock()
}

// SessionStart implements gateway.Auditor.
func (a *Auditor) SessionStart(_ context.Context, s *gateway.Session, d *gateway.Decision, refused string) {
	a.add(Record{Event: "session.open", Session: s, Decision: d, Reason: refused})
}

// ConnRefused implements gateway.RefusalAuditor: a session.open record.
func (a *Auditor) ConnRefused(_ context.Context, s *gateway.Session, reason string, repeats int) {
	a.add(Record{Event: "session.open", Session: s, Reason: reason, Repeats: repeats})
}

// Call implements gateway.Auditor.
func (a *Auditor) Call(_ context.Context, s *gateway.Session, c *gateway.Call, d gateway.Decision) error {
	a.mu.Lock()
	fail := a.Fail
	a.mu.Unlock()
	if fail != nil {
		return fail
	}
	a.add(Record{Event: "call", Session: s, Call: c, Decision: &d})
	return nil
}

// Result implements gateway.Auditor.
func (a *Auditor) Result(_ context.Context, s *gateway.Session, c *gateway.Call, r *gateway.Result) {
	rc := *r
	a.add(Record{Event: "result", Session: s, Call: c, Result: &rc})
}

// Rejected implements gateway.Auditor.
func (a *Auditor) Rejected(_ context.Context, s *gateway.Session, c *gateway.Call, reason, detail, response string) {
	a.add(Record{Event: "request.rejected", Session: s, Call: c, Reason: reason, Detail: detail, Response: response})
}

// RejectedSummary implements gateway.RejectionSummaryAuditor: a
// request.rejected_suppressed record.
func (a *Auditor) RejectedSummary(_ context.Context, sum *gateway.RejectedSummary) {
	a.add(Record{Event: "request.rejected_suppressed", Summary: sum, Reason: sum.Cause})
}

// SessionEnd implements gateway.Auditor.
func (a *Auditor) SessionEnd(_ context.Context, s *gateway.Session, err error) {
	a.add(Record{Event: "session.close", Session: s, Err: err})
}

// SetFail makes Call fail with err (nil: succeed again).
func (a *Auditor) SetFail(err error) {
	a.mu.Lock()
	a.Fail = err
	a.mu.Unlock()
}

// Records returns a copy of the records so far.
func (a *Auditor) Records() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Record(nil), a.records...)
}

// Events returns the records of one event kind.
func (a *Auditor) Events(event string) []Record {
	var out []Record
	for _, r := range a.Records() {
		if r.Event == event {
			out = append(out, r)
		}
	}
	return out
}

// Upstream answers with a function and counts the calls that reached it.
type Upstream struct {
	Fn     func(ctx context.Context, c *gateway.Call) (*gateway.Result, error)
	mu     sync.Mutex
	calls  int
	closed bool
}

var _ gateway.Upstream = (*Upstream)(nil)

// ErrNoFn is returned by an Upstream without a function.
var ErrNoFn = errors.New("gatewaytest: upstream has no function")

// RoundTrip implements gateway.Upstream.
func (u *Upstream) RoundTrip(ctx context.Context, c *gateway.Call) (*gateway.Result, error) {
	u.mu.Lock()
	u.calls++
	u.mu.Unlock()
	if u.Fn == nil {
		return nil, ErrNoFn
	}
	return u.Fn(ctx, c)
}

// Close implements gateway.Upstream.
func (u *Upstream) Close() error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	return nil
}

// Calls reports how many calls reached the upstream.
func (u *Upstream) Calls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}
