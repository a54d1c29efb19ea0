package gateway

import (
	"context"
	"net"
)

// Engine terminates one protocol. Serve owns conn for the life of the
// session: it reads requests, builds a Call for each, passes it to the
// Pipeline, and answers in its own protocol. It returns when the client
// leaves, the session must end (idle, protocol error), or ctx is done; the
// listener closes conn afterwards. The error says why the session ended and
// goes into the session.close record; nil is a normal end.
type Engine interface {
	Name() string
	Serve(ctx context.Context, conn net.Conn, s *Session) error
	// Close releases upstream connections; called once after the listener stops.
	Close() error
}

// SessionOpener is an Engine whose protocol has sessions of its own inside a
// connection (OPC UA: a session is created and activated over a secure
// channel, and only then is the user known). When OpensSessions is true the
// listener does not decide session.open nor write session records for the
// connection: the engine calls Pipeline.Open for each protocol session once
// its identity is known, and Auditor.SessionEnd when it ends.
type SessionOpener interface {
	OpensSessions() bool
}

// Refuser is an Engine whose protocol has words for a connection the
// listener will not serve (over a limit, or its session.open refused by the
// policy; OPC UA: an ERR message). Refuse tells the client
// why, in at most a few seconds; the listener has already recorded the
// refusal and closes conn when Refuse returns. Engines without them are
// closed without a word.
type Refuser interface {
	Refuse(conn net.Conn, reason string)
}

// Decider is the policy engine (implemented in policy/). It returns the
// policy's verdict for one call; an error means no verdict, and the pipeline
// denies the call with ReasonPolicyError, followed by the error's code when
// it is an ErrorCoder.
type Decider interface {
	Decide(ctx context.Context, s *Session, c *Call) (Decision, error)
}

// Revisioner is a Decider that names the policy it decides with. An engine
// that keeps a decision for a while (an OPC UA monitored item goes on
// delivering values) decides it again when the revision changes.
type Revisioner interface {
	Revision() string
}

// CachedDecider is a Decider that can answer some calls from a cache of
// earlier verdicts. The pipeline asks Cached first and, only on a miss,
// Evaluate (with its deadline), which does not look in the cache again.
type CachedDecider interface {
	Decider
	Cached(s *Session, c *Call) (Decision, bool)
	Evaluate(ctx context.Context, s *Session, c *Call) (Decision, error)
}

// ErrorCoder is an error with a short stable code (policy_timeout,
// policy_undefined …), usable as a reason and a metric label.
type ErrorCoder interface {
	error
	ErrorCode() string
}

// Auditor writes the record of truth (implemented in audit/). Call returns an
// error when the record could not be written (durably, for a state-changing
// call); the pipeline then fails closed. The other hooks log their own
// failures: there is nothing a caller could do differently.
type Auditor interface {
	// SessionStart records a session open; refused is non-empty when the
	// gateway refused it (connection limit, policy), d is nil when no policy
	// decision was taken.
	SessionStart(ctx context.Context, s *Session, d *Decision, refused string)
	Call(ctx context.Context, s *Session, c *Call, d Decision) error
	Result(ctx context.Context, s *Session, c *Call, r *Result)
	// Rejected records a request refused before any policy decision because
	// it is malformed or exceeds a bound; c holds what could be decoded.
	Rejected(ctx context.Context, s *Session, c *Call, reason, detail, response string)
	SessionEnd(ctx context.Context, s *Session, err error)
}

// AuthFailureAuditor is an Auditor that records failed logins as their own
// event (session.auth_failed).
type AuthFailureAuditor interface {
	AuthFailed(ctx context.Context, s *Session, reason, detail string)
}

// RefusalAuditor is an Auditor that records a connection refused before any
// session (connection limits) with repeats, the number of refusals of the
// same source and reason not recorded before it: a refusing listener
// records one per source and reason per interval. An Auditor without it
// gets SessionStart with the reason, and the count is only in the
// operational log.
type RefusalAuditor interface {
	ConnRefused(ctx context.Context, s *Session, reason string, repeats int)
}

// RejectionSummaryAuditor is an Auditor that records the rejected requests
// a listener counted rather than recorded one by one (a source over
// Limits.RejectedPerSource in a window) as one summary
// (request.rejected_suppressed). A listener caps the request.rejected
// records of a source only when its Auditor has it; with another Auditor
// every rejection is recorded in full.
type RejectionSummaryAuditor interface {
	RejectedSummary(ctx context.Context, sum *RejectedSummary)
}

// ConfigWarner is an Engine whose configuration is valid but holds
// something that does not do what it seems to; `interlock check` prints
// each warning. A warning begins with the key in the engine's section it
// is about ("routes[1].unit_ids: …").
type ConfigWarner interface {
	ConfigWarnings() []string
}

// Upstream carries an allowed call to the target and returns its answer. A
// non-nil error means no usable answer; the returned Result, when not nil,
// already holds the protocol's status for the client (such as Modbus 0x0A or
// 0x0B).
type Upstream interface {
	RoundTrip(ctx context.Context, c *Call) (*Result, error)
	Close() error
}

// Identifier resolves who is behind a new connection: the source inventory
// for Modbus, client certificates where a protocol has them (CertIdentifier,
// given the *tls.Conn of a TLS listener). It fills s.Source.Name,
// s.Source.Owner and s.Principal, and s.SecurityPolicy when the connection
// has one (the TLS version).
type Identifier interface {
	Identify(ctx context.Context, conn net.Conn, s *Session)
}
