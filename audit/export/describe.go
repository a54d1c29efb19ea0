package export

import (
	"strconv"
	"strings"

	"github.com/interlock-ics/interlock/audit/query"
)

// Outcome is a call's outcome in a few words: allowed, allowed with alert,
// denied, forwarded (monitor), exception 2, error, or the verdict alone when
// the result is missing.
func Outcome(r *query.Record) string {
	d := &r.Decision
	switch r.Outcome() {
	case "denied":
		return "denied"
	case "exception":
		res := r.Result
		if res == nil {
			res = r
		}
		if res.HasCode && res.Code != 0 {
			return "exception " + strconv.Itoa(res.Code)
		}
		return "exception"
	case "error":
		return "error"
	case "ok":
		switch {
		case d.Present && !d.Allow:
			return "forwarded (monitor)" // a monitor-mode deny goes through
		case d.Alert:
			return "allowed with alert"
		}
		return "allowed"
	}
	switch d.Verdict() {
	case "deny":
		return "denied"
	case "alert":
		return "allowed with alert"
	case "allow":
		return "allowed"
	}
	return r.Outcome()
}

// Title names a record in a few words: "write_single_register denied",
// "session.open refused", "gateway.start".
func Title(r *query.Record) string {
	switch r.Event {
	case query.EventCall:
		return r.Operation.Function + " " + Outcome(r)
	case query.EventResult:
		return r.Function + " " + r.Status
	case query.EventSessionOpen:
		if r.HasSuccess && !r.Success {
			return "session.open refused"
		}
		return "session.open"
	case query.EventRequestRejected:
		return "request.rejected " + r.Reason
	}
	if r.Error != "" {
		return r.Event + " error"
	}
	return r.Event
}

// Summary is one sentence about a record for a person reading a SIEM.
func Summary(r *query.Record) string {
	return string(appendSummary(nil, r))
}

// appendSummary appends Summary to b: an export writes one per event.
func appendSummary(b []byte, r *query.Record) []byte {
	who := func() {
		if u := r.UserOrBy(); u != "" {
			b = append(b, u...)
		} else {
			b = append(b, "unknown user"...)
		}
		s := &r.Source
		switch {
		case s.Name != "" && s.IP != "":
			b = append(append(append(append(append(b, " from "...), s.Name...), " ("...), s.IP...), ')')
		case s.Name != "":
			b = append(append(b, " from "...), s.Name...)
		case s.IP != "":
			b = append(append(b, " from "...), s.IP...)
		}
	}
	on := func() {
		if t := r.TargetName(); t != "" {
			b = append(append(b, " on "...), t...)
			if r.Target.HasUnitID {
				b = strconv.AppendInt(append(b, " unit "...), int64(r.Target.UnitID), 10)
			}
		}
	}
	reasons := func(sep string) {
		for i, reason := range r.Decision.Reasons {
			if i > 0 {
				b = append(b, sep...)
			}
			b = append(b, reason...)
		}
	}
	switch r.Event {
	case query.EventCall:
		who()
		b = append(append(b, " called "...), r.Operation.Function...)
		on()
		if regs := r.Operation.Registers(); regs != "" {
			if r.Operation.NodeID != "" {
				b = append(b, " node "...)
			} else {
				b = append(b, " registers "...)
			}
			b = append(b, regs...)
		} else if m := r.Operation.MethodID; m != "" {
			b = append(append(b, " method "...), m...)
		}
		b = append(append(b, ": "...), Outcome(r)...)
		if len(r.Decision.Reasons) > 0 {
			b = append(b, " ("...)
			reasons(", ")
			b = append(b, ')')
		}
		if r.Result != nil && r.Result.Detail != "" && r.Result.Status != "denied" {
			b = append(append(b, ": "...), r.Result.Detail...)
		}
	case query.EventResult:
		b = append(append(b, "result of call "...), r.CallID...)
		b = append(append(append(b, " ("...), r.Function...), "): "...)
		b = append(b, r.Status...)
		if r.Detail != "" {
			b = append(append(b, ": "...), r.Detail...)
		}
	case query.EventSessionOpen:
		who()
		if r.HasSuccess && !r.Success {
			b = append(b, " was refused a session"...)
			on()
			if r.Reason != "" {
				b = append(append(b, ": "...), r.Reason...)
			}
		} else {
			b = append(b, " opened a session"...)
			on()
		}
	case query.EventSessionClose:
		b = append(b, "session of "...)
		who()
		on()
		b = append(b, " closed"...)
		if r.HasDurationMS {
			b = append(strconv.AppendInt(append(b, " after "...), r.DurationMS, 10), " ms"...)
		}
		if r.Error != "" {
			b = append(append(b, ": "...), r.Error...)
		}
	case query.EventRequestRejected:
		who()
		b = append(b, " sent a request that was rejected"...)
		on()
		b = append(append(b, ": "...), r.Reason...)
		if r.Detail != "" {
			b = append(append(append(b, " ("...), r.Detail...), ')')
		}
	case query.EventRequestRejectedSuppressed:
		// One record stands for many rejections: the count, whose and why
		// are what a SIEM reader needs, not the event's name.
		b = strconv.AppendInt(b, r.Count, 10)
		b = append(b, " rejected requests not recorded one by one from "...)
		switch s := &r.Source; {
		case s.Name != "" && s.IP != "":
			b = append(append(append(append(b, s.Name...), " ("...), s.IP...), ')')
		case s.IP != "":
			b = append(b, s.IP...)
		case s.Name != "":
			b = append(b, s.Name...)
		default:
			b = append(b, "sources without an address or beyond the ones counted apart"...)
		}
		on()
		if len(r.ReasonCounts) > 0 {
			b = appendReasonCounts(append(b, ": "...), r.ReasonCounts)
		}
	case query.EventTicketRefused:
		b = append(append(b, "ticket "...), r.Action...)
		if r.TicketID != "" {
			b = append(append(b, ' '), r.TicketID...)
		}
		b = append(append(append(append(b, " by "...), r.By...), " refused: "...), r.Reason...)
	case query.EventGatewayStart:
		b = append(append(append(b, "gateway "...), r.Gateway...), " started"...)
		if r.Version != "" {
			b = append(append(b, ", version "...), r.Version...)
		}
	case query.EventGatewayStop:
		b = append(append(append(b, "gateway "...), r.Gateway...), " stopped"...)
	default:
		b = append(b, r.Event...)
		if id := r.TicketRef(); id != "" {
			b = append(append(b, ' '), id...)
		}
		if r.By != "" {
			b = append(append(b, " by "...), r.By...)
		}
		if tk := r.Ticket; tk != nil {
			// ticket.*: what the ticket allows, whom, until when, and why.
			b = append(append(append(b, ": "...), tk.User...), " may "...)
			b = append(b, strings.Join(tk.Access, ",")...)
			b = append(append(b, " on "...), strings.Join(tk.Targets, ",")...)
			if tk.Expires != "" {
				b = append(append(b, " until "...), tk.Expires...)
			}
			if tk.Reason != "" {
				b = append(append(append(b, " ("...), tk.Reason...), ')')
			}
		}
		if r.Reason != "" {
			b = append(append(b, ": "...), r.Reason...)
		}
		if r.Error != "" {
			b = append(append(b, ": "...), r.Error...)
		}
	}
	return b
}

// appendReasonCounts appends the reasons of a request.rejected_suppressed
// record with their counts: "bad_protocol_id 195, quantity_out_of_range 300".
func appendReasonCounts(b []byte, rcs []query.ReasonCount) []byte {
	for i, rc := range rcs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(append(append(b, rc.Reason...), ' '), rc.Count, 10)
	}
	return b
}

// statusDetail is why a call failed: the denial's reasons, or the target's
// exception or error detail.
func statusDetail(r *query.Record) string {
	switch r.Event {
	case query.EventCall:
		if r.Result == nil {
			if r.Decision.Present && !r.Decision.Allow {
				return strings.Join(r.Decision.Reasons, ",")
			}
			return ""
		}
		switch r.Result.Status {
		case "denied":
			if len(r.Decision.Reasons) > 0 {
				return strings.Join(r.Decision.Reasons, ",")
			}
			return r.Result.Detail
		case "ok":
			return ""
		}
		return r.Result.Detail
	case query.EventResult:
		if r.Status != "ok" {
			return r.Detail
		}
	case query.EventRequestRejected:
		if r.Detail != "" {
			return r.Reason + ": " + r.Detail
		}
		return r.Reason
	case query.EventRequestRejectedSuppressed:
		return countedReasons(r.ReasonCounts) // as a denial's reasons; the counts are in the message
	case query.EventSessionOpen:
		return r.Reason
	case query.EventTicketRefused:
		what := r.Action
		if r.TicketID != "" {
			what += " " + r.TicketID
		}
		return what + ": " + r.Reason
	}
	return r.Error
}
