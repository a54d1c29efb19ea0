// Command interlock-bench measures Interlock in one run, section by section,
// and prints each section's numbers as markdown tables, medians of several
// runs (machines here are shared and noisy), beside the targets they are
// held to:
//
//   - modbus: what the gateway costs on the wire: FC 3 reads in a closed
//     loop at 1 and 16 connections, directly, through a plain TCP relay
//     (haproxy) and through interlock, with the ratios gateway/relay, and
//     the same over Modbus/TCP Security (haproxy terminating TLS, the
//     gateway's tls listener) with new connections a second;
//   - audit: records/s appended with the hash chain at 1 and 16 writers
//     (reads, and state-changing calls fsynced by group commit, with the
//     latency a caller sees), and `interlock audit query` and `audit report`
//     over a generated log of 1,000,000 records (time, records/s, peak RSS);
//   - policy: decision latency (p50/p99) with and without the decision cache
//     for every policy of the library and the quickstart policy, a read and
//     a write each, and the gateway's throughput for a polling HMI with the
//     cache on and off;
//   - opcua: single-node Reads directly and through the gateway, one session
//     sequentially and 8 sessions at once, at SecurityPolicy None and
//     Basic256Sha256 SignAndEncrypt on both legs, and the gateway's memory
//     per idle session.
//
// Each section is one file (modbus.go, audit.go, policy.go, opcua.go) that declares
// its own flags and registers itself from init with addSuite (name, order:
// 10, 20, 30, 40 so far, the next one 50); --suite picks some of them. A
// section prints its own markdown tables to stdout, its progress to
// stderr, and gets an env: the interlock binary, a work directory, --runs,
// and start for the processes it needs (stopped when it returns).
//
//	go run ./cmd/interlock-bench --interlock bin/interlock
//	go run ./cmd/interlock-bench --interlock bin/interlock --suite policy --runs 5
package main

import (
	"context"
	"flag"
	"fmt"
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

// A suite is one section of the benchmark.
type suite struct {
	name  string
	order int // sections run in this order
	about string
	run   func(e *env) error
}

var suites []suite

// addSuite registers a section; each section's file calls it from init.
func addSuite(s suite) { suites = append(suites, s) }

// Flags every section shares; a section declares its own flags in its file.
var (
	binFlag  = flag.String("interlock", "bin/interlock", "interlock binary")
	runsFlag = flag.Int("runs", 3, "runs per cell; the median is reported")
	hopCPUs  = flag.String("hop-cpus", "", "run every inline hop (the gateway, haproxy, the Go relay) on these CPUs (taskset -c `LIST`), and start the bench under taskset on the others, so that clients and server share no core with the hop: taskset -c 0 go run ./cmd/interlock-bench --hop-cpus 1 ...")
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == goRelayArg { // the opcua section's Go relay
		if err := goRelay(os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "interlock-bench go-relay:", err)
			os.Exit(1)
		}
		return
	}
	slices.SortFunc(suites, func(a, b suite) int { return a.order - b.order })
	var names []string
	for _, s := range suites {
		names = append(names, s.name)
	}
	suiteFlag := flag.String("suite", "all", "sections to run, comma-separated: all, or some of "+strings.Join(names, ", "))
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: interlock-bench [flags]\n\nSections (--suite):\n")
		for _, s := range suites {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", s.name, s.about)
		}
		fmt.Fprintf(os.Stderr, "\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	selected, err := pickSuites(*suiteFlag)
	if err == nil && *runsFlag < 1 {
		err = fmt.Errorf("--runs %d: want 1 or more", *runsFlag)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "interlock-bench:", err)
		os.Exit(2)
	}
	bin, err := filepath.Abs(*binFlag)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "interlock-bench: %v (build it: make build)\n", err)
		os.Exit(1)
	}
	fmt.Printf("interlock-bench: sections %s; %d runs per cell, median shown\n", strings.Join(suiteNames(selected), ", "), *runsFlag)
	fmt.Printf("machine: %s/%s, %d CPUs, %s, %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())
	if *hopCPUs != "" {
		if _, err := exec.LookPath("taskset"); err != nil {
			fmt.Fprintf(os.Stderr, "interlock-bench: --hop-cpus needs taskset (Debian: util-linux): %v\n", err)
			os.Exit(2)
		}
		fmt.Printf("inline hops on CPUs %s; the bench, its clients and the servers on CPUs %s (the bench's own affinity)\n\n", *hopCPUs, ownCPUs())
	}
	failed := false
	for _, s := range selected {
		began := time.Now()
		fmt.Printf("## %s\n\n", s.name)
		fmt.Printf("load average at start: %s\n\n", loadAvg())
		if err := runSuite(s, bin); err != nil {
			fmt.Fprintf(os.Stderr, "interlock-bench: %s: %v\n", s.name, err)
			fmt.Printf("(section %s failed: %v)\n\n", s.name, err)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "interlock-bench: section %s took %s\n", s.name, time.Since(began).Round(time.Second))
	}
	if failed {
		os.Exit(1)
	}
}

func pickSuites(list string) ([]suite, error) {
	if strings.TrimSpace(list) == "all" {
		return suites, nil
	}
	want := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if !slices.ContainsFunc(suites, func(s suite) bool { return s.name == f }) {
			return nil, fmt.Errorf("--suite: no section %q (there are %s)", f, strings.Join(suiteNames(suites), ", "))
		}
		want[f] = true
	}
	var out []suite
	for _, s := range suites {
		if want[s.name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func suiteNames(ss []suite) []string {
	var n []string
	for _, s := range ss {
		n = append(n, s.name)
	}
	return n
}

// runSuite runs one section in its own work directory; the processes it
// started are stopped when it returns.
func runSuite(s suite, bin string) error {
	work, err := os.MkdirTemp("", "interlock-bench-"+s.name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{ctx: ctx, bin: bin, work: work, runs: *runsFlag}
	defer e.children.Wait()
	defer cancel()
	return s.run(e)
}

// env is what a section gets: the interlock binary (absolute), a work
// directory removed afterwards, the number of runs per cell, and start for
// the processes it needs.
type env struct {
	ctx      context.Context
	bin      string
	work     string
	runs     int
	children sync.WaitGroup // the processes start started
}

// start runs bin until the section ends (SIGTERM, then a kill 5 s later),
// its output in name.log in the work directory.
func (e *env) start(name, bin string, args ...string) error {
	_, err := e.startCmd(name, bin, args...)
	return err
}

// startHop is start for an inline hop (the gateway, a relay): on the
// CPUs of --hop-cpus when it is given.
func (e *env) startHop(name, bin string, args ...string) error {
	_, err := e.startHopCmd(name, bin, args...)
	return err
}

// startHopCmd is startCmd for an inline hop. taskset execs bin, so the
// command's pid is bin's.
func (e *env) startHopCmd(name, bin string, args ...string) (*exec.Cmd, error) {
	if *hopCPUs == "" {
		return e.startCmd(name, bin, args...)
	}
	return e.startCmd(name, "taskset", append([]string{"-c", *hopCPUs, bin}, args...)...)
}

// ownCPUs lists the CPUs this process may run on (from /proc/self/status).
func ownCPUs() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// startCmd is start, returning the running command (for its pid).
func (e *env) startCmd(name, bin string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(e.ctx, bin, args...)
	logf, err := os.Create(filepath.Join(e.work, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Stop with SIGTERM so the gateway shuts down cleanly (and writes its
	// CPU profile); kill whatever is still running 5 s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	e.children.Add(1)
	go func() { cmd.Wait(); logf.Close(); e.children.Done() }()
	return cmd, nil
}

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

// quantile returns the q quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

func joinf(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
	}
	return strings.Join(s, ", ")
}

// thousands formats n with a comma every three digits.
func thousands(n float64) string {
	s := strconv.FormatFloat(n, 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// verdict is the cell of a target: met or not.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
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

// loadAvg is the 1, 5 and 15 minute load average: how busy the shared
// machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
