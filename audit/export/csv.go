package export

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/interlock-ics/interlock/audit/query"
)

// CSVHeader is the header row of the CSV export: one row per call with its
// result joined, and one per other record with the columns it has. Names
// follow the audit record (result_* are the result record's).
var CSVHeader = []string{
	"time", "seq", "event", "gateway", "call_id", "session_id",
	"user", "auth", "roles", "source_ip", "source_port", "source_name",
	"target", "unit_id", "protocol", "function", "access", "code",
	"address", "quantity", "registers", "node_id",
	"decision", "allow", "alert", "reasons", "policy_revision", "decision_id", "mode", "ticket",
	"status", "status_code", "detail", "latency_us", "result_time", "hash",
	// Added after the first release, so at the end: what a call wrote, the
	// OPC UA method called, and the ticket a ticket.* record is about.
	"values", "object_id", "method_id", "arguments",
	"ticket_user", "ticket_targets", "ticket_access", "ticket_expires", "ticket_reason",
	// The rejections a request.rejected_suppressed counts: a row stands for
	// them all, and a spreadsheet sums a column, it cannot parse detail.
	"count",
}

// csvWriter writes RFC 4180 CSV: CRLF line ends, a field quoted when it
// holds a comma, quote or line break, quotes doubled. A cell a spreadsheet
// would take for a formula is neutralised (csvCell). encoding/csv's writer
// is not used: with CRLF line ends it drops a carriage return inside a
// field, and a detail or user name with one would not read back as it was.
type csvWriter struct {
	w   *bufio.Writer
	row []string
	buf []byte
}

func newCSVWriter(w io.Writer) *csvWriter {
	return &csvWriter{w: bufio.NewWriter(w), row: make([]string, len(CSVHeader))}
}

func (c *csvWriter) header() error { return c.writeRow(CSVHeader) }

// writeRow writes one record. Inside a quoted field a line feed is written
// as CRLF (as encoding/csv does) and a carriage return as itself: a reader
// turns a CRLF at a line's end into LF, so "\r", "\n" and "\r\n" in a field
// all read back as they were.
func (c *csvWriter) writeRow(row []string) error {
	b := c.buf[:0]
	for i, f := range row {
		if i > 0 {
			b = append(b, ',')
		}
		if !csvNeedsQuotes(f) {
			b = append(b, f...)
			continue
		}
		b = append(b, '"')
		for j := 0; j < len(f); j++ {
			switch f[j] {
			case '"':
				b = append(b, '"', '"')
			case '\n':
				b = append(b, '\r', '\n')
			default:
				b = append(b, f[j])
			}
		}
		b = append(b, '"')
	}
	b = append(b, '\r', '\n')
	c.buf = b
	_, err := c.w.Write(b)
	return err
}

// csvNeedsQuotes is encoding/csv's rule: a field with a comma, quote or
// line break, one that begins with a space, and `\.` (an end of data mark
// to some readers) are quoted.
func csvNeedsQuotes(f string) bool {
	if f == "" {
		return false
	}
	if f == `\.` || strings.ContainsAny(f, ",\"\r\n") {
		return true
	}
	r, _ := utf8.DecodeRuneInString(f)
	return unicode.IsSpace(r)
}

func (c *csvWriter) write(r *query.Record) error {
	CSVRow(c.row, r)
	for i, v := range c.row {
		c.row[i] = csvCell(v)
	}
	return c.writeRow(c.row)
}

// csvCell neutralises a cell that a spreadsheet would run as a formula:
// one that begins with = + - @, a tab or a carriage return gets a leading
// single quote (OWASP's advice on CSV injection). Values such as user names
// come from whoever connects, logged in or not. A plain number (-5, the
// value of a register) is left as it is: it is no formula.
func csvCell(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '+', '-', '@', '\t', '\r':
		if !plainNumber(v) {
			return "'" + v
		}
	}
	return v
}

// plainNumber reports whether s is a decimal number: an optional sign,
// digits with an optional fraction, an optional exponent.
func plainNumber(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	digits := func() int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		s = s[n:]
		return n
	}
	n := digits()
	if s != "" && s[0] == '.' {
		s = s[1:]
		n += digits()
	}
	if n == 0 {
		return false
	}
	if s != "" && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s != "" && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		if digits() == 0 {
			return false
		}
	}
	return s == ""
}

func (c *csvWriter) flush() error { return c.w.Flush() }

// CSVRow fills row (len(CSVHeader) long) with the columns of r, as they are
// (the CSV export then neutralises formulas).
func CSVRow(row []string, r *query.Record) {
	itoaIf := func(n int, ok bool) string {
		if !ok {
			return ""
		}
		return strconv.Itoa(n)
	}
	boolIf := func(v, ok bool) string {
		if !ok {
			return ""
		}
		return strconv.FormatBool(v)
	}
	res := r.Result
	if r.Event == query.EventResult {
		res = r
	}
	var status, statusCode, detail, latency, resultTime string
	if res != nil {
		status = res.Status
		statusCode = itoaIf(res.Code, res.HasCode)
		detail = res.Detail
		if res.HasLatency {
			latency = strconv.FormatInt(res.LatencyUS, 10)
		}
		if res != r {
			resultTime = res.Time
		}
	} else {
		detail = r.Detail
		if r.Error != "" {
			detail = r.Error
		}
		if detail == "" {
			detail = r.Reason // ticket.load_refused, a refused session.open
		}
		if r.Event == query.EventTicketRefused {
			detail = statusDetail(r) // what was asked, and why it was refused
		}
		switch r.Event {
		case query.EventRequestRejected:
			status = "rejected"
			detail = statusDetail(r)
		case query.EventRequestRejectedSuppressed:
			status = "rejected" // as the request.rejected records it stands for
			detail = string(appendReasonCounts(nil, r.ReasonCounts))
		}
	}
	d := &r.Decision
	reasons := strings.Join(d.Reasons, ",")
	count := ""
	if r.Event == query.EventRequestRejectedSuppressed {
		reasons = countedReasons(r.ReasonCounts) // no decision: the reasons it counts
		if r.Count > 0 {
			count = strconv.FormatInt(r.Count, 10)
		}
	}
	seq := ""
	if r.Seq > 0 {
		seq = strconv.FormatUint(r.Seq, 10)
	}
	var tUser, tTargets, tAccess, tExpires, tReason string
	if tk := r.Ticket; tk != nil {
		tUser, tTargets, tAccess = tk.User, strings.Join(tk.Targets, ","), strings.Join(tk.Access, ",")
		tExpires, tReason = tk.Expires, tk.Reason
	}
	op := &r.Operation
	copy(row, []string{
		r.Time, seq, r.Event, r.Gateway, r.CallID, r.SessionID,
		r.UserOrBy(), r.Principal.Auth, strings.Join(r.Principal.Roles, ","),
		r.Source.IP, itoaIf(r.Source.Port, r.Source.HasPort), r.Source.Name,
		r.TargetName(), itoaIf(r.Target.UnitID, r.Target.HasUnitID), r.Protocol, r.FunctionName(), r.Operation.Access,
		itoaIf(r.Operation.Code, r.Operation.HasCode),
		itoaIf(r.Operation.Address, r.Operation.HasAddress), itoaIf(r.Operation.Quantity, r.Operation.HasQuantity),
		r.Operation.Registers(), r.Operation.NodeID,
		d.Verdict(), boolIf(d.Allow, d.Present), boolIf(d.Alert, d.Present), reasons,
		d.PolicyRevision, d.DecisionID, d.Mode, r.TicketRef(),
		status, statusCode, detail, latency, resultTime, r.Hash,
		op.Written(), op.ObjectID, op.MethodID, op.ArgumentsJSON,
		tUser, tTargets, tAccess, tExpires, tReason,
		count,
	})
}
