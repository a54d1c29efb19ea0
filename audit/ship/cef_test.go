package ship

import (
	"strings"
	"testing"
)

// parseCEF splits a CEF event into its 7 header fields and its extension,
// undoing the escapes.
func parseCEF(t *testing.T, s string) ([]string, map[string]string) {
	t.Helper()
	var header []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(header) < 7; i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '|':
			header = append(header, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	if len(header) != 7 {
		t.Fatalf("not 7 header fields: %q", s)
	}
	ext := map[string]string{}
	rest := s[i:]
	// Keys are words followed by '='; an unescaped '=' ends a key.
	var key string
	cur.Reset()
	flush := func() {
		v := cur.String()
		if key != "" {
			ext[key] = strings.TrimSuffix(v, " ")
		}
	}
	for j := 0; j < len(rest); j++ {
		c := rest[j]
		switch {
		case c == '\\' && j+1 < len(rest):
			j++
			switch rest[j] {
			case 'n':
				cur.WriteByte('\n')
			case 'r':
				cur.WriteByte('\r')
			default:
				cur.WriteByte(rest[j])
			}
		case c == '=':
			// The key is the last word before this '='.
			v := cur.String()
			sp := strings.LastIndexByte(v, ' ')
			if key != "" {
				cur.Reset()
				cur.WriteString(v[:max(sp, 0)])
				flush()
			}
			key = v[sp+1:]
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return header, ext
}

func TestCEF(t *testing.T) {
	l := newTestLog(t)
	line := l.line("call", `,"call_id":"c1","session_id":"s1","source":{"ip":"10.0.0.5","port":50123,"name":"ews|alice"},`+
		`"principal":{"user":"ali=ce"},"target":{"name":"plc1"},"protocol":"modbus",`+
		`"operation":{"function":"write_single_register","access":"write","address":100,"quantity":1},`+
		`"decision":{"allow":false,"alert":true,"reasons":["outside_maintenance_window","a\\b"],"policy_revision":"r1"}`)
	var r Record
	parseRecord(&r, []byte(line))
	out := string(AppendCEF(nil, &r, "1.2|3"))
	if strings.ContainsAny(out, "\n\r") {
		t.Fatalf("a CEF event is one line: %q", out)
	}
	h, ext := parseCEF(t, out)
	wantH := []string{"CEF:0", "Interlock", "interlock", "1.2|3", "write_single_register"}
	for i := range wantH {
		if h[i] != wantH[i] {
			t.Fatalf("header[%d] = %q, want %q\n%s", i, h[i], wantH[i], out)
		}
	}
	want := map[string]string{
		"dvchost": "gw1", "externalId": "c1", "src": "10.0.0.5", "spt": "50123", "shost": "ews|alice",
		"suser": "ali=ce", "act": "deny", "reason": `outside_maintenance_window,a\b`, "cn1": "1", "cn1Label": "seq",
		"flexString1": r.hash, "flexString1Label": "hash",
	}
	for k, v := range want {
		if ext[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, ext[k], v, out)
		}
	}

	// A line that is not a record still makes one event, escaped.
	bad := Record{Line: []byte("not=json|\\\nx"), Severity: SeverityError}
	h, ext = parseCEF(t, string(AppendCEF(nil, &bad, "v|1")))
	if h[3] != "v|1" || h[4] != "malformed" || ext["msg"] != "not=json|\\\nx" || h[6] != "8" {
		t.Fatalf("malformed: %q %q", h, ext)
	}
}
