package main

// The modbus section: what the gateway costs on the wire. FC 3 reads in a
// closed loop at 1 and 16 connections, against the same fast upstream three
// ways — directly, through a plain TCP relay (haproxy in TCP mode: the floor
// for any inline hop), and through interlock with the quickstart policy and
// the audit log on — with throughput, p50/p99 and the ratios gateway/relay.

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	mbHaproxy   = flag.String("haproxy", "haproxy", "haproxy binary (the TCP relay of the modbus and opcua sections)")
	mbPolicy    = flag.String("policy", "examples/quickstart/policy", "modbus: policy directory for the gateway")
	mbDuration  = flag.Duration("duration", 5*time.Second, "modbus: measured time of one run")
	mbWarmup    = flag.Duration("warmup", time.Second, "modbus, policy polling: unmeasured time before each run")
	mbConns     = flag.String("conns", "1,16", "modbus, policy polling: client connection counts")
	mbQuantity  = flag.Int("quantity", 10, "modbus, policy polling: registers per read")
	mbProfile   = flag.String("cpu-profile", "", "modbus: write the gateway's CPU profile to this file")
	mbCacheFlag = flag.Bool("decision-cache", true, "modbus: the gateway's policy decision cache (policy.decision_cache)")
)

func init() {
	addSuite(suite{name: "modbus", order: 10, run: runModbus,
		about: "FC 3 reads at 1 and 16 connections: direct, haproxy relay, interlock (ratios gateway/relay)"})
}

// Path names; the ratios compare the gateway with as many upstream
// connections as the relay opens (one per client) to the relay. The gateway
// with its default single shared upstream connection is shown beside them:
// there every request waits its turn on the one connection to the device.
const (
	pathDirect = "direct"
	pathRelay  = "relay (haproxy)"
	pathGW     = "interlock"
	pathGW1    = "interlock, 1 upstream conn"
)

type path struct {
	name string
	addr string
}

// parseConns parses a comma-separated list of positive counts given to
// the flag named name.
func parseConns(name, list string) ([]int, error) {
	var conns []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--%s: %q is not a positive number", name, f)
		}
		conns = append(conns, n)
	}
	return conns, nil
}

func runModbus(e *env) error {
	conns, err := parseConns("conns", *mbConns)
	if err != nil {
		return err
	}
	absPolicy, err := filepath.Abs(*mbPolicy)
	if err != nil {
		return err
	}
	runs, dur, warm, qty := e.runs, *mbDuration, *mbWarmup, *mbQuantity

	simAddr := freeAddr()
	if err := e.start("sim", e.bin, "sim", "modbus", "--listen", simAddr); err != nil {
		return err
	}
	relayAddr, err := startRelay(e, "haproxy", simAddr)
	if err != nil {
		return err
	}
	maxConns := slices.Max(conns)
	gwAddr, err := startGateway(e, "gateway", simAddr, absPolicy, maxConns, *mbCacheFlag, *mbProfile)
	if err != nil {
		return err
	}
	gw1Addr, err := startGateway(e, "gateway1", simAddr, absPolicy, 1, *mbCacheFlag, "")
	if err != nil {
		return err
	}
	paths := []path{{pathDirect, simAddr}, {pathRelay, relayAddr}, {pathGW, gwAddr}, {pathGW1, gw1Addr}}
	for _, p := range paths {
		if err := waitPort(p.addr, 10*time.Second); err != nil {
			return fmt.Errorf("%s at %s: %w (logs in %s)", p.name, p.addr, err, e.work)
		}
	}

	fmt.Printf("interlock-bench: FC 3 read of %d registers, closed loop; %d runs of %s (+%s warm-up) per cell, median shown\n",
		qty, runs, dur, warm)
	fmt.Printf("audit on (call + result record per read), policy %s, decision cache %s\n",
		*mbPolicy, onOff(*mbCacheFlag))
	fmt.Printf("interlock opens %d upstream connections (one per client at most, as the relay does); %q shares one\n\n",
		maxConns, pathGW1)
	results := map[string]map[int]measure{}
	for _, n := range conns {
		for _, p := range paths {
			c, err := loadRuns(p, n, qty, runs, warm, dur)
			if err != nil {
				return err
			}
			if results[p.name] == nil {
				results[p.name] = map[int]measure{}
			}
			results[p.name][n] = c
		}
	}
	fmt.Println("| path | conns | req/s | p50 µs | p99 µs |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	for _, n := range conns {
		for _, p := range paths {
			c := results[p.name][n]
			fmt.Printf("| %s | %d | %.0f | %.1f | %.1f |\n", p.name, n, c.rps, c.p50, c.p99)
		}
	}
	fmt.Println()
	fmt.Println("| conns | throughput gateway/relay | throughput gateway/direct | p50 gateway/relay | p99 gateway/relay | throughput 1-upstream-conn gateway/relay |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, n := range conns {
		g, r, d, g1 := results[pathGW][n], results[pathRelay][n], results[pathDirect][n], results[pathGW1][n]
		fmt.Printf("| %d | %.2f | %.2f | %.2f× | %.2f× | %.2f |\n", n, g.rps/r.rps, g.rps/d.rps, g.p50/r.p50, g.p99/r.p99, g1.rps/r.rps)
	}
	fmt.Println()
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// loadRuns measures one path at n connections runs times and returns the
// medians; the runs go to stderr as they finish.
func loadRuns(p path, n, qty, runs int, warm, dur time.Duration) (measure, error) {
	var rs, p50s, p99s []float64
	for range runs {
		m, err := load(p.addr, n, qty, warm, dur)
		if err != nil {
			return measure{}, fmt.Errorf("%s, %d conns: %w", p.name, n, err)
		}
		rs, p50s, p99s = append(rs, m.rps), append(p50s, m.p50), append(p99s, m.p99)
	}
	c := measure{rps: median(rs), p50: median(p50s), p99: median(p99s)}
	fmt.Fprintf(os.Stderr, "  %-28s %2d conns: %8.0f req/s  p50 %6.1f µs  p99 %7.1f µs  (runs: %s req/s)\n",
		p.name, n, c.rps, c.p50, c.p99, joinf(rs))
	return c, nil
}

// startGateway writes a gateway configuration with upConns upstream
// connections and the decision cache on or off, and starts it; it returns
// the listen address.
func startGateway(e *env, name, simAddr, policyDir string, upConns int, cache bool, profile string) (string, error) {
	gwAddr := freeAddr()
	gcfg := filepath.Join(e.work, name+".yaml")
	if err := os.WriteFile(gcfg, []byte(fmt.Sprintf(`gateway:
  id: bench
  log_level: warn
listeners:
  - name: plc1
    protocol: modbus
    listen: %s
    upstream: tcp://%s
    limits: {max_conns: 200, max_conns_per_source: 200, conn_rate_per_source: 0} # every client is on 127.0.0.1
    modbus: {upstream_conns: %d}
sources:
  - {address: 127.0.0.1, name: ews-alice, owner: alice, user: alice, roles: [engineer]}
policy:
  path: %s
  decision_cache: {disabled: %t}
audit:
  path: %s
`, gwAddr, simAddr, upConns, policyDir, !cache, filepath.Join(e.work, name+"-audit.jsonl"))), 0o644); err != nil {
		return "", err
	}
	args := []string{"run", "--config", gcfg, "--log-format", "json"}
	if profile != "" {
		args = append(args, "--cpu-profile", profile)
	}
	return gwAddr, e.startHop(name, e.bin, args...)
}

// measure is one cell: throughput, latency quantiles in µs, and (decisions
// only) mean CPU µs per operation.
type measure struct{ rps, p50, p99, cpu float64 }

// load drives n connections, each sending the next read as soon as the last
// answer arrived, and measures the time after the warm-up only.
func load(addr string, n, qty int, warm, dur time.Duration) (measure, error) {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	start := time.Now()
	measureFrom := start.Add(warm)
	end := measureFrom.Add(dur)
	for i := range n {
		wg.Go(func() {
			lat[i], errs[i] = client(addr, uint16(i*qty), qty, measureFrom, end)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return measure{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return measure{}, errors.New("no answers")
	}
	slices.Sort(all)
	us := func(q float64) float64 { return float64(quantile(all, q)) / 1e3 }
	return measure{rps: float64(len(all)) / dur.Seconds(), p50: us(0.50), p99: us(0.99)}, nil
}

// client repeats one read of qty registers at reg, as a polling HMI does.
func client(addr string, reg uint16, qty int, from, end time.Time) ([]time.Duration, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	req := []byte{0, 0, 0, 0, 0, 6, 1, 3, 0, 0, 0, byte(qty)}
	binary.BigEndian.PutUint16(req[8:], reg)
	resp := make([]byte, 9+2*qty)
	var lat []time.Duration
	for tid := uint16(1); ; tid++ {
		binary.BigEndian.PutUint16(req, tid)
		t0 := time.Now()
		if t0.After(end) {
			return lat, nil
		}
		c.SetDeadline(t0.Add(5 * time.Second))
		if _, err := c.Write(req); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if binary.BigEndian.Uint16(resp) != tid || resp[7] != 3 {
			return nil, fmt.Errorf("unexpected answer % x", resp)
		}
		if t0.After(from) {
			lat = append(lat, time.Since(t0))
		}
	}
}

// startRelay starts haproxy as a plain TCP relay to target (the floor of
// what any inline hop costs) and returns the address it listens on.
func startRelay(e *env, name, target string) (string, error) {
	addr := freeAddr()
	cfg := filepath.Join(e.work, name+".cfg")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend relay
  bind %s
  default_backend upstream
backend upstream
  server upstream %s
`, addr, target)), 0o644); err != nil {
		return "", err
	}
	if err := e.startHop(name, *mbHaproxy, "-f", cfg, "-db"); err != nil {
		return "", fmt.Errorf("%w (install it: apt-get install haproxy, or make peers)", err)
	}
	if err := waitPort(addr, 30*time.Second); err != nil {
		return "", fmt.Errorf("%s at %s: %w (log in %s)", name, addr, err, e.work)
	}
	return addr, nil
}
