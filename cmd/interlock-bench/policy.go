package main

// The policy section: what a decision costs, and what the decision cache
// saves a polling HMI.
//
//   - latency: single decisions through policy.Engine.Decide, as the gateway
//     makes them (the session part of the input built once per session),
//     timed one by one, for every policy of the library (examples/policies/*)
//     and the quickstart policy, each with a read (an HMI polling FC 3, or
//     an OPC UA Read for opcua-nodes) and a write (an engineer's FC 16, or an
//     OPC UA Write, in a window or under an approved change ticket where the
//     policy asks for one), with the decision cache off (every decision an
//     OPA evaluation) and on (a polling client repeating the same call).
//   - polling: the gateway's throughput for the same FC 3 read repeated in a
//     closed loop by 1 and 16 connections, decision cache on and off.

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/policy"
)

var (
	poLibrary     = flag.String("policy-library", "examples/policies", "policy: directory of the policy library (each subdirectory with .rego files is a policy)")
	poExtra       = flag.String("policy-extra", "examples/quickstart/policy", "policy: more policy directories to time, comma-separated")
	poDuration    = flag.Duration("decide-duration", 300*time.Millisecond, "policy: measured time of one latency run")
	poPollPolicy  = flag.String("poll-policy", "examples/quickstart/policy,examples/policies/accounts-and-sources", "policy: the gateway's policies for the polling workload, comma-separated")
	poPollDur     = flag.Duration("poll-duration", 2*time.Second, "policy: measured time of one polling run")
	poOnly        = flag.String("policies", "", "policy: time only these policies (directory names, comma-separated)")
	poMaxDecision = flag.Int("decide-max", 2_000_000, "policy: at most this many decisions per latency run")
	poProfile     = flag.String("decide-cpu-profile", "", "policy: write CPU profiles of the uncached latency runs to `PREFIX`-<policy>-<read|write>.prof")
	poPolling     = flag.Bool("policy-polling", true, "policy: also measure the gateway with a polling workload")
)

// Targets of issue 5.
const (
	targetCached   = 2 * time.Microsecond
	targetUncached = 50 * time.Microsecond
)

func init() {
	addSuite(suite{name: "policy", order: 30, run: runPolicy,
		about: "decision latency p50/p99 with and without the decision cache for the policy library; gateway throughput for a polling HMI, cache on and off"})
}

// windowTime is in maintenance-windows' weekly window (Saturday 06:00-10:00
// Berlin time), for that policy's write.
var windowTime = time.Date(2026, 12, 12, 5, 30, 0, 0, time.UTC)

type decideInput struct {
	name string // read, write
	sess *gateway.Session
	call *gateway.Call
}

func runPolicy(e *env) error {
	dirs, err := policyDirs()
	if err != nil {
		return err
	}
	tickets, err := benchTickets(e.work)
	if err != nil {
		return err
	}
	gcNote := "GOGC=" + os.Getenv("GOGC")
	if os.Getenv("GOGC") == "" {
		gcNote = "Go's default (GOGC=100), as `interlock run` has it"
	}
	// The calls are decided at a time the ticket is open (the quickstart
	// policy's one-off window is long past, so its write goes by ticket).
	now := time.Now().UTC()
	fmt.Printf("### decision latency: policy.Engine.Decide, one decision timed at a time; %d runs of %s per cell, median of the runs' p50 and p99\n\n",
		e.runs, *poDuration)
	fmt.Printf("read: bob (operator) at hmi-line1, FC 3 of 10 registers at 0 (opcua-nodes: an OPC UA Read of a Line1 status value);\n")
	fmt.Printf("write: alice (engineer) at ews-alice, FC 16 of 2 registers at 105 (opcua-nodes: an OPC UA Write of a Line1 setpoint),\n")
	fmt.Printf("under change ticket %s for alice on plc1 (write, program; approved by bob), and for maintenance-windows inside its weekly window;\n", tickets.List()[0].ID)
	fmt.Printf("cached: the same call repeated, answered by the decision cache; a timer read costs %.0f ns and is included;\n", timerCost().Seconds()*1e9)
	fmt.Printf("CPU µs: the process's CPU time (user + system, garbage collection included) per decision, the mean: less disturbed by other load than p50;\n")
	fmt.Printf("garbage collection: %s\n\n", gcNote)

	type row struct {
		policy, input, decision string
		unc, cac                measure // p50, p99 in µs
	}
	var rows []row
	for _, dir := range dirs {
		name := filepath.Base(dir)
		if filepath.Dir(dir) != filepath.Clean(*poLibrary) {
			name = dir
		}
		uncached, err := policy.New(policy.Options{Path: dir, Gateway: "bench-gw1", Log: zerolog.Nop(), NoCache: true, Tickets: tickets})
		if err != nil {
			return err
		}
		cached, err := policy.New(policy.Options{Path: dir, Gateway: "bench-gw1", Log: zerolog.Nop(), Tickets: tickets})
		if err != nil {
			return err
		}
		for _, in := range decideInputs(filepath.Base(dir), now) {
			d, err := uncached.Decide(context.Background(), in.sess, in.call)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", dir, in.name, err)
			}
			r := row{policy: name, input: in.name, decision: describeDecision(d)}
			for _, mode := range []struct {
				eng *policy.Engine
				out *measure
			}{{uncached, &r.unc}, {cached, &r.cac}} {
				var p50s, p99s, rates, cpus []float64
				var prof *os.File
				if *poProfile != "" && mode.eng == uncached {
					if prof, err = os.Create(fmt.Sprintf("%s-%s-%s.prof", *poProfile, filepath.Base(dir), in.name)); err != nil {
						return err
					}
					if err := pprof.StartCPUProfile(prof); err != nil {
						return err
					}
				}
				for range e.runs {
					m, err := decideRun(mode.eng, in, *poDuration)
					if err != nil {
						return fmt.Errorf("%s, %s: %w", dir, in.name, err)
					}
					p50s, p99s, rates, cpus = append(p50s, m.p50), append(p99s, m.p99), append(rates, m.rps), append(cpus, m.cpu)
				}
				if prof != nil {
					pprof.StopCPUProfile()
					prof.Close()
				}
				*mode.out = measure{rps: median(rates), p50: median(p50s), p99: median(p99s), cpu: median(cpus)}
			}
			fmt.Fprintf(os.Stderr, "  decide %-30s %-5s uncached p50 %7.1f µs p99 %7.1f µs CPU %6.1f µs, cached p50 %5.2f µs p99 %5.2f µs  (%s)\n",
				name, in.name, r.unc.p50, r.unc.p99, r.unc.cpu, r.cac.p50, r.cac.p99, r.decision)
			rows = append(rows, r)
		}
	}
	fmt.Println("| policy | input | decision | uncached p50 µs | uncached p99 µs | uncached CPU µs | cached p50 µs | cached p99 µs | cached CPU µs | uncached/cached p50 |")
	fmt.Println("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.0f× |\n", r.policy, r.input, r.decision,
			r.unc.p50, r.unc.p99, r.unc.cpu, r.cac.p50, r.cac.p99, r.cac.cpu, r.unc.p50/r.cac.p50)
	}
	fmt.Println()

	fmt.Println("| target (issue 5) | worst measured | |")
	fmt.Println("| --- | ---: | --- |")
	worstCached, worstCachedAt := 0.0, ""
	var misses []string
	worstUnc, worstUncAt := 0.0, ""
	for _, r := range rows {
		if r.cac.p50 > worstCached {
			worstCached, worstCachedAt = r.cac.p50, r.policy+" "+r.input
		}
		if r.unc.p50 > worstUnc {
			worstUnc, worstUncAt = r.unc.p50, r.policy+" "+r.input
		}
		if r.unc.p50 >= float64(targetUncached)/1e3 {
			misses = append(misses, fmt.Sprintf("%s %s %.0f µs", r.policy, r.input, r.unc.p50))
		}
	}
	fmt.Printf("| cached decision < %s (p50) | %.2f µs (%s) | %s |\n", targetCached, worstCached, worstCachedAt,
		verdict(worstCached < float64(targetCached)/1e3))
	fmt.Printf("| uncached decision of the library < %s p50 | %.1f µs (%s) | %s |\n\n", targetUncached, worstUnc, worstUncAt,
		verdict(len(misses) == 0))
	if len(misses) > 0 {
		fmt.Printf("over %s uncached: %s\n\n", targetUncached, strings.Join(misses, "; "))
	}
	// Polling through the gateway.
	if !*poPolling {
		return nil
	}
	conns, err := parseConns("conns", *mbConns)
	if err != nil {
		return err
	}
	simAddr := freeAddr()
	if err := e.start("sim", e.bin, "sim", "modbus", "--listen", simAddr); err != nil {
		return err
	}
	if err := waitPort(simAddr, 10*time.Second); err != nil {
		return fmt.Errorf("sim at %s: %w (logs in %s)", simAddr, err, e.work)
	}
	maxConns := slices.Max(conns)
	fmt.Printf("### polling: the same FC 3 read of %d registers repeated in a closed loop per connection (an HMI polling), through the gateway\n\n", *mbQuantity)
	fmt.Printf("source 127.0.0.1 is ews-alice (alice, engineer); audit on (call + result record per read), %d upstream connections; %d runs of %s (+%s warm-up), median shown\n\n",
		maxConns, e.runs, *poPollDur, *mbWarmup)
	type pollRow struct {
		policy  string
		conns   int
		on, off measure
	}
	var prows []pollRow
	for i, pp := range strings.Split(*poPollPolicy, ",") {
		pp = strings.TrimSpace(pp)
		abs, err := filepath.Abs(pp)
		if err != nil {
			return err
		}
		onAddr, err := startGateway(e, fmt.Sprintf("gateway%d-cache-on", i), simAddr, abs, maxConns, true, "")
		if err != nil {
			return err
		}
		offAddr, err := startGateway(e, fmt.Sprintf("gateway%d-cache-off", i), simAddr, abs, maxConns, false, "")
		if err != nil {
			return err
		}
		on, off := path{name: pp + ", decision cache on", addr: onAddr}, path{name: pp + ", decision cache off", addr: offAddr}
		for _, p := range []path{on, off} {
			if err := waitPort(p.addr, 10*time.Second); err != nil {
				return fmt.Errorf("%s at %s: %w (logs in %s)", p.name, p.addr, err, e.work)
			}
		}
		for _, n := range conns {
			r := pollRow{policy: pp, conns: n}
			if r.on, err = loadRuns(on, n, *mbQuantity, e.runs, *mbWarmup, *poPollDur); err != nil {
				return err
			}
			if r.off, err = loadRuns(off, n, *mbQuantity, e.runs, *mbWarmup, *poPollDur); err != nil {
				return err
			}
			prows = append(prows, r)
		}
	}
	fmt.Println("| policy | conns | cache on req/s | cache off req/s | on/off | cache on p50 µs | cache off p50 µs | cache on p99 µs | cache off p99 µs |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range prows {
		fmt.Printf("| %s | %d | %.0f | %.0f | %.2f | %.1f | %.1f | %.1f | %.1f |\n", r.policy, r.conns, r.on.rps, r.off.rps,
			r.on.rps/r.off.rps, r.on.p50, r.off.p50, r.on.p99, r.off.p99)
	}
	fmt.Println()
	return nil
}

// policyDirs lists the library's policies (or those --policies names) and
// the extra ones.
func policyDirs() ([]string, error) {
	entries, err := os.ReadDir(*poLibrary)
	if err != nil {
		return nil, fmt.Errorf("--policy-library: %w", err)
	}
	var only []string
	if *poOnly != "" {
		only = strings.Split(*poOnly, ",")
	}
	var dirs []string
	consider := func(dir string) {
		if m, _ := filepath.Glob(filepath.Join(dir, "*.rego")); len(m) == 0 {
			return
		}
		if only != nil && !slices.Contains(only, filepath.Base(dir)) && !slices.Contains(only, dir) {
			return
		}
		dirs = append(dirs, filepath.Clean(dir))
	}
	for _, en := range entries {
		if en.IsDir() && !strings.HasPrefix(en.Name(), ".") {
			consider(filepath.Join(*poLibrary, en.Name()))
		}
	}
	if *poExtra != "" {
		for _, d := range strings.Split(*poExtra, ",") {
			consider(strings.TrimSpace(d))
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no policy directories under %s (or --policies %q matches none)", *poLibrary, *poOnly)
	}
	return dirs, nil
}

// benchTickets opens the change ticket the writes go under: alice on plc1,
// write and program, approved by bob (two-person wants a second person).
func benchTickets(work string) (*policy.Tickets, error) {
	ts, err := policy.OpenTickets(filepath.Join(work, "tickets.json"), nil)
	if err != nil {
		return nil, err
	}
	t, err := ts.Open(policy.Ticket{ID: "T-1042", User: "alice", Targets: []string{"plc1"}, Access: []string{"write", "program"},
		Reason: "CHG-1042 setpoint tuning"}, 2*time.Hour, "alice")
	if err != nil {
		return nil, err
	}
	if _, err := ts.Approve(t.ID, "bob"); err != nil {
		return nil, err
	}
	return ts, nil
}

// decideInputs are the read and the write decided with policy name.
func decideInputs(name string, now time.Time) []decideInput {
	at := now
	if name == "maintenance-windows" {
		at = windowTime
	}
	bob := &gateway.Session{
		ID: gateway.NewID(), Started: at.Add(-time.Hour), Gateway: "bench-gw1", Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("10.0.20.4"), Port: 40001, Name: "hmi-line1"},
		Principal: gateway.Principal{User: "bob", Auth: gateway.AuthInventory, Roles: []string{"operator"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://10.0.0.20:502", UnitID: 1},
	}
	alice := &gateway.Session{
		ID: gateway.NewID(), Started: at.Add(-time.Hour), Gateway: "bench-gw1", Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("10.0.5.7"), Port: 50123, Name: "ews-alice", Owner: "alice"},
		Principal: gateway.Principal{User: "alice", Auth: gateway.AuthInventory, Roles: []string{"engineer"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://10.0.0.20:502", UnitID: 1},
	}
	read := &gateway.Call{ID: gateway.NewID(), Time: at, Target: bob.Target}
	write := &gateway.Call{ID: gateway.NewID(), Time: at, Target: alice.Target}
	if name == "opcua-nodes" {
		for _, s := range []*gateway.Session{bob, alice} {
			s.Listener, s.Protocol = "line1", "opcua"
			s.SecurityPolicy, s.SecurityMode = "Basic256Sha256", "SignAndEncrypt"
			s.Principal.Auth = gateway.AuthUsername
			s.Target = gateway.Target{Name: "line1", Upstream: "opc.tcp://10.0.0.20:4840", UnitID: -1}
		}
		read.Target, write.Target = bob.Target, alice.Target
		read.Operation = gateway.Operation{Function: "read", Access: gateway.AccessRead}
		read.Operation.String("node_id", "ns=2;s=Line1.Status.Temperature")
		read.Operation.String("browse_path", "/Objects/Line1/Status/Temperature")
		read.Operation.String("attribute", "Value")
		write.Operation = gateway.Operation{Function: "write", Access: gateway.AccessWrite}
		write.Operation.String("node_id", "ns=2;s=Line1.Setpoints.Temperature")
		write.Operation.String("browse_path", "/Objects/Line1/Setpoints/Temperature")
		write.Operation.String("attribute", "Value")
	} else {
		read.Operation = gateway.Operation{Function: "read_holding_registers", Access: gateway.AccessRead}
		read.Operation.Int(gateway.KeyCode, 3)
		read.Operation.Int(gateway.KeyAddress, 0)
		read.Operation.Int(gateway.KeyQuantity, 10)
		write.Operation = gateway.Operation{Function: "write_multiple_registers", Access: gateway.AccessWrite}
		write.Operation.Int(gateway.KeyCode, 16)
		write.Operation.Int(gateway.KeyAddress, 105)
		write.Operation.Int(gateway.KeyQuantity, 2)
		write.Operation.Ints(gateway.KeyValues, []int64{650, 700})
	}
	return []decideInput{{"read", bob, read}, {"write", alice, write}}
}

// describeDecision is the decision measured, so a reader sees which path
// through the policy was timed.
func describeDecision(d gateway.Decision) string {
	s := "deny"
	if d.Allow {
		s = "allow"
	}
	if d.Alert {
		s += ", alert"
	}
	if d.Ticket != "" {
		s += ", ticket"
	}
	if len(d.Reasons) > 0 {
		s += " (" + strings.Join(d.Reasons, "; ") + ")"
	}
	return s
}

// decideRun decides in's call for dur (after a short warm-up), timing each
// decision.
func decideRun(eng *policy.Engine, in decideInput, dur time.Duration) (measure, error) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, 1<<16)
	warmEnd := time.Now().Add(dur / 5)
	for time.Now().Before(warmEnd) {
		if _, err := eng.Decide(ctx, in.sess, in.call); err != nil {
			return measure{}, err
		}
	}
	cpu0 := processCPU()
	began := time.Now()
	end := began.Add(dur)
	for len(lat) < *poMaxDecision {
		t0 := time.Now()
		if t0.After(end) {
			break
		}
		if _, err := eng.Decide(ctx, in.sess, in.call); err != nil {
			return measure{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed, cpu := time.Since(began), processCPU()-cpu0
	slices.Sort(lat)
	return measure{
		rps: float64(len(lat)) / elapsed.Seconds(),
		p50: float64(quantile(lat, 0.50)) / 1e3,
		p99: float64(quantile(lat, 0.99)) / 1e3,
		cpu: cpu.Seconds() * 1e6 / float64(len(lat)),
	}, nil
}

// processCPU is the CPU time this process used so far (user + system, every
// thread: the garbage collector's work counts).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timerCost is what one time.Now and time.Since pair adds to a timed
// decision.
func timerCost() time.Duration {
	const n = 100_000
	var sink time.Duration
	began := time.Now()
	for range n {
		t0 := time.Now()
		sink += time.Since(t0)
	}
	_ = sink
	return time.Since(began) / n
}
