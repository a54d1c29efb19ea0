package audit

import "github.com/interlock-ics/interlock/gateway"

// Events of the audit record contract (ARCHITECTURE.md, "Contract: audit
// record"). Gateway-level events written through Writer.Record pick their own
// names in the same dotted style (gateway.start, policy.load …).
const (
	EventSessionOpen     = gateway.FunctionSessionOpen
	EventCall            = "call"
	EventResult          = "result"
	EventRequestRejected = "request.rejected"
	// EventRequestRejectedSuppressed sums up the request.rejected records
	// of one source a listener did not write one by one in a window.
	EventRequestRejectedSuppressed = "request.rejected_suppressed"
	EventSessionClose              = "session.close"
	// EventSessionAuthFailed is a failed login (OPC UA ActivateSession).
	EventSessionAuthFailed = gateway.FunctionSessionAuthFailed
	EventRecovered         = "audit.recovered"

	// The audit log's own events (see doc.go).
	EventCheckpoint = "audit.checkpoint" // signed: the log up to the record before it is as written
	EventRotated    = "audit.rotated"    // the first record of a live file that follows a rotated one
	EventRetention  = "audit.retention"  // a rotated file was deleted by retention
	EventCapacity   = "audit.capacity"   // the audit filesystem crossed the warning fill level
	// EventWriteFailed is written once the log takes records again after
	// records could not be written (a full disk).
	EventWriteFailed = "audit.write_failed"

	// Gateway-level events the verifier reads to tell restarts apart.
	EventGatewayStart = "gateway.start"
	EventGatewayStop  = "gateway.stop"
	// EventGatewayStartFailed ends a start that failed after the log was
	// opened (a port in use, a bad upstream): the records before it
	// (policy.load …) belong to a gateway that never served.
	EventGatewayStartFailed = "gateway.start_failed"
)

// Field names of the audit record. zerolog does not de-duplicate keys and the
// record is a contract, so every name is written from here; names shared with
// the policy input come from gateway/keys.go so both agree.
const (
	// Envelope, in record order: seq, time, event, gateway … prev, hash.
	FieldSeq     = "seq"
	FieldTime    = gateway.KeyTime
	FieldEvent   = "event"
	FieldGateway = gateway.KeyGateway
	FieldPrev    = "prev"
	FieldHash    = "hash"

	FieldSessionID = "session_id"
	FieldCallID    = "call_id"
	FieldCallTime  = "call_time"
	FieldListener  = gateway.KeyListener
	FieldProtocol  = gateway.KeyProtocol
	FieldSession   = gateway.KeySession
	FieldSource    = gateway.KeySource
	FieldPrincipal = gateway.KeyPrincipal
	FieldTarget    = gateway.KeyTarget
	FieldOperation = gateway.KeyOperation

	// session object
	FieldID             = gateway.KeyID
	FieldStarted        = gateway.KeyStarted
	FieldSecurityPolicy = gateway.KeySecurityPolicy
	FieldSecurityMode   = gateway.KeySecurityMode
	FieldResumed        = gateway.KeyResumed

	// source object
	FieldIP    = gateway.KeyIP
	FieldPort  = gateway.KeyPort
	FieldName  = gateway.KeyName
	FieldOwner = gateway.KeyOwner

	// principal object
	FieldUser           = gateway.KeyUser
	FieldAuth           = gateway.KeyAuth
	FieldRoles          = gateway.KeyRoles
	FieldCertThumbprint = gateway.KeyCertThumbprint
	FieldApplicationURI = gateway.KeyApplicationURI

	// target object (FieldName is the target name)
	FieldUpstream = gateway.KeyUpstream
	FieldUnitID   = gateway.KeyUnitID

	// operation object; the engine's fields follow under their own names
	FieldFunction = gateway.KeyFunction
	FieldAccess   = gateway.KeyAccess

	// decision object
	FieldDecision       = "decision"
	FieldAllow          = "allow"
	FieldAlert          = "alert"
	FieldReasons        = "reasons"
	FieldPolicyRevision = "policy_revision"
	FieldDecisionID     = "decision_id"
	FieldMode           = "mode"
	FieldCached         = "cached"           // present (true) only for a verdict from the decision cache
	FieldTicket         = "ticket"           // the change ticket that allowed the call, when the policy names one
	FieldRecordOldValue = "record_old_value" // present (true) when the policy asked for a write's old value

	// session.open
	FieldSuccess = "success"
	FieldReason  = "reason"

	// result (FieldFunction names the call's function)
	FieldStatus    = "status"
	FieldCode      = gateway.KeyCode
	FieldDetail    = "detail"
	FieldLatencyUS = "latency_us"
	// FieldCallRecordLost marks the result of a call whose call record the
	// log could not take (it was denied, or a read forwarded with an alert).
	FieldCallRecordLost = "call_record_lost"

	// request.rejected (also FieldReason, FieldDetail)
	FieldResponse = "response"

	// request.rejected_suppressed (also FieldListener, FieldProtocol,
	// FieldSource, FieldTarget, FieldReasons: reason → count)
	FieldCount       = "count"
	FieldRecorded    = "recorded"
	FieldLimit       = "limit"
	FieldWindowStart = "window_start"
	FieldWindowMS    = "window_ms"
	FieldFirstTime   = "first_time"
	FieldLastTime    = "last_time"
	FieldCause       = "cause" // window_end or shutdown

	// session.close
	FieldDurationMS = "duration_ms"
	FieldError      = "error"

	// audit.recovered
	FieldTruncatedBytes  = "truncated_bytes"
	FieldTruncatedOffset = "truncated_offset"

	// gateway.start, gateway.stop, audit.checkpoint
	FieldBootID = "boot_id"

	// audit.checkpoint: the signed object and its signature
	FieldCheckpoint = "checkpoint"
	FieldKeyID      = "key_id"
	FieldEvery      = "every"
	FieldIntervalMS = "interval_ms"
	FieldSignature  = "signature"
	// FieldReason (count, interval, rotation, open, shutdown); checkpoint
	// also holds seq, hash and time under the envelope's names.

	// audit.rotated (also FieldReason: size, time, recovered)
	FieldPreviousFile     = "previous_file"
	FieldPreviousFirstSeq = "previous_first_seq"
	FieldPreviousLastSeq  = "previous_last_seq"

	// audit.retention (also FieldReason: age, size)
	FieldFile        = "file"
	FieldFirstSeq    = "first_seq"
	FieldLastSeq     = "last_seq"
	FieldLastHash    = "last_hash"
	FieldBytes       = "bytes"
	FieldRetainDays  = "retain_days"
	FieldRetainBytes = "retain_bytes"

	// audit.write_failed (also FieldError, the last failure)
	FieldRecordsLost = "records_lost"
	FieldSince       = "since"

	// audit.capacity
	FieldState           = "state" // warning, or ok when the fill level dropped again
	FieldPath            = "path"
	FieldFillPercent     = "fill_percent"
	FieldWarnFillPercent = "warn_fill_percent"
	FieldSizeBytes       = "size_bytes"
	FieldUsedBytes       = "used_bytes"
	FieldFreeBytes       = "free_bytes"
	FieldMeasuredAt      = "measured_at" // audit.capacity: when the fill was measured (the record may come later)
)
