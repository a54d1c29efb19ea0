// Package policy is Interlock's embedded OPA: it loads the Rego policy and its
// data from a directory or an OPA bundle (a file or a bundle server, signed or
// not), prepares the decision query once, decides every call
// (gateway.Decider), reloads all-or-nothing, and runs the policy's own tests.
package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// DefaultQuery is the decision the contract asks of every policy.
const DefaultQuery = "data.interlock.decision"

// Options configure an Engine.
type Options struct {
	// Path is a policy directory (.rego files and .json/.yaml/.yml data, OPA
	// layout), an OPA bundle file (.tar.gz), or the http:// or https:// URL
	// of a bundle server.
	Path    string
	Query   string // decision query; DefaultQuery when empty
	Gateway string // gateway id, input.gateway.id
	Log     zerolog.Logger
	// OnLoad is called after each load attempt (New, and every Reload that
	// found changed files) so the audit log can record which policy runs.
	// It runs with reloads held off, so it must not call Reload.
	OnLoad func(Load)

	// Cache decisions of repeated identical calls (see decisionCache) for
	// CacheTTL (DefaultCacheTTL when 0), at most CacheEntries of them
	// (DefaultCacheEntries when 0). NoCache turns the cache off.
	NoCache      bool
	CacheTTL     time.Duration
	CacheEntries int

	// MaxConcurrentEvaluations caps the policy evaluations that run at
	// once (DefaultMaxConcurrentEvaluations when 0). A decision that finds
	// every slot taken waits for one within its own deadline; one that
	// gets none in time fails with CodeTimeout, as an evaluation past the
	// deadline does. Answers from the decision cache take no slot.
	MaxConcurrentEvaluations int

	// Tickets are the open change tickets, given to the policy as
	// input.tickets; nil gives an empty list.
	Tickets *Tickets

	// DecisionLog, when set, gets every decision in OPA's decision log
	// format (best effort, beside the audit log); its Run uploads them.
	DecisionLog *DecisionLog

	// Bundle options; they apply when Path is a bundle file or URL.
	BundleOptions
}

// Engine decides calls with the policy loaded from Options.Path. It is safe
// for concurrent use; Reload swaps the policy atomically.
type Engine struct {
	opts  Options
	src   source
	cur   atomic.Pointer[prepared]
	cache *decisionCache // nil when off
	slots chan struct{}  // one per evaluation running (Options.MaxConcurrentEvaluations)

	mu       sync.Mutex // serialises Reload; guards sig, lastFail and the source's state
	sig      [32]byte   // stat signature of the files the last load attempt read
	lastFail string     // the last load error reported; a poll does not report it again
}

var _ gateway.CachedDecider = (*Engine)(nil)

// New loads, compiles and prepares the policy in opts.Path. It fails when the
// directory or bundle holds no policy, a file does not parse or compile (the
// error names file:line), no rule defines the decision query, or a bundle
// cannot be fetched or fails verification.
func New(opts Options) (*Engine, error) {
	if opts.Path == "" {
		return nil, errors.New("policy: no policy path configured")
	}
	if opts.Query == "" {
		opts.Query = DefaultQuery
	}
	src, err := newSource(opts)
	if err != nil {
		return nil, err
	}
	n := opts.MaxConcurrentEvaluations
	if n <= 0 {
		n = DefaultMaxConcurrentEvaluations()
	}
	e := &Engine{opts: opts, src: src, slots: make(chan struct{}, n)}
	if !opts.NoCache {
		e.cache = newDecisionCache(opts.CacheTTL, opts.CacheEntries)
	}
	snap, err := src.read(context.Background()) // a first request sends no ETag: never a 304
	var p *prepared
	if err == nil {
		e.sig = snap.sig
		p, err = prepare(context.Background(), snap, opts.Query)
	}
	if err != nil {
		e.loaded(snap, err)
		return nil, err
	}
	e.cur.Store(p)
	e.loaded(snap, nil)
	e.logLoaded(snap, p, nil, "policy loaded")
	return e, nil
}

// DefaultMaxConcurrentEvaluations is the cap on evaluations running at once
// when none is configured: twice the CPUs Go uses (GOMAXPROCS). Rego
// evaluation is CPU work: more at once than there are CPUs only share them,
// so that under a heavy policy every evaluation overruns its deadline
// (a cancelled evaluation stops only once it gets the CPU again). Twice
// the CPUs keeps them busy while one evaluation waits (GC, a builtin).
func DefaultMaxConcurrentEvaluations() int { return 2 * runtime.GOMAXPROCS(0) }

// logLoaded writes the line of a successful load; a bundle's says how its
// signature was checked, and warns when it was not.
func (e *Engine) logLoaded(snap *snapshot, p, old *prepared, msg string) {
	ev := e.opts.Log.Info().Str("path", e.opts.Path).Str("policy_revision", p.rev)
	if old != nil {
		ev = ev.Str("previous_revision", old.rev)
	}
	if b := snap.bundle; b != nil {
		ev = ev.Str("bundle_signature", b.signature)
		if b.etag != "" {
			ev = ev.Str("etag", b.etag)
		}
	}
	ev.Strs("files", p.files).Msg(msg)
	if b := snap.bundle; b != nil {
		switch b.signature {
		case sigUnsigned:
			e.opts.Log.Warn().Str("path", e.opts.Path).Str("policy_revision", p.rev).
				Msg("policy bundle is unsigned: no bundle key is configured, so nothing proves where it came from")
		case sigUnchecked:
			e.opts.Log.Warn().Str("path", e.opts.Path).Str("policy_revision", p.rev).
				Msg("policy bundle is signed but its signature was not checked: no bundle key is configured")
		}
		if old != nil && old.rev == p.rev {
			e.opts.Log.Warn().Str("path", e.opts.Path).Str("policy_revision", p.rev).
				Msg("policy bundle changed but kept its manifest revision: decisions cannot tell the two apart")
		}
	}
}

// Revision returns the revision of the policy in force.
func (e *Engine) Revision() string { return e.cur.Load().rev }

// Files returns the files, relative to Options.Path, of the policy in force.
func (e *Engine) Files() []string { return e.cur.Load().files }

// Cached answers c from the decision cache when the same call was decided
// within its TTL (gateway.CachedDecider). A decision it answers goes to the
// decision log, as an evaluated one does.
func (e *Engine) Cached(s *gateway.Session, c *gateway.Call) (gateway.Decision, bool) {
	d, hit := e.cached(s, c)
	if hit && e.opts.DecisionLog != nil {
		e.logDecision(s, c, nil, d, nil)
	}
	return d, hit
}

func (e *Engine) cached(s *gateway.Session, c *gateway.Call) (gateway.Decision, bool) {
	if e.cache == nil {
		return gateway.Decision{}, false
	}
	p := e.cur.Load()
	_, gen, _ := e.tickets(c.Time)
	k, ok := sessionInputFor(e.opts.Gateway, s).cacheKey(c, gen)
	if !ok {
		return gateway.Decision{}, false
	}
	v, hit := e.cache.get(p.key, k, c.Time)
	if !hit {
		return gateway.Decision{}, false
	}
	return gateway.Decision{Allow: v.allow, Alert: v.alert, Reasons: v.reasons, Ticket: v.ticket, RecordOldValue: v.oldValue,
		ID: gateway.NewID(), Revision: p.rev, Cached: true}, true
}

// tickets returns input.tickets for a call at time at, the generation of the
// ticket set, and until when that input holds.
func (e *Engine) tickets(at time.Time) (*ast.Term, uint64, time.Time) {
	if e.opts.Tickets == nil {
		return noTickets, 0, time.Time{}
	}
	return e.opts.Tickets.input(at)
}

// Decide evaluates the decision query for c, or answers from the decision
// cache when the same call was decided within its TTL. The session part of
// the input is built once per session and kept in s.Cache. On error the
// Decision still carries a fresh ID and the revision, for the deny record.
func (e *Engine) Decide(ctx context.Context, s *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
	if d, hit := e.Cached(s, c); hit {
		return d, nil
	}
	return e.Evaluate(ctx, s, c)
}

// Evaluate decides c by evaluating the policy, without looking in the
// decision cache (the pipeline calls it after Cached missed), and stores
// a cacheable verdict.
func (e *Engine) Evaluate(ctx context.Context, s *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
	d, in, err := e.decide(ctx, s, c)
	if e.opts.DecisionLog != nil {
		e.logDecision(s, c, in, d, err)
	}
	return d, err
}

// decide evaluates the policy for c (Decide after a cache miss) and returns
// the input it built.
func (e *Engine) decide(ctx context.Context, s *gateway.Session, c *gateway.Call) (gateway.Decision, ast.Value, error) {
	p := e.cur.Load()
	si := sessionInputFor(e.opts.Gateway, s)
	tickets, gen, until := e.tickets(c.Time)
	var key []byte
	if e.cache != nil {
		if k, ok := si.cacheKey(c, gen); ok {
			key = k
		}
	}
	in, err := si.input(c, tickets, false)
	if err != nil {
		d, err := p.fail(&Error{Code: CodeBadInput, Err: err})
		return d, nil, err
	}
	d, err := e.evalInSlot(ctx, p, in, c.Time)
	if err == nil && key != nil {
		e.cache.put(p.key, key, c.Time, until, d)
	}
	return d, in, err
}

// evalInSlot evaluates in under one of the engine's evaluation slots,
// waiting for one until ctx ends: the wait counts against the decision's
// deadline.
func (e *Engine) evalInSlot(ctx context.Context, p *prepared, in ast.Value, at time.Time) (gateway.Decision, error) {
	if err := e.takeSlot(ctx); err != nil {
		return p.fail(err)
	}
	defer e.releaseSlot()
	return p.eval(ctx, in, at)
}

// takeSlot takes an evaluation slot, waiting for one until ctx ends.
func (e *Engine) takeSlot(ctx context.Context) *Error {
	select {
	case e.slots <- struct{}{}:
		return nil
	default:
	}
	select {
	case e.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		err := fmt.Errorf("no evaluation slot free (%d evaluations at once) before the deadline: %w", cap(e.slots), ctx.Err())
		if errors.Is(ctx.Err(), context.Canceled) {
			return &Error{Code: CodeCanceled, Err: err}
		}
		return &Error{Code: CodeTimeout, Err: err}
	}
}

func (e *Engine) releaseSlot() { <-e.slots }

// UsesNetwork reports whether a rule of the policy in force calls a
// builtin that reaches the network (http.send, net.lookup_ip_addr):
// deciding made-up calls with it would send them to the service.
func (e *Engine) UsesNetwork() bool { return e.cur.Load().network }

// TicketUsers are the users of the open change tickets the engine gives
// the policy (for sample calls of users the configuration knows).
func (e *Engine) TicketUsers() []string {
	if e.opts.Tickets == nil {
		return nil
	}
	var users []string
	for _, t := range e.opts.Tickets.List() {
		users = append(users, t.User)
	}
	return users
}

// Eval decides an input built elsewhere (policy eval, replay, check), with
// time.now_ns() fixed to at. It takes no evaluation slot
// (Options.MaxConcurrentEvaluations): it serves the tools, not the
// gateway's calls.
func (e *Engine) Eval(ctx context.Context, input ast.Value, at time.Time) (gateway.Decision, error) {
	return e.cur.Load().eval(ctx, input, at)
}

// Reload re-reads Options.Path (a bundle server: a conditional request) and
// swaps in the new policy when it changed. An unchanged policy is a no-op.
// On any error the running policy stays in force and the error is returned,
// logged and passed to OnLoad.
func (e *Engine) Reload() (changed bool, err error) {
	return e.ReloadContext(context.Background())
}

// ReloadContext is Reload that gives up when ctx ends (a stop while a
// bundle server does not answer).
func (e *Engine) ReloadContext(ctx context.Context) (changed bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reload(ctx, nil, false)
}

// reload does the work of Reload with e.mu held. sig, when not nil, is the
// stat signature that prompted it: files that no longer match it are not
// loaded. polling is set by Watch's polls of a bundle server: a failure
// that repeats the last one is not reported again, so a server that is
// down does not write an audit record every interval.
func (e *Engine) reload(ctx context.Context, sig *[32]byte, polling bool) (bool, error) {
	old := e.cur.Load()
	snap, err := e.src.read(ctx)
	if err == nil && snap == nil {
		e.validAgain(old) // the bundle server answered 304 Not Modified
		return false, nil
	}
	if err == nil && sig != nil && snap.sig != *sig {
		// The files changed between the poll and the read: the next poll
		// sees them and waits for them to settle.
		return false, nil
	}
	if err == nil {
		e.sig = snap.sig
		if snap.key == old.key {
			e.validAgain(old)
			return false, nil
		}
		var p *prepared
		if p, err = prepare(ctx, snap, e.opts.Query); err == nil {
			e.cur.Store(p)
			e.lastFail = ""
			e.loaded(snap, nil)
			e.logLoaded(snap, p, old, "policy reloaded")
			return true, nil
		}
	} else if sig != nil {
		// Do not retry an unreadable directory until it changes again.
		e.sig = *sig
	}
	return false, e.failed(ctx, snap, err, polling)
}

// failed reports a failed load attempt (e.mu held): logged and passed to
// OnLoad, the policy in force staying. When polling, a failure that repeats
// the last one is not reported again. It returns err.
func (e *Engine) failed(ctx context.Context, snap *snapshot, err error, polling bool) error {
	old := e.cur.Load()
	if ctx.Err() != nil {
		return err // shutting down: not a policy problem
	}
	if polling && err.Error() == e.lastFail {
		e.opts.Log.Debug().Err(err).Str("path", e.opts.Path).Msg("policy reload still failing")
		return err
	}
	e.lastFail = err.Error()
	e.loaded(snap, err)
	e.opts.Log.Error().Err(err).Str("path", e.opts.Path).Str("policy_revision", old.rev).
		Msg("policy reload failed: previous policy stays in force")
	return err
}

// validAgain ends a run of failed reloads that came back to the policy in
// force: otherwise the last log line would still say the reload failed.
func (e *Engine) validAgain(old *prepared) {
	if e.lastFail == "" {
		return
	}
	e.lastFail = ""
	e.opts.Log.Info().Str("path", e.opts.Path).Str("policy_revision", old.rev).
		Msg("policy files valid again; revision unchanged, still in force")
}

// Watch polls Options.Path every interval until ctx is done. A directory or
// bundle file is re-read when a cheap stat (names, sizes, modification
// times) changes and then stays the same for one more poll, so a file still
// being written is not loaded half-way; a path that cannot be read is a
// failed load (logged, passed to OnLoad once per distinct failure). A bundle
// server is asked every interval with the ETag of its last answer, so an
// unchanged bundle costs one 304.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	ss, stats := e.src.(statSource)
	var w watchState
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !stats {
			e.mu.Lock()
			_, _ = e.reload(ctx, nil, true) // logged and reported to OnLoad by reload
			e.mu.Unlock()
			continue
		}
		e.poll(ctx, ss, &w)
	}
}

// watchState is what Watch keeps between two polls of a directory or a
// bundle file.
type watchState struct {
	pending    [32]byte // a changed stat signature not loaded yet
	hasPending bool
}

// poll is one look of Watch at a directory or bundle file. A changed stat
// signature is loaded only when the next poll finds it again: files still
// being written have not settled.
func (e *Engine) poll(ctx context.Context, ss statSource, w *watchState) {
	sig, err := ss.statSignature()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		w.hasPending = false
		e.sig = [32]byte{} // the path coming back is a change to read
		_ = e.failed(ctx, nil, err, true)
		return
	}
	if sig == e.sig {
		w.hasPending = false
		return
	}
	if !w.hasPending || sig != w.pending {
		w.pending, w.hasPending = sig, true // wait one interval for the files to settle
		return
	}
	w.hasPending = false
	_, _ = e.reload(ctx, &sig, false) // logged and reported to OnLoad by reload
}

func (e *Engine) loaded(snap *snapshot, err error) {
	if e.opts.OnLoad == nil {
		return
	}
	l := Load{Err: err}
	if snap != nil {
		l.Revision, l.Files = snap.rev, snap.names
		if snap.bundle != nil {
			l.BundleSignature = snap.bundle.signature
		}
	}
	if p := e.cur.Load(); p != nil {
		l.InForce = p.rev
	}
	e.opts.OnLoad(l)
}

// Load is what OnLoad is told of a load attempt.
type Load struct {
	Revision string // of the files read ("" when they could not be read)
	Files    []string
	Err      error // nil when the policy read is now in force
	// BundleSignature says how a bundle's signature was checked: verified,
	// unsigned (no key configured, none in the bundle) or not_checked
	// (signed, no key configured); "" for a policy directory.
	BundleSignature string
	// InForce is the revision in force after the attempt: Revision after a
	// load, the revision that stays after a failure ("" at start).
	InForce string
}

// prepared is one loaded policy: the query prepared against its compiler and
// store, and the revision that names it. Decisions read both from one pointer
// so a reload mid-call never mixes them.
type prepared struct {
	query rego.PreparedEvalQuery
	rev   string
	key   string // the content's identity; the decision cache keys on it
	files []string
	// network is set when a rule calls a builtin that reaches the network
	// (NetworkBuiltins): sample decisions would reach it too.
	network bool
}

func (p *prepared) eval(ctx context.Context, input ast.Value, at time.Time) (gateway.Decision, error) {
	vc, dc := getRuleCache(), getDataCache()
	// The evaluation stops when ctx ends (the decision timeout). Left to
	// itself OPA starts a goroutine per evaluation to watch ctx; a callback
	// registered on ctx costs no goroutine until ctx ends.
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	rs, err := p.query.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(at),
		rego.EvalVirtualCache(vc), rego.EvalBaseCache(dc), rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp())) // nobody reads per-decision metrics; skip their cost
	stop()
	putRuleCache(vc)
	putDataCache(dc)
	if err != nil {
		return p.fail(evalError(ctx, err))
	}
	d, derr := decision(rs)
	if derr != nil {
		return p.fail(derr)
	}
	d.ID = gateway.NewID()
	d.Revision = p.rev
	return d, nil
}

func (p *prepared) fail(err *Error) (gateway.Decision, error) {
	return gateway.Decision{ID: gateway.NewID(), Revision: p.rev}, err
}

func evalError(ctx context.Context, err error) *Error {
	if topdown.IsCancel(err) || ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return &Error{Code: CodeCanceled, Err: err}
		}
		return &Error{Code: CodeTimeout, Err: fmt.Errorf("evaluation stopped at its deadline: %w", err)}
	}
	return &Error{Code: CodeEvalError, Err: err}
}
