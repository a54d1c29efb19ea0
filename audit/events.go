package audit

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// The gateway.Auditor hooks. Only Call reports a failure to its caller: the
// pipeline denies a state-changing call whose record is not on disk. The
// other hooks have nobody to tell and log the failure instead.

// SessionStart writes session.open; refused is the reason when the gateway
// refused the session, d the session.open decision when one was taken.
func (w *Writer) SessionStart(ctx context.Context, s *gateway.Session, d *gateway.Decision, refused string) {
	w.sessionOpen(ctx, s, d, refused, 0)
}

// sessionOpen writes session.open, with repeats_not_recorded when repeats
// is not 0.
func (w *Writer) sessionOpen(ctx context.Context, s *gateway.Session, d *gateway.Decision, refused string, repeats int) {
	e, err := w.begin(EventSessionOpen)
	if err != nil {
		w.logFailure(EventSessionOpen, s.ID, err)
		return
	}
	sessionHead(e, s, refused == "")
	if refused != "" {
		e.Str(FieldReason, refused)
	}
	if repeats > 0 {
		e.Int(FieldRepeatsNotRecorded, repeats)
	}
	if d != nil {
		e.Object(FieldDecision, decisionObject{d})
	}
	if err := w.commit(ctx, e, false); err != nil {
		w.logFailure(EventSessionOpen, s.ID, err)
	}
}

// sessionHead adds what a session record begins with: the session, who,
// from where, to which target, and whether it was let in.
func sessionHead(e *zerolog.Event, s *gateway.Session, success bool) *zerolog.Event {
	return e.Str(FieldSessionID, s.ID).
		Str(FieldListener, s.Listener).
		Str(FieldProtocol, s.Protocol).
		Object(FieldSession, sessionObject{s}).
		Object(FieldSource, sourceObject{&s.Source}).
		Object(FieldPrincipal, principalObject{&s.Principal}).
		Object(FieldTarget, targetObject{&s.Target}).
		Bool(FieldSuccess, success)
}

// Call writes the call record before the call is forwarded. The record of a
// state-changing call is on disk when Call returns nil.
func (w *Writer) Call(ctx context.Context, s *gateway.Session, c *gateway.Call, d gateway.Decision) error {
	e, err := w.begin(EventCall)
	if err != nil {
		return err
	}
	w.dec = d
	e.Str(FieldCallID, c.ID).
		Str(FieldSessionID, s.ID).
		Str(FieldListener, s.Listener)
	appendTime(e, FieldCallTime, c.Time)
	e.Object(FieldSource, sourceObject{&s.Source}).
		Object(FieldPrincipal, principalObject{&s.Principal}).
		Object(FieldTarget, targetObject{&c.Target}).
		Str(FieldProtocol, s.Protocol).
		Object(FieldOperation, operationObject{&c.Operation}).
		Object(FieldDecision, decisionObject{&w.dec})
	w.dec = gateway.Decision{}
	return w.commit(ctx, e, c.Operation.Access.ChangesState())
}

// Result writes the outcome of a call.
func (w *Writer) Result(ctx context.Context, s *gateway.Session, c *gateway.Call, r *gateway.Result) {
	e, err := w.begin(EventResult)
	if err != nil {
		w.logFailure(EventResult, s.ID, err)
		return
	}
	e.Str(FieldCallID, c.ID).
		Str(FieldSessionID, s.ID).
		Str(FieldFunction, c.Operation.Function).
		Str(FieldStatus, string(r.Status))
	if r.Code != 0 {
		e.Int(FieldCode, r.Code)
	}
	if r.Detail != "" {
		e.Str(FieldDetail, r.Detail)
	}
	e.Int64(FieldLatencyUS, r.Latency.Microseconds())
	if c.RecordLost {
		e.Bool(FieldCallRecordLost, true)
	}
	if len(r.Fields) > 0 {
		appendFields(e, r.Fields)
	}
	if err := w.commitDeferred(ctx, e); err != nil {
		w.logFailure(EventResult, s.ID, err)
	}
}

// Rejected writes request.rejected for a request refused before any policy
// decision, with whatever of it could be decoded.
func (w *Writer) Rejected(ctx context.Context, s *gateway.Session, c *gateway.Call, reason, detail, response string) {
	e, err := w.begin(EventRequestRejected)
	if err != nil {
		w.logFailure(EventRequestRejected, s.ID, err)
		return
	}
	target := &c.Target
	if target.Name == "" && target.Upstream == "" {
		target = &s.Target // the engine decoded no target of its own
	}
	e.Str(FieldCallID, c.ID).
		Str(FieldSessionID, s.ID).
		Str(FieldListener, s.Listener).
		Object(FieldSource, sourceObject{&s.Source}).
		Object(FieldPrincipal, principalObject{&s.Principal}).
		Object(FieldTarget, targetObject{target}).
		Str(FieldProtocol, s.Protocol)
	if c.Operation.Function != "" || len(c.Operation.Fields) > 0 {
		e.Object(FieldOperation, operationObject{&c.Operation})
	}
	e.Str(FieldReason, reason).
		Str(FieldDetail, detail).
		Str(FieldResponse, response)
	if err := w.commit(ctx, e, false); err != nil {
		w.logFailure(EventRequestRejected, s.ID, err)
	}
}

// AuthFailed writes session.auth_failed for a failed login; the principal
// holds what the caller claimed (the user name tried).
func (w *Writer) AuthFailed(ctx context.Context, s *gateway.Session, reason, detail string) {
	e, err := w.begin(EventSessionAuthFailed)
	if err != nil {
		w.logFailure(EventSessionAuthFailed, s.ID, err)
		return
	}
	sessionHead(e, s, false).
		Str(FieldReason, reason).
		Str(FieldDetail, detail)
	if err := w.commit(ctx, e, false); err != nil {
		w.logFailure(EventSessionAuthFailed, s.ID, err)
	}
}

// SessionEnd writes session.close; err is why the session ended, nil for a
// normal end.
func (w *Writer) SessionEnd(ctx context.Context, s *gateway.Session, err error) {
	d := time.Since(s.Started)
	e, werr := w.begin(EventSessionClose)
	if werr != nil {
		w.logFailure(EventSessionClose, s.ID, werr)
		return
	}
	e.Str(FieldSessionID, s.ID).
		Str(FieldListener, s.Listener).
		Object(FieldSource, sourceObject{&s.Source}).
		Object(FieldPrincipal, principalObject{&s.Principal}).
		Int64(FieldDurationMS, d.Milliseconds())
	if err != nil {
		e.Str(FieldError, err.Error())
	}
	if werr := w.commit(ctx, e, false); werr != nil {
		w.logFailure(EventSessionClose, s.ID, werr)
	}
}

// logFailure tells the operator about a record that was not written, at
// most once every 10 s with the count held back: while the log takes no
// records every call would log a line (audit.write_failed counts them in
// the log once it takes records again).
func (w *Writer) logFailure(event, sessionID string, err error) {
	if n, ok := w.recordErrs.Allow(time.Now()); ok {
		w.log.Error().Err(err).Str(FieldEvent, event).Str(FieldSessionID, sessionID).Int("repeats_not_logged", n).
			Msg("audit record not written")
	}
}
