package policy

import (
	"reflect"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// noMovesPolicy refuses a session on a new secure channel.
const noMovesPolicy = `package interlock

default decision := {"allow": true}

decision := {"allow": false, "reasons": ["moved"]} if input.session.resumed > 0
`

// A session that moved to a new secure channel says how often in
// input.session.resumed (absent before it moves), and the decision cache
// keeps a moved session's decisions apart from those before the move.
func TestInputSessionResumed(t *testing.T) {
	s := &gateway.Session{ID: "s1", Listener: "line1", Protocol: "opcua", Resumed: 2}
	c := &gateway.Call{Time: inWindow, Target: gateway.Target{Name: "line1", UnitID: -1},
		Operation: gateway.Operation{Function: gateway.FunctionSessionOpen, Access: gateway.AccessSession}}
	in := valueJSON(t, Input("gw", s, c)).(map[string]any)
	if got, want := in["session"], asJSON(t, []byte(`{"id": "s1", "resumed": 2}`)); !reflect.DeepEqual(got, want) {
		t.Errorf("input.session = %v, want %v", got, want)
	}

	e, _ := newCachedEngine(t, map[string]string{"main.rego": noMovesPolicy}, time.Minute)
	first := &gateway.Session{ID: "s2", Listener: "line1", Protocol: "opcua"}
	if d := decide(t, e, first, c); !d.Allow {
		t.Fatalf("before the move: %+v, want allowed", d)
	}
	moved := *first
	moved.Resumed = 1
	if d := decide(t, e, &moved, c); d.Allow || d.Cached {
		t.Fatalf("after the move: %+v, want refused, not the cached decision of before", d)
	}
}
