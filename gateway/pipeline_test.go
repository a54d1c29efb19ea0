package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

func newSession() *gateway.Session {
	return &gateway.Session{
		ID: gateway.NewID(), Started: time.Now().UTC(), Gateway: "gw", Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("127.0.0.1"), Port: 40000},
		Principal: gateway.Principal{Auth: gateway.AuthNone},
		Target:    gateway.Target{Name: "plc1", UnitID: -1},
		Log:       zerolog.Nop(),
	}
}

func call(access gateway.Access) *gateway.Call {
	return &gateway.Call{Target: gateway.Target{Name: "plc1", UnitID: 1},
		Operation: gateway.Operation{Function: "f", Access: access}}
}

func okUpstream() *gatewaytest.Upstream {
	return &gatewaytest.Upstream{Fn: func(context.Context, *gateway.Call) (*gateway.Result, error) {
		return &gateway.Result{Status: gateway.StatusOK, Response: []byte{3, 0}}, nil
	}}
}

func deny(reason string) gatewaytest.Decider {
	return func(context.Context, *gateway.Session, *gateway.Call) (gateway.Decision, error) {
		return gateway.Decision{Allow: false, Reasons: []string{reason}, ID: "d1", Revision: "r1"}, nil
	}
}

func TestPipelineAllowForwardsAndRecordsBoth(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	up := okUpstream()
	r := p.Handle(context.Background(), newSession(), call(gateway.AccessWrite), up)
	if r.Status != gateway.StatusOK || up.Calls() != 1 {
		t.Fatalf("status %s, upstream calls %d; want ok, 1", r.Status, up.Calls())
	}
	ev := a.Records()
	if len(ev) != 2 || ev[0].Event != "call" || ev[1].Event != "result" {
		t.Fatalf("records %v; want call, result", ev)
	}
	if ev[0].Call.ID == "" || ev[0].Call.ID != ev[1].Call.ID || ev[0].Call.Time.IsZero() {
		t.Fatalf("call id/time not set consistently: %+v", ev[0].Call)
	}
	if ev[0].Decision.Mode != "enforce" {
		t.Fatalf("mode %q, want enforce", ev[0].Decision.Mode)
	}
}

func TestPipelineDenyDoesNotForward(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: deny("outside_window"), Auditor: a}
	up := okUpstream()
	r := p.Handle(context.Background(), newSession(), call(gateway.AccessWrite), up)
	if r.Status != gateway.StatusDenied || up.Calls() != 0 {
		t.Fatalf("status %s, upstream calls %d; want denied, 0", r.Status, up.Calls())
	}
	res := a.Events("result")
	if len(res) != 1 || res[0].Result.Status != gateway.StatusDenied || res[0].Result.Detail != "outside_window" {
		t.Fatalf("result records %+v", res)
	}
}

func TestPipelineMonitorForwardsWithAlert(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: deny("outside_window"), Auditor: a, Monitor: true}
	up := okUpstream()
	r := p.Handle(context.Background(), newSession(), call(gateway.AccessWrite), up)
	if r.Status != gateway.StatusOK || up.Calls() != 1 {
		t.Fatalf("status %s, upstream calls %d; want ok, 1", r.Status, up.Calls())
	}
	d := a.Events("call")[0].Decision
	if d.Allow || !d.Alert || d.Mode != "monitor" || !slices.Contains(d.Reasons, gateway.ReasonMonitorWouldDeny) {
		t.Fatalf("decision %+v; want the policy's deny kept, alert, monitor, would-deny reason", d)
	}
}

func TestPipelinePolicyErrorDenies(t *testing.T) {
	cases := map[string]gatewaytest.Decider{
		"error": func(context.Context, *gateway.Session, *gateway.Call) (gateway.Decision, error) {
			return gateway.Decision{}, errors.New("eval_conflict_error")
		},
		"timeout": func(ctx context.Context, _ *gateway.Session, _ *gateway.Call) (gateway.Decision, error) {
			<-ctx.Done()
			return gateway.Decision{Allow: true}, ctx.Err()
		},
	}
	for name, dec := range cases {
		t.Run(name, func(t *testing.T) {
			a := &gatewaytest.Auditor{}
			p := &gateway.Pipeline{Decider: dec, Auditor: a, DecisionTimeout: 20 * time.Millisecond}
			up := okUpstream()
			start := time.Now()
			r := p.Handle(context.Background(), newSession(), call(gateway.AccessRead), up)
			if r.Status != gateway.StatusDenied || up.Calls() != 0 {
				t.Fatalf("status %s, upstream calls %d; want denied, 0", r.Status, up.Calls())
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Fatalf("decision took %v; the deadline did not hold", el)
			}
			d := a.Events("call")[0].Decision
			if d.Allow || !slices.Equal(d.Reasons, []string{gateway.ReasonPolicyError}) || d.ID == "" || d.Error == "" {
				t.Fatalf("decision %+v; want deny with policy_error, an id and the error", d)
			}
		})
	}
	t.Run("coded error", func(t *testing.T) {
		a := &gatewaytest.Auditor{}
		p := &gateway.Pipeline{Auditor: a, Decider: gatewaytest.Decider(func(context.Context, *gateway.Session, *gateway.Call) (gateway.Decision, error) {
			return gateway.Decision{}, codedErr("policy_undefined")
		})}
		p.Handle(context.Background(), newSession(), call(gateway.AccessRead), okUpstream())
		if d := a.Events("call")[0].Decision; !slices.Equal(d.Reasons, []string{gateway.ReasonPolicyError, "policy_undefined"}) {
			t.Fatalf("reasons %v; want policy_error then the error's code", d.Reasons)
		}
	})
}

type codedErr string

func (e codedErr) Error() string     { return "policy: " + string(e) }
func (e codedErr) ErrorCode() string { return string(e) }

func TestPipelineAuditFailure(t *testing.T) {
	for _, tc := range []struct {
		name     string
		access   gateway.Access
		denyRead bool
		want     gateway.Status
	}{
		{"write is denied", gateway.AccessWrite, false, gateway.StatusDenied},
		{"diagnostic is denied", gateway.AccessDiagnostic, false, gateway.StatusDenied},
		{"read goes on", gateway.AccessRead, false, gateway.StatusOK},
		{"read denied when configured", gateway.AccessRead, true, gateway.StatusDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &gatewaytest.Auditor{}
			a.SetFail(errors.New("no space left on device"))
			p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a, DenyReadsOnAuditFailure: tc.denyRead}
			up := okUpstream()
			r := p.Handle(context.Background(), newSession(), call(tc.access), up)
			if r.Status != tc.want {
				t.Fatalf("status %s, want %s", r.Status, tc.want)
			}
			if forwarded := up.Calls() == 1; forwarded != (tc.want == gateway.StatusOK) {
				t.Fatalf("forwarded %v with status %s", forwarded, r.Status)
			}
			if tc.want == gateway.StatusDenied && r.Detail != gateway.ReasonAuditUnavailable {
				t.Fatalf("detail %q, want %s", r.Detail, gateway.ReasonAuditUnavailable)
			}
			// the result record, written once the log takes records again,
			// says that the call's own record is not there
			if rs := a.Events("result"); len(rs) != 1 || !rs[0].Call.RecordLost {
				t.Errorf("result records %+v; want one, of a call marked RecordLost", rs)
			}
		})
	}
}

func TestPipelineUpstreamError(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	up := &gatewaytest.Upstream{Fn: func(context.Context, *gateway.Call) (*gateway.Result, error) {
		return &gateway.Result{Status: gateway.StatusError, Code: 0x0A}, errors.New("connection refused")
	}}
	r := p.Handle(context.Background(), newSession(), call(gateway.AccessRead), up)
	if r.Status != gateway.StatusError || r.Code != 0x0A || r.Detail != "connection refused" {
		t.Fatalf("result %+v", r)
	}
	if got := a.Events("result")[0].Result; got.Status != gateway.StatusError || got.Code != 0x0A {
		t.Fatalf("result record %+v", got)
	}
}

// An upstream that fails shows in the operational log, once for a run of
// failures.
func TestPipelineUpstreamErrorLogged(t *testing.T) {
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: &gatewaytest.Auditor{}}
	up := &gatewaytest.Upstream{Fn: func(context.Context, *gateway.Call) (*gateway.Result, error) {
		return &gateway.Result{Status: gateway.StatusError, Code: 0x0A}, errors.New("dial tcp 10.0.0.20:502: connect: connection refused")
	}}
	var log bytes.Buffer
	s := newSession()
	s.Log = zerolog.New(&log)
	for range 50 {
		p.Handle(context.Background(), s, call(gateway.AccessRead), up)
	}
	if n := strings.Count(log.String(), "upstream failed"); n != 1 || !strings.Contains(log.String(), "connection refused") {
		t.Errorf("%d upstream failure lines for 50 failed calls, want 1 naming the error:\n%s", n, log.String())
	}
}

func TestPipelineOpen(t *testing.T) {
	a := &gatewaytest.Auditor{}
	var seen *gateway.Call
	dec := gatewaytest.Decider(func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
		seen = c
		return gateway.Decision{Allow: false, Reasons: []string{"unknown_source"}}, nil
	})
	p := &gateway.Pipeline{Decider: dec, Auditor: a}
	if p.Open(context.Background(), newSession()) {
		t.Fatal("session opened against the policy")
	}
	if seen.Operation.Function != gateway.FunctionSessionOpen || seen.Operation.Access != gateway.AccessSession {
		t.Fatalf("decided %+v; want session.open", seen.Operation)
	}
	so := a.Events("session.open")
	if len(so) != 1 || so[0].Reason != "policy: unknown_source" || so[0].Decision == nil {
		t.Fatalf("session.open records %+v", so)
	}
	p.Monitor = true
	if !p.Open(context.Background(), newSession()) {
		t.Fatal("monitor mode refused a session")
	}
}

// cachedDecider answers from its "cache" when hit is set; Decide counts
// evaluations.
type cachedDecider struct {
	hit            bool
	lookups, evals int
}

func (c *cachedDecider) Decide(ctx context.Context, s *gateway.Session, call *gateway.Call) (gateway.Decision, error) {
	if d, hit := c.Cached(s, call); hit {
		return d, nil
	}
	return c.Evaluate(ctx, s, call)
}

func (c *cachedDecider) Evaluate(context.Context, *gateway.Session, *gateway.Call) (gateway.Decision, error) {
	c.evals++
	return gateway.Decision{Allow: true}, nil
}

func (c *cachedDecider) Cached(*gateway.Session, *gateway.Call) (gateway.Decision, bool) {
	c.lookups++
	return gateway.Decision{Allow: true, Cached: true}, c.hit
}

func TestPipelineAsksTheCacheFirst(t *testing.T) {
	for _, hit := range []bool{true, false} {
		a := &gatewaytest.Auditor{}
		dec := &cachedDecider{hit: hit}
		p := &gateway.Pipeline{Decider: dec, Auditor: a}
		p.Handle(context.Background(), newSession(), call(gateway.AccessRead), okUpstream())
		d := a.Events("call")[0].Decision
		if wantEvals := map[bool]int{true: 0, false: 1}[hit]; dec.evals != wantEvals || dec.lookups != 1 || d.Cached != hit || d.Mode != "enforce" {
			t.Fatalf("hit %v: %d evaluations, %d cache lookups (want 1), decision %+v", hit, dec.evals, dec.lookups, d)
		}
	}
}

func TestPipelineAdmitFinish(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	s := newSession()
	c := call(gateway.AccessWrite)
	d, r := p.Admit(context.Background(), s, c)
	if r != nil || !d.Allow || c.ID == "" {
		t.Fatalf("Admit: decision %+v result %+v; want allowed, no result", d, r)
	}
	if ev := a.Records(); len(ev) != 1 || ev[0].Event != "call" {
		t.Fatalf("records after Admit %v; want the call record only", ev)
	}
	p.Finish(context.Background(), s, c, &gateway.Result{Status: gateway.StatusOK, Code: 0})
	if res := a.Events("result"); len(res) != 1 || res[0].Call.ID != c.ID {
		t.Fatalf("result records %+v", res)
	}

	// Denied: the result is recorded by Admit.
	a = &gatewaytest.Auditor{}
	p = &gateway.Pipeline{Decider: deny("no"), Auditor: a}
	if _, r := p.Admit(context.Background(), s, call(gateway.AccessWrite)); r == nil || r.Status != gateway.StatusDenied {
		t.Fatalf("denied Admit result %+v", r)
	}
	if res := a.Events("result"); len(res) != 1 || res[0].Result.Status != gateway.StatusDenied {
		t.Fatalf("result records %+v", res)
	}

	// Audit failure: a state-changing call is refused, fail closed.
	a = &gatewaytest.Auditor{Fail: errors.New("disk full")}
	p = &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	if _, r := p.Admit(context.Background(), s, call(gateway.AccessWrite)); r == nil || r.Detail != gateway.ReasonAuditUnavailable {
		t.Fatalf("Admit with a failing audit log: %+v", r)
	}
}

func TestPipelineAuthFailedFallback(t *testing.T) {
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	s := newSession()
	s.Principal.User = "mallory"
	p.AuthFailed(context.Background(), s, "bad password")
	rej := a.Events("request.rejected")
	if len(rej) != 1 || rej[0].Reason != gateway.ReasonAuthFailed || rej[0].Call.Operation.Function != gateway.FunctionSessionAuthFailed {
		t.Fatalf("records %+v", a.Records())
	}
}

// An audit log that takes no records is said once every 10 s in the
// operational log, not once per call.
func TestPipelineAuditFailureLoggedOnce(t *testing.T) {
	a := &gatewaytest.Auditor{}
	a.SetFail(errors.New("no space left on device"))
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a}
	var log bytes.Buffer
	s := newSession()
	s.Log = zerolog.New(&log)
	for range 200 {
		if r := p.Handle(context.Background(), s, call(gateway.AccessWrite), okUpstream()); r.Status != gateway.StatusDenied {
			t.Fatalf("status %s", r.Status)
		}
	}
	if n := strings.Count(log.String(), "audit log cannot take the call record"); n != 1 {
		t.Errorf("%d log lines for 200 refused calls, want 1", n)
	}
}

// Every lets a repeating line through once per 10 s and counts the rest.
func TestEveryHoldsBackRepeats(t *testing.T) {
	var e gateway.Every
	t0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	if n, ok := e.Allow(t0); !ok || n != 0 {
		t.Fatalf("first: %d %v", n, ok)
	}
	for i := range 150 {
		if _, ok := e.Allow(t0.Add(time.Duration(i) * 60 * time.Millisecond)); ok {
			t.Fatalf("repeat %d within 10 s logged", i)
		}
	}
	if n, ok := e.Allow(t0.Add(10 * time.Second)); !ok || n != 150 {
		t.Fatalf("after 10 s: %d %v, want 150 held back", n, ok)
	}
}
