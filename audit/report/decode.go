package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// decodeRecord decodes one line into r, which must be zero. It reads the
// fields the report uses and skips the rest, several times faster than
// encoding/json, which would make the report miss its time budget on a
// large log. Any syntax error fails the line; values of the wrong type too.
func decodeRecord(line []byte, r *record, in *interner) error {
	l := lexer{b: line, in: in}
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "seq":
			r.Seq = l.uint()
		case "time":
			r.Time = l.str(false)
		case "event":
			r.Event = l.str(true)
		case "gateway":
			r.Gateway = l.str(true)
		case "call_id":
			r.CallID = l.str(false)
		case "session_id":
			r.SessionID = l.str(false)
		case "listener":
			r.Listener = l.str(true)
		case "call_time":
			r.CallTime = l.str(false)
		case "source":
			if l.isNull() {
				continue
			}
			r.Source = new(recSource)
			l.source(r.Source)
		case "principal":
			if l.isNull() {
				continue
			}
			r.Principal = new(recPrinc)
			l.principal(r.Principal)
		case "target":
			if l.isNull() {
				continue
			}
			r.Target = new(recTarget)
			l.target(r.Target)
		case "protocol":
			r.Protocol = l.str(true)
		case "operation":
			if l.isNull() {
				continue
			}
			r.Operation = new(recOp)
			l.operation(r.Operation)
		case "decision":
			if l.isNull() {
				continue
			}
			r.Decision = new(recDecide)
			l.decision(r.Decision)
		case "success":
			if l.isNull() {
				continue
			}
			b := l.bool()
			r.Success = &b
		case "reason":
			r.Reason = l.str(true)
		case "function":
			r.Function = l.str(true)
		case "status":
			r.Status = l.str(true)
		case "code":
			r.Code = l.int()
		case "detail":
			r.Detail = l.str(false)
		case "latency_us":
			r.LatencyUS = l.int()
		case "response":
			r.Response = l.str(true)
		case "duration_ms":
			if l.isNull() {
				continue
			}
			d := l.int()
			r.Duration = &d
		case "error":
			r.Error = l.str(false)
		case "truncated_bytes":
			r.Truncated = l.int()
		case "version":
			r.Version = l.str(true)
		case "boot_id":
			r.BootID = l.str(true)
		case "policy_revision":
			r.Revision = l.str(true)
		case "policy_mode":
			r.Mode = l.str(true)
		case "files":
			r.Files = l.strs()
		case "path":
			r.Path = l.str(false)
		case "ticket_id":
			r.TicketID = l.str(false)
		case "by":
			r.By = l.str(true)
		case "ticket":
			if l.isNull() {
				continue
			}
			r.Ticket = new(recTicket)
			l.ticket(r.Ticket)
		case "checkpoint":
			if l.isNull() {
				continue
			}
			r.Checkpt = new(recCheckpt)
			l.checkpoint(r.Checkpt)
		case "state":
			r.State = l.str(true)
		case "fill_percent":
			r.Fill = l.float()
		case "warn_fill_percent":
			r.WarnFill = l.float()
		default:
			l.skip()
		}
	}
	l.end()
	return l.err
}

func (l *lexer) source(s *recSource) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "ip":
			s.IP = l.str(true)
		case "port":
			s.Port = int(l.int())
		case "name":
			s.Name = l.str(true)
		case "owner":
			s.Owner = l.str(true)
		default:
			l.skip()
		}
	}
}

func (l *lexer) principal(p *recPrinc) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "user":
			p.User = l.str(true)
		case "auth":
			p.Auth = l.str(true)
		case "roles":
			p.Roles = l.strs()
		default:
			l.skip()
		}
	}
}

func (l *lexer) target(t *recTarget) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "name":
			t.Name = l.str(true)
		case "upstream":
			t.Upstream = l.str(true)
		case "unit_id":
			if l.isNull() {
				continue
			}
			u := int(l.int())
			t.UnitID = &u
		default:
			l.skip()
		}
	}
}

func (l *lexer) operation(o *recOp) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "function":
			o.Function = l.str(true)
		case "access":
			o.Access = l.str(true)
		case "code":
			if l.isNull() {
				continue
			}
			c := int(l.int())
			o.Code = &c
		default:
			l.skip()
		}
	}
}

func (l *lexer) decision(d *recDecide) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "allow":
			d.Allow = l.bool()
		case "alert":
			d.Alert = l.bool()
		case "reasons":
			d.Reasons = l.strs()
		case "policy_revision":
			d.Revision = l.str(true)
		case "mode":
			d.Mode = l.str(true)
		case "cached":
			d.Cached = l.bool()
		case "ticket":
			d.Ticket = l.str(true)
		default:
			l.skip()
		}
	}
}

func (l *lexer) ticket(t *recTicket) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "id":
			t.ID = l.str(false)
		case "user":
			t.User = l.str(true)
		case "targets":
			t.Targets = l.strs()
		case "access":
			t.Access = l.strs()
		case "reason":
			t.Reason = l.str(false)
		case "opened_by":
			t.OpenedBy = l.str(true)
		case "opened":
			t.Opened = l.str(false)
		case "expires":
			t.Expires = l.str(false)
		case "approvals":
			t.Approvals = l.strs()
		default:
			l.skip()
		}
	}
}

func (l *lexer) checkpoint(c *recCheckpt) {
	for k, ok := l.first(); ok; k, ok = l.next() {
		switch string(k) {
		case "seq":
			c.Seq = l.uint()
		case "boot_id":
			c.BootID = l.str(true)
		case "key_id":
			c.KeyID = l.str(true)
		case "reason":
			c.Reason = l.str(true)
		default:
			l.skip()
		}
	}
}

// lexer reads JSON from b. After the first error every read is a no-op
// that returns a zero value, and err says what was wrong.
type lexer struct {
	b   []byte
	i   int
	err error
	in  *interner
}

func (l *lexer) fail(format string, args ...any) {
	if l.err == nil {
		l.err = fmt.Errorf("offset %d: %s", l.i, fmt.Sprintf(format, args...))
	}
	l.i = len(l.b)
}

func (l *lexer) peek() byte {
	for l.i < len(l.b) {
		switch c := l.b[l.i]; c {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return c
		}
	}
	return 0
}

// first starts an object and reads its first key; ok is false for an
// empty object or an error. The key is valid until the next read.
func (l *lexer) first() (key []byte, ok bool) {
	if l.err != nil {
		return nil, false
	}
	if l.peek() != '{' {
		l.fail("want an object")
		return nil, false
	}
	l.i++
	if l.peek() == '}' {
		l.i++
		return nil, false
	}
	return l.key()
}

// next reads the key after a member's value, or ends the object.
func (l *lexer) next() (key []byte, ok bool) {
	if l.err != nil {
		return nil, false
	}
	switch l.peek() {
	case ',':
		l.i++
		return l.key()
	case '}':
		l.i++
		return nil, false
	}
	l.fail("want , or } after a member")
	return nil, false
}

func (l *lexer) key() ([]byte, bool) {
	if l.peek() != '"' {
		l.fail("want a member name")
		return nil, false
	}
	raw, escaped := l.stringBytes()
	if l.err != nil {
		return nil, false
	}
	if escaped {
		raw = []byte(unescape(raw))
	}
	if l.peek() != ':' {
		l.fail("want : after a member name")
		return nil, false
	}
	l.i++
	return raw, true
}

// end checks that nothing but white space follows the value.
func (l *lexer) end() {
	if l.err == nil && l.peek() != 0 {
		l.fail("text after the record")
	}
}

// stringBytes reads a string at l.i and returns its bytes between the
// quotes, and whether they hold escapes. Control characters, which JSON
// does not allow raw in a string, are taken as they are: the page escapes
// them like any other text.
func (l *lexer) stringBytes() (raw []byte, escaped bool) {
	l.i++ // the opening quote
	start := l.i
	// Most strings hold no escape: find the closing quote at memchr speed.
	if j := bytes.IndexByte(l.b[start:], '"'); j >= 0 && bytes.IndexByte(l.b[start:start+j], '\\') < 0 {
		l.i = start + j + 1
		return l.b[start : start+j], false
	}
	for l.i < len(l.b) {
		c := l.b[l.i]
		switch {
		case c == '"':
			raw = l.b[start:l.i]
			l.i++
			return raw, escaped
		case c == '\\':
			escaped = true
			l.i += 2
		default:
			l.i++
		}
	}
	l.fail("unterminated string")
	return nil, false
}

// unescape decodes a string body with escapes; a bad escape decodes as
// encoding/json would refuse it, so it fails the line through the caller.
func unescape(raw []byte) string {
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if json.Unmarshal(q, &s) != nil {
		return "\uFFFD"
	}
	return s
}

// str reads a string value; null reads as "". Short strings of fields
// whose values repeat (names, functions, reasons) are interned.
func (l *lexer) str(intern bool) string {
	switch l.peek() {
	case '"':
	case 'n':
		l.literal("null")
		return ""
	default:
		l.fail("want a string")
		return ""
	}
	raw, escaped := l.stringBytes()
	if l.err != nil {
		return ""
	}
	if escaped {
		return unescape(raw)
	}
	if !utf8.Valid(raw) {
		return string([]rune(string(raw))) // invalid bytes become U+FFFD, as with encoding/json
	}
	if intern {
		return l.in.get(raw)
	}
	return string(raw)
}

// strs reads an array of strings; null reads as nil.
func (l *lexer) strs() []string {
	switch l.peek() {
	case '[':
	case 'n':
		l.literal("null")
		return nil
	default:
		l.fail("want an array")
		return nil
	}
	l.i++
	out := []string{}
	if l.peek() == ']' {
		l.i++
		return out
	}
	for l.err == nil {
		out = append(out, l.str(true))
		switch l.peek() {
		case ',':
			l.i++
		case ']':
			l.i++
			return out
		default:
			l.fail("want , or ] in an array")
		}
	}
	return nil
}

func (l *lexer) isNull() bool {
	if l.peek() == 'n' {
		l.literal("null")
		return true
	}
	return false
}

func (l *lexer) literal(word string) {
	if len(l.b)-l.i < len(word) || string(l.b[l.i:l.i+len(word)]) != word {
		l.fail("want %s", word)
		return
	}
	l.i += len(word)
}

func (l *lexer) bool() bool {
	switch l.peek() {
	case 't':
		l.literal("true")
		return true
	case 'f':
		l.literal("false")
	case 'n':
		l.literal("null")
	default:
		l.fail("want true or false")
	}
	return false
}

// number returns the text of a number at l.i.
func (l *lexer) number() []byte {
	c := l.peek()
	if c != '-' && (c < '0' || c > '9') {
		if c == 'n' {
			l.literal("null")
			return nil
		}
		l.fail("want a number")
		return nil
	}
	start := l.i
	for l.i < len(l.b) {
		switch c := l.b[l.i]; {
		case c >= '0' && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			l.i++
			continue
		}
		break
	}
	return l.b[start:l.i]
}

func (l *lexer) int() int64 {
	n := l.number()
	if n == nil {
		return 0
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		l.fail("%q is not an integer", n)
	}
	return v
}

func (l *lexer) uint() uint64 {
	n := l.number()
	if n == nil {
		return 0
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		l.fail("%q is not a positive integer", n)
	}
	return v
}

func (l *lexer) float() float64 {
	n := l.number()
	if n == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		l.fail("%q is not a number", n)
	}
	return v
}

// errNesting bounds how deep a skipped value may nest.
var errNesting = errors.New("nested too deep")

// maxSkipDepth bounds the nesting of a value skipped, so that a hostile
// line cannot make the report keep a stack as long as the line.
const maxSkipDepth = 512

// skip reads over one value of any kind, checking its syntax.
func (l *lexer) skip() {
	var stack [maxSkipDepth]byte
	depth := 0
	for l.err == nil {
		switch c := l.peek(); c {
		case '"':
			l.stringBytes()
		case '{', '[':
			if depth == maxSkipDepth {
				l.fail("%v", errNesting)
				return
			}
			stack[depth] = c
			depth++
			l.i++
			if c == '{' {
				if l.peek() == '}' {
					l.i++
					depth--
					break
				}
				if l.peek() != '"' {
					l.fail("want a member name")
					return
				}
				l.stringBytes()
				if l.peek() != ':' {
					l.fail("want :")
					return
				}
				l.i++
				continue
			}
			if l.peek() == ']' {
				l.i++
				depth--
				break
			}
			continue
		case 't':
			l.literal("true")
		case 'f':
			l.literal("false")
		case 'n':
			l.literal("null")
		default:
			if l.number() == nil {
				return
			}
		}
		// After a value: close what ends here, or go on to the next member.
		for l.err == nil {
			if depth == 0 {
				return
			}
			c := l.peek()
			top := stack[depth-1]
			switch {
			case c == ',' && top == '[':
				l.i++
			case c == ',' && top == '{':
				l.i++
				if l.peek() != '"' {
					l.fail("want a member name")
					return
				}
				l.stringBytes()
				if l.peek() != ':' {
					l.fail("want :")
					return
				}
				l.i++
			case (c == ']' && top == '[') || (c == '}' && top == '{'):
				l.i++
				depth--
				continue
			default:
				l.fail("unexpected %q", c)
				return
			}
			break
		}
	}
}

// interner keeps one copy of short strings that repeat across records.
type interner struct {
	m map[string]string
}

// Bounds of the interner: values past them are copied each time.
const (
	maxInterned    = 1 << 14
	maxInternedLen = 96
)

func (in *interner) get(b []byte) string {
	if in == nil || len(b) > maxInternedLen {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.m == nil {
		in.m = map[string]string{}
	}
	if len(in.m) < maxInterned {
		in.m[s] = s
	}
	return s
}
