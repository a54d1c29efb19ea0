package ship

import (
	"github.com/interlock-ics/interlock/audit/export"
)

// AppendCEF appends the CEF event (ArcSight Common Event Format) for r:
// audit/export's mapping of one record, the same as `interlock audit export
// --format cef`, with seq in cn1 and the record's hash in flexString1. A
// line that is not an audit record still makes one event, which carries the
// line in msg.
//
// CEF is a digest for correlation: it does not carry prev, so the chain can
// only be checked off-box from the JSON format.
func AppendCEF(b []byte, r *Record, version string) []byte {
	if r.q != nil {
		return export.AppendCEF(b, r.q, version)
	}
	b = append(b, "CEF:0|"+export.VendorName+"|interlock|"...)
	b = appendCEFEscaped(b, version, true)
	b = append(b, "|malformed|Malformed audit log line|8|msg="...)
	return appendCEFEscaped(b, string(r.Line[:min(len(r.Line), 1024)]), false)
}

// appendCEFEscaped escapes a header field ('\' and '|'; line breaks become
// spaces) or an extension value ('\' and '='; line breaks as \n, \r).
func appendCEFEscaped(b []byte, v string, header bool) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' || (header && c == '|') || (!header && c == '='):
			b = append(b, '\\', c)
		case c == '\n' || c == '\r':
			switch {
			case header:
				b = append(b, ' ')
			case c == '\n':
				b = append(b, '\\', 'n')
			default:
				b = append(b, '\\', 'r')
			}
		default:
			b = append(b, c)
		}
	}
	return b
}
