package report

import (
	"slices"
	"strings"
	"unsafe"

	"github.com/interlock-ics/interlock/audit/query"
)

// decoder is the audit query decoder as the report uses it: strict, so
// that a line encoding/json would not read into a record counts as
// unreadable, and interning, so that the names, functions and reasons the
// aggregator keeps are one copy each.
type decoder struct {
	dec query.Decoder
	q   query.Record // reused: decoded into, then copied out
}

func newDecoder() *decoder {
	return &decoder{dec: query.Decoder{Strict: true, Intern: true}}
}

// decodeRecord decodes one line into r, which must be zero; a nil dc
// decodes with a decoder of its own.
func decodeRecord(line []byte, r *record, dc *decoder) error {
	if dc == nil {
		dc = newDecoder()
	}
	// The line is read in place, without a copy: every string kept below
	// is interned or cloned, and q is cleared before the buffer is reused.
	q := &dc.q
	defer func() { *q = query.Record{} }()
	if err := dc.dec.Decode(unsafe.String(unsafe.SliceData(line), len(line)), q); err != nil {
		return err
	}
	// Interned strings are copies already; the others point into the line's
	// buffer, which the next line overwrites, and are copied.
	clone := strings.Clone
	*r = record{
		Seq: q.Seq, Time: clone(q.Time), Event: q.Event, Gateway: q.Gateway,
		CallID: clone(q.CallID), SessionID: clone(q.SessionID), Listener: q.Listener, CallTime: clone(q.CallTime),
		Protocol: q.Protocol, Reason: q.Reason, Function: q.Function, Status: q.Status, Code: int64(q.Code),
		Detail: clone(q.Detail), LatencyUS: q.LatencyUS, Response: q.Response, Error: clone(q.Error),
		Truncated: q.TruncatedBytes, Version: q.Version, BootID: q.BootID, Revision: q.PolicyRevision,
		Mode: q.PolicyMode, Signature: q.BundleSignature, Files: q.Files, Path: clone(q.Path), TicketID: clone(q.TicketID), By: q.By, Action: q.Action,
		State: q.State, Fill: q.FillPercent, WarnFill: q.WarnFillPercent, Count: q.Count,
	}
	if len(q.ReasonCounts) > 0 {
		r.Reasons = slices.Clone(q.ReasonCounts) // reasons interned
	}
	if q.Resumed > 0 {
		r.Session = &recSession{Resumed: q.Resumed}
	}
	if s := &q.Source; s.Present {
		r.Source = &recSource{IP: s.IP, Port: s.Port, Name: s.Name, Owner: s.Owner}
	}
	if p := &q.Principal; p.Present {
		r.Principal = &recPrinc{User: p.User, Auth: p.Auth, Roles: p.Roles}
	}
	if t := &q.Target; t.Present {
		r.Target = &recTarget{Name: t.Name, Upstream: t.Upstream}
		if t.HasUnitID {
			u := t.UnitID
			r.Target.UnitID = &u
		}
	}
	if o := &q.Operation; o.Raw != "" {
		r.Operation = &recOp{Function: o.Function, Access: o.Access}
		if o.HasCode {
			c := o.Code
			r.Operation.Code = &c
		}
	}
	if d := &q.Decision; d.Present {
		r.Decision = &recDecide{Allow: d.Allow, Alert: d.Alert, Reasons: d.Reasons, Revision: d.PolicyRevision,
			Mode: d.Mode, Cached: d.Cached, Ticket: d.Ticket}
	}
	if q.HasSuccess {
		b := q.Success
		r.Success = &b
	}
	if q.HasDurationMS {
		ms := q.DurationMS
		r.Duration = &ms
	}
	// The ticket and the checkpoint are new objects of this record: taken
	// as they are, with their strings owned.
	if t := q.Ticket; t != nil {
		t.ID, t.Reason, t.Opened, t.Expires = clone(t.ID), clone(t.Reason), clone(t.Opened), clone(t.Expires)
		r.Ticket = t
	}
	r.Checkpt = q.Checkpoint
	return nil
}
