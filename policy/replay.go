package policy

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// AuditLine is one line of an audit log. Data is valid only until the
// iteration moves on.
type AuditLine struct {
	File string
	Line int // 1-based
	Data []byte
}

// maxAuditLine bounds one record; the writer's records are far smaller.
const maxAuditLine = 16 << 20

// ErrCutLine is the error for a last line without its newline: a record
// cut short by a crash, or one being written now. Replay and learn count
// it and go on with the next file; any other line that is not a record is
// an error.
var ErrCutLine = errors.New("the last line has no end: a record cut short by a crash, or being written now")

// AuditLines yields the lines of r, named name in errors. A last line
// without its newline comes with an error wrapping ErrCutLine, after which
// the lines end.
func AuditLines(name string, r io.Reader) iter.Seq2[AuditLine, error] {
	return func(yield func(AuditLine, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		var long []byte // a line longer than the buffer, assembled
		for n := 1; ; n++ {
			long = long[:0]
			line, err := br.ReadSlice('\n')
			for errors.Is(err, bufio.ErrBufferFull) {
				if long = append(long, line...); len(long) > maxAuditLine {
					yield(AuditLine{File: name, Line: n}, fmt.Errorf("%s:%d: a line over %d bytes: not an audit record", name, n, maxAuditLine))
					return
				}
				line, err = br.ReadSlice('\n')
			}
			if len(long) > 0 {
				line = append(long, line...)
			}
			switch {
			case err == io.EOF:
				if len(line) > 0 {
					yield(AuditLine{File: name, Line: n, Data: line}, fmt.Errorf("%s:%d: %w", name, n, ErrCutLine))
				}
				return
			case err != nil:
				yield(AuditLine{File: name, Line: n}, fmt.Errorf("%s:%d: %w", name, n, err))
				return
			}
			line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
			if !yield(AuditLine{File: name, Line: n, Data: line}, nil) {
				return
			}
		}
	}
}

// AuditFiles yields the lines of the files, one file after the other; a
// name ending in .gz (a rotated file compressed) is decompressed. It stops
// at the first error but ErrCutLine, after which the next file follows.
func AuditFiles(paths ...string) iter.Seq2[AuditLine, error] {
	return func(yield func(AuditLine, error) bool) {
		for _, p := range paths {
			if !auditFile(p, yield) {
				return
			}
		}
	}
}

// auditFile yields the lines of one file and reports whether to go on.
func auditFile(p string, yield func(AuditLine, error) bool) bool {
	f, err := os.Open(p)
	if err != nil {
		yield(AuditLine{File: p}, err)
		return false
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(p, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			yield(AuditLine{File: p}, fmt.Errorf("%s: %w", p, err))
			return false
		}
		r = zr
	}
	for l, err := range AuditLines(p, r) {
		if !yield(l, err) || err != nil && !errors.Is(err, ErrCutLine) {
			return false
		}
	}
	return true
}

// ReplayOptions tune Replay.
type ReplayOptions struct {
	// Gateway is input.gateway.id for records that carry no gateway field.
	Gateway string
	// Timeout bounds one evaluation, as policy.timeout does in the gateway;
	// 0 means none.
	Timeout time.Duration
	// Examples per group; 3 when 0.
	Examples int
	// Workers evaluating in parallel; GOMAXPROCS when 0.
	Workers int
}

// Change is how a replayed decision differs from the recorded one.
type Change string

// Changes, in report order.
const (
	NewlyDenied  Change = "newly_denied"  // recorded allow, now deny
	NewlyAllowed Change = "newly_allowed" // recorded deny, now allow
	AlertChanged Change = "alert_changed" // same allow, alert switched on or off
	Failed       Change = "failed"        // the candidate policy fails on the call: a deny with policy_error
)

// Changes lists every Change in report order.
var Changes = []Change{NewlyDenied, NewlyAllowed, AlertChanged, Failed}

// ReplayReport is what changes when recorded decisions are taken again.
type ReplayReport struct {
	PolicyRevision string   `json:"policy_revision"`
	Files          []string `json:"files"`
	Records        int      `json:"records"` // lines read
	// CutLines are last lines cut short by a crash (or being written),
	// skipped, as "file:line".
	CutLines []string     `json:"cut_lines"`
	From     time.Time    `json:"from"` // first and last call time replayed
	To       time.Time    `json:"to"`
	Totals   ReplayTotals `json:"totals"`
	// Groups of every Change (an empty list when none), largest first.
	Groups map[Change][]ChangeGroup `json:"groups"`
}

// ReplayTotals counts the replayed decisions by outcome.
type ReplayTotals struct {
	Replayed     int `json:"replayed"` // calls and session opens decided again
	Unchanged    int `json:"unchanged"`
	NewlyDenied  int `json:"newly_denied"`
	NewlyAllowed int `json:"newly_allowed"`
	AlertChanged int `json:"alert_changed"`
	Failed       int `json:"failed"`
}

// Of returns the count of one change.
func (t *ReplayTotals) Of(c Change) int {
	switch c {
	case NewlyDenied:
		return t.NewlyDenied
	case NewlyAllowed:
		return t.NewlyAllowed
	case AlertChanged:
		return t.AlertChanged
	case Failed:
		return t.Failed
	}
	return 0
}

func (t *ReplayTotals) add(c Change) {
	switch c {
	case NewlyDenied:
		t.NewlyDenied++
	case NewlyAllowed:
		t.NewlyAllowed++
	case AlertChanged:
		t.AlertChanged++
	case Failed:
		t.Failed++
	default:
		t.Unchanged++
	}
}

// Changed is the number of decisions that changed (failures included).
func (t *ReplayTotals) Changed() int {
	return t.NewlyDenied + t.NewlyAllowed + t.AlertChanged + t.Failed
}

// ChangeGroup is the changed decisions that share who, where, what and the
// new reasons.
type ChangeGroup struct {
	User     string          `json:"user"`
	Source   string          `json:"source"` // inventory name, else ip
	Target   string          `json:"target"`
	Function string          `json:"function"`
	Reasons  []string        `json:"reasons"` // of the new decision; [policy_error, code] for a failure
	Count    int             `json:"count"`
	Examples []ReplayExample `json:"examples"`
}

// ReplayExample is one changed decision.
type ReplayExample struct {
	CallID   string    `json:"call_id"` // the session id for a session open
	CallTime time.Time `json:"call_time"`
	User     string    `json:"user"`
	Source   string    `json:"source"`
	Target   string    `json:"target"`
	Function string    `json:"function"`
	Address  *int64    `json:"address,omitempty"`
	Quantity int64     `json:"quantity,omitempty"`
	NodeID   string    `json:"node_id,omitempty"`
	Old      Verdict   `json:"old"`
	New      Verdict   `json:"new"`
	File     string    `json:"file"`
	Line     int       `json:"line"`
}

// Verdict is the policy's own answer: for a call recorded in monitor mode,
// the deny it forwarded anyway, without monitor_would_deny.
type Verdict struct {
	Allow   bool     `json:"allow"`
	Alert   bool     `json:"alert"`
	Reasons []string `json:"reasons"`
	Ticket  string   `json:"ticket,omitempty"` // the change ticket the policy named
	Error   string   `json:"error,omitempty"`  // why the policy failed
}

// Replay decides every recorded call and session open in lines again with
// e, as the gateway would have at the recorded time, and reports what
// differs from the recorded decision. Lines that are not call or
// session.open records are skipped; ticket records rebuild input.tickets.
// A line that is not JSON, or a call record without a field the input
// needs, is an error naming file:line; a last line cut short by a crash is
// skipped and listed in CutLines. The hash chain is not checked here
// (audit verify does that).
func Replay(ctx context.Context, e *Engine, lines iter.Seq2[AuditLine, error], opts ReplayOptions) (*ReplayReport, error) {
	r := newReplayer(e, opts)
	defer r.evaluating.Wait() // no worker outlives an error return
	for l, err := range lines {
		if errors.Is(err, ErrCutLine) {
			r.rep.CutLines = append(r.rep.CutLines, fmt.Sprintf("%s:%d", l.File, l.Line))
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(r.rep.Files) == 0 || r.rep.Files[len(r.rep.Files)-1] != l.File {
			r.rep.Files = append(r.rep.Files, l.File)
		}
		r.rep.Records++
		if err := r.line(l); err != nil {
			return nil, err
		}
		if len(r.batch) == replayBatch {
			if err := r.flush(ctx); err != nil {
				return nil, err
			}
		}
	}
	if err := r.flush(ctx); err != nil {
		return nil, err
	}
	if err := r.settle(ctx); err != nil {
		return nil, err
	}
	return r.report(), nil
}

func newReplayer(e *Engine, opts ReplayOptions) *replayer {
	if opts.Examples <= 0 {
		opts.Examples = 3
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	return &replayer{
		e: e, opts: opts,
		sessions: map[string]*gateway.Session{},
		groups:   map[Change]map[string]*ChangeGroup{},
		rep:      &ReplayReport{PolicyRevision: e.Revision(), Files: []string{}, CutLines: []string{}},
	}
}

// replayBatch is how many decisions are handed to the workers at once.
const replayBatch = 4096

type replayer struct {
	e        *Engine
	opts     ReplayOptions
	sessions map[string]*gateway.Session // by session id, from session.open until session.close
	tickets  TicketHistory
	groups   map[Change]map[string]*ChangeGroup
	rep      *ReplayReport

	batch      []replayCall   // being read from the log
	running    []replayCall   // being evaluated
	spare      []replayCall   // the batch before, for reuse
	evaluating sync.WaitGroup // the workers on running
}

// replayCall is one decision to take again and what to report about it.
type replayCall struct {
	input ast.Value
	at    time.Time
	ex    ReplayExample
	// oldAlertKnown is false for a deny recorded in monitor mode, whose
	// alert the gateway forced on.
	oldAlertKnown bool

	change Change // "" when unchanged; set by eval
}

// replayRecord is what Replay reads of an audit record. The names are the
// contract's (audit/fields.go).
type replayRecord struct {
	Event     string `json:"event"`
	Time      string `json:"time"`
	Gateway   string `json:"gateway"`
	CallID    string `json:"call_id"`
	SessionID string `json:"session_id"`
	Listener  string `json:"listener"`
	CallTime  string `json:"call_time"`
	Protocol  string `json:"protocol"`
	Session   *struct {
		Started        string `json:"started"`
		SecurityPolicy string `json:"security_policy"`
		SecurityMode   string `json:"security_mode"`
		Resumed        int    `json:"resumed"`
	} `json:"session"`
	Source *struct {
		IP    string `json:"ip"`
		Port  uint16 `json:"port"`
		Name  string `json:"name"`
		Owner string `json:"owner"`
	} `json:"source"`
	Principal *struct {
		User           string   `json:"user"`
		Auth           string   `json:"auth"`
		Roles          []string `json:"roles"`
		CertThumbprint string   `json:"cert_thumbprint"`
		ApplicationURI string   `json:"application_uri"`
	} `json:"principal"`
	Target *struct {
		Name     string `json:"name"`
		Upstream string `json:"upstream"`
		UnitID   *int   `json:"unit_id"`
	} `json:"target"`
	Operation json.RawMessage `json:"operation"`
	Decision  *struct {
		Allow   *bool    `json:"allow"`
		Alert   bool     `json:"alert"`
		Reasons []string `json:"reasons"`
		Mode    string   `json:"mode"`
		Ticket  string   `json:"ticket"`
	} `json:"decision"`
	Ticket   json.RawMessage `json:"ticket"`
	TicketID string          `json:"ticket_id"`
	By       string          `json:"by"`
}

var replayEventKey = []byte(`"event":"`)

// peekReplayEvent reads the event name without decoding the record: the
// envelope (seq, time, event) comes first, so the first match is it. It
// reports false for a record not written compactly, which must be decoded.
func peekReplayEvent(line []byte) (string, bool) {
	i := bytes.Index(line, replayEventKey)
	if i < 0 {
		return "", false
	}
	rest := line[i+len(replayEventKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func (r *replayer) line(l AuditLine) error {
	where := func(format string, a ...any) error {
		return fmt.Errorf("%s:%d: %s", l.File, l.Line, fmt.Sprintf(format, a...))
	}
	if ev, ok := peekReplayEvent(l.Data); ok {
		switch ev {
		case audit.EventCall, audit.EventSessionOpen, audit.EventSessionClose,
			TicketOpen, TicketApprove, TicketClose, TicketLoad:
		default:
			// Most lines are results: check they are JSON, decode nothing.
			if !json.Valid(l.Data) {
				return where("not a JSON record")
			}
			return nil
		}
	}
	var rec replayRecord
	if err := json.Unmarshal(l.Data, &rec); err != nil {
		return where("not a JSON record: %v", err)
	}
	switch rec.Event {
	case audit.EventCall:
		return r.call(&rec, l, where)
	case audit.EventSessionOpen:
		return r.sessionOpen(&rec, l, where)
	case audit.EventSessionClose:
		delete(r.sessions, rec.SessionID)
	case TicketOpen, TicketApprove, TicketClose, TicketLoad:
		at, err := time.Parse(time.RFC3339Nano, rec.Time)
		if err != nil {
			return where("%s record: time %q is not RFC 3339", rec.Event, rec.Time)
		}
		var t Ticket
		if len(rec.Ticket) > 0 {
			if err := json.Unmarshal(rec.Ticket, &t); err != nil || t.ID == "" {
				return where("%s record: ticket is not a ticket object", rec.Event)
			}
		} else if rec.Event == TicketOpen || rec.Event == TicketLoad || rec.TicketID == "" {
			return where("%s record has no ticket", rec.Event)
		}
		r.tickets.Add(rec.Event, at, rec.TicketID, rec.By, t)
	}
	return nil
}

// decodeReplayNumbers decodes JSON keeping numbers as json.Number.
func decodeReplayNumbers(raw []byte, into any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber() // integers stay exact, as the gateway gave them to the policy
	return d.Decode(into)
}

// sessionOpen notes the session's start and security for its calls, and
// replays the session.open decision when one was taken (a refusal for a
// bound such as max_conns has none).
func (r *replayer) sessionOpen(rec *replayRecord, l AuditLine, where func(string, ...any) error) error {
	if rec.SessionID == "" {
		return where("session.open record has no session_id")
	}
	s := &gateway.Session{ID: rec.SessionID, Gateway: rec.Gateway, Listener: rec.Listener, Protocol: rec.Protocol}
	if rec.Session != nil {
		if rec.Session.Started != "" {
			t, err := time.Parse(time.RFC3339Nano, rec.Session.Started)
			if err != nil {
				return where("session.started %q is not RFC 3339", rec.Session.Started)
			}
			s.Started = t
		}
		s.SecurityPolicy, s.SecurityMode, s.Resumed = rec.Session.SecurityPolicy, rec.Session.SecurityMode, rec.Session.Resumed
	}
	r.sessions[rec.SessionID] = s
	if rec.Decision == nil {
		return nil
	}
	// The gateway decides a session open just before it writes the record,
	// and records no time of its own for the decision.
	at := rec.CallTime
	if at == "" {
		at = rec.Time
	}
	c := &gateway.Call{ID: rec.SessionID, Operation: gateway.Operation{
		Function: gateway.FunctionSessionOpen, Access: gateway.AccessSession}}
	return r.decide(rec, s, c, at, nil, l, where)
}

func (r *replayer) call(rec *replayRecord, l AuditLine, where func(string, ...any) error) error {
	switch {
	case rec.CallID == "":
		return where("call record has no call_id")
	case rec.SessionID == "":
		return where("call record has no session_id")
	case rec.CallTime == "":
		return where("call record has no call_time")
	case len(rec.Operation) == 0:
		return where("call record has no operation")
	}
	var op map[string]any
	if err := decodeReplayNumbers(rec.Operation, &op); err != nil || op == nil {
		return where("call record: operation is not an object")
	}
	fn, _ := op[gateway.KeyFunction].(string)
	access, _ := op[gateway.KeyAccess].(string)
	if fn == "" || access == "" {
		return where("call record: operation has no function or access")
	}
	c := &gateway.Call{ID: rec.CallID, Operation: gateway.Operation{Function: fn, Access: gateway.Access(access)}}
	for k, v := range op {
		if k != gateway.KeyFunction && k != gateway.KeyAccess {
			c.Operation.Any(k, v)
		}
	}
	s := r.sessions[rec.SessionID]
	if s == nil { // its session.open is in an earlier log: no start time
		s = &gateway.Session{ID: rec.SessionID}
		r.sessions[rec.SessionID] = s
	}
	s.Gateway, s.Listener, s.Protocol = rec.Gateway, rec.Listener, rec.Protocol
	return r.decide(rec, s, c, rec.CallTime, op, l, where)
}

// decide fills in the parts of s and c the record carries, builds the
// input as the gateway did, and queues the decision.
func (r *replayer) decide(rec *replayRecord, s *gateway.Session, c *gateway.Call, at string, op map[string]any,
	l AuditLine, where func(string, ...any) error) error {
	kind := rec.Event + " record"
	switch {
	case rec.Source == nil:
		return where("%s has no source", kind)
	case rec.Principal == nil:
		return where("%s has no principal", kind)
	case rec.Target == nil:
		return where("%s has no target", kind)
	case rec.Decision == nil || rec.Decision.Allow == nil:
		return where("%s has no decision.allow", kind)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return where("%s: time %q is not RFC 3339", kind, at)
	}
	c.Time = t
	var src gateway.Source
	if rec.Source.IP != "" {
		ip, err := netip.ParseAddr(rec.Source.IP)
		if err != nil {
			return where("%s: source.ip %q is not an address", kind, rec.Source.IP)
		}
		src.IP, src.Port = ip, rec.Source.Port
	}
	src.Name, src.Owner = rec.Source.Name, rec.Source.Owner
	s.Source = src
	p := rec.Principal
	s.Principal = gateway.Principal{User: p.User, Auth: p.Auth, Roles: p.Roles,
		CertThumbprint: p.CertThumbprint, ApplicationURI: p.ApplicationURI}
	c.Target = gateway.Target{Name: rec.Target.Name, Upstream: rec.Target.Upstream, UnitID: -1}
	if rec.Target.UnitID != nil {
		c.Target.UnitID = *rec.Target.UnitID
	}
	gw := rec.Gateway
	if gw == "" {
		gw = r.opts.Gateway
	}
	in, err := sessionInputFor(gw, s).input(c, r.tickets.At(t), false)
	if err != nil {
		return where("%s: %v", kind, err)
	}

	d := rec.Decision
	old := Verdict{Allow: *d.Allow, Alert: d.Alert, Reasons: d.Reasons, Ticket: d.Ticket}
	monitored := d.Mode == "monitor" && !old.Allow
	if monitored {
		old.Reasons = slices.DeleteFunc(slices.Clone(old.Reasons), func(s string) bool { return s == gateway.ReasonMonitorWouldDeny })
	}
	if old.Reasons == nil {
		old.Reasons = []string{}
	}
	source := src.Name
	if source == "" && src.IP.IsValid() {
		source = src.IP.String()
	}
	ex := ReplayExample{CallID: c.ID, CallTime: t, User: p.User, Source: source, Target: c.Target.Name,
		Function: c.Operation.Function, Old: old, File: l.File, Line: l.Line}
	if a, ok := op[gateway.KeyAddress].(json.Number); ok {
		if n, err := a.Int64(); err == nil {
			ex.Address = &n
		}
	}
	if q, ok := op[gateway.KeyQuantity].(json.Number); ok {
		ex.Quantity, _ = q.Int64()
	}
	ex.NodeID, _ = op["node_id"].(string)
	r.batch = append(r.batch, replayCall{input: in, at: t, ex: ex, oldAlertKnown: !monitored})
	return nil
}

// flush hands the queued decisions to the workers, after counting the batch
// handed over before: the log is read on while a batch is evaluated.
func (r *replayer) flush(ctx context.Context) error {
	if err := r.settle(ctx); err != nil {
		return err
	}
	n := len(r.batch)
	if n == 0 {
		return nil
	}
	r.running, r.batch = r.batch, r.spare[:0]
	run := r.running
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range min(r.opts.Workers, n) {
		r.evaluating.Go(func() {
			for i := range next {
				r.eval(ctx, &run[i])
			}
		})
	}
	return nil
}

// settle waits for the batch being evaluated and counts it in log order,
// which keeps the examples stable.
func (r *replayer) settle(ctx context.Context) error {
	r.evaluating.Wait()
	if r.running == nil {
		return ctx.Err()
	}
	for i := range r.running {
		r.count(&r.running[i])
	}
	clear(r.running)
	r.spare, r.running = r.running[:0], nil
	return ctx.Err()
}

func (r *replayer) eval(ctx context.Context, c *replayCall) {
	ectx := ctx
	if r.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
	}
	d, err := r.e.Eval(ectx, c.input, c.at)
	c.input = nil // the batch is kept; its inputs need not be
	old := c.ex.Old
	if err != nil {
		// As the gateway records a failed decision.
		code := Code(err)
		if code == "" {
			code = CodeEvalError
		}
		c.ex.New = Verdict{Alert: true, Reasons: []string{gateway.ReasonPolicyError, code}, Error: err.Error()}
		c.change = Failed
		return
	}
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	c.ex.New = Verdict{Allow: d.Allow, Alert: d.Alert, Reasons: d.Reasons, Ticket: d.Ticket}
	switch {
	case old.Allow && !d.Allow:
		c.change = NewlyDenied
	case !old.Allow && d.Allow:
		c.change = NewlyAllowed
	case c.oldAlertKnown && old.Alert != d.Alert:
		c.change = AlertChanged
	}
}

func (r *replayer) count(c *replayCall) {
	rep := r.rep
	rep.Totals.Replayed++
	if rep.From.IsZero() || c.at.Before(rep.From) {
		rep.From = c.at
	}
	if c.at.After(rep.To) {
		rep.To = c.at
	}
	rep.Totals.add(c.change)
	if c.change == "" {
		return
	}
	ex := &c.ex
	key := strings.Join(append([]string{ex.User, ex.Source, ex.Target, ex.Function}, ex.New.Reasons...), "\x00")
	byKey := r.groups[c.change]
	if byKey == nil {
		byKey = map[string]*ChangeGroup{}
		r.groups[c.change] = byKey
	}
	g := byKey[key]
	if g == nil {
		g = &ChangeGroup{User: ex.User, Source: ex.Source, Target: ex.Target, Function: ex.Function,
			Reasons: ex.New.Reasons, Examples: []ReplayExample{}}
		byKey[key] = g
	}
	g.Count++
	if len(g.Examples) < r.opts.Examples {
		g.Examples = append(g.Examples, *ex)
	}
}

func (r *replayer) report() *ReplayReport {
	rep := r.rep
	rep.Groups = map[Change][]ChangeGroup{}
	for _, ch := range Changes {
		gs := []ChangeGroup{}
		for _, g := range r.groups[ch] {
			gs = append(gs, *g)
		}
		slices.SortFunc(gs, func(a, b ChangeGroup) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.User, b.User), cmp.Compare(a.Source, b.Source),
				cmp.Compare(a.Target, b.Target), cmp.Compare(a.Function, b.Function), slices.Compare(a.Reasons, b.Reasons))
		})
		rep.Groups[ch] = gs
	}
	return rep
}

// TicketHistory rebuilds the change tickets the gateway held from the
// ticket.open, ticket.approve and ticket.close records, so that a replayed
// call sees the input.tickets it saw. The zero value is ready to use.
type TicketHistory struct {
	ids      []string                   // in the order first seen
	versions map[string][]ticketVersion // by id, in record order

	// The open tickets rarely differ from one call to the next: At reuses
	// its last answer while the versions it picks are the same.
	gen      int
	memoGen  int
	memoKey  []int
	memo     *ast.Term
	keyAlloc []int
}

// ticketVersion is a ticket as it stood from a record's time on.
type ticketVersion struct {
	from   time.Time
	t      Ticket
	closed bool
}

// Add applies one ticket record: event is TicketOpen, TicketApprove or
// TicketClose, at the record's time; t is the ticket after the change. A
// record without the ticket (t.ID empty) changes the last version of id:
// by's approval is added, or the ticket is closed. Add reports false for
// such a record about a ticket never seen (its ticket.open is in an older
// log).
func (h *TicketHistory) Add(event string, at time.Time, id, by string, t Ticket) bool {
	if h.versions == nil {
		h.versions = map[string][]ticketVersion{}
	}
	if t.ID == "" {
		vs := h.versions[id]
		if len(vs) == 0 {
			return false
		}
		t = vs[len(vs)-1].t
		if event == TicketApprove && !slices.Contains(t.Approvals, by) {
			t.Approvals = append(slices.Clone(t.Approvals), by)
		}
	}
	if _, seen := h.versions[t.ID]; !seen {
		h.ids = append(h.ids, t.ID)
	}
	h.versions[t.ID] = append(h.versions[t.ID], ticketVersion{from: at, t: t, closed: event == TicketClose})
	h.gen++
	return true
}

// At returns input.tickets for a call at t as the gateway built it: of
// each ticket the last version recorded by t, unless it is closed, opened
// after t or expired at t; sorted by id. The term is shared: do not change it.
func (h *TicketHistory) At(t time.Time) *ast.Term {
	key := h.keyAlloc[:0]
	for i, id := range h.ids {
		vs := h.versions[id]
		n := len(vs) - 1
		for n >= 0 && vs[n].from.After(t) {
			n--
		}
		if n < 0 || vs[n].closed || vs[n].t.Opened.After(t) || !vs[n].t.Expires.After(t) {
			continue
		}
		key = append(key, i, n)
	}
	h.keyAlloc = key
	if h.memo != nil && h.memoGen == h.gen && slices.Equal(key, h.memoKey) {
		return h.memo
	}
	list := make([]Ticket, 0, len(key)/2)
	for j := 0; j < len(key); j += 2 {
		list = append(list, h.versions[h.ids[key[j]]][key[j+1]].t)
	}
	slices.SortFunc(list, func(a, b Ticket) int { return strings.Compare(a.ID, b.ID) })
	h.memo, h.memoGen, h.memoKey = TicketsTerm(list), h.gen, slices.Clone(key)
	return h.memo
}
