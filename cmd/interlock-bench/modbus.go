package main

// The modbus section: what the gateway costs on the wire. FC 3 reads in a
// closed loop at 1 and 16 connections, against the same fast upstream three
// ways — directly, through a plain TCP relay (haproxy in TCP mode: the floor
// for any inline hop), and through interlock with the quickstart policy and
// the audit log on — with throughput, p50/p99 and the ratios gateway/relay.
// With --tls (the default) the same reads over Modbus/TCP Security (TLS 1.3,
// a client certificate with a role) through haproxy terminating TLS and
// through the gateway's tls listener, each connection's handshake done
// before the measured time; with --handshakes (the default) new connections
// a second, each a connect, a handshake when TLS, one read and a close.

import (
	"crypto/tls"
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
	mbTLS       = flag.Bool("tls", true, "modbus: also measure Modbus/TCP Security (TLS 1.3, client certificates) through haproxy terminating TLS and through the gateway's tls listener")
	mbHandshake = flag.Bool("handshakes", true, "modbus: also measure new connections a second (connect, TLS handshake when TLS, one read, close) through the relays and the gateway")
)

func init() {
	addSuite(suite{name: "modbus", order: 10, run: runModbus,
		about: "FC 3 reads at 1 and 16 connections: direct, haproxy relay, interlock (ratios gateway/relay); the same over TLS (haproxy terminating TLS, interlock tls listener); new connections a second"})
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
	pathRelayT = "relay (haproxy, TLS)"
	pathGWT    = "interlock (TLS)"
)

// A path is where the clients connect; with tls set they speak Modbus/TCP
// Security there.
type path struct {
	name string
	addr string
	tls  *tls.Config
}

// dial connects to p, doing the TLS handshake when p is TLS.
func dial(p path) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if p.tls != nil {
		return tls.DialWithDialer(d, "tcp", p.addr, p.tls)
	}
	return d.Dial("tcp", p.addr)
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
	paths := []path{{name: pathDirect, addr: simAddr}, {name: pathRelay, addr: relayAddr},
		{name: pathGW, addr: gwAddr}, {name: pathGW1, addr: gw1Addr}}
	if *mbTLS {
		pki, err := newBenchPKI(e.work)
		if err != nil {
			return fmt.Errorf("making the TLS certificates: %w", err)
		}
		relayTAddr, err := startRelayTLS(e, "haproxy-tls", simAddr, pki)
		if err != nil {
			return err
		}
		gwTAddr, err := startGatewayTLS(e, "gateway-tls", simAddr, absPolicy, maxConns, *mbCacheFlag, pki)
		if err != nil {
			return err
		}
		paths = append(paths, path{name: pathRelayT, addr: relayTAddr, tls: pki.client},
			path{name: pathGWT, addr: gwTAddr, tls: pki.client})
	}
	for _, p := range paths {
		if err := waitPort(p.addr, 10*time.Second); err != nil {
			return fmt.Errorf("%s at %s: %w (logs in %s)", p.name, p.addr, err, e.work)
		}
	}

	fmt.Printf("interlock-bench: FC 3 read of %d registers, closed loop; %d runs of %s (+%s warm-up) per cell, median shown\n",
		qty, runs, dur, warm)
	fmt.Printf("audit on (call + result record per read), policy %s, decision cache %s\n",
		*mbPolicy, onOff(*mbCacheFlag))
	fmt.Printf("interlock opens %d upstream connections (one per client at most, as the relay does); %q shares one\n",
		maxConns, pathGW1)
	if *mbTLS {
		fmt.Printf("TLS rows: TLS 1.3, ECDSA P-256 certificates, client certificate (CN alice, Modbus role engineer) verified by haproxy and interlock;\n" +
			"plain TCP from the hop to the simulator; each connection's handshake is done before the measured time\n")
	}
	fmt.Println()
	results, err := measurePaths(paths, conns, func(p path, n int) (measure, error) {
		return loadRuns(p, n, qty, runs, warm, dur)
	})
	if err != nil {
		return err
	}
	printPaths("req/s", paths, conns, results)
	fmt.Println("| conns | throughput gateway/relay | throughput gateway/direct | p50 gateway/relay | p99 gateway/relay | throughput 1-upstream-conn gateway/relay |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, n := range conns {
		g, r, d, g1 := results[pathGW][n], results[pathRelay][n], results[pathDirect][n], results[pathGW1][n]
		fmt.Printf("| %d | %.2f | %.2f | %.2f× | %.2f× | %.2f |\n", n, g.rps/r.rps, g.rps/d.rps, g.p50/r.p50, g.p99/r.p99, g1.rps/r.rps)
	}
	fmt.Println()
	if *mbTLS {
		fmt.Println("| conns | throughput interlock TLS/haproxy TLS | p50 interlock TLS/haproxy TLS | p99 interlock TLS/haproxy TLS | throughput interlock TLS/interlock plain | p50 interlock TLS/interlock plain | throughput haproxy TLS/haproxy plain |")
		fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
		for _, n := range conns {
			gt, rt, g, r := results[pathGWT][n], results[pathRelayT][n], results[pathGW][n], results[pathRelay][n]
			fmt.Printf("| %d | %.2f | %.2f× | %.2f× | %.2f | %.2f× | %.2f |\n", n, gt.rps/rt.rps, gt.p50/rt.p50, gt.p99/rt.p99,
				gt.rps/g.rps, gt.p50/g.p50, rt.rps/r.rps)
		}
		fmt.Println()
	}
	if *mbHandshake {
		return newConnTable(paths, conns, qty, runs, warm, dur)
	}
	return nil
}

// measurePaths measures every path at every number of connections, the
// paths in turn for each number.
func measurePaths(paths []path, conns []int, m func(p path, n int) (measure, error)) (map[string]map[int]measure, error) {
	res := map[string]map[int]measure{}
	for _, n := range conns {
		for _, p := range paths {
			c, err := m(p, n)
			if err != nil {
				return nil, err
			}
			if res[p.name] == nil {
				res[p.name] = map[int]measure{}
			}
			res[p.name][n] = c
		}
	}
	return res, nil
}

// printPaths prints a table of res, a row per number of connections and
// path; rate names its rate column.
func printPaths(rate string, paths []path, conns []int, res map[string]map[int]measure) {
	fmt.Printf("| path | conns | %s | p50 µs | p99 µs |\n", rate)
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	for _, n := range conns {
		for _, p := range paths {
			c := res[p.name][n]
			fmt.Printf("| %s | %d | %.0f | %.1f | %.1f |\n", p.name, n, c.rps, c.p50, c.p99)
		}
	}
	fmt.Println()
}

// newConnTable measures new connections a second through the relays and the
// gateway (with as many upstream connections as clients), plain and TLS,
// and prints them.
func newConnTable(paths []path, conns []int, qty, runs int, warm, dur time.Duration) error {
	var hp []path
	for _, p := range paths {
		if p.name != pathDirect && p.name != pathGW1 {
			hp = append(hp, p)
		}
	}
	hs := ""
	if *mbTLS {
		hs = " (TLS rows: a full TLS handshake, no resumption)"
	}
	fmt.Printf("new connections: each client connects%s, does one FC 3 read, and closes, over and over;\n"+
		"latency is from the dial to the answer; the gateway opens a session (policy decision, session records in the audit log) for each\n\n", hs)
	res, err := measurePaths(hp, conns, func(p path, n int) (measure, error) {
		return runsOf(p, n, runs, "new conns/s", func() (measure, error) { return connLoad(p, n, qty, warm, dur) })
	})
	if err != nil {
		return err
	}
	printPaths("new conns/s", hp, conns, res)
	if _, ok := res[pathGWT]; ok {
		fmt.Println("| conns | new conns/s interlock TLS/haproxy TLS | interlock TLS/interlock plain | haproxy TLS/haproxy plain |")
		fmt.Println("| ---: | ---: | ---: | ---: |")
		for _, n := range conns {
			fmt.Printf("| %d | %.2f | %.2f | %.2f |\n", n, res[pathGWT][n].rps/res[pathRelayT][n].rps,
				res[pathGWT][n].rps/res[pathGW][n].rps, res[pathRelayT][n].rps/res[pathRelay][n].rps)
		}
		fmt.Println()
	}
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
	return runsOf(p, n, runs, "req/s", func() (measure, error) { return load(p, n, qty, warm, dur) })
}

// runsOf runs one cell runs times and returns the medians; unit names what
// rps counts in the progress line.
func runsOf(p path, n, runs int, unit string, run func() (measure, error)) (measure, error) {
	var rs, p50s, p99s []float64
	for range runs {
		m, err := run()
		if err != nil {
			return measure{}, fmt.Errorf("%s, %d conns: %w", p.name, n, err)
		}
		rs, p50s, p99s = append(rs, m.rps), append(p50s, m.p50), append(p99s, m.p99)
	}
	c := measure{rps: median(rs), p50: median(p50s), p99: median(p99s)}
	fmt.Fprintf(os.Stderr, "  %-28s %2d conns: %8.0f %s  p50 %6.1f µs  p99 %7.1f µs  (runs: %s)\n",
		p.name, n, c.rps, unit, c.p50, c.p99, joinf(rs))
	return c, nil
}

// startGateway writes a gateway configuration with upConns upstream
// connections and the decision cache on or off, and starts it; it returns
// the listen address.
func startGateway(e *env, name, simAddr, policyDir string, upConns int, cache bool, profile string) (string, error) {
	return startGatewayWith(e, name, simAddr, policyDir, upConns, cache, profile, "")
}

// startGatewayTLS is startGateway with a Modbus/TCP Security listener:
// pki's server certificate, its CA for the clients' certificates.
func startGatewayTLS(e *env, name, simAddr, policyDir string, upConns int, cache bool, pki *benchPKI) (string, error) {
	return startGatewayWith(e, name, simAddr, policyDir, upConns, cache, "", fmt.Sprintf(
		"    tls: {cert: %s, key: %s, client_ca: %s, handshake_timeout: 10s}\n", pki.serverCert, pki.serverKey, pki.caFile))
}

// startGatewayWith is startGateway with more lines for the listener.
func startGatewayWith(e *env, name, simAddr, policyDir string, upConns int, cache bool, profile, listenerExtra string) (string, error) {
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
%ssources:
  - {address: 127.0.0.1, name: ews-alice, owner: alice, user: alice, roles: [engineer]}
policy:
  path: %s
  decision_cache: {disabled: %t}
audit:
  path: %s
`, gwAddr, simAddr, upConns, listenerExtra, policyDir, !cache, filepath.Join(e.work, name+"-audit.jsonl"))), 0o644); err != nil {
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
func load(p path, n, qty int, warm, dur time.Duration) (measure, error) {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	start := time.Now()
	measureFrom := start.Add(warm)
	end := measureFrom.Add(dur)
	for i := range n {
		wg.Go(func() {
			lat[i], errs[i] = client(p, uint16(i*qty), qty, measureFrom, end)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return measure{}, err
	}
	return summarize(lat, dur)
}

// summarize is the throughput and latency quantiles of the latencies
// measured in dur.
func summarize(lat [][]time.Duration, dur time.Duration) (measure, error) {
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
// The connection (and its TLS handshake) is made before the first read.
func client(p path, reg uint16, qty int, from, end time.Time) ([]time.Duration, error) {
	c, err := dial(p)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rd := newReader(reg, qty)
	var lat []time.Duration
	for tid := uint16(1); ; tid++ {
		t0 := time.Now()
		if t0.After(end) {
			return lat, nil
		}
		if err := rd.read(c, tid, t0); err != nil {
			return nil, err
		}
		if t0.After(from) {
			lat = append(lat, time.Since(t0))
		}
	}
}

// reader sends one FC 3 read of qty registers at reg and checks its answer.
type reader struct{ req, resp []byte }

func newReader(reg uint16, qty int) *reader {
	req := []byte{0, 0, 0, 0, 0, 6, 1, 3, 0, 0, 0, byte(qty)}
	binary.BigEndian.PutUint16(req[8:], reg)
	return &reader{req: req, resp: make([]byte, 9+2*qty)}
}

func (r *reader) read(c net.Conn, tid uint16, t0 time.Time) error {
	binary.BigEndian.PutUint16(r.req, tid)
	c.SetDeadline(t0.Add(5 * time.Second))
	if _, err := c.Write(r.req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, r.resp); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if binary.BigEndian.Uint16(r.resp) != tid || r.resp[7] != 3 {
		return fmt.Errorf("unexpected answer % x", r.resp)
	}
	return nil
}

// connLoad drives n clients that each connect (with the TLS handshake when
// p is TLS), read once and close, over and over; the latency is from the
// dial to the answer.
func connLoad(p path, n, qty int, warm, dur time.Duration) (measure, error) {
	var wg sync.WaitGroup
	lat := make([][]time.Duration, n)
	errs := make([]error, n)
	measureFrom := time.Now().Add(warm)
	end := measureFrom.Add(dur)
	for i := range n {
		wg.Go(func() {
			rd := newReader(uint16(i*qty), qty)
			for {
				t0 := time.Now()
				if t0.After(end) {
					return
				}
				c, err := dial(p)
				if err == nil {
					err = rd.read(c, 1, t0)
					c.Close()
				}
				if err != nil {
					errs[i] = err
					return
				}
				if t0.After(measureFrom) {
					lat[i] = append(lat[i], time.Since(t0))
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return measure{}, err
	}
	return summarize(lat, dur)
}

// startRelay starts haproxy as a plain TCP relay to target (the floor of
// what any inline hop costs) and returns the address it listens on.
func startRelay(e *env, name, target string) (string, error) {
	return startHaproxy(e, name, target, "")
}

// startRelayTLS starts haproxy terminating TLS (pki's server certificate,
// client certificates verified against its CA) and relaying the plain TCP
// inside to target: the floor of a TLS-terminating hop.
func startRelayTLS(e *env, name, target string, pki *benchPKI) (string, error) {
	return startHaproxy(e, name, target, fmt.Sprintf(" ssl crt %s ca-file %s verify required", pki.serverPEM, pki.caFile))
}

// startHaproxy starts haproxy in TCP mode relaying to target, with bindOpts
// after the address of its bind line.
func startHaproxy(e *env, name, target, bindOpts string) (string, error) {
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
  bind %s%s
  default_backend upstream
backend upstream
  server upstream %s
`, addr, bindOpts, target)), 0o644); err != nil {
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
