package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Pipeline is the one place where a call is decided, audited and forwarded.
// Every engine hands each decoded call to Handle; nothing reaches an upstream
// any other way. The zero value is not usable: set Decider and Auditor.
type Pipeline struct {
	Decider Decider
	Auditor Auditor

	// Monitor forwards calls the policy denies, with an alert (policy.mode:
	// monitor). The record keeps the policy's verdict.
	Monitor bool
	// DecisionTimeout bounds one policy evaluation; past it the call is
	// denied with ReasonPolicyError.
	DecisionTimeout time.Duration
	// DenyReadsOnAuditFailure refuses read-only calls too when their record
	// cannot be written. By default reads go on with an alert in the
	// operational log (IEC 62443-3-3 SR 2.10: keep essential services);
	// state-changing calls are always refused.
	DenyReadsOnAuditFailure bool

	Log zerolog.Logger

	auditErrs Every // the log line of a call denied because the audit log refused its record
	upErrs    Every // the log line of a call the upstream failed (unreachable, no answer)
}

// DefaultDecisionTimeout bounds a policy evaluation when none is configured.
const DefaultDecisionTimeout = 100 * time.Millisecond

// Handle decides c, writes its call record, forwards it through up when
// allowed, writes its result record, and returns the result for the engine
// to answer the client with. It never returns nil.
//
// A denied call comes back with StatusDenied and is not forwarded. Records are
// written with a context that is not cancelled with the client's, so a call
// whose client went away still leaves its record.
func (p *Pipeline) Handle(ctx context.Context, s *Session, c *Call, up Upstream) *Result {
	if _, r := p.Admit(ctx, s, c); r != nil {
		return r
	}
	start := time.Now()
	r, err := up.RoundTrip(ctx, c)
	if r == nil {
		r = &Result{Status: StatusError}
	}
	if err != nil {
		r.Status = StatusError
		if r.Detail == "" {
			r.Detail = err.Error()
		}
		// An unreachable or silent device is an operator's concern too,
		// not only the audit log's: once every 10 s at most.
		if n, ok := p.upErrs.Allow(time.Now()); ok {
			s.Log.Warn().Err(err).Str("target", c.Target.Name).Str("upstream", c.Target.Upstream).Str("function", c.Operation.Function).
				Int("repeats_not_logged", n).Msg("upstream failed: the client got an error")
		}
	}
	r.Latency = time.Since(start)
	p.Finish(ctx, s, c, r)
	return r
}

// Admit is the first half of Handle, for engines that forward several calls
// in one upstream request (an OPC UA Write of many nodes is one call per
// node): it decides c and writes its call record. When c may be forwarded it
// returns the decision and a nil Result; the engine forwards it and must pass
// the outcome to Finish. Otherwise the returned Result (denied) is already
// recorded and c must not be forwarded. The same fail-closed rules hold as in
// Handle.
func (p *Pipeline) Admit(ctx context.Context, s *Session, c *Call) (Decision, *Result) {
	if c.ID == "" {
		c.ID = NewID()
	}
	if c.Time.IsZero() {
		c.Time = time.Now().UTC()
	}
	d := p.decide(ctx, s, c)
	forward := d.Allow
	if !d.Allow && p.Monitor {
		forward = true
		d.Alert = true
		d.Reasons = append(d.Reasons, ReasonMonitorWouldDeny)
	}

	actx := context.WithoutCancel(ctx)
	if err := p.Auditor.Call(actx, s, c, d); err != nil {
		c.RecordLost = true
		if c.Operation.Access.ChangesState() || p.DenyReadsOnAuditFailure {
			if n, ok := p.auditErrs.Allow(time.Now()); ok {
				s.Log.Error().Err(err).Str("call_id", c.ID).Str("function", c.Operation.Function).Int("repeats_not_logged", n).
					Msg("audit log cannot take the call record: call denied")
			}
			r := &Result{Status: StatusDenied, Detail: ReasonAuditUnavailable}
			p.Auditor.Result(actx, s, c, r)
			return d, r
		}
		// Every time: for a call forwarded without its record this line
		// is the only trace.
		s.Log.Error().Err(err).Str("call_id", c.ID).Str("function", c.Operation.Function).
			Msg("audit log cannot take the call record: read forwarded without it")
	}
	if !forward {
		s.Log.Info().Str("call_id", c.ID).Str("function", c.Operation.Function).
			Strs("reasons", d.Reasons).Msg("call denied")
		r := &Result{Status: StatusDenied, Detail: strings.Join(d.Reasons, ",")}
		p.Auditor.Result(actx, s, c, r)
		return d, r
	}
	if d.Alert {
		s.Log.Warn().Str("call_id", c.ID).Str("function", c.Operation.Function).
			Strs("reasons", d.Reasons).Msg("call alert")
	}
	return d, nil
}

// Finish writes the result record of a call that Admit let through.
func (p *Pipeline) Finish(ctx context.Context, s *Session, c *Call, r *Result) {
	p.Auditor.Result(context.WithoutCancel(ctx), s, c, r)
}

// Open decides whether a new session may start (operation.function
// "session.open") and records the session start. It reports whether the
// session may go on.
func (p *Pipeline) Open(ctx context.Context, s *Session) bool {
	c := &Call{
		ID:        NewID(),
		Time:      time.Now().UTC(),
		Target:    s.Target,
		Operation: Operation{Function: FunctionSessionOpen, Access: AccessSession},
	}
	d := p.decide(ctx, s, c)
	refused := ""
	switch {
	case d.Allow:
	case p.Monitor:
		d.Alert = true
		d.Reasons = append(d.Reasons, ReasonMonitorWouldDeny)
	default:
		refused = "policy: " + strings.Join(d.Reasons, ",")
	}
	p.Auditor.SessionStart(context.WithoutCancel(ctx), s, &d, refused)
	if refused != "" {
		s.Log.Info().Strs("reasons", d.Reasons).Msg("session refused by policy")
	}
	return refused == ""
}

// Reject records a request refused before any policy decision (malformed,
// over a bound). response says how the client was answered, such as
// "exception 0x03" or "close". Within a listener, a source's rejections
// beyond Limits.RejectedPerSource in a window are counted rather than
// recorded one by one, and summed up in a RejectedSummary (rejections.go).
func (p *Pipeline) Reject(ctx context.Context, s *Session, c *Call, reason, detail, response string) {
	if r := rejectionsOf(ctx); r != nil && !r.admit(ctx, s, reason) {
		return
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	if c.Time.IsZero() {
		c.Time = time.Now().UTC()
	}
	s.Log.Info().Str("reason", reason).Str("detail", detail).Str("response", response).Msg("request rejected")
	p.Auditor.Rejected(context.WithoutCancel(ctx), s, c, reason, detail, response)
}

// AuthFailed records a failed login (session.auth_failed): s holds what is
// known of the caller, such as the user name that was tried. An Auditor
// without an AuthFailureAuditor hook gets it as a rejected request with
// reason ReasonAuthFailed.
func (p *Pipeline) AuthFailed(ctx context.Context, s *Session, detail string) {
	s.Log.Info().Str("user", s.Principal.User).Str("detail", detail).Msg("login failed")
	ctx = context.WithoutCancel(ctx)
	if a, ok := p.Auditor.(AuthFailureAuditor); ok {
		a.AuthFailed(ctx, s, ReasonAuthFailed, detail)
		return
	}
	c := &Call{ID: NewID(), Time: time.Now().UTC(), Target: s.Target,
		Operation: Operation{Function: FunctionSessionAuthFailed, Access: AccessSession}}
	p.Auditor.Rejected(ctx, s, c, ReasonAuthFailed, detail, "refused")
}

func (p *Pipeline) decide(ctx context.Context, s *Session, c *Call) Decision {
	evaluate := p.Decider.Decide
	if cd, ok := p.Decider.(CachedDecider); ok {
		if d, hit := cd.Cached(s, c); hit {
			return p.withMode(d)
		}
		evaluate = cd.Evaluate
	}
	timeout := p.DecisionTimeout
	if timeout <= 0 {
		timeout = DefaultDecisionTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	d, err := evaluate(dctx, s, c)
	cancel()
	if err != nil {
		s.Log.Error().Err(err).Str("call_id", c.ID).Str("function", c.Operation.Function).
			Msg("policy error: call denied")
		d = ErrorDecision(d, err)
	}
	return p.withMode(d)
}

// ErrorDecision is the decision that stands when the policy failed with
// err: a denial with an alert, reasons policy_error and the error's code
// (policy_timeout, policy_undefined …).
func ErrorDecision(d Decision, err error) Decision {
	if d.ID == "" {
		d.ID = NewID()
	}
	d.Allow, d.Alert = false, true
	d.Error = err.Error()
	d.Reasons = []string{ReasonPolicyError}
	if ec, ok := errors.AsType[ErrorCoder](err); ok && ec.ErrorCode() != "" {
		d.Reasons = append(d.Reasons, ec.ErrorCode())
	}
	return d
}

func (p *Pipeline) withMode(d Decision) Decision {
	if d.Mode == "" {
		d.Mode = "enforce"
		if p.Monitor {
			d.Mode = "monitor"
		}
	}
	return d
}

// Every lets a log line that repeats (once per call, once per fsync round)
// through at most once every 10 s, and counts the ones it held back. The
// zero value is ready; it is safe for concurrent use.
type Every struct {
	mu   sync.Mutex
	last time.Time
	held int
}

// Allow reports whether to log at now, and how many lines were held back
// since the last one logged.
func (e *Every) Allow(now time.Time) (held int, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.last.IsZero() && now.Sub(e.last) < 10*time.Second {
		e.held++
		return 0, false
	}
	held, e.held, e.last = e.held, 0, now
	return held, true
}
