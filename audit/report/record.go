package report

import (
	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/policy"
)

// Events the report reads besides those of the gateway.Auditor hooks.
// Events it does not know are counted by name, never dropped silently.
const (
	eventSessionAuthFailed = "session.auth_failed"
	eventGatewayStart      = audit.EventGatewayStart
	eventGatewayStop       = audit.EventGatewayStop
	eventPolicyLoad        = "policy.load"
	eventPolicyLoadFailed  = "policy.load_failed"
	eventUsersLoad         = "users.load"        // an OPC UA listener's users file loaded again with a user changed
	eventUsersLoadFailed   = "users.load_failed" // it did not load; the users in force stay
	eventTLSLoad           = "tls.load"          // a Modbus/TCP Security listener's certificate or trust loaded again, changed
	eventTLSLoadFailed     = "tls.load_failed"   // its files did not load; the certificate and trust in force stay
	eventPKILoad           = "pki.load"          // an OPC UA listener's open sessions checked against its trust lists, changed or not (trust_changed)
	eventPKILoadFailed     = "pki.load_failed"   // its certificate store was not read; open sessions not checked again
	eventCheckpoint        = audit.EventCheckpoint
	eventRotated           = audit.EventRotated
	eventRetention         = audit.EventRetention
	eventCapacity          = audit.EventCapacity
	eventTicketOpen        = policy.TicketOpen
	eventTicketApprove     = policy.TicketApprove
	eventTicketClose       = policy.TicketClose
	eventTicketLoad        = policy.TicketLoad
	eventTicketLoadRefused = "ticket.load_refused" // an entry of the ticket file not loaded at start, and why
	eventTicketRefused     = "ticket.refused"      // an admin request refused: action, by, reason
	eventStartFailed       = audit.EventGatewayStartFailed
)

// A Modbus listener's client side of Modbus/TCP Security toward its PLCs.
const (
	eventUpTLSLoad       = "upstream_tls.load"        // its client certificate, CAs or CRLs loaded again, changed
	eventUpTLSLoadFailed = "upstream_tls.load_failed" // its files did not load; the certificate, CAs and CRLs in force stay
)

// record is one audit line as the report reads it: the union of the fields
// of the events it knows. Fields it does not name are skipped by the decoder.
// recSession is what the report reads of a record's session object: how
// often the session moved to a new secure channel (session.open).
type recSession struct {
	Resumed int64 `json:"resumed"`
}

type record struct {
	Seq       uint64      `json:"seq"`
	Time      string      `json:"time"`
	Event     string      `json:"event"`
	Gateway   string      `json:"gateway"`
	CallID    string      `json:"call_id"`
	SessionID string      `json:"session_id"`
	Listener  string      `json:"listener"`
	CallTime  string      `json:"call_time"`
	Source    *recSource  `json:"source"`
	Session   *recSession `json:"session"`
	Principal *recPrinc   `json:"principal"`
	Target    *recTarget  `json:"target"`
	Protocol  string      `json:"protocol"`
	Operation *recOp      `json:"operation"`
	Decision  *recDecide  `json:"decision"`
	Success   *bool       `json:"success"`
	Reason    string      `json:"reason"`
	Function  string      `json:"function"`
	Status    string      `json:"status"`
	Code      int64       `json:"code"`
	Detail    string      `json:"detail"`
	LatencyUS int64       `json:"latency_us"`
	Response  string      `json:"response"`
	Duration  *int64      `json:"duration_ms"`
	Error     string      `json:"error"`
	Truncated int64       `json:"truncated_bytes"`
	Version   string      `json:"version"`
	BootID    string      `json:"boot_id"`
	Revision  string      `json:"policy_revision"`
	Mode      string      `json:"policy_mode"`
	Signature string      `json:"bundle_signature"` // policy.load of a bundle
	Files     []string    `json:"files"`
	Path      string      `json:"path"`
	TicketID  string      `json:"ticket_id"`
	By        string      `json:"by"`
	Action    string      `json:"action"` // ticket.refused
	Ticket    *recTicket  `json:"ticket"`
	Checkpt   *recCheckpt `json:"checkpoint"`
	State     string      `json:"state"`
	Fill      float64     `json:"fill_percent"`
	WarnFill  float64     `json:"warn_fill_percent"`

	// request.rejected_suppressed: the rejections counted, by reason.
	Count   int64               `json:"count"`
	Reasons []query.ReasonCount `json:"-"`
}

// The ticket of a ticket.open record and the signed object of an
// audit.checkpoint record, as the decoder reads them.
type (
	recTicket  = query.Ticket
	recCheckpt = query.Checkpoint
)

type recSource struct {
	IP    string `json:"ip"`
	Port  int    `json:"port"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

type recPrinc struct {
	User  string   `json:"user"`
	Auth  string   `json:"auth"`
	Roles []string `json:"roles"`
}

type recTarget struct {
	Name     string `json:"name"`
	Upstream string `json:"upstream"`
	UnitID   *int   `json:"unit_id"`
}

type recOp struct {
	Function string `json:"function"`
	Access   string `json:"access"`
	Code     *int   `json:"code"`
}

type recDecide struct {
	Allow    bool     `json:"allow"`
	Alert    bool     `json:"alert"`
	Reasons  []string `json:"reasons"`
	Revision string   `json:"policy_revision"`
	Mode     string   `json:"mode"`
	Cached   bool     `json:"cached"`
	Ticket   string   `json:"ticket"`
}

// changesState is the gateway's own rule: anything but read, browse and
// subscribe changes the target's state (write, execute, program,
// diagnostic, and any access the gateway does not know).
func changesState(access string) bool {
	return gateway.Access(access).ChangesState()
}

// Event names of the gateway.Auditor hooks, from the record contract.
const (
	eventSessionOpen  = audit.EventSessionOpen
	eventCall         = audit.EventCall
	eventResult       = audit.EventResult
	eventRejected     = audit.EventRequestRejected
	eventSessionClose = audit.EventSessionClose
	eventRecovered    = audit.EventRecovered

	// eventRejectedCounted counts a source's rejections beyond those
	// recorded one by one in a window.
	eventRejectedCounted = audit.EventRequestRejectedSuppressed
)
