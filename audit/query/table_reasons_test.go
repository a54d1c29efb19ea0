package query

import (
	"strings"
	"testing"
)

// The reasons that decided a call come first; monitor-only ones (which
// alert but decide nothing) after them, so the column never cuts the
// enforced denial off.
func TestTableReasonsDecidingFirst(t *testing.T) {
	op := obj{{"function", "write"}, {"access", "write"}, {"node_id", "ns=1;s=Setpoint"}}
	rows := tableRows(t,
		callLine(1, "c1", "s1", bob, target("line1", 1), op, decision(false, true,
			"known-application:monitor:unverified_application_uri:urn:interlock:test:engineering-client:with-a-long-name-that-fills-the-column",
			"maintenance-window:enforced:outside_maintenance_window:line1:write",
			"opcua-access:enforced:access_not_granted:bob:write")),
		callLine(2, "c2", "s1", bob, target("line1", 1), op, decision(false, true, "monitor_would_deny", "a_rule_denied")),
	)
	cell := func(row string) string { f := strings.Fields(row); return f[len(f)-1] }
	if c := cell(rows[0]); !strings.HasPrefix(c, "maintenance-window:enforced:outside_maintenance_window:line1:write,opcua-access:enforced:access_not") {
		t.Errorf("reasons of a denial: %s", c)
	}
	if c := cell(rows[1]); c != "a_rule_denied,monitor_would_deny" {
		t.Errorf("reasons of a monitor-mode denial: %s", c)
	}
}
