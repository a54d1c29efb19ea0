package export

import (
	"strings"

	"github.com/interlock-ics/interlock/audit/query"
)

// Severity is how much a record should draw a SIEM analyst's eye; OCSF and
// CEF each get it on their own scale.
type Severity int

// Severities, as OCSF severity_id.
const (
	SeverityInformational Severity = 1 // allowed reads, sessions, gateway events
	SeverityLow           Severity = 2 // allowed state-changing calls, target exceptions and errors
	SeverityMedium        Severity = 3 // denials, alerts, malformed requests, refused sessions
	SeverityHigh          Severity = 4 // records lost to a crash
)

// Name is the OCSF severity caption.
func (s Severity) Name() string {
	switch s {
	case SeverityInformational:
		return "Informational"
	case SeverityLow:
		return "Low"
	case SeverityMedium:
		return "Medium"
	case SeverityHigh:
		return "High"
	}
	return "Unknown"
}

// CEF is the severity on CEF's 0..10 scale.
func (s Severity) CEF() int {
	switch s {
	case SeverityLow:
		return 3
	case SeverityMedium:
		return 6
	case SeverityHigh:
		return 8
	}
	return 1
}

// SeverityOf rates a record (a call with its result joined, or any other).
func SeverityOf(r *query.Record) Severity {
	s := SeverityInformational
	raise := func(to Severity) { s = max(s, to) }
	switch r.Event {
	case query.EventCall:
		if r.Operation.ChangesState() {
			raise(SeverityLow)
		}
		if r.Decision.Present && (!r.Decision.Allow || r.Decision.Alert) {
			raise(SeverityMedium)
		}
		if st := r.Outcome(); st == "exception" || st == "error" {
			raise(SeverityLow)
		}
	case query.EventResult:
		switch r.Status {
		case "denied":
			raise(SeverityMedium)
		case "exception", "error":
			raise(SeverityLow)
		}
	case query.EventRequestRejected, query.EventRequestRejectedSuppressed, query.EventAuthFailed, query.EventTicketRefused:
		raise(SeverityMedium)
	case query.EventSessionOpen:
		if r.HasSuccess && !r.Success {
			raise(SeverityMedium)
		} else if r.Decision.Alert {
			raise(SeverityLow)
		}
	case query.EventSessionClose:
		if r.Error != "" {
			raise(SeverityLow)
		}
	case "audit.recovered":
		raise(SeverityHigh)
	case "audit.capacity":
		if r.State == "warning" {
			raise(SeverityMedium)
		}
	default:
		if strings.HasSuffix(r.Event, "_failed") || r.Error != "" {
			raise(SeverityMedium)
		}
	}
	return s
}
