// Package gateway is the protocol-neutral core of Interlock: the session and
// call model, the engine registry, the decide → audit → forward → audit
// pipeline, and the listeners that bound every connection.
//
// gateway defines the interfaces that policy/ and audit/ implement; it never
// imports them.
package gateway

import (
	"net/netip"
	"time"
)

// Access classifies what a call does, for policy and for the fail-closed rules.
type Access string

// Access kinds of the contract (ARCHITECTURE.md, policy input operation.access).
const (
	AccessRead       Access = "read"
	AccessWrite      Access = "write"
	AccessExecute    Access = "execute"
	AccessBrowse     Access = "browse"
	AccessSubscribe  Access = "subscribe"
	AccessSession    Access = "session"
	AccessDiagnostic Access = "diagnostic"
	AccessProgram    Access = "program"
)

// ChangesState reports whether a call of this kind may change the state of the
// target. Such calls are forwarded only after their audit record is durable,
// and are denied when the audit log cannot take them. Diagnostic calls count:
// Modbus FC 8 can restart a device's communications or force it listen-only.
func (a Access) ChangesState() bool {
	switch a {
	case AccessRead, AccessBrowse, AccessSubscribe:
		return false
	}
	return true
}

// Source is the network peer of a session, with its inventory name if known.
type Source struct {
	IP    netip.Addr
	Port  uint16
	Name  string // workstation name from the source inventory
	Owner string // person or team responsible for the workstation
}

// Auth values of Principal.Auth.
const (
	AuthNone        = "none"        // nothing identified the caller
	AuthInventory   = "inventory"   // source address found in the inventory (Modbus has no user)
	AuthUsername    = "username"    // user name and password
	AuthX509        = "x509"        // X.509 user token
	AuthAnonymous   = "anonymous"   // explicitly anonymous
	AuthCertificate = "certificate" // client TLS / application certificate
)

// Principal is who the gateway believes is calling.
type Principal struct {
	User           string
	Auth           string
	Roles          []string
	CertThumbprint string
	ApplicationURI string
}

// Target is the device a call is meant for.
type Target struct {
	Name     string // listener or route name; the target name in policy
	Upstream string // upstream URL as configured
	UnitID   int    // Modbus unit id; -1 when the protocol has none
}

// Call is one function invocation, decoded and checked by an engine.
type Call struct {
	ID        string
	Time      time.Time // when the gateway received it (UTC)
	Target    Target
	Operation Operation
	// Request is the engine's re-encoded request for its Upstream (for Modbus,
	// the PDU built from the checked fields). The core never looks inside.
	Request any
	// RecordLost is set when the audit log could not take the call record:
	// the result record says so, being all the log has of the call.
	RecordLost bool
}

// Decision is the policy verdict for one call.
type Decision struct {
	Allow    bool
	Alert    bool
	Reasons  []string
	Revision string // policy revision the decision was made with
	ID       string // decision id
	// Mode is "enforce" or "monitor"; in monitor mode a deny is forwarded
	// with Alert set, and the record keeps the policy's own verdict.
	Mode string
	// Cached is set when the verdict came from the decision cache: the same
	// input (but for time and ids) was decided within the cache's TTL.
	Cached bool
	// Ticket names the change ticket that allowed the call, when the policy
	// says so.
	Ticket string
	// RecordOldValue asks the engine to read what a write is about to
	// change, so the result record holds the old value beside the new one
	// (OPC UA Write; the policy marks protected nodes with it).
	RecordOldValue bool
	// Error is why the policy gave no decision (the deny of a policy
	// error): the evidence says what failed, not only its code.
	Error string
}

// Reasons set by the gateway itself (stable codes, usable as metric labels).
const (
	ReasonPolicyError      = "policy_error"
	ReasonAuditUnavailable = "audit_unavailable"
	ReasonMonitorWouldDeny = "monitor_would_deny"
	ReasonAuditDegraded    = "audit_degraded"
	ReasonAuthFailed       = "auth_failed"
	// ReasonShuttingDown: a request read after the gateway began to stop,
	// not forwarded.
	ReasonShuttingDown = "shutting_down"
)

// Status of a Result.
type Status string

// Result statuses of the contract.
const (
	StatusOK        Status = "ok"        // forwarded and answered normally
	StatusDenied    Status = "denied"    // refused by the gateway
	StatusException Status = "exception" // answered with a protocol exception by the target
	StatusError     Status = "error"     // no usable answer from the target
)

// Result is the outcome of one call.
type Result struct {
	Status  Status
	Code    int    // protocol exception or status code; 0 when none
	Detail  string // short cause for the audit log, never sent to the client
	Latency time.Duration
	// Response is the engine's decoded response for the client.
	Response any
	// Fields are outcome values the engine adds to the result record under
	// their own names, such as an OPC UA Write's old_value.
	Fields []Field
}
