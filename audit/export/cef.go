package export

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/interlock-ics/interlock/audit/query"
)

// CEF (ArcSight Common Event Format, version 0):
//
//	CEF:0|Interlock|interlock|<version>|<signature id>|<name>|<severity>|<extensions>
//
// The signature id is the call's function (write_single_register) or the
// record's event (session.open); the name says what happened
// ("write_single_register denied"); severity is 0..10. Extensions use the
// standard keys where one fits and labelled custom keys for the rest:
//
//	rt        record time, ms since the epoch
//	dvchost   gateway id (the device that reports)
//	cat       event (call, session.open, …)
//	externalId call id
//	src spt shost   client address, port and inventory name (c6a2 for IPv6)
//	suser spriv     principal user and roles
//	dhost dst dpt   target name, upstream address and port (c6a3 for IPv6)
//	destinationServiceName   protocol
//	act       decision: allow, alert, deny (rejected for a malformed request,
//	          and for request.rejected_suppressed, which counts them)
//	outcome   success or failure (from the result; failure for both of those)
//	reason    decision reasons, or why a request or session was refused
//	          (request.rejected_suppressed: the reasons it counts)
//	cnt       request.rejected_suppressed: the rejections the record counts
//	msg       one sentence for a person
//	cs1 policyRevision  cs2 reasons  cs3 decisionId  cs4 ticket
//	                    (cs2: the decision's reasons, or those a
//	                    request.rejected_suppressed counts)
//	cs5 sessionId       cs6 registers (or OPC UA node, or the method of a
//	                    Call; a ticket.* record: the ticket's targets)
//	cn1 seq   cn2 latencyUs   cn3 code (exception or status code)
//	flexNumber1 unitId   flexString1 hash   flexString2 access (a ticket's)
//	duser start end     a ticket.* record: the ticket's user, when it was
//	                    opened and when it expires (ms since the epoch)
//
// and custom keys, named as CEF asks (vendor and product, then the key) for
// what its dictionary has no key for:
//
//	interlockValues     what a call wrote, JSON as recorded (Operation.Written)
//	interlockObjectId   OPC UA Call: the object the method was called on
//	interlockArguments  OPC UA Call: the input arguments, a JSON array

// CEF formats one record (a call with its result joined, or any record on
// its own, as a shipper sees them) as a CEF line without a newline. version
// is the gateway's version for the header.
func CEF(r *query.Record, version string) string {
	return string(AppendCEF(nil, r, version))
}

// CEFLine decodes one audit record line and formats it as CEF.
func CEFLine(line []byte, version string) (string, error) {
	r, err := query.Parse(line)
	if err != nil {
		return "", err
	}
	return CEF(r, version), nil
}

// AppendCEF appends the CEF line of r to dst.
func AppendCEF(dst []byte, r *query.Record, version string) []byte {
	b := append(dst, "CEF:0|"...)
	b = appendCEFHeader(b, VendorName)
	b = append(b, '|')
	b = appendCEFHeader(b, "interlock")
	b = append(b, '|')
	b = appendCEFHeader(b, version)
	b = append(b, '|')
	sig := r.Event
	if fn := r.FunctionName(); fn != "" && (r.Event == query.EventCall || r.Event == query.EventResult) {
		sig = fn
	}
	b = appendCEFHeader(b, sig)
	b = append(b, '|')
	b = appendCEFHeader(b, Title(r))
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(SeverityOf(r).CEF()), 10)
	b = append(b, '|')

	e := cefExt{b: b}
	if t := r.When(); !t.IsZero() {
		e.int("rt", t.UnixMilli())
	}
	e.str("dvchost", r.Gateway)
	e.str("cat", r.Event)
	e.str("externalId", r.CallID)
	if a, err := netip.ParseAddr(r.Source.IP); err == nil {
		if a = a.Unmap(); a.Is4() {
			e.str("src", a.String())
		} else {
			e.str("c6a2", a.String())
			e.str("c6a2Label", "Source IPv6 Address")
		}
	}
	if r.Source.HasPort {
		e.int("spt", int64(r.Source.Port))
	}
	e.str("shost", r.Source.Name)
	e.str("suser", r.UserOrBy())
	e.str("spriv", strings.Join(r.Principal.Roles, ","))
	e.str("dhost", r.TargetName())
	if ip, port, ok := upstreamAddr(r.Target.Upstream); ok {
		if a, err := netip.ParseAddr(ip); err == nil && a.Unmap().Is4() {
			e.str("dst", ip)
		} else {
			e.str("c6a3", ip)
			e.str("c6a3Label", "Destination IPv6 Address")
		}
		if port > 0 {
			e.int("dpt", int64(port))
		}
	}
	e.str("destinationServiceName", r.Protocol)
	if r.Event == query.EventRequestRejected || r.Event == query.EventRequestRejectedSuppressed {
		e.str("act", "rejected") // no decision: refused before policy
	} else {
		e.str("act", r.Decision.Verdict())
	}
	if id, ok := ocsfStatus(r); ok && id != statusUnknown {
		e.str("outcome", [...]string{"", "success", "failure"}[id])
	}
	reasons := strings.Join(r.Decision.Reasons, ",")
	if r.Event == query.EventRequestRejectedSuppressed {
		// No decision: the reasons are those the record counts, named as a
		// decision's are, so that a rule on reason or cs2 sees them too.
		reasons = countedReasons(r.ReasonCounts)
	}
	reason := reasons
	if r.Reason != "" {
		reason = r.Reason
	} else if r.Ticket != nil && reason == "" {
		reason = r.Ticket.Reason // why the ticket was opened: the change request
	}
	e.str("reason", reason)
	if r.Event == query.EventRequestRejectedSuppressed && r.Count > 0 {
		// One record for many rejections: a SIEM sums cnt, it cannot parse msg.
		e.int("cnt", r.Count)
	}
	var msg [256]byte
	e.strBytes("msg", appendSummary(msg[:0], r))
	e.labelled("cs1", "cs1Label", "policyRevision", r.Decision.PolicyRevision)
	e.labelled("cs2", "cs2Label", "reasons", reasons)
	e.labelled("cs3", "cs3Label", "decisionId", r.Decision.DecisionID)
	e.labelled("cs4", "cs4Label", "ticket", r.TicketRef())
	e.labelled("cs5", "cs5Label", "sessionId", r.SessionID)
	op := &r.Operation
	tk := r.Ticket
	switch regs := op.Registers(); {
	case regs != "":
		label := "registers"
		if op.NodeID != "" {
			label = "node"
		}
		e.labelled("cs6", "cs6Label", label, regs)
	case op.MethodID != "":
		e.labelled("cs6", "cs6Label", "method", op.MethodID)
	case tk != nil:
		e.labelled("cs6", "cs6Label", "targets", strings.Join(tk.Targets, ","))
	}
	e.labelledInt("cn1", "cn1Label", "seq", int64(r.Seq), true)
	res := r.Result
	if r.Event == query.EventResult {
		res = r
	}
	if res != nil {
		e.labelledInt("cn2", "cn2Label", "latencyUs", res.LatencyUS, res.HasLatency)
		e.labelledInt("cn3", "cn3Label", "code", int64(res.Code), res.HasCode)
	}
	e.labelledInt("flexNumber1", "flexNumber1Label", "unitId", int64(r.Target.UnitID), r.Target.HasUnitID)
	e.labelled("flexString1", "flexString1Label", "hash", r.Hash)
	access := op.Access
	if access == "" && tk != nil {
		access = strings.Join(tk.Access, ",")
	}
	e.labelled("flexString2", "flexString2Label", "access", access)
	if tk != nil {
		e.str("duser", tk.User)
		if t := tk.OpenedAt(); !t.IsZero() {
			e.int("start", t.UnixMilli())
		}
		if t := tk.ExpiresAt(); !t.IsZero() {
			e.int("end", t.UnixMilli())
		}
	}
	e.str("interlockValues", op.Written())
	e.str("interlockObjectId", op.ObjectID)
	e.str("interlockArguments", op.ArgumentsJSON)
	return e.b
}

// countedReasons is the reasons of a request.rejected_suppressed record,
// comma-separated in the record's order, without their counts (those are
// in msg).
func countedReasons(rcs []query.ReasonCount) string {
	var b strings.Builder
	for i, rc := range rcs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(rc.Reason)
	}
	return b.String()
}

// appendCEFHeader escapes a header field: backslash and pipe; a line break
// would end the event, so it becomes a space.
func appendCEFHeader(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '|':
			b = append(b, '\\', c)
		case '\n', '\r':
			b = append(b, ' ')
		default:
			b = append(b, c)
		}
	}
	return b
}

// cefExt appends key=value extensions separated by spaces.
type cefExt struct {
	b     []byte
	after bool // an extension was written
}

// str writes key=value unless the value is empty; values escape backslash,
// equals sign and line breaks.
func (e *cefExt) str(key, v string) { appendCEFValue(e, key, v) }

func (e *cefExt) strBytes(key string, v []byte) { appendCEFValue(e, key, v) }

func appendCEFValue[T string | []byte](e *cefExt, key string, v T) {
	if len(v) == 0 {
		return
	}
	e.key(key)
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\', '=':
			e.b = append(e.b, '\\', c)
		case '\n':
			e.b = append(e.b, '\\', 'n')
		case '\r':
			e.b = append(e.b, '\\', 'r')
		default:
			e.b = append(e.b, c)
		}
	}
}

func (e *cefExt) int(key string, v int64) {
	e.key(key)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *cefExt) key(key string) {
	if e.after {
		e.b = append(e.b, ' ')
	}
	e.after = true
	e.b = append(e.b, key...)
	e.b = append(e.b, '=')
}

// labelled writes a custom key and its label, as CEF pairs them.
func (e *cefExt) labelled(key, labelKey, label, v string) {
	if v == "" {
		return
	}
	e.str(labelKey, label)
	e.str(key, v)
}

func (e *cefExt) labelledInt(key, labelKey, label string, v int64, ok bool) {
	if !ok {
		return
	}
	e.str(labelKey, label)
	e.int(key, v)
}
