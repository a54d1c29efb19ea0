package query

import (
	"bufio"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Table writes matches as aligned columns: one row per call (joined with
// its result) or other record. Column widths come from the first rows, so
// the output streams; a later, longer cell is cut with "…".
type Table struct {
	w      *bufio.Writer
	rows   [][numColumns]string // buffered until the widths are known
	widths [numColumns]int
	ready  bool
	err    error
}

// The columns, their headers and the widths they may grow to.
const numColumns = 10

var (
	columnHeaders = [numColumns]string{"TIME", "USER", "SOURCE", "TARGET", "FUNCTION", "ADDRESS", "DECISION", "STATUS", "LATENCY", "REASONS"}
	columnCaps    = [numColumns]int{24, 16, 20, 16, 30, 17, 14, 16, 9, 100}
)

// widthRows is how many rows decide the column widths.
const widthRows = 200

// NewTable writes to w; call Flush at the end.
func NewTable(w io.Writer) *Table {
	return &Table{w: bufio.NewWriterSize(w, 64<<10)}
}

// Write adds the row of rec (a call with its result joined, or any other
// record). It does not keep rec.
func (t *Table) Write(rec *Record) error {
	if t.err != nil {
		return t.err
	}
	row := Row(rec)
	if !t.ready {
		t.rows = append(t.rows, row)
		if len(t.rows) >= widthRows {
			t.start()
		}
		return t.err
	}
	t.writeRow(&row)
	return t.err
}

// Flush writes the rows still buffered (and the header, even for none).
func (t *Table) Flush() error {
	if !t.ready {
		t.start()
	}
	if t.err == nil {
		t.err = t.w.Flush()
	}
	return t.err
}

func (t *Table) start() {
	t.ready = true
	for i, h := range columnHeaders {
		t.widths[i] = len(h)
	}
	for _, row := range t.rows {
		for i, c := range row {
			t.widths[i] = max(t.widths[i], min(utf8.RuneCountInString(c), columnCaps[i]))
		}
	}
	header := columnHeaders
	t.writeRow(&header)
	for i := range t.rows {
		t.writeRow(&t.rows[i])
	}
	t.rows = nil
}

func (t *Table) writeRow(row *[numColumns]string) {
	var b []byte
	for i, c := range row {
		last := i == numColumns-1
		width := t.widths[i]
		if last {
			width = columnCaps[i] // nothing to align after it
		}
		n := utf8.RuneCountInString(c)
		if n > width {
			c = truncate(c, width)
			n = width
		}
		b = append(b, c...)
		if !last {
			b = append(b, strings.Repeat(" ", t.widths[i]-n+2)...)
		}
	}
	b = append(b, '\n')
	if _, err := t.w.Write(b); err != nil && t.err == nil {
		t.err = err
	}
}

// truncate cuts s to width runes, the last one an ellipsis.
func truncate(s string, width int) string {
	if width <= 1 {
		return "…"
	}
	n := 0
	for i := range s {
		if n == width-1 {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// Row is the table row of a record: the cells of Table's columns, "-" for
// none, control characters replaced so that a cell stays on its line.
func Row(r *Record) [numColumns]string {
	var row [numColumns]string
	row[0] = shortTime(r.Time)
	row[1] = r.UserOrBy()
	row[2] = r.Source.Name
	if row[2] == "" {
		row[2] = r.Source.IP
	}
	row[3] = r.TargetName()
	if row[3] == "" && r.Ticket != nil {
		row[3] = strings.Join(r.Ticket.Targets, ",")
	}
	if r.Target.HasUnitID && row[3] != "" {
		row[3] += "/u" + strconv.Itoa(r.Target.UnitID)
	}
	row[4] = r.Operation.Function
	switch r.Event {
	case EventCall:
	case EventResult:
		row[4] = r.Function
	default:
		row[4] = r.Event
		if r.Operation.Function != "" && r.Event == EventRequestRejected {
			row[4] += " " + r.Operation.Function
		}
	}
	row[5] = r.Operation.Target()
	row[6] = r.Decision.Verdict()
	if r.Decision.Present && !r.Decision.Allow && r.Decision.Mode == "monitor" {
		row[6] = "deny (monitor)"
	}
	row[7], row[8] = statusCell(r)
	row[9] = reasonsCell(r)
	for i, c := range row {
		if c == "" {
			row[i] = "-"
		} else {
			row[i] = clean(c)
		}
	}
	return row
}

// shortTime is the record time to the millisecond, in UTC.
func shortTime(s string) string {
	if len(s) == len(recordTimeLayout)-5 && s[19] == '.' && s[len(s)-1] == 'Z' {
		return s[:23] + "Z"
	}
	if t := parseTime(s); !t.IsZero() {
		return t.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return s
}

func statusCell(r *Record) (status, latency string) {
	res := r
	switch r.Event {
	case EventCall:
		if r.Result == nil {
			return "no result", ""
		}
		res = r.Result
	case EventResult:
	case EventSessionOpen:
		if r.HasSuccess && !r.Success {
			return "refused", ""
		}
		return "ok", ""
	case EventRequestRejected:
		return "rejected", ""
	case EventSessionClose:
		status = "closed"
		if r.Error != "" {
			status = "error"
		}
		if r.HasDurationMS {
			latency = durationCell(r.DurationMS * 1000)
		}
		return status, latency
	default:
		return r.Status, ""
	}
	status = res.Status
	if res.HasCode && res.Code != 0 {
		status += " " + strconv.Itoa(res.Code)
	}
	if res.HasLatency {
		latency = durationCell(res.LatencyUS)
	}
	return status, latency
}

// durationCell writes microseconds as 830µs, 1.2ms or 3.4s.
func durationCell(us int64) string {
	switch {
	case us < 1000:
		return strconv.FormatInt(us, 10) + "µs"
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', 1, 64) + "s"
}

func reasonsCell(r *Record) string {
	var parts []string
	if len(r.Decision.Reasons) > 0 {
		parts = append(parts, strings.Join(decidingFirst(r.Decision.Reasons), ","))
	}
	if t := r.Decision.Ticket; t != "" && !slices.ContainsFunc(r.Decision.Reasons, func(s string) bool { return strings.Contains(s, t) }) {
		parts = append(parts, "ticket "+t)
	}
	if tk := r.Ticket; tk != nil {
		// ticket.*: the ticket, for whom, what, until when and why.
		t := "ticket " + r.TicketRef() + " for " + tk.User + ": " + strings.Join(tk.Access, ",") + " on " + strings.Join(tk.Targets, ",")
		if tk.Expires != "" {
			t += " until " + shortTime(tk.Expires)
		}
		if tk.Reason != "" {
			t += " (" + tk.Reason + ")"
		}
		parts = append(parts, t)
	}
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	detail := r.Detail
	if r.Result != nil {
		detail = r.Result.Detail
	}
	// A denial's detail repeats the reasons.
	if detail != "" && detail != strings.Join(r.Decision.Reasons, ",") {
		parts = append(parts, detail)
	}
	if r.Error != "" {
		parts = append(parts, r.Error)
	}
	return strings.Join(parts, "; ")
}

// clean replaces control characters (a newline or an escape sequence in a
// logged value must not reach the terminal) with a space.
func clean(s string) string {
	if strings.IndexFunc(s, isControl) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }

// decidingFirst orders a decision's reasons for a reader: those that
// decided the outcome first, then the monitor-only ones, which alert but
// decide nothing ("<rule>:monitor:<reason>" of the policy library's
// convention, and the gateway's monitor_would_deny). Policies sort their
// reasons by name, so an alert-only one may come before the enforced
// denial, which a narrow column would cut off.
func decidingFirst(reasons []string) []string {
	if !slices.ContainsFunc(reasons, monitorOnly) {
		return reasons
	}
	out := make([]string, 0, len(reasons))
	for _, s := range reasons {
		if !monitorOnly(s) {
			out = append(out, s)
		}
	}
	for _, s := range reasons {
		if monitorOnly(s) {
			out = append(out, s)
		}
	}
	return out
}

func monitorOnly(reason string) bool {
	return strings.HasPrefix(reason, "monitor_would_deny") || strings.Contains(reason, ":monitor:")
}
