package policy

import (
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/interlock-ics/interlock/gateway"
)

// Error codes of a failed decision: short, stable, usable as metric labels.
// Every one of them means deny.
const (
	CodeUndefined   = "policy_undefined"    // the decision query has no value for this input
	CodeEvalError   = "policy_eval_error"   // Rego runtime error (conflict, builtin error, …)
	CodeTimeout     = "policy_timeout"      // evaluation stopped at the context deadline
	CodeCanceled    = "policy_canceled"     // the caller gave up before the evaluation ended
	CodeBadDecision = "policy_bad_decision" // the value is not {"allow": bool, "alert"?: bool, "reasons"?: [string], "ticket"?: string, "record_old_value"?: bool}
	CodeBadInput    = "policy_bad_input"    // an operation field could not be turned into policy input
)

// Error is a failed decision.
type Error struct {
	Code string
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Code
	}
	return e.Code + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the stable code; the pipeline records it beside
// policy_error (gateway.ErrorCoder).
func (e *Error) ErrorCode() string { return e.Code }

// Code returns the code of a decision error, or "" when err is not one.
func Code(err error) string {
	if pe, ok := errors.AsType[*Error](err); ok {
		return pe.Code
	}
	return ""
}

var (
	keyAllow   = ast.StringTerm("allow")
	keyAlert   = ast.StringTerm("alert")
	keyReasons = ast.StringTerm("reasons")
	keyTicket  = ast.StringTerm("ticket")
	keyOldVal  = ast.StringTerm("record_old_value")
)

// termValue hands results back as AST values: the decision is checked on the
// AST, which saves converting every result to Go maps.
func termValue(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// decision checks the strict shape of the result: exactly one value, an
// object with a boolean allow; alert and reasons optional; other keys ignored.
func decision(rs rego.ResultSet) (gateway.Decision, *Error) {
	switch {
	case len(rs) == 0:
		return gateway.Decision{}, &Error{Code: CodeUndefined, Err: errors.New("decision is undefined for this input")}
	case len(rs) > 1:
		return gateway.Decision{}, bad("query has %d results, want exactly one", len(rs))
	case len(rs[0].Expressions) != 1:
		return gateway.Decision{}, bad("query has %d expressions, want exactly one", len(rs[0].Expressions))
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return gateway.Decision{}, bad("query value is %T, want an object", rs[0].Expressions[0].Value)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return gateway.Decision{}, bad("decision is %s %s, want an object", ast.ValueName(v), short(v))
	}
	var d gateway.Decision
	allow := obj.Get(keyAllow)
	if allow == nil {
		return gateway.Decision{}, bad("decision has no \"allow\"")
	}
	b, ok := allow.Value.(ast.Boolean)
	if !ok {
		return gateway.Decision{}, bad("decision \"allow\" is %s %s, want a boolean", ast.ValueName(allow.Value), short(allow.Value))
	}
	d.Allow = bool(b)
	if alert := obj.Get(keyAlert); alert != nil {
		b, ok := alert.Value.(ast.Boolean)
		if !ok {
			return gateway.Decision{}, bad("decision \"alert\" is %s %s, want a boolean", ast.ValueName(alert.Value), short(alert.Value))
		}
		d.Alert = bool(b)
	}
	d.Reasons = []string{}
	if r := obj.Get(keyReasons); r != nil {
		var err *Error
		if d.Reasons, err = reasons(r.Value); err != nil {
			return gateway.Decision{}, err
		}
	}
	if t := obj.Get(keyTicket); t != nil {
		s, ok := t.Value.(ast.String)
		if !ok {
			return gateway.Decision{}, bad("decision \"ticket\" is %s %s, want the id of the ticket that allowed the call", ast.ValueName(t.Value), short(t.Value))
		}
		d.Ticket = string(s)
	}
	if r := obj.Get(keyOldVal); r != nil {
		b, ok := r.Value.(ast.Boolean)
		if !ok {
			return gateway.Decision{}, bad("decision \"record_old_value\" is %s %s, want a boolean", ast.ValueName(r.Value), short(r.Value))
		}
		d.RecordOldValue = bool(b)
	}
	return d, nil
}

// reasons accepts an array or a set of strings: a set is what a partial rule
// such as `reasons contains msg if …` produces, and is an array in JSON.
func reasons(v ast.Value) ([]string, *Error) {
	var ts []*ast.Term
	switch v := v.(type) {
	case *ast.Array:
		out := make([]string, v.Len())
		for i := range out {
			s, err := reason(v.Elem(i))
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case ast.Set:
		ts = v.Slice() // sorted, so the audit record is stable
	default:
		return nil, bad("decision \"reasons\" is %s %s, want an array of strings", ast.ValueName(v), short(v))
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		s, err := reason(t)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func reason(t *ast.Term) (string, *Error) {
	s, ok := t.Value.(ast.String)
	if !ok {
		return "", bad("decision \"reasons\" holds %s %s, want only strings", ast.ValueName(t.Value), short(t.Value))
	}
	return string(s), nil
}

func bad(format string, args ...any) *Error {
	return &Error{Code: CodeBadDecision, Err: fmt.Errorf(format, args...)}
}

// short renders a value for an error message, cut so a huge document cannot
// flood the log.
func short(v ast.Value) string {
	const maxLen = 80
	s := v.String()
	if len(s) > maxLen {
		s = s[:maxLen] + "…"
	}
	return s
}
