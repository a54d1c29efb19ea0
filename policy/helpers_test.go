package policy

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// sitePolicy is a small realistic policy: reads allowed, writes only for
// engineers inside a maintenance window from data, unknown functions denied.
const sitePolicy = `package interlock

default decision := {"allow": false, "alert": true, "reasons": ["not_allowed"]}

decision := {"allow": false, "alert": true, "reasons": ["unknown_function"]} if not known_function

decision := {"allow": true, "alert": false, "reasons": []} if {
	known_function
	input.operation.access in {"read", "session"}
}

decision := {"allow": true, "alert": true, "reasons": ["write_in_window"]} if {
	known_function
	input.operation.access == "write"
	"engineer" in input.principal.roles
	in_window
}

known_function if input.operation.function in data.functions

in_window if {
	some w in data.windows[input.target.name]
	now := time.now_ns()
	time.parse_rfc3339_ns(w.start) <= now
	now < time.parse_rfc3339_ns(w.end)
}
`

const siteData = `functions:
  - session.open
  - read_holding_registers
  - read_coils
  - write_single_register
  - write_multiple_registers
windows:
  plc1:
    - start: "2026-11-26T00:00:00Z"
      end: "2026-11-26T06:00:00Z"
`

// inWindow and outOfWindow are call times on either side of siteData's window.
var (
	inWindow    = time.Date(2026, 11, 26, 2, 14, 27, 123456789, time.UTC)
	outOfWindow = time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
)

func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func policyDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

// newEngine loads files with the decision cache off, so every Decide
// evaluates; cache_test.go turns it on.
func newEngine(t testing.TB, files map[string]string) *Engine {
	t.Helper()
	e, err := New(Options{Path: policyDir(t, files), Gateway: "site-a-gw1", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func testSession() *gateway.Session {
	return &gateway.Session{
		ID:       "sess-1",
		Started:  time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC),
		Gateway:  "site-a-gw1",
		Listener: "plc1",
		Protocol: "modbus",
		Source: gateway.Source{
			IP: netip.MustParseAddr("10.0.0.5"), Port: 50123, Name: "ews-1", Owner: "ot-team",
		},
		Principal: gateway.Principal{Auth: gateway.AuthInventory, Roles: []string{"engineer"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 1},
	}
}

func testCall(s *gateway.Session, function string, access gateway.Access, at time.Time) *gateway.Call {
	c := &gateway.Call{
		ID:        gateway.NewID(),
		Time:      at,
		Target:    s.Target,
		Operation: gateway.Operation{Function: function, Access: access},
	}
	c.Operation.Int(gateway.KeyCode, 16)
	c.Operation.Int(gateway.KeyAddress, 100)
	c.Operation.Int(gateway.KeyQuantity, 2)
	c.Operation.Ints(gateway.KeyValues, []int64{1, 2})
	return c
}
