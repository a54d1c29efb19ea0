package query

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

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

// errSyntax is returned (wrapped with the offset) for a line that is not a
// JSON object.
var errSyntax = errors.New("not a JSON object")

// errNesting bounds how deep a skipped value may nest.
var errNesting = errors.New("nested too deep")

// maxSkipDepth bounds the nesting of a skipped value, so that a hostile
// line cannot make the decoder keep a stack as long as the line.
const maxSkipDepth = 512

// Bounds of the interner: values past them are copied each time.
const (
	maxInterned    = 1 << 14
	maxInternedLen = 96
)

type decoder struct {
	s      string
	i      int
	err    error
	strict bool
	dc     *Decoder // interns strings; nil: substrings
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
		case "files": // policy.load
			r.Files = d.strs(r.Files)
		case audit.FieldPath:
			r.Path = d.str(false)
		case "by": // ticket.*, written by policy/tickets.go
			r.By = d.str(true)
		case "ticket_id": // ticket.*
			r.TicketID = d.str(false)
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

// failf fails the record for a value that is JSON but not of the field's
// type (Strict), or for a limit of the decoder.
func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("at byte %d: %s", d.i, fmt.Sprintf(format, args...))
	}
}

// wrongType handles a value of another type than the field's: skipped, or
// under Strict an error.
func (d *decoder) wrongType(want string) {
	if d.strict {
		d.failf("want %s", want)
		return
	}
	d.skip()
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

// null consumes a null and reports whether there was one.
func (d *decoder) null() bool {
	if strings.HasPrefix(d.s[d.i:], "null") {
		d.i += 4
		return true
	}
	return false
}

// literal consumes word (true, false, null) or fails.
func (d *decoder) literal(word string) {
	if !strings.HasPrefix(d.s[d.i:], word) {
		d.fail()
		return
	}
	d.i += len(word)
}

// objectStart consumes '{' of a nested object and reports true; null, or a
// value of another type, is passed over and reports false.
func (d *decoder) objectStart() bool {
	if d.peek() == '{' {
		d.i++
		return true
	}
	if !d.null() {
		d.wrongType("an object")
	}
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

// str reads a string value; null reads as "". Under Intern, a string
// whose values repeat (shared) is the interned copy.
func (d *decoder) str(shared bool) string {
	if d.peek() != '"' {
		if !d.null() {
			d.wrongType("a string")
		}
		return ""
	}
	s := d.stringLit()
	if shared && d.dc != nil && d.err == nil {
		return d.dc.intern(s)
	}
	return s
}

// intern returns the shared copy of s, which may be a substring of a line.
func (dc *Decoder) intern(s string) string {
	if len(s) > maxInternedLen {
		return strings.Clone(s)
	}
	if v, ok := dc.interned[s]; ok {
		return v
	}
	s = strings.Clone(s)
	if dc.interned == nil {
		dc.interned = make(map[string]string)
	}
	if len(dc.interned) < maxInterned {
		dc.interned[s] = s
	}
	return s
}

// stringLit reads a string at '"'. Without escapes and invalid UTF-8 it is
// a substring of the line: no copy.
func (d *decoder) stringLit() string {
	d.i++ // '"'
	start := d.i
	j := plainEnd(d.s, start)
	switch {
	case j == len(d.s):
		d.i = j
		d.fail()
		return ""
	case d.s[j] == '"':
		d.i = j + 1
		return d.s[start:j]
	case d.s[j] == '\\':
		return d.unescape()
	}
	return d.nonASCII(j)
}

// plainEnd returns the index of the first quote, backslash or byte past
// ASCII in s from j, or len(s). It looks at eight bytes at a time: one
// pass for the three kinds of byte, where a call per kind (IndexByte,
// utf8.ValidString) costs more on strings as short as a record's.
func plainEnd(s string, j int) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	for ; j+8 <= len(s); j += 8 {
		x := uint64(s[j]) | uint64(s[j+1])<<8 | uint64(s[j+2])<<16 | uint64(s[j+3])<<24 |
			uint64(s[j+4])<<32 | uint64(s[j+5])<<40 | uint64(s[j+6])<<48 | uint64(s[j+7])<<56
		q, b := x^(lo*'"'), x^(lo*'\\')
		// A byte of q or b is zero where x has a quote or a backslash; the
		// lowest byte marked is exact (a borrow only marks bytes above it).
		if m := ((q-lo)&^q | (b-lo)&^b | x) & hi; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	for ; j < len(s); j++ {
		if c := s[j]; c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return j
		}
	}
	return j
}

// nonASCII reads the rest of a string from j, its first byte past ASCII:
// valid UTF-8 without escapes is still a substring.
func (d *decoder) nonASCII(j int) string {
	start := d.i
	for j < len(d.s) && d.s[j] != '"' && d.s[j] != '\\' {
		j++
	}
	if j < len(d.s) && d.s[j] == '"' && utf8.ValidString(d.s[start:j]) {
		d.i = j + 1
		return d.s[start:j]
	}
	return d.unescape()
}

// unescape reads the rest of a string, from d.i, that holds escapes or
// invalid UTF-8.
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
			writeValid(&b, d.s[d.i:j])
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
			d.i--
			d.fail()
			return ""
		}
	}
	d.i = len(d.s)
	d.fail()
	return ""
}

// writeValid writes s with each byte that is not UTF-8 as U+FFFD, as
// encoding/json reads it.
func writeValid(b *strings.Builder, s string) {
	if utf8.ValidString(s) {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
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

// skipString passes over a string at '"', checking its escapes, without
// building it.
func (d *decoder) skipString() {
	for j := d.i + 1; j < len(d.s); j++ {
		switch d.s[j] {
		case '"':
			d.i = j + 1
			return
		case '\\':
			if j+1 >= len(d.s) {
				break
			}
			switch d.s[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
				continue
			case 'u':
				d.i = j + 2
				if _, ok := d.hex4(); ok {
					j = d.i - 1
					continue
				}
			}
			d.i = j
			d.fail()
			return
		}
	}
	d.i = len(d.s)
	d.fail()
}

// numberStart reports whether a number starts at d.i; null and values of
// other types are passed over.
func (d *decoder) numberStart() bool {
	if c := d.peek(); c == '-' || c >= '0' && c <= '9' {
		return true
	}
	if !d.null() {
		d.wrongType("a number")
	}
	return false
}

// number passes over the text of a number and returns it.
func (d *decoder) number() string {
	start := d.i
	for d.i < len(d.s) && strings.IndexByte("0123456789+-.eE", d.s[d.i]) >= 0 {
		d.i++
	}
	return d.s[start:d.i]
}

// int64 reads an integer. Leniently a number with a fraction or exponent
// is truncated, and one out of range reports false; under Strict both
// fail the record, as they would encoding/json.
func (d *decoder) int64() (int64, bool) {
	if !d.numberStart() {
		return 0, false
	}
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
		d.fail()
		return 0, false
	}
	if c := d.peek(); c == '.' || c == 'e' || c == 'E' || overflow || n > math.MaxInt64 {
		d.i = start
		text := d.number()
		if d.strict {
			v, err := strconv.ParseInt(text, 10, 64)
			if err != nil {
				d.failf("%s is not an integer of 64 bits", text)
				return 0, false
			}
			return v, true
		}
		f, err := strconv.ParseFloat(text, 64)
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

// int reads an integer for an int field. Leniently, a value out of the
// contract's 32-bit range reports false; under Strict, a value out of
// int's range fails the record.
func (d *decoder) int() (int, bool) {
	n, ok := d.int64()
	switch {
	case !ok:
		return 0, false
	case d.strict && (n > math.MaxInt || n < math.MinInt):
		d.failf("%d does not fit an int", n)
		return 0, false
	case !d.strict && (n > math.MaxInt32 || n < math.MinInt32):
		return 0, false
	}
	return int(n), true
}

// uint64 reads a sequence number: leniently, a negative one reports false;
// under Strict it fails the record.
func (d *decoder) uint64() (uint64, bool) {
	if !d.strict {
		n, ok := d.int64()
		if !ok || n < 0 {
			return 0, false
		}
		return uint64(n), true
	}
	if !d.numberStart() {
		return 0, false
	}
	text := d.number()
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		d.failf("%q is not a positive integer", text)
		return 0, false
	}
	return v, true
}

func (d *decoder) float64() (float64, bool) {
	if !d.numberStart() {
		return 0, false
	}
	text := d.number()
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		if d.strict || text == "-" {
			d.failf("%q is not a number", text)
		}
		return 0, false
	}
	return v, true
}

func (d *decoder) bool() (v, ok bool) {
	switch {
	case strings.HasPrefix(d.s[d.i:], "true"):
		d.i += 4
		return true, true
	case strings.HasPrefix(d.s[d.i:], "false"):
		d.i += 5
		return false, true
	case d.null():
		return false, false
	}
	d.wrongType("true or false")
	return false, false
}

// strs reads an array of strings into dst[:0]; [] reads as an empty
// slice, null as dst[:0]. An element that is not a string is skipped, or
// under Strict fails the record (null reads as "", as with encoding/json).
func (d *decoder) strs(dst []string) []string {
	dst = dst[:0]
	if d.peek() != '[' {
		if !d.null() {
			d.wrongType("an array")
		}
		return dst
	}
	d.i++
	if dst == nil {
		dst = []string{}
	}
	d.ws()
	if d.consume(']') {
		return dst
	}
	for d.err == nil {
		d.ws()
		switch {
		case d.peek() == '"':
			s := d.stringLit()
			if d.dc != nil && d.err == nil {
				s = d.dc.intern(s)
			}
			dst = append(dst, s)
		case d.strict && d.null():
			dst = append(dst, "")
		default:
			d.wrongType("a string")
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

// skip passes over one value of any type, checking its syntax, with an
// explicit stack bounded by maxSkipDepth.
func (d *decoder) skip() {
	var stack [maxSkipDepth]byte
	depth := 0
	for d.err == nil {
		d.ws()
		switch c := d.peek(); c {
		case '"':
			d.skipString()
		case '{', '[':
			if depth == maxSkipDepth {
				d.failf("%v", errNesting)
				return
			}
			stack[depth] = c
			depth++
			d.i++
			d.ws()
			if c == '[' {
				if d.consume(']') {
					depth--
					break
				}
				continue
			}
			if d.consume('}') {
				depth--
				break
			}
			d.memberName()
			continue
		case 't':
			d.literal("true")
		case 'f':
			d.literal("false")
		case 'n':
			d.literal("null")
		default:
			if c != '-' && (c < '0' || c > '9') {
				d.fail()
				return
			}
			if n := d.number(); n == "-" {
				d.fail()
				return
			}
		}
		// After a value: close what ends here, or go on to the next one.
		for d.err == nil {
			if depth == 0 {
				return
			}
			d.ws()
			c, top := d.peek(), stack[depth-1]
			switch {
			case c == ',' && top == '[':
				d.i++
			case c == ',' && top == '{':
				d.i++
				d.ws()
				d.memberName()
			case c == ']' && top == '[' || c == '}' && top == '{':
				d.i++
				depth--
				continue
			default:
				d.fail()
				return
			}
			break
		}
	}
}

// memberName passes over a member's name and its colon, in a skipped
// object.
func (d *decoder) memberName() {
	if d.peek() != '"' {
		d.fail()
		return
	}
	d.skipString()
	d.ws()
	if !d.consume(':') {
		d.fail()
	}
}
