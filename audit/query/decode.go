package query

import (
	"fmt"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// The decoder reads the fields of the record contract (names from
// audit/fields.go, as written) straight into a Record, skipping everything
// else: encoding/json spends about 10 µs on a call record, this about one,
// and a day of a busy site is millions of records. Strings read as
// encoding/json reads them (escapes decoded, invalid UTF-8 as U+FFFD), and
// a line that is not one JSON object fails, skipped values included.

// Parse decodes one audit record (a line without its newline) as a Reader
// does: leniently, with every string a substring of the line.
func Parse(line []byte) (*Record, error) {
	r := new(Record)
	if err := r.decode(string(line)); err != nil {
		return nil, err
	}
	return r, nil
}

// Decoder decodes audit records one line at a time. The zero Decoder is the
// one Parse and Reader use: lenient where the contract allows growth (an
// unknown key, or a known key with a value of another type, is skipped, not
// an error), and every string a substring of the line unless it held an
// escape or invalid UTF-8.
type Decoder struct {
	// Strict fails a record with a value encoding/json would not read into
	// the field's type: a string for a number, a fraction or an overflow for
	// an integer, a negative seq, an array element that is not a string.
	// null reads as absent either way.
	Strict bool
	// Intern returns one shared copy of each short string whose values
	// repeat across records (events, names, functions, reasons) instead of
	// a substring of the line (a copy of its own once maxInterned values
	// are kept, or past maxInternedLen bytes), so that a caller keeping them
	// across millions of records neither pins every line nor copies every
	// value. The other strings (times, ids, details) stay substrings of the
	// line. A Decoder that interns is for one goroutine.
	Intern bool

	interned map[string]string
}

// Decode decodes line into r, which must be zero, and keeps line as
// r.Line.
func (dc *Decoder) Decode(line string, r *Record) error {
	d := decoder{s: line, strict: dc.Strict}
	if dc.Intern {
		d.dc = dc
	}
	return d.record(r)
}

// decode is Parse's and Reader's: lenient, no interning.
func (r *Record) decode(line string) error {
	d := decoder{s: line}
	return d.record(r)
}

func (d *decoder) record(r *Record) error {
	r.Line = d.s
	d.ws()
	if !d.consume('{') {
		return d.fail()
	}
	d.object(func(key string) {
		switch key {
		case audit.FieldSeq:
			r.Seq, _ = d.uint64()
		case audit.FieldTime:
			r.Time = d.str(false)
		case audit.FieldEvent:
			r.Event = d.str(true)
		case audit.FieldGateway:
			r.Gateway = d.str(true)
		case audit.FieldPrev:
			r.Prev = d.str(false)
		case audit.FieldHash:
			r.Hash = d.str(false)
		case audit.FieldCallID:
			r.CallID = d.str(false)
		case audit.FieldSessionID:
			r.SessionID = d.str(false)
		case audit.FieldListener:
			r.Listener = d.str(true)
		case audit.FieldCallTime:
			r.CallTime = d.str(false)
		case audit.FieldProtocol:
			r.Protocol = d.str(true)
		case audit.FieldSession: // session records: only how often it moved
			if d.objectStart() {
				d.object(func(key string) {
					if key == audit.FieldResumed {
						r.Resumed, _ = d.int64()
						return
					}
					d.skip()
				})
			}
		case audit.FieldSource:
			d.source(&r.Source)
		case audit.FieldPrincipal:
			d.principal(&r.Principal)
		case audit.FieldTarget:
			d.target(&r.Target)
		case audit.FieldOperation:
			d.operation(&r.Operation)
		case audit.FieldDecision:
			d.decision(&r.Decision)
		case audit.FieldSuccess:
			r.Success, r.HasSuccess = d.bool()
		case audit.FieldReason:
			r.Reason = d.str(true)
		case audit.FieldDetail:
			r.Detail = d.str(false)
		case audit.FieldResponse:
			r.Response = d.str(true)
		case audit.FieldFunction:
			r.Function = d.str(true)
		case audit.FieldStatus:
			r.Status = d.str(true)
		case audit.FieldCode:
			r.Code, r.HasCode = d.int()
		case audit.FieldLatencyUS:
			r.LatencyUS, r.HasLatency = d.int64()
		case audit.FieldDurationMS:
			r.DurationMS, r.HasDurationMS = d.int64()
		case audit.FieldError:
			r.Error = d.str(false)
		case "version": // gateway.start, written by cmd/interlock
			r.Version = d.str(true)
		case audit.FieldBootID:
			r.BootID = d.str(true)
		case audit.FieldPolicyRevision: // gateway.start, policy.load
			r.PolicyRevision = d.str(true)
		case "policy_mode": // gateway.start
			r.PolicyMode = d.str(true)
		case "bundle_signature": // policy.load
			r.BundleSignature = d.str(true)
		case "files": // policy.load
			r.Files = d.strs(r.Files)
		case audit.FieldPath:
			r.Path = d.str(false)
		case "by": // ticket.*, written by policy/tickets.go
			r.By = d.str(true)
		case "ticket_id": // ticket.*
			r.TicketID = d.str(false)
		case "action": // ticket.refused: open, approve, close, list
			r.Action = d.str(true)
		case audit.FieldTicket: // ticket.open
			if d.objectStart() {
				r.Ticket = new(Ticket)
				d.ticket(r.Ticket)
			}
		case audit.FieldCheckpoint:
			if d.objectStart() {
				r.Checkpoint = new(Checkpoint)
				d.checkpoint(r.Checkpoint)
			}
		case audit.FieldState:
			r.State = d.str(true)
		case audit.FieldFillPercent:
			r.FillPercent, _ = d.float64()
		case audit.FieldWarnFillPercent:
			r.WarnFillPercent, _ = d.float64()
		case audit.FieldTruncatedBytes:
			r.TruncatedBytes, _ = d.int64()
		case audit.FieldCount: // request.rejected_suppressed
			r.Count, _ = d.int64()
		case audit.FieldReasons: // request.rejected_suppressed: reason → count
			if d.objectStart() {
				r.ReasonCounts = d.reasonCounts(r.ReasonCounts[:0])
			}
		case audit.FieldFirstTime: // request.rejected_suppressed
			r.FirstTime = d.str(false)
		case audit.FieldLastTime:
			r.LastTime = d.str(false)
		default:
			d.skip()
		}
	})
	if d.err != nil {
		return d.err
	}
	d.ws()
	if d.i != len(d.s) {
		return fmt.Errorf("%w: data after the object at byte %d", errSyntax, d.i)
	}
	return nil
}

func (d *decoder) source(s *Source) {
	if !d.objectStart() {
		return
	}
	s.Present = true
	d.object(func(key string) {
		switch key {
		case audit.FieldIP:
			s.IP = d.str(true)
		case audit.FieldPort:
			s.Port, s.HasPort = d.int()
		case audit.FieldName:
			s.Name = d.str(true)
		case audit.FieldOwner:
			s.Owner = d.str(true)
		default:
			d.skip()
		}
	})
}

func (d *decoder) principal(p *Principal) {
	if !d.objectStart() {
		return
	}
	p.Present = true
	d.object(func(key string) {
		switch key {
		case audit.FieldUser:
			p.User = d.str(true)
		case audit.FieldAuth:
			p.Auth = d.str(true)
		case audit.FieldRoles:
			p.Roles = d.strs(p.Roles)
		case audit.FieldCertThumbprint:
			p.CertThumbprint = d.str(false)
		case audit.FieldApplicationURI:
			p.ApplicationURI = d.str(false)
		default:
			d.skip()
		}
	})
}

func (d *decoder) target(t *Target) {
	if !d.objectStart() {
		return
	}
	t.Present = true
	d.object(func(key string) {
		switch key {
		case audit.FieldName:
			t.Name = d.str(true)
		case audit.FieldUpstream:
			t.Upstream = d.str(true)
		case audit.FieldUnitID:
			t.UnitID, t.HasUnitID = d.int()
		default:
			d.skip()
		}
	})
}

func (d *decoder) operation(o *Operation) {
	start := d.i
	if !d.objectStart() {
		return
	}
	d.object(func(key string) {
		switch key {
		case audit.FieldFunction:
			o.Function = d.str(true)
		case audit.FieldAccess:
			o.Access = d.str(true)
		case audit.FieldCode:
			o.Code, o.HasCode = d.int()
		case gateway.KeyAddress:
			o.Address, o.HasAddress = d.int()
		case gateway.KeyQuantity:
			o.Quantity, o.HasQuantity = d.int()
		case "read_address":
			o.ReadAddress, o.HasReadAddress = d.int()
		case "read_quantity":
			o.ReadQuantity, _ = d.int()
		case "node_id":
			o.NodeID = d.str(false)
		case "browse_path":
			o.BrowsePath = d.str(false)
		case "method_id":
			o.MethodID = d.str(false)
		case "object_id": // OPC UA Call; a number in Modbus read_device_identification, skipped
			if d.peek() == '"' {
				o.ObjectID = d.str(false)
			} else {
				d.skip()
			}
		case gateway.KeyValues:
			o.ValuesJSON = d.raw()
		case "value":
			o.ValueJSON = d.raw()
		case "records":
			o.RecordsJSON = d.raw()
		case "arguments":
			o.ArgumentsJSON = d.raw()
		case "and_mask":
			o.AndMask, o.HasAndMask = d.int()
		case "or_mask":
			o.OrMask, o.HasOrMask = d.int()
		default:
			d.skip()
		}
	})
	if d.err == nil {
		o.Raw = d.s[start:d.i]
	}
}

// raw passes over one value and returns its JSON text as written; "" for
// null.
func (d *decoder) raw() string {
	d.ws()
	start := d.i
	d.skip()
	if d.err != nil {
		return ""
	}
	v := d.s[start:d.i]
	if v == "null" {
		return ""
	}
	return v
}

func (d *decoder) decision(x *Decision) {
	if !d.objectStart() {
		return
	}
	x.Present = true
	d.object(func(key string) {
		switch key {
		case audit.FieldAllow:
			x.Allow, _ = d.bool()
		case audit.FieldAlert:
			x.Alert, _ = d.bool()
		case audit.FieldCached:
			x.Cached, _ = d.bool()
		case audit.FieldReasons:
			x.Reasons = d.strs(x.Reasons)
		case audit.FieldPolicyRevision:
			x.PolicyRevision = d.str(true)
		case audit.FieldDecisionID:
			x.DecisionID = d.str(false)
		case audit.FieldMode:
			x.Mode = d.str(true)
		case audit.FieldTicket:
			x.Ticket = d.str(true)
		default:
			d.skip()
		}
	})
}

// reasonCounts reads the members (reason: count) of an object whose '{' is
// consumed into dst, in the record's order; a count that is not an integer
// is skipped, or under Strict fails the record.
func (d *decoder) reasonCounts(dst []ReasonCount) []ReasonCount {
	if dst == nil {
		dst = []ReasonCount{}
	}
	d.object(func(key string) {
		n, ok := d.int64()
		if !ok || d.err != nil {
			return
		}
		if d.dc != nil {
			key = d.dc.intern(key)
		}
		dst = append(dst, ReasonCount{Reason: key, Count: n})
	})
	return dst
}

// ticket reads the members of a ticket object whose '{' is consumed.
func (d *decoder) ticket(t *Ticket) {
	d.object(func(key string) {
		switch key {
		case audit.FieldID:
			t.ID = d.str(false)
		case audit.FieldUser:
			t.User = d.str(true)
		case "targets":
			t.Targets = d.strs(nil)
		case audit.FieldAccess:
			t.Access = d.strs(nil)
		case audit.FieldReason:
			t.Reason = d.str(false)
		case "opened_by":
			t.OpenedBy = d.str(true)
		case "opened":
			t.Opened = d.str(false)
		case "expires":
			t.Expires = d.str(false)
		case "approvals":
			t.Approvals = d.strs(nil)
		default:
			d.skip()
		}
	})
}

// checkpoint reads the members of a checkpoint object whose '{' is
// consumed.
func (d *decoder) checkpoint(c *Checkpoint) {
	d.object(func(key string) {
		switch key {
		case audit.FieldSeq:
			c.Seq, _ = d.uint64()
		case audit.FieldBootID:
			c.BootID = d.str(true)
		case audit.FieldKeyID:
			c.KeyID = d.str(true)
		case audit.FieldReason:
			c.Reason = d.str(true)
		default:
			d.skip()
		}
	})
}
