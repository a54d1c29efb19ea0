package audit

import (
	"encoding/json"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// The objects of a record, as zerolog marshalers. Each wraps one pointer so
// that passing it as a zerolog.LogObjectMarshaler does not allocate.

// sessionObject is the session object of session.open.
type sessionObject struct{ s *gateway.Session }

func (o sessionObject) MarshalZerologObject(e *zerolog.Event) {
	e.Str(FieldID, o.s.ID)
	appendTime(e, FieldStarted, o.s.Started)
	if o.s.SecurityPolicy != "" {
		e.Str(FieldSecurityPolicy, o.s.SecurityPolicy)
	}
	if o.s.SecurityMode != "" {
		e.Str(FieldSecurityMode, o.s.SecurityMode)
	}
	if o.s.Resumed > 0 {
		e.Int(FieldResumed, o.s.Resumed)
	}
}

// sourceObject is the network peer; ip is "" when unknown.
type sourceObject struct{ s *gateway.Source }

func (o sourceObject) MarshalZerologObject(e *zerolog.Event) {
	var b [64]byte
	e.Bytes(FieldIP, o.s.IP.AppendTo(b[:0])).Uint16(FieldPort, o.s.Port)
	if o.s.Name != "" {
		e.Str(FieldName, o.s.Name)
	}
	if o.s.Owner != "" {
		e.Str(FieldOwner, o.s.Owner)
	}
}

type principalObject struct{ p *gateway.Principal }

func (o principalObject) MarshalZerologObject(e *zerolog.Event) {
	if o.p.User != "" {
		e.Str(FieldUser, o.p.User)
	}
	e.Str(FieldAuth, o.p.Auth)
	if len(o.p.Roles) > 0 {
		e.Strs(FieldRoles, o.p.Roles)
	}
	if o.p.CertThumbprint != "" {
		e.Str(FieldCertThumbprint, o.p.CertThumbprint)
	}
	if o.p.ApplicationURI != "" {
		e.Str(FieldApplicationURI, o.p.ApplicationURI)
	}
}

// targetObject omits unit_id for protocols without one (UnitID -1).
type targetObject struct{ t *gateway.Target }

func (o targetObject) MarshalZerologObject(e *zerolog.Event) {
	e.Str(FieldName, o.t.Name).Str(FieldUpstream, o.t.Upstream)
	if o.t.UnitID >= 0 {
		e.Int(FieldUnitID, o.t.UnitID)
	}
}

// operationObject writes function, access, then the engine's fields in
// order, as in the policy input.
type operationObject struct{ op *gateway.Operation }

func (o operationObject) MarshalZerologObject(e *zerolog.Event) {
	e.Str(FieldFunction, o.op.Function).Str(FieldAccess, string(o.op.Access))
	appendFields(e, o.op.Fields)
}

// appendFields writes an engine's fields under their own names, in order.
func appendFields(e *zerolog.Event, fields []gateway.Field) {
	for i := range fields {
		f := &fields[i]
		switch f.Kind {
		case gateway.KindInt:
			e.Int64(f.Key, f.Int)
		case gateway.KindString:
			e.Str(f.Key, f.Str)
		case gateway.KindBool:
			e.Bool(f.Key, f.Bool)
		case gateway.KindInts:
			e.Ints64(f.Key, f.Ints)
		case gateway.KindStrings:
			e.Strs(f.Key, f.Strs)
		case gateway.KindAny:
			appendAny(e, f.Key, f.Any)
		default:
			// An engine bug, but the key stays visible in the record.
			e.RawJSON(f.Key, []byte("null"))
		}
	}
}

// appendAny writes a JSON-compatible value (OPC UA arguments and the like).
// Rare and nested, so encoding/json does it; a value it cannot encode is
// written as a string that says so rather than losing the record.
func appendAny(e *zerolog.Event, key string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		e.Str(key, "unencodable: "+err.Error())
		return
	}
	e.RawJSON(key, b)
}

type decisionObject struct{ d *gateway.Decision }

func (o decisionObject) MarshalZerologObject(e *zerolog.Event) {
	e.Bool(FieldAllow, o.d.Allow).
		Bool(FieldAlert, o.d.Alert).
		Strs(FieldReasons, o.d.Reasons). // [] when empty, never null
		Str(FieldPolicyRevision, o.d.Revision).
		Str(FieldDecisionID, o.d.ID).
		Str(FieldMode, o.d.Mode)
	if o.d.Cached {
		e.Bool(FieldCached, true)
	}
	if o.d.Ticket != "" {
		e.Str(FieldTicket, o.d.Ticket)
	}
	if o.d.RecordOldValue {
		e.Bool(FieldRecordOldValue, true)
	}
	if o.d.Error != "" {
		e.Str(FieldError, o.d.Error)
	}
}

// appendTime writes t in UTC as RFC 3339 with nanoseconds, the form the
// policy input uses; a zero time is written as "".
func appendTime(e *zerolog.Event, key string, t time.Time) {
	var b [40]byte
	if t.IsZero() {
		e.Str(key, "")
		return
	}
	e.Bytes(key, t.UTC().AppendFormat(b[:0], time.RFC3339Nano))
}
