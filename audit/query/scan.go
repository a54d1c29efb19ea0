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
)

// JSON scanning for the decoder: one pass over a line held as a string,
// substrings instead of copies, and no reflection.

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
