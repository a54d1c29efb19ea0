package export

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// jsonw appends a JSON object member by member, with no reflection and no
// map: an OCSF event is built for every call of a log that may hold
// millions. Keys are constants of this package and are written unescaped.
type jsonw struct {
	b     []byte
	comma bool // a member or element was written at this level
}

func (j *jsonw) key(k string) {
	if j.comma {
		j.b = append(j.b, ',')
	}
	j.b = append(j.b, '"')
	j.b = append(j.b, k...)
	j.b = append(j.b, '"', ':')
	j.comma = false
}

func (j *jsonw) str(k, v string) {
	j.key(k)
	j.b = appendJSONString(j.b, v)
	j.comma = true
}

// strBytes is str for bytes.
func (j *jsonw) strBytes(k string, v []byte) {
	j.key(k)
	j.b = appendJSONString(j.b, unsafe.String(unsafe.SliceData(v), len(v)))
	j.comma = true
}

// strOpt writes a string member unless it is empty.
func (j *jsonw) strOpt(k, v string) {
	if v != "" {
		j.str(k, v)
	}
}

func (j *jsonw) int(k string, v int64) {
	j.key(k)
	j.b = strconv.AppendInt(j.b, v, 10)
	j.comma = true
}

func (j *jsonw) bool(k string, v bool) {
	j.key(k)
	j.b = strconv.AppendBool(j.b, v)
	j.comma = true
}

func (j *jsonw) strs(k string, v []string) {
	j.key(k)
	j.b = append(j.b, '[')
	for i, s := range v {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = appendJSONString(j.b, s)
	}
	j.b = append(j.b, ']')
	j.comma = true
}

// raw writes a JSON value taken from the record; one that is not valid JSON
// is written as a string instead, so the event stays valid.
func (j *jsonw) raw(k, v string) {
	if v == "" {
		return
	}
	if !json.Valid([]byte(v)) {
		j.str(k, v)
		return
	}
	j.key(k)
	j.b = append(j.b, v...)
	j.comma = true
}

func (j *jsonw) open(k string) {
	j.key(k)
	j.b = append(j.b, '{')
}

func (j *jsonw) close() {
	j.b = append(j.b, '}')
	j.comma = true
}

func (j *jsonw) openArray(k string) {
	j.key(k)
	j.b = append(j.b, '[')
}

func (j *jsonw) closeArray() {
	j.b = append(j.b, ']')
	j.comma = true
}

// elem opens an object element of an array.
func (j *jsonw) elem() {
	if j.comma {
		j.b = append(j.b, ',')
	}
	j.b = append(j.b, '{')
	j.comma = false
}

const hexDigits = "0123456789abcdef"

// plainJSON marks the bytes a JSON string holds as they are.
var plainJSON = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString quotes s as JSON: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainJSON[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
