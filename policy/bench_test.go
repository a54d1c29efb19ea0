package policy

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// BenchmarkDecide decides a write by an engineer inside the maintenance
// window with sitePolicy, the session part of the input already cached.
func BenchmarkDecide(b *testing.B) {
	e := newEngine(b, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData})
	s := testSession()
	c := testCall(s, "write_multiple_registers", gateway.AccessWrite, inWindow)
	ctx := context.Background()
	if d, err := e.Decide(ctx, s, c); err != nil || !d.Allow {
		b.Fatalf("warm-up decision %+v, %v", d, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, s, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluationSlot is what the cap on evaluations at once
// (Options.MaxConcurrentEvaluations) adds to an evaluation: a slot taken
// and given back, by one caller and by as many as there are CPUs.
func BenchmarkEvaluationSlot(b *testing.B) {
	e := newEngine(b, map[string]string{"main.rego": floorPolicy})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := e.takeSlot(ctx); err != nil {
				b.Fatal(err)
			}
			e.releaseSlot()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := e.takeSlot(ctx); err != nil {
					b.Error(err)
					return
				}
				e.releaseSlot()
			}
		})
	})
}

// BenchmarkDecideRead is the common case: a read, which needs no window.
func BenchmarkDecideRead(b *testing.B) {
	e := newEngine(b, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData})
	s := testSession()
	c := testCall(s, "read_holding_registers", gateway.AccessRead, inWindow)
	ctx := context.Background()
	if _, err := e.Decide(ctx, s, c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Decide(ctx, s, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideQuickstart decides with the quickstart example policy
// (examples/quickstart/policy), the one `make bench` runs the gateway with,
// with the decision cache off and on (a polling client repeating one call).
func BenchmarkDecideQuickstart(b *testing.B) {
	for _, tc := range []struct {
		name     string
		function string
		access   gateway.Access
		noCache  bool
	}{
		{"read/uncached", "read_holding_registers", gateway.AccessRead, true},
		{"write/uncached", "write_multiple_registers", gateway.AccessWrite, true},
		{"read/cached", "read_holding_registers", gateway.AccessRead, false},
		{"write/cached", "write_multiple_registers", gateway.AccessWrite, false},
	} {
		e, err := New(Options{Path: "../examples/quickstart/policy", Gateway: "bench", NoCache: tc.noCache})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			s := testSession()
			c := testCall(s, tc.function, tc.access, inWindow)
			ctx := context.Background()
			if _, err := e.Decide(ctx, s, c); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, s, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionLatency reports the p50 and p99 of single decisions of
// the quickstart policy (a read and a write in a maintenance window, each
// from a polling client that repeats it) with the decision cache off and on:
//
//	go test -run '^$' -bench DecisionLatency ./policy/
func BenchmarkDecisionLatency(b *testing.B) {
	for _, tc := range []struct {
		name    string
		access  gateway.Access
		fn      string
		noCache bool
	}{
		{"read/uncached", gateway.AccessRead, "read_holding_registers", true},
		{"write/uncached", gateway.AccessWrite, "write_multiple_registers", true},
		{"read/cached", gateway.AccessRead, "read_holding_registers", false},
		{"write/cached", gateway.AccessWrite, "write_multiple_registers", false},
	} {
		e, err := New(Options{Path: "../examples/quickstart/policy", Gateway: "bench", NoCache: tc.noCache})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			s := testSession()
			s.Principal.User = "alice"
			c := testCall(s, tc.fn, tc.access, inWindow)
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if _, err := e.Decide(ctx, s, c); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}

// floorPolicy decides every call alike, with no rule to evaluate.
const floorPolicy = `package interlock

decision := {"allow": true, "alert": false, "reasons": []}
`

// BenchmarkDecideLibrary decides an HMI's FC 3 read and an engineer's FC 16
// write under an approved change ticket, at the current time, with every
// policy of the library (examples/policies), uncached: the Modbus calls
// `make bench` times one by one (there, opcua-nodes gets OPC UA calls and
// maintenance-windows a time in its window). The cells named floor decide
// the same calls with a policy whose decision is a constant: what any
// decision costs (the input, the evaluation's set-up, the result). For a
// CPU profile of one policy:
//
//	go test -run '^$' -bench 'DecideLibrary/modbus-ranges/' -cpuprofile /tmp/cpu.prof ./policy/
//
// scripts/policy-icount.sh counts the instructions of each cell instead.
func BenchmarkDecideLibrary(b *testing.B) {
	dirs, err := filepath.Glob("../examples/policies/*/decision.rego")
	if err != nil || len(dirs) == 0 {
		b.Fatalf("no library policies: %v", err)
	}
	dirs = append(dirs, filepath.Join(policyDir(b, map[string]string{"floor/decision.rego": floorPolicy}), "floor", "decision.rego"))
	ts, err := OpenTickets(filepath.Join(b.TempDir(), "tickets.json"), nil)
	if err != nil {
		b.Fatal(err)
	}
	t, err := ts.Open(Ticket{User: "alice", Targets: []string{"plc1"}, Access: []string{"write", "program"}, Reason: "CHG-1042"}, time.Hour, "alice")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ts.Approve(t.ID, "bob"); err != nil {
		b.Fatal(err)
	}
	at := time.Now().UTC()
	for _, f := range dirs {
		dir := filepath.Dir(f)
		e, err := New(Options{Path: dir, Gateway: "bench", Log: zerolog.Nop(), NoCache: true, Tickets: ts})
		if err != nil {
			b.Fatal(err)
		}
		for _, in := range []struct {
			name, user, source, role string
			function                 string
			access                   gateway.Access
		}{
			{"read", "bob", "hmi-line1", "operator", "read_holding_registers", gateway.AccessRead},
			{"write", "alice", "ews-alice", "engineer", "write_multiple_registers", gateway.AccessWrite},
		} {
			s := testSession()
			s.Source.Name, s.Principal.User, s.Principal.Roles = in.source, in.user, []string{in.role}
			s.Target.Name = "plc1"
			c := testCall(s, in.function, in.access, at)
			c.Operation = gateway.Operation{Function: in.function, Access: in.access}
			if in.access == gateway.AccessRead {
				c.Operation.Int(gateway.KeyCode, 3)
				c.Operation.Int(gateway.KeyAddress, 0)
				c.Operation.Int(gateway.KeyQuantity, 10)
			} else {
				c.Operation.Int(gateway.KeyCode, 16)
				c.Operation.Int(gateway.KeyAddress, 105)
				c.Operation.Int(gateway.KeyQuantity, 2)
				c.Operation.Ints(gateway.KeyValues, []int64{650, 700})
			}
			ctx := context.Background()
			b.Run(filepath.Base(dir)+"/"+in.name, func(b *testing.B) {
				if _, err := e.Decide(ctx, s, c); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Decide(ctx, s, c); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
