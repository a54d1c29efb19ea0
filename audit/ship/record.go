package ship

import (
	"bytes"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/gateway"
)

// Record is one line of the audit log as a sink gets it.
type Record struct {
	// Line is the line as written, without its newline. It is only valid
	// during the Send it is passed to: the shipper reuses the buffer.
	Line     []byte
	Seq      uint64    // 0 for a line that is not an audit record
	Time     time.Time // zero when the line has none
	Event    string
	Gateway  string
	Severity Severity

	q    *query.Record // the line decoded; nil when it is not a record
	file string        // base name of the file the line is in
	end  int64         // offset just past its newline
	hash string        // its hash field, "" for a line that is not a record
}

// Severity is a syslog severity (RFC 5424 §6.2.1); lower is more severe.
type Severity int

// The severities the shipper gives audit events.
const (
	SeverityError   Severity = 3
	SeverityWarning Severity = 4
	SeverityNotice  Severity = 5
	SeverityInfo    Severity = 6
)

// hash field at the end of every record (see the audit package doc).
const (
	hashKey      = `,"hash":"`
	hashHexLen   = 64
	hashFieldLen = len(hashKey) + hashHexLen + len(`"}`)
)

// parseRecord fills r from line. A line that is not a JSON object with a
// seq keeps Seq 0 and is still shipped: it is in the log, and whoever
// reads the copy should see it.
func parseRecord(r *Record, line []byte) {
	*r = Record{Line: line, Severity: SeverityError}
	q, err := query.Parse(line)
	if err != nil || q.Seq == 0 {
		return
	}
	r.q, r.Seq, r.Event, r.Gateway = q, q.Seq, q.Event, q.Gateway
	if t, err := time.Parse(time.RFC3339Nano, q.Time); err == nil {
		r.Time = t.UTC()
	}
	r.hash = hashOf(line)
	r.Severity = severityOf(q)
}

// hashOf returns the hash field of a record line, or "".
func hashOf(line []byte) string {
	n := len(line)
	if n < hashFieldLen || !bytes.HasPrefix(line[n-hashFieldLen:], []byte(hashKey)) || !bytes.HasSuffix(line, []byte(`"}`)) {
		return ""
	}
	return string(line[n-hashFieldLen+len(hashKey) : n-2])
}

// severityOf ranks an event for the syslog PRI and the CEF severity.
// Evidence that the log itself was damaged or could not be kept, and
// policies, users files, TLS files (of a listener or toward its PLCs) or
// OPC UA trust lists that failed to load: error. Denied or alerting calls
// and refused requests, sessions and log-ins: warning. Lifecycle, policy,
// users, TLS and ticket changes, trust-list checks, checkpoints and allowed
// state-changing calls: notice.
// Everything else (allowed reads, results, sessions): informational.
func severityOf(q *query.Record) Severity {
	ev := q.Event
	d := &q.Decision
	switch {
	case ev == "policy.load_failed" || ev == "users.load_failed" || ev == "tls.load_failed" ||
		ev == "pki.load_failed" || ev == "upstream_tls.load_failed":
		return SeverityError
	case ev == "audit.checkpoint" || ev == "audit.rotated":
		return SeverityNotice
	case strings.HasPrefix(ev, "audit."):
		return SeverityError
	case ev == query.EventRequestRejected || ev == query.EventAuthFailed || ev == query.EventTicketRefused:
		return SeverityWarning
	case ev == query.EventSessionOpen && q.HasSuccess && !q.Success:
		return SeverityWarning
	case ev == query.EventCall && d.Present && (!d.Allow || d.Alert):
		return SeverityWarning
	case ev == query.EventResult && q.Status == "denied":
		return SeverityWarning
	case ev == query.EventCall && gateway.Access(q.Operation.Access).ChangesState():
		return SeverityNotice
	case strings.HasPrefix(ev, "gateway.") || strings.HasPrefix(ev, "policy.") || strings.HasPrefix(ev, "ticket.") ||
		strings.HasPrefix(ev, "users.") || strings.HasPrefix(ev, "tls.") || strings.HasPrefix(ev, "pki.") ||
		strings.HasPrefix(ev, "upstream_tls."):
		return SeverityNotice
	}
	return SeverityInfo
}
