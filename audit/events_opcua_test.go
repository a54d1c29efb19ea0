package audit

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

// A failed login, a decision asking for the old value and a result with
// outcome fields, as the OPC UA engine writes them.
func TestAuthFailedAndOutcomeFields(t *testing.T) {
	l := newTestLog(t)
	w := l.open(t)
	ctx := context.Background()
	s := testSession()
	s.Protocol = "opcua"
	s.Principal = gateway.Principal{User: "mallory", Auth: gateway.AuthUsername}
	var _ gateway.AuthFailureAuditor = w
	w.AuthFailed(ctx, s, gateway.ReasonAuthFailed, "bad password")
	d := allow()
	d.RecordOldValue = true
	wc := writeCall("c1")
	if err := w.Call(ctx, s, wc, d); err != nil {
		t.Fatal(err)
	}
	w.Result(ctx, s, wc, &gateway.Result{Status: gateway.StatusOK,
		Fields: []gateway.Field{{Key: "old_value", Kind: gateway.KindAny, Any: 41.5}}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	l.verify(t, 3)
	lines := l.lines(t)
	var af struct {
		Event     string `json:"event"`
		Success   *bool  `json:"success"`
		Reason    string `json:"reason"`
		Detail    string `json:"detail"`
		Principal struct {
			User string `json:"user"`
		} `json:"principal"`
	}
	if err := json.Unmarshal(lines[0], &af); err != nil {
		t.Fatal(err)
	}
	if af.Event != "session.auth_failed" || af.Success == nil || *af.Success || af.Reason != "auth_failed" ||
		af.Detail != "bad password" || af.Principal.User != "mallory" {
		t.Errorf("auth_failed record: %s", lines[0])
	}
	var call struct {
		Decision struct {
			RecordOldValue bool `json:"record_old_value"`
		} `json:"decision"`
	}
	if err := json.Unmarshal(lines[1], &call); err != nil || !call.Decision.RecordOldValue {
		t.Errorf("call record: %s (%v)", lines[1], err)
	}
	var res struct {
		OldValue float64 `json:"old_value"`
	}
	if err := json.Unmarshal(lines[2], &res); err != nil || res.OldValue != 41.5 {
		t.Errorf("result record: %s (%v)", lines[2], err)
	}
}
