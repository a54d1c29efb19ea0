package query

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// The decoder reads the fields of the record contract (names from
// audit/fields.go, as written) straight into a
// Record, skipping everything else: encoding/json spends about 10 µs on a
// call record, this about one, and a day of a busy site is millions of
// records. It is lenient where the contract allows growth: an unknown key,
// or a known key with a value of another type, is skipped, not an error.

// Parse decodes one audit record (a line without its newline).
func Parse(line []byte) (*Record, error) {
	r := new(Record)
	if err := r.decode(string(line)); err != nil {
		return nil, err
	}
	return r, nil
}

// errSyntax is returned (wrapped with the offset) for a line that is not a
// JSON object.
var errSyntax = errors.New("not a JSON object")

type decoder struct {
	s   string
	i   int
	err error
}

// decode fills r from line, which it keeps as r.Line.
func (r *Record) decode(line string) error {
	d := decoder{s: line}
	r.Line = line
	d.ws()
	if !d.consume('{') {
		return d.fail()
	}
	d.object(func(key string) {
		switch key {
		case audit.FieldSeq:
			if n, ok := d.int64(); ok && n >= 0 {
				r.Seq = uint64(n)
			}
		case audit.FieldTime:
			r.Time = d.str()
		case audit.FieldEvent:
			r.Event = d.str()
		case audit.FieldGateway:
			r.Gateway = d.str()
		case audit.FieldPrev:
			r.Prev = d.str()
		case audit.FieldHash:
			r.Hash = d.str()
		case audit.FieldCallID:
			r.CallID = d.str()
		case audit.FieldSessionID:
			r.SessionID = d.str()
		case audit.FieldListener:
			r.Listener = d.str()
		case audit.FieldCallTime:
			r.CallTime = d.str()
		case audit.FieldProtocol:
			r.Protocol = d.str()
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
			r.Reason = d.str()
		case audit.FieldDetail:
			r.Detail = d.str()
		case audit.FieldResponse:
			r.Response = d.str()
		case audit.FieldFunction:
			r.Function = d.str()
		case audit.FieldStatus:
			r.Status = d.str()
		case audit.FieldCode:
			r.Code, r.HasCode = d.int()
		case audit.FieldLatencyUS:
			r.LatencyUS, r.HasLatency = d.int64()
		case audit.FieldDurationMS:
			r.DurationMS, r.HasDurationMS = d.int64()
		case audit.FieldError:
			r.Error = d.str()
		case "version": // gateway.start, written by cmd/interlock
			r.Version = d.str()
		case "by": // ticket.*, written by policy/tickets.go
			r.By = d.str()
		case audit.FieldState:
			r.State = d.str()
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
	d.object(func(key string) {
		switch key {
		case audit.FieldIP:
			s.IP = d.str()
		case audit.FieldPort:
			s.Port, s.HasPort = d.int()
		case audit.FieldName:
			s.Name = d.str()
		case audit.FieldOwner:
			s.Owner = d.str()
		default:
			d.skip()
		}
	})
}

func (d *decoder) principal(p *Principal) {
	if !d.objectStart() {
		return
	}
	d.object(func(key string) {
		switch key {
		case audit.FieldUser:
			p.User = d.str()
		case audit.FieldAuth:
			p.Auth = d.str()
		case audit.FieldRoles:
			p.Roles = d.strs(p.Roles[:0])
		case audit.FieldCertThumbprint:
			p.CertThumbprint = d.str()
		case audit.FieldApplicationURI:
			p.ApplicationURI = d.str()
		default:
			d.skip()
		}
	})
}

func (d *decoder) target(t *Target) {
	if !d.objectStart() {
		return
	}
	d.object(func(key string) {
		switch key {
		case audit.FieldName:
			t.Name = d.str()
		case audit.FieldUpstream:
			t.Upstream = d.str()
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
			o.Function = d.str()
		case audit.FieldAccess:
			o.Access = d.str()
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
			o.NodeID = d.str()
		case "browse_path":
			o.BrowsePath = d.str()
		case "method_id":
			o.MethodID = d.str()
		default:
			d.skip()
		}
	})
	if d.err == nil {
		o.Raw = d.s[start:d.i]
	}
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
			x.Reasons = d.strs(x.Reasons[:0])
		case audit.FieldPolicyRevision:
			x.PolicyRevision = d.str()
		case audit.FieldDecisionID:
			x.DecisionID = d.str()
		case audit.FieldMode:
			x.Mode = d.str()
		case audit.FieldTicket:
			x.Ticket = d.str()
		default:
			d.skip()
		}
	})
}

// ---- JSON scanning ----

func (d *decoder) fail() error {
	if d.err == nil {
		if d.i >= len(d.s) {
			d.err = fmt.Errorf("%w: it ends at byte %d", errSyntax, d.i)
		} else {
			d.err = fmt.Errorf("%w: unexpected %q at byte %d", errSyntax, d.s[d.i], d.i)
		}
	}
	return d.err
}

func (d *decoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) consume(c byte) bool {
	if d.i < len(d.s) && d.s[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) peek() byte {
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

// objectStart consumes '{' of a nested object, or skips a value of another
// type and reports false.
func (d *decoder) objectStart() bool {
	if d.peek() == '{' {
		d.i++
		return true
	}
	d.skip()
	return false
}

// object reads the members of an object whose '{' is consumed, calling
// member with each key positioned at its value; member must consume it.
func (d *decoder) object(member func(key string)) {
	d.ws()
	if d.consume('}') {
		return
	}
	for d.err == nil {
		d.ws()
		if d.peek() != '"' {
			d.fail()
			return
		}
		key := d.stringLit()
		d.ws()
		if !d.consume(':') {
			d.fail()
			return
		}
		d.ws()
		member(key)
		if d.err != nil {
			return
		}
		d.ws()
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return
		}
		d.fail()
	}
}

// str reads a string value; null and values of other types read as "".
func (d *decoder) str() string {
	if d.peek() != '"' {
		d.skip()
		return ""
	}
	return d.stringLit()
}

// stringLit reads a string at '"'. Without escapes it is a substring of the
// line: no copy.
func (d *decoder) stringLit() string {
	d.i++ // '"'
	start := d.i
	// One pass for both bytes: record strings are short, and two IndexByte
	// calls per string cost more than the loop.
	for j := start; j < len(d.s); j++ {
		switch d.s[j] {
		case '"':
			d.i = j + 1
			return d.s[start:j]
		case '\\':
			return d.unescape()
		}
	}
	d.i = len(d.s)
	d.fail()
	return ""
}

// unescape reads the rest of a string that holds escapes.
func (d *decoder) unescape() string {
	var b strings.Builder
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return b.String()
		case c != '\\':
			// Copy the run up to the next quote or backslash in one go.
			j := d.i + 1
			for j < len(d.s) && d.s[j] != '"' && d.s[j] != '\\' {
				j++
			}
			b.WriteString(d.s[d.i:j])
			d.i = j
			continue
		}
		if d.i+1 >= len(d.s) {
			break
		}
		e := d.s[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				d.fail()
				return ""
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(utf8.RuneError)
				if strings.HasPrefix(d.s[d.i:], `\u`) {
					save := d.i
					d.i += 2
					if lo, ok := d.hex4(); ok && utf16.DecodeRune(r, lo) != utf8.RuneError {
						r2 = utf16.DecodeRune(r, lo)
					} else {
						d.i = save
					}
				}
				r = r2
			}
			b.WriteRune(r)
		default:
			d.i -= 1
			d.fail()
			return ""
		}
	}
	d.i = len(d.s)
	d.fail()
	return ""
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(d.s[d.i:d.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(n), true
}

// int64 reads an integer; a number with a fraction or exponent is
// truncated. Values of other types are skipped and report false.
func (d *decoder) int64() (int64, bool) {
	start := d.i
	if d.peek() == '-' {
		d.i++
	}
	digits := d.i
	var n uint64
	overflow := false
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		if n > (math.MaxUint64-9)/10 {
			overflow = true
		}
		n = n*10 + uint64(d.s[d.i]-'0')
		d.i++
	}
	if d.i == digits {
		d.i = start
		d.skip()
		return 0, false
	}
	if c := d.peek(); c == '.' || c == 'e' || c == 'E' || overflow || n > math.MaxInt64 {
		for d.i < len(d.s) && strings.IndexByte("0123456789+-.eE", d.s[d.i]) >= 0 {
			d.i++
		}
		f, err := strconv.ParseFloat(d.s[start:d.i], 64)
		if err != nil || math.IsNaN(f) || f > math.MaxInt64 || f < math.MinInt64 {
			return 0, false
		}
		return int64(f), true
	}
	if d.s[start] == '-' {
		return -int64(n), true
	}
	return int64(n), true
}

func (d *decoder) int() (int, bool) {
	n, ok := d.int64()
	if !ok || n > math.MaxInt32 || n < math.MinInt32 {
		return 0, false
	}
	return int(n), true
}

func (d *decoder) bool() (v, ok bool) {
	switch {
	case strings.HasPrefix(d.s[d.i:], "true"):
		d.i += 4
		return true, true
	case strings.HasPrefix(d.s[d.i:], "false"):
		d.i += 5
		return false, true
	}
	d.skip()
	return false, false
}

// strs reads an array of strings into dst; other elements are skipped.
func (d *decoder) strs(dst []string) []string {
	if d.peek() != '[' {
		d.skip()
		return dst
	}
	d.i++
	d.ws()
	if d.consume(']') {
		return dst
	}
	for d.err == nil {
		d.ws()
		if d.peek() == '"' {
			dst = append(dst, d.stringLit())
		} else {
			d.skip()
		}
		d.ws()
		if d.consume(',') {
			continue
		}
		if d.consume(']') {
			return dst
		}
		d.fail()
	}
	return dst
}

// skip passes over one value of any type.
func (d *decoder) skip() {
	switch c := d.peek(); c {
	case '"':
		d.stringLit()
	case '{', '[':
		d.skipNested()
	case 0:
		d.fail()
	default:
		// number, true, false, null
		start := d.i
		for d.i < len(d.s) {
			switch d.s[d.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if d.i == start {
					d.fail()
				}
				return
			}
			d.i++
		}
	}
}

// skipNested passes over an object or array, strings included, by depth.
func (d *decoder) skipNested() {
	depth := 0
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case '{', '[':
			depth++
			d.i++
		case '}', ']':
			depth--
			d.i++
			if depth == 0 {
				return
			}
		case '"':
			d.stringLit()
			if d.err != nil {
				return
			}
		default:
			d.i++
		}
	}
	d.fail()
}
