package main

// The opcua section: what the OPC UA gateway costs a client. Single-node
// Reads (the Value of ns=1;s=Pressure) by gopcua clients against `interlock
// sim opcua`, directly, through plain TCP relays (haproxy in TCP mode: the
// floor of any inline hop; and one in Go, the floor of an inline hop written
// in Go), and through `interlock run` with one OPC UA
// listener (a permissive policy, the audit log on), with the same security on both
// legs: SecurityPolicy None, and Basic256Sha256 SignAndEncrypt. Two loads:
// one session reading sequentially, and 8 sessions reading at once, each in
// a closed loop. Then the gateway's memory per idle session: the growth of
// its resident set while N anonymous sessions stay open after one Read each
// (so each also holds its upstream session on the simulator).

import (
	"bufio"
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
)

var (
	uaDuration = flag.Duration("opcua-duration", 2*time.Second, "opcua: measured time of one run")
	uaWarmup   = flag.Duration("opcua-warmup", 500*time.Millisecond, "opcua: unmeasured time before each run")
	uaSessions = flag.Int("opcua-sessions", 8, "opcua: client sessions of the concurrent load")
	uaIdle     = flag.Int("opcua-idle", 50, "opcua: idle sessions opened through the gateway for the memory measurement (0: skip it)")
	uaProfile  = flag.String("opcua-cpu-profile", "", "opcua: write the CPU profile of the gateway of the first security policy to this file")
	uaSecurity = flag.String("opcua-security", "None,Basic256Sha256", "opcua: security policies to measure, comma-separated: None, Basic256Sha256 (SignAndEncrypt on both legs)")
)

// Target of issue 3.
const uaTargetP50Ratio = 2.0

func init() {
	addSuite(suite{name: "opcua", order: 40, run: runOPCUA,
		about: "single-node Reads direct, through TCP relays (haproxy, and one in Go) and through the gateway, 1 sequential and 8 concurrent sessions, None and Basic256Sha256; memory per idle session"})
}

// uaPolicy is one security setting measured on both legs.
type uaPolicy struct {
	name string // as in the configuration: None, Basic256Sha256
	uri  string
	mode ua.MessageSecurityMode
}

var uaPolicies = map[string]uaPolicy{
	"None":           {"None", ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
	"Basic256Sha256": {"Basic256Sha256", ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
}

func (p uaPolicy) String() string {
	if p.mode == ua.MessageSecurityModeNone {
		return "None"
	}
	return p.name + " SignAndEncrypt"
}

// uaBench is what the section's clients share.
type uaBench struct {
	ctx  context.Context
	cert []byte // the bench client's application instance certificate
	key  *rsa.PrivateKey
	// discovery maps the relay's URL to the simulator's: the simulator
	// describes only endpoints at its own URL, and the relay passes
	// everything else through unchanged.
	discovery map[string]string
}

// uaResult is one cell: a path at one load.
type uaResult struct {
	policy   string
	sessions int
	path     string // direct, gateway
	m        uaMeasure
}

// uaMeasure is a cell's throughput and latency, and the CPU time the
// simulator and the gateway spent per read in the measured time.
type uaMeasure struct {
	measure
	simCPU, gwCPU float64 // µs per read; gwCPU 0 on the direct path
}

const benchPolicy = `# A permissive policy for the benchmark: every operation allowed, no alert.
package interlock

decision := {"allow": true, "alert": false, "reasons": []}
`

func runOPCUA(e *env) error {
	var pols []uaPolicy
	for _, f := range strings.Split(*uaSecurity, ",") {
		p, ok := uaPolicies[strings.TrimSpace(f)]
		if !ok {
			return fmt.Errorf("--opcua-security: %q is not None or Basic256Sha256", f)
		}
		pols = append(pols, p)
	}
	if *uaSessions < 1 {
		return fmt.Errorf("--opcua-sessions %d: want 1 or more", *uaSessions)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()

	var names []string
	for _, p := range pols {
		names = append(names, p.name)
	}
	simAddr := freeAddr()
	simEP := "opc.tcp://" + simAddr
	// A plain TCP relay in front of the simulator: what any inline hop costs
	// on this machine, before the gateway does anything. It starts first:
	// its readiness probe must not reach the simulator, whose listener
	// (gopcua's) stops accepting for good when a connection is reset before
	// its Hello.
	relayAddr, err := startRelay(e, "haproxy-opcua", simAddr)
	if err != nil {
		return err
	}
	relayEP := "opc.tcp://" + relayAddr
	goRelayAddr, err := startGoRelay(e, "go-relay-opcua", simAddr)
	if err != nil {
		return err
	}
	goRelayEP := "opc.tcp://" + goRelayAddr
	sim, err := e.startCmd("sim-opcua", e.bin, "sim", "opcua", "--listen", simEP, "--security", strings.Join(names, ","))
	if err != nil {
		return err
	}
	if err := waitPort(simAddr, 30*time.Second); err != nil {
		return fmt.Errorf("sim opcua at %s: %w (log in %s)", simAddr, err, e.work)
	}

	// The gateway's PKI, and the bench client's own certificate trusted by
	// it (the simulator accepts any client certificate).
	gwPKI := filepath.Join(e.work, "gw-pki")
	if err := e.interlock("certs", "init", "--pki", gwPKI, "--uri", "urn:interlock:bench:gateway",
		"--host", "localhost,127.0.0.1", "--no-audit-key"); err != nil {
		return err
	}
	clientPKI := filepath.Join(e.work, "client-pki")
	var cst *certs.Store
	if err := e.interlock("certs", "init", "--pki", clientPKI, "--uri", "urn:interlock:bench:client",
		"--host", "localhost", "--no-audit-key"); err != nil {
		return err
	}
	cst, err = certs.Open(clientPKI)
	if err != nil {
		return err
	}
	if err := e.interlock("certs", "trust", "--pki", gwPKI, cst.OwnCertPath()); err != nil {
		return err
	}
	b := &uaBench{ctx: ctx, discovery: map[string]string{relayEP: simEP, goRelayEP: simEP}}
	if b.cert, b.key, err = cst.Own(); err != nil {
		return err
	}
	// The simulator's self-signed certificate, made at its start, trusted by
	// the gateway for its upstream leg.
	if slices.ContainsFunc(pols, func(p uaPolicy) bool { return p.mode != ua.MessageSecurityModeNone }) {
		eps, err := gopcua.GetEndpoints(ctx, simEP)
		if err != nil || len(eps) == 0 {
			return fmt.Errorf("GetEndpoints of the simulator: %v", err)
		}
		simCert := filepath.Join(e.work, "sim.der")
		if err := os.WriteFile(simCert, eps[0].ServerCertificate, 0o644); err != nil {
			return err
		}
		if err := e.interlock("certs", "trust", "--pki", gwPKI, simCert); err != nil {
			return err
		}
	}
	polDir := filepath.Join(e.work, "ua-policy")
	if err := os.MkdirAll(polDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(polDir, "bench.rego"), []byte(benchPolicy), 0o644); err != nil {
		return err
	}

	// One gateway per policy, the same security on both legs.
	gwEP := map[string]string{}
	gwCmd := map[string]*exec.Cmd{}
	for _, p := range pols {
		addr := freeAddr()
		name := "gateway-opcua-" + p.name
		cfg := filepath.Join(e.work, name+".yaml")
		sec := "security_policies: [None]\n      upstream_security_policy: None"
		if p.mode != ua.MessageSecurityModeNone {
			sec = fmt.Sprintf("security_policies: [%s]\n      security_modes: [SignAndEncrypt]\n      upstream_security_policy: %s\n      upstream_security_mode: SignAndEncrypt", p.name, p.name)
		}
		conns := max(100, *uaIdle+*uaSessions+10) // every client is on 127.0.0.1: one source
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`gateway:
  id: bench
  log_level: warn
listeners:
  - name: line1
    protocol: opcua
    listen: opc.tcp://%s
    upstream: %s
    limits: {max_conns: %d, max_conns_per_source: %d, conn_rate_per_source: 0}
    opcua:
      pki: %s
      %s
      anonymous: true
      upstream_identity: anonymous
      limits: {max_sessions: %d, max_sessions_per_source: %d}
policy:
  path: %s
audit:
  path: %s
`, addr, simEP, conns, conns, gwPKI, sec, conns, conns, polDir, filepath.Join(e.work, name+"-audit.jsonl"))), 0o644); err != nil {
			return err
		}
		args := []string{"run", "--config", cfg, "--log-format", "json"}
		if *uaProfile != "" && p == pols[0] {
			args = append(args, "--cpu-profile", *uaProfile)
		}
		cmd, err := e.startHopCmd(name, e.bin, args...)
		if err != nil {
			return err
		}
		if err := waitPort(addr, 30*time.Second); err != nil {
			return fmt.Errorf("%s at %s: %w (log in %s)", name, addr, err, e.work)
		}
		gwEP[p.name], gwCmd[p.name] = "opc.tcp://"+addr, cmd
	}

	fmt.Printf("interlock-bench: single-node Read (Value of %s) by gopcua %s clients, anonymous, closed loop; %d rounds in which direct, relays and gateway take turns, one run of %s (+%s warm-up) each; medians shown\n",
		opcuasim.NodePressure, "v0.9.0", e.runs, *uaDuration, *uaWarmup)
	fmt.Printf("upstream `interlock sim opcua` (gopcua server: one goroutine for every request); gateway `interlock run`, one OPC UA listener, permissive policy, audit on (call + result record per read), decision cache on; same security on both legs\n\n")

	// Memory first, on a gateway that has served one session only.
	var mem *uaMem
	if *uaIdle > 0 {
		p := pols[0]
		m, err := b.idleMemory(gwCmd[p.name].Process.Pid, sim.Process.Pid, gwEP[p.name], p, *uaIdle)
		if err != nil {
			return fmt.Errorf("idle sessions: %w", err)
		}
		mem = &m
	}

	var results []uaResult
	ratios := map[string][]float64{} // gateway/direct p50 of each round, by policy and load
	loads := []int{1}
	if *uaSessions != 1 {
		loads = append(loads, *uaSessions)
	}
	for _, p := range pols {
		for _, n := range loads {
			paths := []struct{ name, ep string }{{"direct", simEP}, {"relay", relayEP}, {"go relay", goRelayEP}, {"gateway", gwEP[p.name]}}
			// every path's sessions stay open and the paths take turns, one
			// run each per round: drift of the machine hits them alike
			runs := make([][]uaMeasure, len(paths))
			conns := make([][]*gopcua.Client, len(paths))
			for i, path := range paths {
				cs, err := b.connect(path.ep, p, n)
				if err != nil {
					return fmt.Errorf("%s, %s, %d sessions: %w", path.name, p, n, err)
				}
				defer closeAll(cs)
				conns[i] = cs
			}
			for range e.runs {
				for i, path := range paths {
					pids := []int{sim.Process.Pid, 0}
					if path.name == "gateway" {
						pids[1] = gwCmd[p.name].Process.Pid
					}
					m, err := b.readLoad(conns[i], pids, *uaWarmup, *uaDuration)
					if err != nil {
						return fmt.Errorf("%s, %s, %d sessions: %w", path.name, p, n, err)
					}
					runs[i] = append(runs[i], m)
				}
				key := fmt.Sprint(p, n)
				ratios[key] = append(ratios[key], runs[3][len(runs[3])-1].p50/runs[0][len(runs[0])-1].p50)
			}
			for i, path := range paths {
				m := medianMeasure(runs[i])
				fmt.Fprintf(os.Stderr, "  %-29s %-8s %2d sessions: %7.0f reads/s  p50 %7.1f µs  p99 %8.1f µs  CPU/read sim %5.0f µs gateway %5.0f µs\n",
					p.String(), path.name, n, m.rps, m.p50, m.p99, m.simCPU, m.gwCPU)
				results = append(results, uaResult{p.String(), n, path.name, m})
			}
		}
	}
	get := func(pol string, n int, path string) uaMeasure {
		for _, r := range results {
			if r.policy == pol && r.sessions == n && r.path == path {
				return r.m
			}
		}
		return uaMeasure{}
	}

	fmt.Println("| security (both legs) | sessions | direct reads/s | gateway reads/s | gateway/direct | direct p50 µs | gateway p50 µs | gateway/direct | direct p99 µs | gateway p99 µs | gateway/direct |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	// rows prints one row per policy and load, then ends the table.
	rows := func(row func(p uaPolicy, n int, d, r, gr, g uaMeasure)) {
		for _, p := range pols {
			for _, n := range loads {
				row(p, n, get(p.String(), n, "direct"), get(p.String(), n, "relay"), get(p.String(), n, "go relay"), get(p.String(), n, "gateway"))
			}
		}
		fmt.Println()
	}
	rows(func(p uaPolicy, n int, d, _, _, g uaMeasure) {
		load := fmt.Sprintf("%d (sequential)", n)
		if n > 1 {
			load = fmt.Sprintf("%d (concurrent)", n)
		}
		fmt.Printf("| %s | %s | %s | %s | %.2f | %.1f | %.1f | %.2f× | %.1f | %.1f | %.2f× |\n",
			p, load, thousands(d.rps), thousands(g.rps), g.rps/d.rps, d.p50, g.p50, g.p50/d.p50, d.p99, g.p99, g.p99/d.p99)
	})

	fmt.Println("The same p50s beside two plain TCP relays between client and simulator, doing no work: haproxy in TCP mode (relay), the floor of any inline hop on this machine, and a relay in Go (two goroutines per connection, io.Copy each way: the floor of an inline hop written in Go):")
	fmt.Println()
	fmt.Println("| security (both legs) | sessions | direct p50 µs | relay p50 µs | Go relay p50 µs | gateway p50 µs | relay/direct | Go relay/direct | gateway/direct | gateway/relay | gateway − relay µs |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	rows(func(p uaPolicy, n int, d, r, gr, g uaMeasure) {
		fmt.Printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f× | %.2f× | %.2f× | %.2f× | %.0f |\n",
			p, n, d.p50, r.p50, gr.p50, g.p50, r.p50/d.p50, gr.p50/d.p50, g.p50/d.p50, g.p50/r.p50, g.p50-r.p50)
	})

	fmt.Println("CPU time per read (µs, from /proc/PID/stat over the measured time, 10 ms ticks; the client's own CPU not included):")
	fmt.Println()
	fmt.Println("| security (both legs) | sessions | direct: sim | gateway path: sim | gateway path: gateway |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	rows(func(p uaPolicy, n int, d, _, _, g uaMeasure) {
		fmt.Printf("| %s | %d | %.0f | %.0f | %.0f |\n", p, n, d.simCPU, g.simCPU, g.gwCPU)
	})

	// Each session sends its next Read when the answer comes, so the mean
	// latency is sessions ÷ reads/s (Little's law); beside the p50 it shows
	// how skewed each path's latencies are.
	fmt.Println("Mean latency per Read (sessions ÷ reads/s, each session in a closed loop) beside the p50:")
	fmt.Println()
	fmt.Println("| security (both legs) | sessions | direct mean µs | gateway mean µs | gateway/direct, means | direct p50/mean | gateway p50/mean |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	rows(func(p uaPolicy, n int, d, _, _, g uaMeasure) {
		dm, gm := float64(n)/d.rps*1e6, float64(n)/g.rps*1e6
		fmt.Printf("| %s | %d | %.1f | %.1f | %.2f× | %.2f | %.2f |\n", p, n, dm, gm, gm/dm, d.p50/dm, g.p50/gm)
	})

	fmt.Println("| target (issue 3) | measured | |")
	fmt.Println("| --- | ---: | --- |")
	if slices.ContainsFunc(pols, func(p uaPolicy) bool { return p.name == "None" }) {
		for _, n := range loads {
			d, g := get("None", n, "direct"), get("None", n, "gateway")
			rs := ratios[fmt.Sprint(uaPolicies["None"], n)]
			r := median(rs)
			fmt.Printf("| p50 through the gateway ≤ 2× direct at SecurityPolicy None, %s | %.2f× (median of %d rounds, %.2f–%.2f×; medians %.1f vs %.1f µs) | %s |\n",
				audit.Plural(n, "session"), r, len(rs), slices.Min(rs), slices.Max(rs), g.p50, d.p50, verdict(r <= uaTargetP50Ratio))
		}
	}
	if mem != nil {
		fmt.Printf("| memory per idle session stated | %.0f KiB RSS per session (%s) | stated |\n", mem.perSession/1024, mem.policy)
	}
	fmt.Println()

	if mem != nil {
		fmt.Println("| idle sessions through the gateway | security | gateway VmRSS before | after | growth per session | sim VmRSS growth per session | gateway CPU while they idle |")
		fmt.Println("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
		fmt.Printf("| %d | %s | %.1f MiB | %.1f MiB | %.0f KiB | %s | %.1f%% of a core |\n", mem.n, mem.policy,
			float64(mem.before)/(1<<20), float64(mem.after)/(1<<20), mem.perSession/1024, mem.simNote, 100*mem.idleCPU)
		fmt.Println()
		fmt.Println("The gateway's growth includes each session's upstream session on the simulator (the gateway's own client: its secure channel, and the goroutine that reads it while no request waits); the resident set is read from /proc/PID/status after a pause for the runtime to settle, not a forced GC.")
		fmt.Println()
	}
	return nil
}

// interlock runs the interlock binary to its end (certs init, certs trust).
func (e *env) interlock(args ...string) error {
	out, err := exec.CommandContext(e.ctx, e.bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("interlock %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// endpoint finds the endpoint description of policy p at url.
func (b *uaBench) endpoint(url string, p uaPolicy) (*ua.EndpointDescription, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if d, ok := b.discovery[url]; ok {
		url = d
	}
	eps, err := gopcua.GetEndpoints(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("GetEndpoints %s: %w", url, err)
	}
	for _, ep := range eps {
		if ep.SecurityPolicyURI == p.uri && ep.SecurityMode == p.mode {
			return ep, nil
		}
	}
	return nil, fmt.Errorf("%s offers no endpoint %s", url, p)
}

// connect opens n anonymous sessions at url under policy p.
func (b *uaBench) connect(url string, p uaPolicy, n int) ([]*gopcua.Client, error) {
	ep, err := b.endpoint(url, p)
	if err != nil {
		return nil, err
	}
	var cs []*gopcua.Client
	for range n {
		opts := []gopcua.Option{gopcua.AutoReconnect(false), gopcua.RequestTimeout(10 * time.Second),
			gopcua.AuthAnonymous(), gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous)}
		if p.mode != ua.MessageSecurityModeNone {
			opts = append(opts, gopcua.Certificate(b.cert), gopcua.PrivateKey(b.key))
		}
		c, err := gopcua.NewClient(url, opts...)
		if err == nil {
			ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
			err = c.Connect(ctx)
			cancel()
		}
		if err != nil {
			closeAll(cs)
			return nil, fmt.Errorf("connect %s (%s): %w", url, p, err)
		}
		cs = append(cs, c)
	}
	return cs, nil
}

func closeAll(cs []*gopcua.Client) {
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.Close(ctx)
		})
	}
	wg.Wait()
}

var uaReadReq = &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuasim.NodePressure),
	AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}

// read is one single-node Read that must come back Good.
func (b *uaBench) read(c *gopcua.Client) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	resp, err := c.Read(ctx, uaReadReq)
	if err != nil {
		return err
	}
	if len(resp.Results) != 1 || resp.Results[0].Status != ua.StatusOK {
		return fmt.Errorf("read answered %+v", resp.Results)
	}
	return nil
}

// medianMeasure is the median of each figure over the runs of one cell.
func medianMeasure(ms []uaMeasure) uaMeasure {
	var rs, p50s, p99s, sims, gws []float64
	for _, m := range ms {
		rs, p50s, p99s = append(rs, m.rps), append(p50s, m.p50), append(p99s, m.p99)
		sims, gws = append(sims, m.simCPU), append(gws, m.gwCPU)
	}
	return uaMeasure{measure{rps: median(rs), p50: median(p50s), p99: median(p99s)}, median(sims), median(gws)}
}

// readLoad has every session read in a closed loop and measures the time
// after the warm-up only.
func (b *uaBench) readLoad(cs []*gopcua.Client, pids []int, warm, dur time.Duration) (uaMeasure, error) {
	from := time.Now().Add(warm)
	end := from.Add(dur)
	// CPU time of the processes over the measured time.
	cpu := make([]float64, len(pids))
	var cpuErr error
	cpuDone := make(chan struct{})
	go func() {
		defer close(cpuDone)
		time.Sleep(time.Until(from))
		t0 := make([]time.Duration, len(pids))
		for i, pid := range pids {
			if pid != 0 {
				t0[i], cpuErr = procCPU(pid)
			}
		}
		time.Sleep(time.Until(end))
		for i, pid := range pids {
			if pid != 0 && cpuErr == nil {
				var t1 time.Duration
				t1, cpuErr = procCPU(pid)
				cpu[i] = float64(t1 - t0[i])
			}
		}
	}()
	lat := make([][]time.Duration, len(cs))
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			for {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				if err := b.read(c); err != nil {
					errs[i] = err
					return
				}
				if t0.After(from) {
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	<-cpuDone
	if err := errors.Join(append(errs, cpuErr)...); err != nil {
		return uaMeasure{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return uaMeasure{}, errors.New("no answers")
	}
	slices.Sort(all)
	us := func(q float64) float64 { return float64(quantile(all, q)) / 1e3 }
	perRead := func(d float64) float64 { return d / 1e3 / float64(len(all)) }
	return uaMeasure{measure{rps: float64(len(all)) / dur.Seconds(), p50: us(0.50), p99: us(0.99)},
		perRead(cpu[0]), perRead(cpu[1])}, nil
}

// procCPU is the user and system CPU time a process has used
// (/proc/PID/stat, in clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime (fields 14 and 15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// uaMem is the idle-session memory measurement.
type uaMem struct {
	n             int
	policy        string
	before, after int64 // gateway VmRSS, bytes
	perSession    float64
	simNote       string
	idleCPU       float64 // share of one core the gateway used while the sessions were idle
}

// idleMemory opens n sessions through the gateway (pid), each with one Read
// so that its upstream session exists too, and reports the growth of the
// gateway's resident set.
func (b *uaBench) idleMemory(pid, simPid int, url string, p uaPolicy, n int) (uaMem, error) {
	// One session first, so that what every session shares (the policy's
	// first evaluation, the browse path cache, buffers) is there before.
	warm, err := b.connect(url, p, 1)
	if err != nil {
		return uaMem{}, err
	}
	for range 100 {
		if err := b.read(warm[0]); err != nil {
			closeAll(warm)
			return uaMem{}, err
		}
	}
	closeAll(warm)
	settle := func() { time.Sleep(3 * time.Second) }
	settle()
	before, err := vmRSS(pid)
	if err != nil {
		return uaMem{}, err
	}
	simBefore, err := vmRSS(simPid)
	if err != nil {
		return uaMem{}, err
	}
	cs, err := b.connect(url, p, n)
	if err != nil {
		return uaMem{}, err
	}
	defer closeAll(cs)
	for _, c := range cs {
		if err := b.read(c); err != nil {
			return uaMem{}, err
		}
	}
	cpu0, err := procCPU(pid)
	if err != nil {
		return uaMem{}, err
	}
	t0 := time.Now()
	settle()
	cpu1, err := procCPU(pid)
	if err != nil {
		return uaMem{}, err
	}
	idleCPU := float64(cpu1-cpu0) / float64(time.Since(t0))
	after, err := vmRSS(pid)
	if err != nil {
		return uaMem{}, err
	}
	simAfter, err := vmRSS(simPid)
	if err != nil {
		return uaMem{}, err
	}
	m := uaMem{n: n, policy: p.String(), before: before, after: after, idleCPU: idleCPU,
		perSession: float64(after-before) / float64(n),
		simNote:    fmt.Sprintf("%.0f KiB", float64(simAfter-simBefore)/float64(n)/1024)}
	fmt.Fprintf(os.Stderr, "  idle sessions: %d through the gateway (%s): VmRSS %.1f -> %.1f MiB, %.0f KiB per session\n",
		n, p, float64(before)/(1<<20), float64(after)/(1<<20), m.perSession/1024)
	return m, nil
}

// vmRSS is a process's resident set size in bytes (/proc/PID/status).
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
