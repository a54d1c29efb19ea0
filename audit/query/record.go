package query

import (
	"strconv"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// Record is one audit record as query, export and report read it: the fields
// of the record contract (audit/fields.go), decoded into a struct rather than
// a map, and the line as written. Every string is a substring of Line unless
// it held a JSON escape or invalid UTF-8 (or a Decoder interned it). Fields a
// record does not carry are zero; the Has… and Present flags tell a zero
// value from an absent one.
//
// Query and Reader reuse Record structs: keep a string or a slice of one as
// it is, but the Record itself only as a Clone.
type Record struct {
	Line   string // the record as written, without its newline
	File   string // the file it was read from; "" when decoded on its own
	LineNo int    // 1-based line in File

	Seq     uint64
	Time    string // as written: RFC 3339, UTC, nine fractional digits
	Event   string
	Gateway string
	Prev    string
	Hash    string

	CallID    string
	SessionID string
	// Resumed is session.resumed of a session record: the times the
	// session moved to a new secure channel (0 when it did not).
	Resumed   int64
	Listener  string
	CallTime  string
	Protocol  string
	Source    Source
	Principal Principal
	Target    Target
	Operation Operation
	Decision  Decision

	// session.open: whether the session was accepted.
	Success    bool
	HasSuccess bool
	// session.open (refused), request.rejected.
	Reason   string
	Detail   string // also result
	Response string
	// request.rejected_suppressed: the rejections of a source counted
	// rather than recorded one by one, their reasons with counts, and the
	// times of the first and last of them (as written).
	Count        int64
	ReasonCounts []ReasonCount
	FirstTime    string
	LastTime     string

	// result
	Function   string
	Status     string
	Code       int
	HasCode    bool
	LatencyUS  int64
	HasLatency bool

	// session.close
	DurationMS    int64
	HasDurationMS bool
	Error         string // also policy.load_failed

	// gateway-level records
	Version        string // gateway.start: the gateway's version
	BootID         string // gateway.start
	PolicyRevision string // gateway.start, policy.load: the policy loaded
	PolicyMode     string // gateway.start: enforce or monitor
	// BundleSignature is how a policy bundle's signature was checked
	// (policy.load): verified, unsigned or not_checked.
	BundleSignature string
	Files           []string // policy.load: the policy's files
	Path            string   // policy.load: the policy's directory; audit.capacity: the audit directory
	TruncatedBytes  int64    // audit.recovered: bytes of a line cut by a crash, removed
	Checkpoint      *Checkpoint
	By              string // ticket.*: who opened, approved or closed the ticket
	TicketID        string // ticket.*
	Action          string // ticket.refused: what the refused request asked (open, approve, close, list)
	Ticket          *Ticket
	// audit.capacity
	State           string // warning, or ok again
	FillPercent     float64
	WarnFillPercent float64

	// Result is the result record of a call, joined by Query; nil for other
	// records and for a call whose result was not found.
	Result *Record
}

// Source is the network peer of a session.
type Source struct {
	Present bool   // the record has a source object
	IP      string // "" when unknown
	Port    int
	HasPort bool
	Name    string // from the source inventory
	Owner   string
}

// Principal is who the gateway believed was calling.
type Principal struct {
	Present        bool // the record has a principal object
	User           string
	Auth           string
	Roles          []string
	CertThumbprint string
	ApplicationURI string
}

// Target is the device a call was meant for.
type Target struct {
	Present   bool // the record has a target object
	Name      string
	Upstream  string
	UnitID    int
	HasUnitID bool
}

// Operation is what a call did. Raw keeps the whole object (values, masks,
// file records …) for the formats that carry it.
type Operation struct {
	Raw         string // the operation object as written; "" when the record has none
	Function    string
	Access      string
	Code        int
	HasCode     bool
	Address     int
	HasAddress  bool
	Quantity    int
	HasQuantity bool
	// read_write_multiple_registers also reads read_quantity registers from
	// read_address.
	ReadAddress    int
	HasReadAddress bool
	ReadQuantity   int
	NodeID         string // OPC UA
	BrowsePath     string
	MethodID       string // OPC UA Call: the method called
	ObjectID       string // OPC UA Call: the object the method was called on
	// What the call would write, each the JSON text as written ("" when
	// absent or null): values (Modbus registers or coils, the write half of
	// read_write_multiple_registers; OPC UA HistoryUpdate), value (OPC UA
	// Write), records (Modbus file records), arguments (OPC UA Call).
	ValuesJSON    string
	ValueJSON     string
	RecordsJSON   string
	ArgumentsJSON string
	// mask_write_register: the masks.
	AndMask, OrMask       int
	HasAndMask, HasOrMask bool
}

// Decision is the policy verdict a call (or session open) was taken with.
type Decision struct {
	Present        bool
	Allow          bool
	Alert          bool
	Cached         bool
	Reasons        []string
	PolicyRevision string
	DecisionID     string
	Mode           string
	Ticket         string
}

// Ticket is the change ticket of a ticket.open record. The tags name the
// members as written.
type Ticket struct {
	ID        string   `json:"id"`
	User      string   `json:"user"`
	Targets   []string `json:"targets"`
	Access    []string `json:"access"`
	Reason    string   `json:"reason"`
	OpenedBy  string   `json:"opened_by"`
	Opened    string   `json:"opened"` // RFC 3339, as written
	Expires   string   `json:"expires"`
	Approvals []string `json:"approvals"`
}

// Checkpoint is the signed object of an audit.checkpoint record. The tags
// name the members as written.
type Checkpoint struct {
	Seq    uint64 `json:"seq"` // the last record it covers
	BootID string `json:"boot_id"`
	KeyID  string `json:"key_id"`
	Reason string `json:"reason"`
}

// Events this package gives a meaning to; any other event is passed through
// with the envelope and whatever contract fields it has.
const (
	EventCall            = audit.EventCall
	EventResult          = audit.EventResult
	EventSessionOpen     = audit.EventSessionOpen
	EventSessionClose    = audit.EventSessionClose
	EventRequestRejected = audit.EventRequestRejected
	// EventRequestRejectedSuppressed counts the rejections of a source
	// beyond those recorded one by one in a window.
	EventRequestRejectedSuppressed = audit.EventRequestRejectedSuppressed
	// EventTicketRefused is a refused request to the admin socket.
	EventTicketRefused = "ticket.refused"
	EventAuthFailed    = "session.auth_failed"
	EventGatewayStart  = audit.EventGatewayStart
	EventGatewayStop   = audit.EventGatewayStop
)

// ReasonCount is one reason of a request.rejected_suppressed record and
// how many rejections it counts.
type ReasonCount struct {
	Reason string
	Count  int64
}

// recordTimeLayout is how the writer formats time: fixed width, so that
// records of one log compare by time as text.
const recordTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// OpenedAt and ExpiresAt parse the ticket's times; the zero time when
// absent.
func (t *Ticket) OpenedAt() time.Time  { return parseTime(t.Opened) }
func (t *Ticket) ExpiresAt() time.Time { return parseTime(t.Expires) }

// When parses the record's time; the zero time when it has none.
func (r *Record) When() time.Time {
	return parseTime(r.Time)
}

// FirstWhen and LastWhen parse FirstTime and LastTime; the zero time when
// absent.
func (r *Record) FirstWhen() time.Time { return parseTime(r.FirstTime) }
func (r *Record) LastWhen() time.Time  { return parseTime(r.LastTime) }

func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	if t, ok := parseRecordTime(s); ok {
		return t
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// parseRecordTime reads the writer's fixed layout,
// 2006-01-02T15:04:05.000000000Z, five times faster than time.Parse: an
// export converts two times per call.
func parseRecordTime(s string) (time.Time, bool) {
	if len(s) != len(recordTimeLayout)-5 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
		s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return time.Time{}, false
	}
	num := func(from, to int) (int, bool) {
		n := 0
		for i := from; i < to; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 7)
	day, ok3 := num(8, 10)
	hour, ok4 := num(11, 13)
	minute, ok5 := num(14, 16)
	sec, ok6 := num(17, 19)
	nsec, ok7 := num(20, 29)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || month < 1 || month > 12 || day < 1 || day > 31 ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // 31 November and the like
		return time.Time{}, false
	}
	return t, true
}

// Verdict names the decision: allow, alert (allowed with an alert) or deny;
// "" when the record carries no decision.
func (d *Decision) Verdict() string {
	switch {
	case !d.Present:
		return ""
	case !d.Allow:
		return "deny"
	case d.Alert:
		return "alert"
	}
	return "allow"
}

// Span is the register range [Lo, Hi] a call touches, both inclusive.
type Span struct{ Lo, Hi int }

// Spans returns the register ranges of a Modbus operation: [address,
// address+quantity) (one register when it names no quantity), and the read
// half of read_write_multiple_registers.
func (o *Operation) Spans() []Span {
	if !o.HasAddress {
		return nil
	}
	q := 1
	if o.HasQuantity && o.Quantity > 0 {
		q = o.Quantity
	}
	spans := []Span{{o.Address, o.Address + q - 1}}
	if o.HasReadAddress {
		rq := max(o.ReadQuantity, 1)
		spans = append(spans, Span{o.ReadAddress, o.ReadAddress + rq - 1})
	}
	return spans
}

// Registers names the registers or node a call touched, for a table or a
// SIEM field: "100", "100-101", "100-101 r200-209", or the OPC UA node id.
// An OPC UA Call names no node: its method is MethodID (Target names
// either).
func (o *Operation) Registers() string {
	if o.NodeID != "" {
		return o.NodeID
	}
	if !o.HasAddress {
		return ""
	}
	var b strings.Builder
	writeSpan := func(s Span) {
		b.WriteString(strconv.Itoa(s.Lo))
		if s.Hi != s.Lo {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(s.Hi))
		}
	}
	spans := o.Spans()
	writeSpan(spans[0])
	if len(spans) > 1 {
		b.WriteString(" r")
		writeSpan(spans[1])
	}
	return b.String()
}

// Written is what the call would write, as JSON: the values of a Modbus
// write (register or coil values; the file records of write_file_record;
// {"and_mask":…,"or_mask":…} of mask_write_register) or of an OPC UA Write
// or HistoryUpdate. A read, and an OPC UA Call (its arguments are
// ArgumentsJSON), write nothing: "".
func (o *Operation) Written() string {
	switch {
	case o.ValuesJSON != "":
		return o.ValuesJSON
	case o.ValueJSON != "":
		return o.ValueJSON
	case o.RecordsJSON != "" && o.Access == "write":
		return o.RecordsJSON
	case o.HasAndMask || o.HasOrMask:
		var b []byte
		b = append(b, '{')
		if o.HasAndMask {
			b = strconv.AppendInt(append(b, `"and_mask":`...), int64(o.AndMask), 10)
		}
		if o.HasOrMask {
			if o.HasAndMask {
				b = append(b, ',')
			}
			b = strconv.AppendInt(append(b, `"or_mask":`...), int64(o.OrMask), 10)
		}
		return string(append(b, '}'))
	}
	return ""
}

// ChangesState reports whether the call's access may change the target's
// state, as the gateway counts it (gateway.Access.ChangesState).
func (o *Operation) ChangesState() bool {
	switch o.Access {
	case "", "read", "browse", "subscribe":
		return false
	}
	return true
}

// Target names what a call acted on for a person: Registers, or for an
// OPC UA Call its method.
func (o *Operation) Target() string {
	if r := o.Registers(); r != "" {
		return r
	}
	return o.MethodID
}

// UserOrBy is the person a record is about: the principal's user, or who
// changed a ticket.
func (r *Record) UserOrBy() string {
	if r.Principal.User != "" {
		return r.Principal.User
	}
	return r.By
}

// TicketRef is the change ticket a record names: the ticket a call's
// decision went by, or the ticket a ticket.* record is about.
func (r *Record) TicketRef() string {
	switch {
	case r.Decision.Ticket != "":
		return r.Decision.Ticket
	case r.TicketID != "":
		return r.TicketID
	case r.Ticket != nil:
		return r.Ticket.ID
	}
	return ""
}

// TargetName is the target of the record, or its listener when it names no
// target (session.close).
func (r *Record) TargetName() string {
	if r.Target.Name != "" {
		return r.Target.Name
	}
	return r.Listener
}

// FunctionName is the operation's function, or the function a lone result
// record names.
func (r *Record) FunctionName() string {
	if r.Operation.Function != "" {
		return r.Operation.Function
	}
	return r.Function
}

// Outcome is the status of a call from its result (ok, denied, exception,
// error), the status of a lone result record, or "" when unknown.
func (r *Record) Outcome() string {
	if r.Result != nil {
		return r.Result.Status
	}
	return r.Status
}

// Clone returns a copy of r (and of its result) that stays valid when r is
// reused.
func (r *Record) Clone() *Record {
	c := *r
	if r.Result != nil {
		c.Result = r.Result.Clone()
	}
	return &c
}
