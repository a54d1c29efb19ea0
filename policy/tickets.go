package policy

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Ticket is a change ticket: for a while, it lets a user do some kinds of
// access on some targets, for a stated reason. The policy sees the tickets
// open at a call's time as input.tickets and decides whether one allows the
// call; the decision names it ("ticket") and the audit record keeps the name.
type Ticket struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Targets   []string  `json:"targets"`
	Access    []string  `json:"access"`
	Reason    string    `json:"reason"`
	OpenedBy  string    `json:"opened_by"`
	Opened    time.Time `json:"opened"`
	Expires   time.Time `json:"expires"`
	Approvals []string  `json:"approvals"` // people other than OpenedBy who approved it
}

// Ticket events, as the audit log records them.
const (
	TicketOpen    = "ticket.open"
	TicketApprove = "ticket.approve"
	TicketClose   = "ticket.close"
	// TicketLoad: a ticket found in the ticket file at start, in force
	// again; recorded so that the log names every ticket a decision can
	// see, and replay rebuilds the same set.
	TicketLoad = "ticket.load"
)

// TicketEvent is one change of the ticket set, for the audit log. The change
// takes effect only after the hook accepted it.
type TicketEvent struct {
	Event  string // TicketOpen, TicketApprove, TicketClose
	Ticket Ticket // the ticket after the change
	By     string // who made it (the admin interface's authenticated user)
}

// Limits of a ticket.
const (
	MaxTicketDuration = 7 * 24 * time.Hour
	maxTickets        = 1024
	maxTicketReason   = 512 // bytes: a change request's id and a line about it
)

// accessKinds checks a ticket's access kinds.
func accessKinds(access []string) error {
	for _, a := range access {
		switch a {
		case "read", "write", "execute", "browse", "subscribe", "session", "diagnostic", "program":
		default:
			return fmt.Errorf("access %q is not one of read, write, execute, browse, subscribe, session, diagnostic, program", a)
		}
	}
	return nil
}

// Tickets is the live set of open change tickets, kept in a JSON file so
// that they survive a restart. It is safe for concurrent use.
type Tickets struct {
	path    string
	onEvent func(TicketEvent) error
	now     func() time.Time

	mu      sync.Mutex
	m       map[string]Ticket
	refused []string // entries of the file not loaded, and why

	gen  atomic.Uint64                  // bumped by every change
	snap atomic.Pointer[ticketSnapshot] // input.tickets for a span of time
}

// ticketSnapshot is input.tickets valid for calls in [from, until) of one
// generation of the set.
type ticketSnapshot struct {
	gen         uint64
	from, until time.Time
	term        *ast.Term
}

// OpenTickets loads the ticket file at path (created on the first change)
// and drops expired tickets, and those no Open or Approve could have made
// (a field missing, a lifetime over MaxTicketDuration, an approval by the
// opener, an id twice): Refused says why. onEvent is called for every change
// before it takes effect; an error refuses the change (the audit log must
// hold it). Each ticket loaded is passed to it as a TicketLoad event.
func OpenTickets(path string, onEvent func(TicketEvent) error) (*Tickets, error) {
	ts := &Tickets{path: path, onEvent: onEvent, now: time.Now, m: map[string]Ticket{}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("tickets: %w", err)
	default:
		var list []Ticket
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("tickets: %s is not a ticket list: %v", path, err)
		}
		now := ts.now()
		seen := map[string]int{}
		for _, t := range list {
			seen[t.ID]++
		}
		for i, t := range list {
			if n := seen[t.ID]; n > 1 {
				ts.refused = append(ts.refused, fmt.Sprintf("%s: entry %d: id %q is there %d times", path, i+1, t.ID, n))
				continue
			}
			if err := loadable(t); err != nil {
				ts.refused = append(ts.refused, fmt.Sprintf("%s: entry %d (id %q): %v", path, i+1, t.ID, err))
				continue
			}
			if t.Expires.After(now) {
				ts.m[t.ID] = t
			}
		}
		if len(ts.m) > maxTickets {
			return nil, fmt.Errorf("tickets: %s holds %d open tickets, more than %d", path, len(ts.m), maxTickets)
		}
	}
	if onEvent != nil {
		for _, t := range ts.List() {
			if err := onEvent(TicketEvent{Event: TicketLoad, Ticket: t, By: filepath.Base(path)}); err != nil {
				return nil, fmt.Errorf("tickets: ticket %s not recorded in the audit log: %w", t.ID, err)
			}
		}
	}
	return ts, nil
}

// Refused says which entries of the ticket file OpenTickets did not load,
// and why.
func (ts *Tickets) Refused() []string { return ts.refused }

// ticketIDRe is what a ticket id may be: it is a path segment of the admin
// API (ticket close ID), so no / ? # % and no dot-only names.
var ticketIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`)

// ErrNotSaved is what errors.Is finds in the error of a ticket change that
// took effect (it is recorded and in force) but could not be saved to the
// ticket file.
var ErrNotSaved = errors.New("ticket file not saved")

// notSaved is a save failure: its text is the cause's, and it is ErrNotSaved.
type notSaved struct{ err error }

func (e notSaved) Error() string   { return e.err.Error() }
func (e notSaved) Unwrap() []error { return []error{ErrNotSaved, e.err} }

// plainText says which of a ticket's names or its reason holds a control
// character (a newline would break `ticket list` and every table built
// from the audit log).
func plainText(t Ticket) error {
	check := func(what, v string) error {
		if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
			return fmt.Errorf("%s %q holds a control character", what, v)
		}
		return nil
	}
	errs := []error{check("id", t.ID), check("user", t.User), check("reason", t.Reason)}
	for _, target := range t.Targets {
		errs = append(errs, check("target", target))
	}
	return errors.Join(errs...)
}

// loadable says why a ticket of the file is not one Open and Approve could
// have made.
func loadable(t Ticket) error {
	if err := plainText(t); err != nil {
		return err
	}
	if !ticketIDRe.MatchString(t.ID) {
		return fmt.Errorf("id %q is not one ticket open takes (letters, digits and . _ : -)", t.ID)
	}
	switch {
	case t.ID == "" || t.User == "" || len(t.Targets) == 0 || len(t.Access) == 0 ||
		strings.TrimSpace(t.Reason) == "" || t.OpenedBy == "" || t.Opened.IsZero() || t.Expires.IsZero():
		return errors.New("a field is missing (id, user, targets, access, reason, opened_by, opened, expires)")
	case !t.Expires.After(t.Opened) || t.Expires.Sub(t.Opened) > MaxTicketDuration:
		return fmt.Errorf("it expires %s after it was opened, outside 1s..%s", t.Expires.Sub(t.Opened), MaxTicketDuration)
	case slices.Contains(t.Approvals, t.OpenedBy):
		return fmt.Errorf("%s approved a ticket they opened", t.OpenedBy)
	case len(t.Reason) > maxTicketReason:
		return fmt.Errorf("a reason of %d bytes, more than %d", len(t.Reason), maxTicketReason)
	}
	return accessKinds(t.Access)
}

// Open checks and opens a ticket for the duration from now. ID is generated
// when empty.
func (ts *Tickets) Open(t Ticket, d time.Duration, by string) (Ticket, error) {
	switch {
	case t.User == "":
		return Ticket{}, errors.New("ticket: a user is required")
	case len(t.Targets) == 0:
		return Ticket{}, errors.New("ticket: at least one target is required")
	case len(t.Access) == 0:
		return Ticket{}, errors.New("ticket: at least one access kind is required (write, execute, program, …)")
	case strings.TrimSpace(t.Reason) == "":
		return Ticket{}, errors.New("ticket: a reason is required (the change request, such as CHG-1234)")
	case d <= 0 || d > MaxTicketDuration:
		return Ticket{}, fmt.Errorf("ticket: duration %s is outside 1s..%s", d, MaxTicketDuration)
	case by == "":
		return Ticket{}, errors.New("ticket: unknown requester")
	}
	if err := accessKinds(t.Access); err != nil {
		return Ticket{}, fmt.Errorf("ticket: %w", err)
	}
	if err := plainText(t); err != nil {
		return Ticket{}, fmt.Errorf("ticket: %w", err)
	}
	t.Access = uniq(t.Access)
	t.Targets = uniq(t.Targets)
	if len(t.Reason) > maxTicketReason {
		return Ticket{}, fmt.Errorf("ticket: a reason of %d bytes, more than %d", len(t.Reason), maxTicketReason)
	}
	if t.ID != "" && !ticketIDRe.MatchString(t.ID) {
		return Ticket{}, fmt.Errorf("ticket: id %q: want 1 to 64 letters, digits and . _ : - (such as CHG-1234), starting with a letter or digit", t.ID)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if old, dup := ts.m[t.ID]; dup && t.ID != "" && !old.Expires.After(ts.now()) {
		delete(ts.m, t.ID) // expired: the id may be opened again
	}
	if t.ID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		t.ID = "T-" + strings.ToUpper(hex.EncodeToString(b[:]))
	}
	if _, dup := ts.m[t.ID]; dup {
		return Ticket{}, fmt.Errorf("ticket: %s is already open", t.ID)
	}
	if len(ts.m) >= maxTickets {
		return Ticket{}, fmt.Errorf("ticket: %d tickets are open already", maxTickets)
	}
	now := ts.now().UTC()
	t.OpenedBy, t.Opened, t.Expires = by, now, now.Add(d)
	t.Approvals = []string{}
	return t, ts.apply(TicketEvent{Event: TicketOpen, Ticket: t, By: by}, func() { ts.m[t.ID] = t })
}

// Approve adds by's approval; the opener cannot approve their own ticket.
func (ts *Tickets) Approve(id, by string) (Ticket, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.live(id)
	switch {
	case !ok:
		return Ticket{}, fmt.Errorf("ticket: %s is not open", id)
	case by == t.OpenedBy:
		return Ticket{}, fmt.Errorf("ticket: %s was opened by %s, who cannot also approve it", id, by)
	case slices.Contains(t.Approvals, by):
		return Ticket{}, fmt.Errorf("ticket: %s is already approved by %s", id, by)
	}
	t.Approvals = append(slices.Clone(t.Approvals), by)
	return t, ts.apply(TicketEvent{Event: TicketApprove, Ticket: t, By: by}, func() { ts.m[id] = t })
}

// Close ends a ticket before it expires.
func (ts *Tickets) Close(id, by string) (Ticket, error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t, ok := ts.live(id)
	if !ok {
		return Ticket{}, fmt.Errorf("ticket: %s is not open", id)
	}
	return t, ts.apply(TicketEvent{Event: TicketClose, Ticket: t, By: by}, func() { delete(ts.m, id) })
}

// List returns the open tickets, soonest to expire first.
func (ts *Tickets) List() []Ticket {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now := ts.now()
	var out []Ticket
	for _, t := range ts.m {
		if t.Expires.After(now) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Ticket) int { return a.Expires.Compare(b.Expires) })
	return out
}

// live returns an open, unexpired ticket; ts.mu is held.
func (ts *Tickets) live(id string) (Ticket, bool) {
	t, ok := ts.m[id]
	return t, ok && t.Expires.After(ts.now())
}

// apply records the event, persists the set with the change, and only then
// makes it visible to decisions; ts.mu is held.
func (ts *Tickets) apply(ev TicketEvent, change func()) error {
	if ts.onEvent != nil {
		if err := ts.onEvent(ev); err != nil {
			return fmt.Errorf("ticket: not recorded in the audit log, so not changed: %w", err)
		}
	}
	change()
	ts.gen.Add(1)
	if err := ts.save(); err != nil {
		what := fmt.Sprintf("%s is open now, but %s could not be saved: after a restart it will be gone", ev.Ticket.ID, ts.path)
		switch ev.Event {
		case TicketApprove:
			what = fmt.Sprintf("%s is approved by %s now, but %s could not be saved: after a restart the approval will be gone", ev.Ticket.ID, ev.By, ts.path)
		case TicketClose:
			what = fmt.Sprintf("%s is closed now, but %s could not be saved: after a restart the ticket would be open again; "+
				"make the file writable (the next ticket change saves the set, without it), or stop the gateway and remove it from the file", ev.Ticket.ID, ts.path)
		}
		return fmt.Errorf("ticket: %s: %w", what, notSaved{err})
	}
	return nil
}

// uniq drops repeated entries, keeping the first of each.
func uniq(list []string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// save writes the set atomically: a temporary file, fsync, rename.
func (ts *Tickets) save() error {
	if ts.path == "" {
		return nil
	}
	list := make([]Ticket, 0, len(ts.m))
	for _, t := range ts.m {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b Ticket) int { return strings.Compare(a.ID, b.ID) })
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(ts.path), 0o750); err != nil {
		return err
	}
	tmp := ts.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	return os.Rename(tmp, ts.path)
}

// input returns input.tickets for a call at time at, the generation of the
// set it reflects, and until when it stays the same (the next expiry).
func (ts *Tickets) input(at time.Time) (*ast.Term, uint64, time.Time) {
	gen := ts.gen.Load()
	if s := ts.snap.Load(); s != nil && s.gen == gen && !at.Before(s.from) && at.Before(s.until) {
		return s.term, s.gen, s.until
	}
	// The set is the same from the last opening or expiry at or before at
	// to the next one after it.
	ts.mu.Lock()
	gen = ts.gen.Load()
	var open []Ticket
	var from time.Time
	until := at.Add(24 * time.Hour)
	now := ts.now()
	for id, t := range ts.m {
		switch {
		case !t.Expires.After(at):
			from = later(from, t.Expires)
			if !t.Expires.After(now) {
				delete(ts.m, id) // expired for good; the file drops it at the next change
			}
		case t.Opened.After(at):
			until = earlier(until, t.Opened)
		default:
			open = append(open, t)
			from = later(from, t.Opened)
			until = earlier(until, t.Expires)
		}
	}
	ts.mu.Unlock()
	slices.SortFunc(open, func(a, b Ticket) int { return strings.Compare(a.ID, b.ID) })
	s := &ticketSnapshot{gen: gen, from: from, until: until, term: TicketsTerm(open)}
	ts.snap.Store(s)
	return s.term, s.gen, s.until
}

// TicketsTerm is the policy input form of a ticket list (replay builds it
// from audit records).
func TicketsTerm(list []Ticket) *ast.Term {
	ts := make([]*ast.Term, len(list))
	for i, t := range list {
		ts[i] = ast.ObjectTerm(
			ast.Item(ast.StringTerm("id"), ast.StringTerm(t.ID)),
			ast.Item(ast.StringTerm("user"), ast.StringTerm(t.User)),
			ast.Item(ast.StringTerm("targets"), stringsTerm(t.Targets)),
			ast.Item(ast.StringTerm("access"), stringsTerm(t.Access)),
			ast.Item(ast.StringTerm("reason"), ast.StringTerm(t.Reason)),
			ast.Item(ast.StringTerm("opened_by"), ast.StringTerm(t.OpenedBy)),
			ast.Item(ast.StringTerm("opened"), timeTerm(t.Opened)),
			ast.Item(ast.StringTerm("expires"), timeTerm(t.Expires)),
			ast.Item(ast.StringTerm("approvals"), stringsTerm(t.Approvals)),
		)
	}
	return ast.ArrayTerm(ts...)
}

func stringsTerm(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
