// Command interlock-bench measures what the gateway costs on the wire: FC 3
// reads in a closed loop at 1 and 16 connections, against the same fast
// upstream three ways in one run — directly, through a plain TCP relay
// (haproxy in TCP mode: the floor for any inline hop), and through interlock
// with the quickstart policy and the audit log on. It prints throughput and
// p50/p99 latency side by side, with the ratios gateway/relay, as medians of
// several runs (machines here are shared and noisy).
//
//	go run ./cmd/interlock-bench --interlock bin/interlock
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("interlock", "bin/interlock", "interlock binary")
	haproxy := flag.String("haproxy", "haproxy", "haproxy binary (the TCP relay)")
	policyDir := flag.String("policy", "examples/quickstart/policy", "policy directory for the gateway")
	dur := flag.Duration("duration", 5*time.Second, "measured time of one run")
	warm := flag.Duration("warmup", time.Second, "unmeasured time before each run")
	runs := flag.Int("runs", 3, "runs per cell; the median is reported")
	connList := flag.String("conns", "1,16", "client connection counts")
	qty := flag.Int("quantity", 10, "registers per read")
	profile := flag.String("cpu-profile", "", "write the gateway's CPU profile to this file")
	cache := flag.Bool("decision-cache", true, "the gateway's policy decision cache (policy.decision_cache)")
	flag.Parse()
	decisionCache = *cache
	if err := run(*bin, *haproxy, *policyDir, *dur, *warm, *runs, *connList, *qty, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "interlock-bench:", err)
		os.Exit(1)
	}
}

type path struct {
	name string
	addr string
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

// decisionCache turns the gateway's decision cache on or off.
var decisionCache = true

func run(bin, haproxyBin, policyDir string, dur, warm time.Duration, runs int, connList string, qty int, profile string) error {
	var conns []int
	for _, f := range strings.Split(connList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--conns: %q is not a positive number", f)
		}
		conns = append(conns, n)
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	absPolicy, err := filepath.Abs(policyDir)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "interlock-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(context.Background())
	defer children.Wait()
	defer cancel()

	simAddr := freeAddr()
	if err := start(ctx, work, "sim", absBin, "sim", "modbus", "--listen", simAddr); err != nil {
		return err
	}
	relayAddr := freeAddr()
	hcfg := filepath.Join(work, "haproxy.cfg")
	if err := os.WriteFile(hcfg, []byte(fmt.Sprintf(`global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend relay
  bind %s
  default_backend plc
backend plc
  server plc %s
`, relayAddr, simAddr)), 0o644); err != nil {
		return err
	}
	if err := start(ctx, work, "haproxy", haproxyBin, "-f", hcfg, "-db"); err != nil {
		return fmt.Errorf("%w (install it: apt-get install haproxy, or make peers)", err)
	}
	maxConns := slices.Max(conns)
	gwAddr, err := startGateway(ctx, work, "gateway", absBin, simAddr, absPolicy, maxConns, profile)
	if err != nil {
		return err
	}
	gw1Addr, err := startGateway(ctx, work, "gateway1", absBin, simAddr, absPolicy, 1, "")
	if err != nil {
		return err
	}
	paths := []path{{pathDirect, simAddr}, {pathRelay, relayAddr}, {pathGW, gwAddr}, {pathGW1, gw1Addr}}
	for _, p := range paths {
		if err := waitPort(p.addr, 10*time.Second); err != nil {
			return fmt.Errorf("%s at %s: %w (logs in %s)", p.name, p.addr, err, work)
		}
	}

	fmt.Printf("interlock-bench: FC 3 read of %d registers, closed loop; %d runs of %s (+%s warm-up) per cell, median shown\n",
		qty, runs, dur, warm)
	fmt.Printf("machine: %s/%s, %d CPUs, %s; audit on (call + result record per read), quickstart policy, decision cache %s\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), map[bool]string{true: "on", false: "off"}[decisionCache])
	fmt.Printf("interlock opens %d upstream connections (one per client at most, as the relay does); %q shares one\n\n",
		maxConns, pathGW1)
	type cell struct{ rps, p50, p99 float64 }
	results := map[string]map[int]cell{}
	for _, n := range conns {
		for _, p := range paths {
			var rs, p50s, p99s []float64
			for range runs {
				m, err := load(p.addr, n, qty, warm, dur)
				if err != nil {
					return fmt.Errorf("%s, %d conns: %w", p.name, n, err)
				}
				rs, p50s, p99s = append(rs, m.rps), append(p50s, m.p50), append(p99s, m.p99)
			}
			if results[p.name] == nil {
				results[p.name] = map[int]cell{}
			}
			results[p.name][n] = cell{median(rs), median(p50s), median(p99s)}
			c := results[p.name][n]
			fmt.Fprintf(os.Stderr, "  %-28s %2d conns: %8.0f req/s  p50 %6.1f µs  p99 %7.1f µs  (runs: %s req/s)\n",
				p.name, n, c.rps, c.p50, c.p99, joinf(rs))
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
	return nil
}

// startGateway writes a gateway configuration with upConns upstream
// connections and starts it; it returns the listen address.
func startGateway(ctx context.Context, work, name, bin, simAddr, policyDir string, upConns int, profile string) (string, error) {
	gwAddr := freeAddr()
	gcfg := filepath.Join(work, name+".yaml")
	if err := os.WriteFile(gcfg, []byte(fmt.Sprintf(`gateway:
  id: bench
  log_level: warn
listeners:
  - name: plc1
    protocol: modbus
    listen: %s
    upstream: tcp://%s
    limits: {max_conns: 200}
    modbus: {upstream_conns: %d}
sources:
  - {address: 127.0.0.1, name: ews-alice, owner: alice, user: alice, roles: [engineer]}
policy:
  path: %s
  decision_cache: {disabled: %t}
audit:
  path: %s
`, gwAddr, simAddr, upConns, policyDir, !decisionCache, filepath.Join(work, name+"-audit.jsonl"))), 0o644); err != nil {
		return "", err
	}
	args := []string{"run", "--config", gcfg, "--log-format", "json"}
	if profile != "" {
		args = append(args, "--cpu-profile", profile)
	}
	return gwAddr, start(ctx, work, name, bin, args...)
}

type measure struct{ rps, p50, p99 float64 }

// load drives n connections, each sending the next read as soon as the last
// answer arrived, and measures the second half of the time only.
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
	us := func(q float64) float64 { return float64(all[int(q*float64(len(all)-1))]) / 1e3 }
	return measure{rps: float64(len(all)) / dur.Seconds(), p50: us(0.50), p99: us(0.99)}, nil
}

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

func start(ctx context.Context, dir, name, bin string, args ...string) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Stop with SIGTERM so the gateway shuts down cleanly (and writes its
	// CPU profile); kill whatever is still running 5 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	children.Add(1)
	go func() { cmd.Wait(); logf.Close(); children.Done() }()
	return nil
}

// children are the processes start started; run waits for them to stop.
var children sync.WaitGroup

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitPort(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func joinf(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(s, ", ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
