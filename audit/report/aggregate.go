package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// callRow is one call as the tables show it. A call can stand in several
// tables (state-changing, denied, outside a window); they share the row.
type callRow struct {
	Seq       uint64
	Time      time.Time
	CallID    string
	SessionID string
	User      string
	Auth      string
	Roles     []string
	SrcIP     string
	SrcPort   int
	SrcName   string
	Target    string
	Unit      *int
	Listener  string
	Protocol  string
	Function  string
	Access    string
	Code      *int
	What      string
	Allow     bool
	Alert     bool
	Reasons   []string
	Mode      string
	Ticket    string
	Revision  string
	Window    string // the window open at the call, when windows were given

	HasResult bool
	Status    string
	ResCode   int64
	ResDetail string
	LatencyUS int64
}

// pending is a call in the period waiting for its result record.
type pending struct {
	state bool
	row   *callRow
}

// maxPending bounds the calls waiting for a result; results follow their
// call within milliseconds, so only calls whose result never came stay.
const maxPending = 1 << 16

// seen is a value (source, user, target, function) and when it was first
// seen in the whole log.
type seen struct {
	Key          string
	Label        string
	First        time.Time
	FirstSeq     uint64
	InPeriod     bool  // seen in the period
	CallsPeriod  int64 // calls in the period
	FirstInRange bool  // first seen inside the period
}

type revision struct {
	Rev           string
	FirstLoaded   time.Time // first policy.load or gateway.start naming it
	Signature     string    // how its bundle's signature was checked, at its last load ("" for a directory)
	Loads         int64
	Files         []string
	FirstDecision time.Time
	LastDecision  time.Time
	Decisions     int64 // in the period
}

type revChange struct {
	Time     time.Time
	Seq      uint64
	Event    string
	From, To string
	Files    int
}

// usersLoad is a users.load or users.load_failed record: an OPC UA
// listener's users file read again by the running gateway.
type usersLoad struct {
	Time     time.Time
	Seq      uint64
	Event    string
	Listener string
	Path     string
	Users    int64 // users in force after the load, or that stayed after a failure
	HasUsers bool
	Added    []string
	Removed  []string
	Changed  []string // a new password hash or new roles
	Error    string
}

// certFiles is what a tls.load and an upstream_tls.load (and their
// failures) say of a certificate, its key, CAs and CRLs read again by the
// running gateway; a failure's are those in force.
type certFiles struct {
	Time       time.Time
	Seq        uint64
	Event      string
	Listener   string
	Paths      []string
	Subject    string
	Thumbprint string
	NotAfter   time.Time
	CRLs       int64
	Revoked    int64    // entries over all CRLs
	StaleCRLs  []string // the CRLs past their next update
	Error      string
}

// tlsLoad is a tls.load or tls.load_failed record: a Modbus/TCP Security
// listener's certificate, key, client CAs and CRLs.
type tlsLoad struct {
	certFiles
	SessionsEnded int64 // open sessions whose client certificate no longer passed
}

// upTLSLoad is an upstream_tls.load or upstream_tls.load_failed record: a
// Modbus listener's client certificate, CAs and CRLs toward its tls:// PLCs.
type upTLSLoad struct {
	certFiles
	CAs    int64
	Closed int64 // TLS sessions with the PLCs made under the files before
}

// pkiLoad is a pki.load or pki.load_failed record: an OPC UA listener's
// trust lists read again by the running gateway and its open sessions
// checked against them. A failure names only the listener and the error.
// A load without trust_changed (an older log) counts as a change.
type pkiLoad struct {
	Time          time.Time
	Seq           uint64
	Event         string
	Listener      string
	Paths         []string // the watched folders
	PKI           trustLists
	UserPKI       trustLists
	HasUserPKI    bool  // the listener has a user_pki for X.509 user tokens
	TrustChanged  bool  // false: re-checked unchanged, and a certificate no longer passed (one expired since)
	SessionsEnded int64 // open sessions whose application or user certificate no longer passed
	// The server's certificate of a secured upstream leg no longer passed:
	// the connections to the server closed, and why.
	HasUpstream     bool
	UpstreamDropped int64
	UpstreamError   string
	Error           string
}

// trustLists is what a certificate store's trust lists held at a pki.load.
type trustLists struct {
	Trusted int64 `json:"trusted_certs"`
	Issuers int64 `json:"issuer_certs"`
	CRLs    int64 `json:"crls"`
	Revoked int64 `json:"revoked_certificates"` // entries over all CRLs
}

type ticket struct {
	ID        string
	User      string
	Targets   []string
	Access    []string
	Reason    string
	OpenedBy  string
	Opened    time.Time
	Expires   time.Time
	Approvals []string
	Closed    time.Time
	ClosedBy  string
	Calls     int64 // calls in the period whose decision names it
}

type listenerUse struct {
	Name     string
	Calls    int64
	Sessions int64
	Rejected int64
	Last     time.Time // last record naming it, in the whole log
}

type start struct {
	Time     time.Time
	Seq      uint64
	Version  string
	BootID   string
	Revision string
	Mode     string
	Unclean  bool // the gateway before it never wrote gateway.stop
}

// eventRow is a record shown by its fields (load failures, recoveries,
// rotations, checkpoints, events the report does not know).
type eventRow struct {
	Time   time.Time
	Seq    uint64
	Event  string
	Fields string
}

// checkpointRow is an audit.checkpoint record: the record it covers, why
// it was written, by which boot, with which key.
type checkpointRow struct {
	Time   time.Time
	Seq    uint64
	Covers uint64
	Reason string
	BootID string
	KeyID  string
}

type sessionRow struct {
	Time     time.Time
	Seq      uint64
	Event    string
	SrcIP    string
	SrcPort  int
	SrcName  string
	User     string
	Auth     string
	Target   string
	Listener string
	Reason   string
}

type rejectRow struct {
	Time     time.Time
	Seq      uint64
	SrcIP    string
	SrcPort  int
	SrcName  string
	User     string
	Target   string
	Listener string
	Reason   string
	Detail   string
	Response string
	Function string
}

type otherEvent struct {
	Name        string
	Count       int64 // in the period
	First, Last time.Time
	Example     string
}

// FileInfo describes one file of the log as read.
type FileInfo struct {
	Name       string
	Size       int64
	SHA256     string
	Lines      int64
	Records    int64
	FirstSeq   uint64
	LastSeq    uint64
	Unreadable int64
}

// Durations of sessions, bucketed.
var durationBuckets = []struct {
	Label string
	Below time.Duration
}{
	{"under 1 s", time.Second},
	{"1 s – 1 min", time.Minute},
	{"1 – 10 min", 10 * time.Minute},
	{"10 min – 1 h", time.Hour},
	{"1 – 8 h", 8 * time.Hour},
	{"8 h or more", 1<<63 - 1},
}

// aggregator holds everything the report shows, built in one pass over
// the records.
type aggregator struct {
	opts *Options
	dec  *decoder

	// the whole log
	records    int64
	unreadable int64
	badLines   capped[string]
	logFirst   time.Time
	logLast    time.Time
	logFirstSq uint64
	logLastSq  uint64

	// the period
	periodRecords int64
	periodFirst   time.Time
	periodLast    time.Time
	periodFirstSq uint64
	periodLastSq  uint64
	gateways      tally

	calls, allowed, denied, alerted, alertAllowed, monitorFwd, cached int64
	state, stateAllowed, stateDenied, stateAlerted                    int64
	outcomes, stateOutcomes                                           tally
	pend                                                              map[string]pending
	pendOverflow                                                      int64

	timeline   timeline
	users      tally // calls by user ("" for none)
	sources    tally
	targets    tally
	userTarget tally // user + "\x00" + target
	functions  keyed[[numClasses]int64]
	funcOther  [numClasses]int64
	accesses   tally

	stateRows  capped[*callRow]
	denyRows   capped[*callRow]
	reasons    keyed[[2]int64] // denied, alerted
	reasonsOth [2]int64

	outside, outsideAllowed, outsideDenied, insideWindow int64
	outsideRows                                          capped[*callRow]

	seenSources, seenUsers, seenTargets, seenFunctions keyed[seen]

	revs       keyed[revision]
	revOrder   []string
	curRev     string
	revAtStart string
	startSet   bool
	revChanges capped[revChange]
	loadFails  capped[eventRow]
	usersLoads capped[usersLoad] // users.load in the period
	usersFails capped[usersLoad] // users.load_failed in the period
	tlsLoads   capped[tlsLoad]   // tls.load in the period
	tlsFails   capped[tlsLoad]   // tls.load_failed in the period
	tlsEnded   int64             // sessions_ended over the tls.load records in the period
	pkiLoads   capped[pkiLoad]   // pki.load in the period
	pkiChanged int64             // of them, those whose trust lists changed
	pkiFails   capped[pkiLoad]   // pki.load_failed in the period
	pkiEnded   int64             // sessions_ended over the pki.load records in the period
	pkiUpFails int64             // pki.load records in the period whose server certificate no longer passed
	pkiDropped int64             // upstream_connections_dropped over the pki.load records in the period
	upLoads    capped[upTLSLoad] // upstream_tls.load in the period
	upFails    capped[upTLSLoad] // upstream_tls.load_failed in the period
	upClosed   int64             // connections_closed over the upstream_tls.load records in the period

	// tickets are the ticket instances in log order: an id may be opened
	// again once its ticket was closed or expired, and each open starts an
	// instance of its own. ticketCur is the latest instance of each id,
	// which later approvals, closes and calls naming the id belong to.
	tickets        []*ticket
	ticketCur      map[string]*ticket
	ticketOverflow bool // instances past maxKeys were not tracked
	ticketCalls    int64
	ticketRefused  capped[eventRow] // ticket.load_refused in the period
	adminRefused   capped[eventRow] // ticket.refused in the period
	startFails     capped[eventRow] // gateway.start_failed in the period

	sessOpened, sessRefused, sessAuthFailed, sessClosed, sessAlert int64
	sessResumed                                                    int64 // session.open of a session on a new secure channel
	refuseReasons, authReasons, closeErrors                        tally
	sessRows                                                       capped[sessionRow]
	durCount, durSumMS, durMaxMS                                   int64
	durHist                                                        [6]int64
	sessByUser                                                     tally

	rejected       int64
	rejectReasons  tally
	rejectSources  tally
	rejectRows     capped[rejectRow]
	listeners      keyed[listenerUse]
	listenerOrder  []string
	starts         capped[start]
	startsTotal    int64 // whole log
	unclean        int64 // in the period
	stops          int64
	running        bool // a gateway.start was seen and no gateway.stop since
	recovered      capped[eventRow]
	checkpoints    capped[checkpointRow]
	checkpointsAll int64
	lastCheckpoint *checkpointRow
	rotations      capped[eventRow]
	capacity       capped[eventRow]
	capWarnings    int64
	others         keyed[otherEvent]
	othersTotal    int64

	// rejectedCounted: of rejected, those counted in
	// request.rejected_suppressed records rather than recorded one by one.
	rejectedCounted int64
}

func newAggregator(o *Options) *aggregator {
	n := o.MaxRows
	return &aggregator{
		opts:          o,
		dec:           newDecoder(),
		badLines:      newCapped[string](20),
		gateways:      newTally(100),
		outcomes:      newTally(100),
		stateOutcomes: newTally(100),
		pend:          map[string]pending{},
		users:         newTally(maxKeys),
		sources:       newTally(maxKeys),
		targets:       newTally(maxKeys),
		userTarget:    newTally(maxKeys),
		functions:     newKeyed[[numClasses]int64](maxKeys),
		accesses:      newTally(100),
		stateRows:     newCapped[*callRow](n),
		denyRows:      newCapped[*callRow](n),
		reasons:       newKeyed[[2]int64](maxKeys),
		outsideRows:   newCapped[*callRow](n),
		seenSources:   newKeyed[seen](maxKeys),
		seenUsers:     newKeyed[seen](maxKeys),
		seenTargets:   newKeyed[seen](maxKeys),
		seenFunctions: newKeyed[seen](maxKeys),
		revs:          newKeyed[revision](maxKeys),
		revChanges:    newCapped[revChange](n),
		loadFails:     newCapped[eventRow](n),
		usersLoads:    newCapped[usersLoad](n),
		usersFails:    newCapped[usersLoad](n),
		tlsLoads:      newCapped[tlsLoad](n),
		tlsFails:      newCapped[tlsLoad](n),
		pkiLoads:      newCapped[pkiLoad](n),
		pkiFails:      newCapped[pkiLoad](n),
		upLoads:       newCapped[upTLSLoad](n),
		upFails:       newCapped[upTLSLoad](n),
		ticketCur:     map[string]*ticket{},
		ticketRefused: newCapped[eventRow](n),
		adminRefused:  newCapped[eventRow](n),
		startFails:    newCapped[eventRow](n),
		refuseReasons: newTally(maxKeys),
		authReasons:   newTally(maxKeys),
		closeErrors:   newTally(maxKeys),
		sessRows:      newCapped[sessionRow](n),
		sessByUser:    newTally(maxKeys),
		rejectReasons: newTally(maxKeys),
		rejectSources: newTally(maxKeys),
		rejectRows:    newCapped[rejectRow](n),
		listeners:     newKeyed[listenerUse](maxKeys),
		starts:        newCapped[start](n),
		recovered:     newCapped[eventRow](n),
		checkpoints:   newCapped[checkpointRow](n),
		rotations:     newCapped[eventRow](n),
		capacity:      newCapped[eventRow](n),
		others:        newKeyed[otherEvent](200),
	}
}

// bad counts a line that is not an audit record.
func (a *aggregator) bad(where string) {
	a.unreadable++
	a.badLines.add(where)
}

// add takes one record; line is its text, for the few rows that show more
// of it than record holds.
func (a *aggregator) add(line []byte, r *record, t time.Time) {
	a.records++
	if a.logFirst.IsZero() || t.Before(a.logFirst) {
		a.logFirst = t
	}
	if t.After(a.logLast) {
		a.logLast = t
	}
	if a.logFirstSq == 0 {
		a.logFirstSq = r.Seq
	}
	a.logLastSq = r.Seq
	in := a.opts.inPeriod(t)
	if in {
		if !a.startSet {
			a.startSet, a.revAtStart = true, a.curRev
		}
		a.periodRecords++
		if a.periodFirst.IsZero() {
			a.periodFirst, a.periodFirstSq = t, r.Seq
		}
		a.periodLast, a.periodLastSq = t, r.Seq
		a.gateways.add(r.Gateway, 1)
	}
	if r.Listener != "" {
		if l := a.listener(r.Listener); l != nil && t.After(l.Last) {
			l.Last = t
		}
	}
	switch r.Event {
	case eventCall:
		a.call(line, r, t, in)
	case eventResult:
		a.result(r)
	case eventSessionOpen:
		a.sessionOpen(r, t, in)
	case eventSessionAuthFailed:
		a.seeParties(r, t, in)
		if in {
			a.sessAuthFailed++
			reason := clip(nonEmpty(r.Reason, r.Error), maxFieldText)
			a.authReasons.add(reason, 1)
			a.sessRows.add(a.sessionRow(r, t, reason))
		}
	case eventSessionClose:
		if in {
			a.sessionClose(r)
		}
	case eventRejected:
		a.reject(r, t, in)
	case eventRejectedCounted:
		a.rejectCounted(r, t, in)
	case eventGatewayStart:
		a.gatewayStart(r, t, in)
	case eventGatewayStop:
		a.running = false
		if in {
			a.stops++
		}
	case eventPolicyLoad:
		a.policyLoad(r, t, in)
	case eventPolicyLoadFailed:
		if in {
			a.loadFails.add(eventRow{t, r.Seq, r.Event, clip(r.Error, maxFieldText)})
		}
	case eventUsersLoad, eventUsersLoadFailed:
		if in {
			a.usersLoad(line, r, t)
		}
	case eventTLSLoad, eventTLSLoadFailed:
		if in {
			a.tlsLoad(line, r, t)
		}
	case eventUpTLSLoad, eventUpTLSLoadFailed:
		if in {
			a.upTLSLoad(line, r, t)
		}
	case eventPKILoad, eventPKILoadFailed:
		if in {
			a.pkiLoad(line, r, t)
		}
	case eventTicketOpen, eventTicketApprove, eventTicketClose, eventTicketLoad:
		a.ticketEvent(r, t)
	case eventTicketLoadRefused:
		if in {
			a.ticketRefused.add(eventRow{t, r.Seq, r.Event, clip(r.Reason, maxFieldText)})
		}
	case eventTicketRefused:
		if in {
			what := r.Action
			if r.TicketID != "" {
				what += " " + r.TicketID
			}
			a.adminRefused.add(eventRow{t, r.Seq, r.Event, fmt.Sprintf("%s by %s: %s", what, r.By, clip(r.Reason, maxFieldText))})
		}
	case eventStartFailed:
		if in {
			a.startFails.add(eventRow{t, r.Seq, r.Event, clip(r.Error, maxFieldText)})
		}
	case eventRecovered:
		if in {
			a.recovered.add(eventRow{t, r.Seq, r.Event, plural(r.Truncated, "byte") + " of a line cut by a crash " + were(r.Truncated) + " removed"})
		}
	case eventCheckpoint:
		a.checkpointsAll++
		row := checkpointRow{Time: t, Seq: r.Seq}
		if c := r.Checkpt; c != nil {
			row.Covers, row.Reason, row.BootID, row.KeyID = c.Seq, c.Reason, c.BootID, c.KeyID
		}
		a.lastCheckpoint = &row
		if in {
			a.checkpoints.add(row)
		}
	case eventRotated, eventRetention:
		if in {
			a.rotations.add(eventRow{t, r.Seq, r.Event, eventFields(line)})
		}
	case eventCapacity:
		if in {
			if r.State == "warning" {
				a.capWarnings++
			}
			a.capacity.add(eventRow{t, r.Seq, r.Event, fmt.Sprintf("%s: the audit filesystem is %.1f%% full (warning at %.1f%%)", r.State, r.Fill, r.WarnFill)})
		}
	default:
		a.other(line, r, t, in)
	}
}

// recordedWindow is the maintenance window a decision's reasons say it
// passed the call on ("maintenance_window:<name>", or the policy library's
// "maintenance-window:pass:<name>"), marked as taken from the decision;
// "" when none.
func recordedWindow(reasons []string) string {
	for _, r := range reasons {
		for _, prefix := range []string{"maintenance_window:", "maintenance-window:pass:"} {
			if name, ok := strings.CutPrefix(r, prefix); ok && name != "" {
				return name + " (as the decision recorded it)"
			}
		}
	}
	return ""
}

func nonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func (a *aggregator) listener(name string) *listenerUse {
	return a.listeners.get(name, func() *listenerUse {
		a.listenerOrder = append(a.listenerOrder, name)
		return &listenerUse{Name: name}
	})
}

// see records that a value was seen at t, for first-seen.
func see(k *keyed[seen], key, label string, t time.Time, seq uint64, in, call bool) {
	if key == "" {
		return
	}
	s := k.get(key, func() *seen { return &seen{Key: key, First: t, FirstSeq: seq, FirstInRange: in} })
	if s == nil {
		return
	}
	if s.Label == "" {
		s.Label = label
	}
	if in {
		s.InPeriod = true
		if call {
			s.CallsPeriod++
		}
	}
}

// seeParties records the source, user and target of a record.
func (a *aggregator) seeParties(r *record, t time.Time, in bool) {
	call := r.Event == eventCall
	if r.Source != nil {
		see(&a.seenSources, r.Source.IP, r.Source.Name, t, r.Seq, in, call)
	}
	if r.Principal != nil {
		see(&a.seenUsers, r.Principal.User, r.Principal.Auth, t, r.Seq, in, call)
	}
	if r.Target != nil {
		see(&a.seenTargets, r.Target.Name, r.Target.Upstream, t, r.Seq, in, call)
	}
}

func classOf(d *recDecide) int {
	switch {
	case !d.Allow:
		return classDenied
	case d.Alert:
		return classAlerted
	}
	return classAllowed
}

func (a *aggregator) call(line []byte, r *record, t time.Time, in bool) {
	a.seeParties(r, t, in)
	op := r.Operation
	if op == nil {
		op = &recOp{}
	}
	see(&a.seenFunctions, op.Function, op.Access, t, r.Seq, in, true)
	d := r.Decision
	if d == nil {
		d = &recDecide{Reasons: []string{"(no decision in the record)"}}
	}
	if d.Revision != "" {
		a.decidedUnder(d.Revision, t, in)
	}
	if !in {
		return
	}
	a.calls++
	class := classOf(d)
	switch {
	case !d.Allow:
		a.denied++
		if d.Mode == "monitor" {
			a.monitorFwd++
		}
	default:
		a.allowed++
	}
	if d.Alert {
		a.alerted++
		if d.Allow {
			a.alertAllowed++
		}
	}
	if d.Cached {
		a.cached++
	}
	a.timeline.add(t, class)
	user, src, target := partyKeys(r)
	a.users.add(user, 1)
	a.sources.add(src, 1)
	a.targets.add(target, 1)
	a.userTarget.add(user+"\x00"+target, 1)
	a.accesses.add(op.Access, 1)
	if f := a.functions.get(op.Function, func() *[numClasses]int64 { return new([numClasses]int64) }); f != nil {
		f[class]++
	} else {
		a.funcOther[class]++
	}
	if r.Listener != "" {
		if l := a.listener(r.Listener); l != nil {
			l.Calls++
		}
	}
	if d.Ticket != "" {
		a.ticketCalls++
		if tk := a.ticketCur[d.Ticket]; tk != nil {
			tk.Calls++
		}
	}

	var row *callRow
	mkRow := func() *callRow {
		if row == nil {
			row = newCallRow(line, r, op, d, t)
		}
		return row
	}
	state := changesState(op.Access)
	if state {
		a.state++
		switch {
		case !d.Allow:
			a.stateDenied++
		default:
			a.stateAllowed++
		}
		if d.Alert {
			a.stateAlerted++
		}
		a.stateRows.addFunc(mkRow)
	}
	if !d.Allow || d.Alert {
		a.denyRows.addFunc(mkRow)
		for _, reason := range d.Reasons {
			i := 1
			if !d.Allow {
				i = 0
			}
			if c := a.reasons.get(clip(reason, maxFieldText), func() *[2]int64 { return new([2]int64) }); c != nil {
				c[i]++
			} else {
				a.reasonsOth[i]++
			}
		}
	}
	if state && a.opts.Windows != nil {
		ct := t
		if r.CallTime != "" {
			if x, err := time.Parse(time.RFC3339Nano, r.CallTime); err == nil {
				ct = x
			}
		}
		var roles []string
		if r.Principal != nil {
			roles = r.Principal.Roles
		}
		w := a.opts.Windows.openFor(ct, target, op.Access, user, roles)
		if w == "" && d.Allow {
			// The decision passed the call on a window: it was inside that
			// window, even when the data no longer lists it.
			w = clip(recordedWindow(d.Reasons), maxFieldText)
		}
		if w != "" {
			a.insideWindow++
			if row != nil {
				row.Window = w
			}
		} else {
			a.outside++
			if d.Allow {
				a.outsideAllowed++
			} else {
				a.outsideDenied++
			}
			a.outsideRows.addFunc(mkRow)
		}
	}
	if r.CallID != "" {
		if len(a.pend) < maxPending {
			a.pend[r.CallID] = pending{state: state, row: row}
		} else {
			a.pendOverflow++
		}
	}
}

// partyKeys are the user, source and target a call is counted under.
func partyKeys(r *record) (user, src, target string) {
	if r.Principal != nil {
		user = r.Principal.User
	}
	if r.Source != nil {
		src = r.Source.IP
	}
	if r.Target != nil {
		target = r.Target.Name
	}
	return
}

func newCallRow(line []byte, r *record, op *recOp, d *recDecide, t time.Time) *callRow {
	row := &callRow{
		Seq: r.Seq, Time: t, CallID: r.CallID, SessionID: r.SessionID, Listener: r.Listener, Protocol: r.Protocol,
		Function: op.Function, Access: op.Access, Code: op.Code,
		Allow: d.Allow, Alert: d.Alert, Reasons: firstOf(d.Reasons, maxReasons, maxFieldText), Mode: d.Mode, Ticket: d.Ticket, Revision: d.Revision,
		What: operationSummary(line),
	}
	if r.Principal != nil {
		row.User, row.Auth, row.Roles = r.Principal.User, r.Principal.Auth, r.Principal.Roles
	}
	if r.Source != nil {
		row.SrcIP, row.SrcPort, row.SrcName = r.Source.IP, r.Source.Port, r.Source.Name
	}
	if r.Target != nil {
		row.Target, row.Unit = r.Target.Name, r.Target.UnitID
	}
	return row
}

func (a *aggregator) result(r *record) {
	p, ok := a.pend[r.CallID]
	if !ok {
		return
	}
	delete(a.pend, r.CallID)
	status := nonEmpty(r.Status, "(none)")
	a.outcomes.add(status, 1)
	if p.state {
		a.stateOutcomes.add(status, 1)
	}
	if p.row != nil {
		p.row.HasResult = true
		p.row.Status, p.row.ResCode, p.row.ResDetail, p.row.LatencyUS = r.Status, r.Code, clip(r.Detail, maxFieldText), r.LatencyUS
	}
}

func (a *aggregator) sessionRow(r *record, t time.Time, reason string) sessionRow {
	s := sessionRow{Time: t, Seq: r.Seq, Event: r.Event, Listener: r.Listener, Reason: reason}
	if r.Source != nil {
		s.SrcIP, s.SrcPort, s.SrcName = r.Source.IP, r.Source.Port, r.Source.Name
	}
	if r.Principal != nil {
		s.User, s.Auth = r.Principal.User, r.Principal.Auth
	}
	if r.Target != nil {
		s.Target = r.Target.Name
	}
	return s
}

func (a *aggregator) sessionOpen(r *record, t time.Time, in bool) {
	a.seeParties(r, t, in)
	if r.Decision != nil && r.Decision.Revision != "" {
		a.decidedUnder(r.Decision.Revision, t, in)
	}
	if !in {
		return
	}
	if r.Success != nil && !*r.Success {
		a.sessRefused++
		reason := clip(nonEmpty(r.Reason, "(no reason recorded)"), maxFieldText)
		a.refuseReasons.add(reason, 1)
		a.sessRows.add(a.sessionRow(r, t, reason))
		return
	}
	if r.Session != nil && r.Session.Resumed > 0 {
		a.sessResumed++ // a session counted at its first session.open
		return
	}
	a.sessOpened++
	if r.Decision != nil && r.Decision.Alert {
		a.sessAlert++
	}
	user, _, _ := partyKeys(r)
	a.sessByUser.add(user, 1)
	if r.Listener != "" {
		if l := a.listener(r.Listener); l != nil {
			l.Sessions++
		}
	}
}

func (a *aggregator) sessionClose(r *record) {
	a.sessClosed++
	if r.Error != "" {
		a.closeErrors.add(clip(r.Error, maxFieldText), 1)
	}
	if r.Duration == nil {
		return
	}
	ms := *r.Duration
	a.durCount++
	a.durSumMS += ms
	a.durMaxMS = max(a.durMaxMS, ms)
	d := time.Duration(ms) * time.Millisecond
	for i, b := range durationBuckets {
		if d < b.Below {
			a.durHist[i]++
			break
		}
	}
}

// rejectCounted adds the rejections a request.rejected_suppressed record
// counts to the malformed requests, by reason and source, with one row
// for the record.
func (a *aggregator) rejectCounted(r *record, t time.Time, in bool) {
	a.seeParties(r, t, in)
	if !in || r.Count <= 0 {
		return
	}
	a.rejected += r.Count
	a.rejectedCounted += r.Count
	var reasons []string
	for _, rc := range r.Reasons {
		reason := clip(nonEmpty(rc.Reason, "(no reason recorded)"), maxFieldText)
		a.rejectReasons.add(reason, rc.Count)
		reasons = append(reasons, fmt.Sprintf("%s ×%d", reason, rc.Count))
	}
	row := rejectRow{Time: t, Seq: r.Seq, Listener: r.Listener, Reason: clip(strings.Join(reasons, ", "), maxFieldText),
		Detail: fmt.Sprintf("%s of this source counted, not recorded one by one (%s)", plural(r.Count, "rejection"), r.Event)}
	ip := ""
	if r.Source != nil {
		ip, row.SrcIP, row.SrcName = r.Source.IP, r.Source.IP, r.Source.Name
	}
	a.rejectSources.add(ip, r.Count)
	if r.Target != nil {
		row.Target = r.Target.Name
	}
	a.rejectRows.add(row)
	if r.Listener != "" {
		if l := a.listener(r.Listener); l != nil {
			l.Rejected += r.Count
		}
	}
}

func (a *aggregator) reject(r *record, t time.Time, in bool) {
	a.seeParties(r, t, in)
	if !in {
		return
	}
	a.rejected++
	reason := clip(nonEmpty(r.Reason, "(no reason recorded)"), maxFieldText)
	a.rejectReasons.add(reason, 1)
	row := rejectRow{Time: t, Seq: r.Seq, Listener: r.Listener, Reason: reason,
		Detail: clip(r.Detail, maxFieldText), Response: clip(r.Response, maxFieldText)}
	if r.Source != nil {
		row.SrcIP, row.SrcPort, row.SrcName = r.Source.IP, r.Source.Port, r.Source.Name
		a.rejectSources.add(r.Source.IP, 1)
	} else {
		a.rejectSources.add("", 1)
	}
	if r.Principal != nil {
		row.User = r.Principal.User
	}
	if r.Target != nil {
		row.Target = r.Target.Name
	}
	if r.Operation != nil {
		row.Function = r.Operation.Function
	}
	a.rejectRows.add(row)
	if r.Listener != "" {
		if l := a.listener(r.Listener); l != nil {
			l.Rejected++
		}
	}
}

func (a *aggregator) revision(rev string) *revision {
	return a.revs.get(rev, func() *revision {
		a.revOrder = append(a.revOrder, rev)
		return &revision{Rev: rev}
	})
}

// loaded notes a policy revision put in force by a record.
func (a *aggregator) loaded(rev string, files []string, r *record, t time.Time, in bool) {
	if rev == "" {
		return
	}
	if v := a.revision(rev); v != nil {
		if v.FirstLoaded.IsZero() {
			v.FirstLoaded, v.Files = t, files
		}
		v.Loads++
	}
	if rev != a.curRev {
		// The first load is the policy in force, not a change of it.
		if in && a.curRev != "" {
			a.revChanges.add(revChange{Time: t, Seq: r.Seq, Event: r.Event, From: a.curRev, To: rev, Files: len(files)})
		}
		a.curRev = rev
	}
}

// decidedUnder notes a decision taken under rev.
func (a *aggregator) decidedUnder(rev string, t time.Time, in bool) {
	if a.curRev == "" {
		a.curRev = rev // a log that starts after the load
		if !a.startSet {
			a.revAtStart = rev
		}
	}
	v := a.revision(rev)
	if v == nil {
		return
	}
	if v.FirstDecision.IsZero() {
		v.FirstDecision = t
	}
	v.LastDecision = t
	if in {
		v.Decisions++
	}
}

func (a *aggregator) policyLoad(r *record, t time.Time, in bool) {
	a.loaded(r.Revision, r.Files, r, t, in)
	if v := a.revision(r.Revision); v != nil && r.Revision != "" {
		v.Signature = r.Signature
	}
}

// maxReasons bounds the decision reasons a call row shows; the row says
// how many more there were.
const maxReasons = 20

// maxUserNames bounds the user names a users-file row keeps per list; the
// row says how many more there were.
const maxUserNames = 20

// usersLoad files a users.load or users.load_failed record. Its users,
// added, removed and changed fields are not in the record the decoder
// fills, so the line is read again: these records are rare.
func (a *aggregator) usersLoad(line []byte, r *record, t time.Time) {
	var f struct {
		Users   *int64   `json:"users"`
		Added   []string `json:"added"`
		Removed []string `json:"removed"`
		Changed []string `json:"changed"`
	}
	_ = json.Unmarshal(line, &f) // the line decoded as a record already; a field of another type stays empty
	row := usersLoad{Time: t, Seq: r.Seq, Event: r.Event, Listener: r.Listener, Path: r.Path, Error: clip(r.Error, maxFieldText),
		Added: names(f.Added), Removed: names(f.Removed), Changed: names(f.Changed)}
	if f.Users != nil {
		row.Users, row.HasUsers = *f.Users, true
	}
	if r.Event == eventUsersLoadFailed {
		a.usersFails.add(row)
	} else {
		a.usersLoads.add(row)
	}
}

// names keeps the first maxUserNames of a list of user names, each
// clipped, and "… N more" for the rest.
func names(list []string) []string { return firstOf(list, maxUserNames, 64) }

// firstOf keeps the first keep strings of a list, each clipped to width
// bytes, and "… N more" for the rest: a row stays small whatever the log says.
func firstOf(list []string, keep, width int) []string {
	out := make([]string, 0, min(len(list), keep+1))
	for i, n := range list {
		if i == keep {
			out = append(out, fmt.Sprintf("… %d more", len(list)-i))
			break
		}
		out = append(out, clip(n, width))
	}
	return out
}

// readCertFiles reads what a tls.load or upstream_tls.load record says of
// its files. These fields are not in the record the decoder fills, so the
// line is read again: these records are rare.
func readCertFiles(line []byte, r *record, t time.Time) certFiles {
	var f struct {
		Paths      []string `json:"paths"`
		Subject    string   `json:"cert_subject"`
		Thumbprint string   `json:"cert_thumbprint"`
		NotAfter   string   `json:"cert_not_after"`
		CRLs       int64    `json:"crls"`
		Revoked    int64    `json:"revoked_certificates"`
		Stale      []string `json:"stale_crls"`
	}
	_ = json.Unmarshal(line, &f) // the line decoded as a record already; a field of another type stays empty
	c := certFiles{Time: t, Seq: r.Seq, Event: r.Event, Listener: r.Listener, Error: clip(r.Error, maxFieldText),
		Paths: firstOf(f.Paths, 8, 256), Subject: clip(f.Subject, 256), Thumbprint: clip(f.Thumbprint, 64),
		CRLs: f.CRLs, Revoked: f.Revoked, StaleCRLs: firstOf(f.Stale, 8, 256)}
	if na, err := time.Parse(time.RFC3339Nano, f.NotAfter); err == nil {
		c.NotAfter = na.UTC()
	}
	return c
}

// tlsLoad files a tls.load or tls.load_failed record.
func (a *aggregator) tlsLoad(line []byte, r *record, t time.Time) {
	var f struct {
		Ended int64 `json:"sessions_ended"`
	}
	_ = json.Unmarshal(line, &f)
	row := tlsLoad{certFiles: readCertFiles(line, r, t), SessionsEnded: f.Ended}
	if r.Event == eventTLSLoadFailed {
		a.tlsFails.add(row)
		return
	}
	a.tlsEnded += max(f.Ended, 0)
	a.tlsLoads.add(row)
}

// upTLSLoad files an upstream_tls.load or upstream_tls.load_failed record.
func (a *aggregator) upTLSLoad(line []byte, r *record, t time.Time) {
	var f struct {
		CAs    int64 `json:"ca_certs"`
		Closed int64 `json:"connections_closed"`
	}
	_ = json.Unmarshal(line, &f)
	row := upTLSLoad{certFiles: readCertFiles(line, r, t), CAs: f.CAs, Closed: max(f.Closed, 0)}
	if r.Event == eventUpTLSLoadFailed {
		a.upFails.add(row)
		return
	}
	a.upClosed += row.Closed
	a.upLoads.add(row)
}

// pkiLoad files a pki.load or pki.load_failed record. Its folders and
// trust-list counts are not in the record the decoder fills, so the line is
// read again: these records are rare.
func (a *aggregator) pkiLoad(line []byte, r *record, t time.Time) {
	var f struct {
		Paths   []string        `json:"paths"`
		PKI     trustLists      `json:"pki"`
		UserPKI json.RawMessage `json:"user_pki"` // a pointer would be set by a value of another type too
		Ended   int64           `json:"sessions_ended"`
		Dropped int64           `json:"upstream_connections_dropped"`
		UpErr   string          `json:"upstream_error"`
		Changed json.RawMessage `json:"trust_changed"` // as user_pki: only false is no change
	}
	_ = json.Unmarshal(line, &f) // the line decoded as a record already; a field of another type stays empty
	row := pkiLoad{Time: t, Seq: r.Seq, Event: r.Event, Listener: r.Listener, Error: clip(r.Error, maxFieldText),
		Paths: firstOf(f.Paths, 8, 256), PKI: f.PKI, SessionsEnded: f.Ended,
		HasUpstream: f.UpErr != "" || f.Dropped > 0, UpstreamDropped: max(f.Dropped, 0), UpstreamError: clip(f.UpErr, maxFieldText)}
	if len(f.UserPKI) > 0 && f.UserPKI[0] == '{' && json.Unmarshal(f.UserPKI, &row.UserPKI) == nil {
		row.HasUserPKI = true
	}
	if r.Event == eventPKILoadFailed {
		a.pkiFails.add(row)
		return
	}
	row.TrustChanged = string(f.Changed) != "false"
	if row.TrustChanged {
		a.pkiChanged++
	}
	a.pkiEnded += max(f.Ended, 0)
	if row.HasUpstream {
		a.pkiUpFails++
		a.pkiDropped += row.UpstreamDropped
	}
	a.pkiLoads.add(row)
}

func (a *aggregator) gatewayStart(r *record, t time.Time, in bool) {
	unclean := a.running
	a.running = true
	a.startsTotal++
	a.loaded(r.Revision, nil, r, t, in)
	if !in {
		return
	}
	if unclean {
		a.unclean++
	}
	a.starts.add(start{Time: t, Seq: r.Seq, Version: r.Version, BootID: r.BootID, Revision: r.Revision, Mode: r.Mode, Unclean: unclean})
}

func (a *aggregator) ticketEvent(r *record, t time.Time) {
	id := r.TicketID
	if id == "" && r.Ticket != nil {
		id = r.Ticket.ID
	}
	if id == "" {
		return
	}
	var opened time.Time
	if rt := r.Ticket; rt != nil {
		opened, _ = time.Parse(time.RFC3339Nano, rt.Opened)
	}
	tk := a.ticketCur[id]
	switch {
	case r.Event == eventTicketOpen:
		tk = nil // a new ticket, even when an earlier one had its id
	case r.Event == eventTicketLoad:
		// A restart loads the tickets still open from the ticket file: the
		// same ticket when the latest instance of the id was opened at the
		// same time and is not closed, else one the log has not seen open.
		if tk != nil && (!tk.Closed.IsZero() || opened.IsZero() || !tk.Opened.Equal(opened)) {
			tk = nil
		}
	}
	if tk == nil {
		if len(a.tickets) >= maxKeys {
			a.ticketOverflow = true
			return
		}
		tk = &ticket{ID: id}
		a.tickets = append(a.tickets, tk)
		a.ticketCur[id] = tk
	}
	if rt := r.Ticket; rt != nil {
		tk.User, tk.Targets, tk.Access, tk.Reason, tk.OpenedBy = rt.User, rt.Targets, rt.Access, clip(rt.Reason, maxFieldText), rt.OpenedBy
		tk.Opened = opened
		tk.Expires, _ = time.Parse(time.RFC3339Nano, rt.Expires)
		tk.Approvals = rt.Approvals
	}
	if r.Event == eventTicketOpen && tk.Opened.IsZero() {
		tk.Opened = t
	}
	if r.Event == eventTicketClose {
		tk.Closed, tk.ClosedBy = t, r.By
	}
}

func (a *aggregator) other(line []byte, r *record, t time.Time, in bool) {
	o := a.others.get(r.Event, func() *otherEvent {
		return &otherEvent{Name: r.Event, First: t, Example: eventFields(line)}
	})
	if o == nil {
		return
	}
	o.Last = t
	if in {
		o.Count++
		a.othersTotal++
	}
}

// envelope fields, which eventFields leaves out.
var envelope = []string{"seq", "time", "event", "gateway", "prev", "hash"}

// maxFieldText bounds the text shown for one record's fields.
const maxFieldText = 400

// eventFields shows a record's own fields as key=value, for events whose
// shape the report does not know.
func eventFields(line []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(line, &m) != nil {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if !slices.Contains(envelope, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString(k)
		b.WriteString("=")
		var str string
		if json.Unmarshal(m[k], &str) == nil {
			b.WriteString(str)
		} else {
			b.Write(m[k])
		}
		if b.Len() > maxFieldText {
			break
		}
	}
	return clip(b.String(), maxFieldText)
}

// opOrder is the order operation fields are shown in; the rest follow
// sorted by name.
var opOrder = []string{"address", "quantity", "values", "read_address", "read_quantity", "and_mask", "or_mask",
	"sub_function_name", "sub_function", "node_id", "object_id", "method_id", "browse_path", "attribute", "index_range",
	"value", "data_type", "old_value", "arguments", "argument_types", "records", "data"}

// maxValues is how many values of a write the tables show.
const maxValues = 8

// operationSummary shows what a call did: its operation fields less
// function, access and code (they have columns of their own) and less those
// that say nothing (an empty text, null, {}), such as the index_range of an
// OPC UA read or write of a whole value.
func operationSummary(line []byte) string {
	var v struct {
		Operation map[string]json.RawMessage `json:"operation"`
	}
	if json.Unmarshal(line, &v) != nil || v.Operation == nil {
		return ""
	}
	for k, raw := range v.Operation {
		if saysNothing(raw) {
			delete(v.Operation, k)
		}
	}
	var keys []string
	for _, k := range opOrder {
		if _, ok := v.Operation[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range v.Operation {
		if k != "function" && k != "access" && k != "code" && !slices.Contains(opOrder, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys = append(keys, rest...)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString(k)
		b.WriteString("=")
		raw := v.Operation[k]
		var arr []json.RawMessage
		if len(raw) > 0 && raw[0] == '[' && json.Unmarshal(raw, &arr) == nil && len(arr) > maxValues {
			b.WriteString("[")
			for i, e := range arr[:maxValues] {
				if i > 0 {
					b.WriteString(",")
				}
				b.Write(e)
			}
			fmt.Fprintf(&b, ",… %d in all]", len(arr))
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			b.WriteString(s)
		} else {
			b.Write(raw)
		}
	}
	return clip(b.String(), maxFieldText)
}

// saysNothing is true of a JSON value that shows nothing: "", null or {}.
func saysNothing(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case `""`, "null", "{}":
		return true
	}
	var obj map[string]json.RawMessage
	return len(raw) > 0 && raw[0] == '{' && json.Unmarshal(raw, &obj) == nil && len(obj) == 0
}

// clip shortens s to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
