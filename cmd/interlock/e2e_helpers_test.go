package main

// The end-to-end harness: it builds the real interlock binary once, runs it
// against third-party Modbus peers (mbpoll, a libmodbus client; pymodbus 3.0
// as server and client, run by /usr/bin/python3), and reads what it leaves
// behind (exit codes, stderr, the JSONL audit log).
//
// Peers are looked up, never assumed: without them the e2e tests skip, unless
// INTERLOCK_REQUIRE_PEERS=1 (CI), which turns a missing peer into a failure.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	systemPython = "/usr/bin/python3" // Debian's, with python3-pymodbus; not the pyenv python3 on PATH
	peerHint     = "install the peers with scripts/install-peers.sh"
)

var (
	interlockBin string // the binary under test, built once by TestMain
	repoRoot     string // the module root
	raceBuild    bool   // set under -race (e2e_race_test.go): the binary gets -race too
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot find the module root:", err)
		return 1
	}
	repoRoot = root
	tmp, err := os.MkdirTemp("", "interlock-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	interlockBin = filepath.Join(tmp, "interlock")
	args := []string{"build", "-o", interlockBin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/interlock")...)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/interlock: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot finds the directory of go.mod: `go env GOMOD`, else ../.. of
// this package.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return "", err
	}
	return root, nil
}

// ---- peers ----

const (
	peerMbpoll   = "mbpoll"
	peerPymodbus = "pymodbus"
	// Only scripts/install-peers.sh, which the quickstart runs, wants these;
	// keep the list in step with it.
	peerHaproxy = "haproxy"
	peerSocat   = "socat"
	// peerOpenSSL is the openssl command, 3.0 or later, that the README's
	// recipe for Modbus/TCP Security certificates uses.
	peerOpenSSL = "openssl"
)

var peerChecks sync.Map // name → error (nil: present)

// requirePeer skips the test when a peer is missing, or fails it when
// INTERLOCK_REQUIRE_PEERS=1: in CI a skip must never pass silently.
func requirePeer(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		v, _ := peerChecks.LoadOrStore(name, sync.OnceValue(func() error { return lookPeer(name) }))
		if err := v.(func() error)(); err != nil {
			if os.Getenv("INTERLOCK_REQUIRE_PEERS") == "1" {
				t.Fatalf("peer %s is missing (%v) and INTERLOCK_REQUIRE_PEERS=1: %s", name, err, peerHint)
			}
			t.Skipf("peer %s is missing (%v): %s, or set INTERLOCK_REQUIRE_PEERS=1 to fail instead", name, err, peerHint)
		}
	}
}

func lookPeer(name string) error {
	switch name {
	case peerMbpoll:
		if _, err := exec.LookPath("mbpoll"); err != nil {
			return err
		}
		// Continuous polls need line-buffered output (coreutils stdbuf).
		_, err := exec.LookPath("stdbuf")
		return err
	case peerHaproxy, peerSocat:
		if _, err := exec.LookPath(name); err != nil {
			if _, serr := os.Stat(filepath.Join("/usr/sbin", name)); serr != nil {
				return err
			}
		}
		return nil
	case peerOpenSSL:
		out, err := exec.Command("openssl", "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("openssl version: %v: %s", err, bytes.TrimSpace(out))
		}
		if v := string(out); !strings.HasPrefix(v, "OpenSSL ") || strings.HasPrefix(v, "OpenSSL 1.") || strings.HasPrefix(v, "OpenSSL 0.") {
			return fmt.Errorf("openssl version %q: the recipe needs OpenSSL 3.0 or later", strings.TrimSpace(v))
		}
		return nil
	case peerPymodbus:
		out, err := exec.Command(systemPython, "-c", "import pymodbus").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s -c 'import pymodbus': %v: %s", systemPython, err, bytes.TrimSpace(out))
		}
		return nil
	}
	return fmt.Errorf("unknown peer %q", name)
}

// ---- processes ----

// childEnv is the environment of child processes. A race-enabled binary
// sleeps a second at exit (GORACE atexit_sleep_ms) unless told otherwise;
// races found are still reported, and exit 66.
func childEnv() []string {
	env := os.Environ()
	if raceBuild && os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return env
}

// proc is a child process in its own process group, its stdout and stderr
// in one log file. It is killed (the whole group) when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // of Wait, once done is closed
}

func startProc(t *testing.T, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(childEnv(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process itself.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(p.pid(), sig); err != nil {
		t.Fatalf("kill -%d %s (pid %d): %v", sig, p.name, p.pid(), err)
	}
}

// kill ends the process group with SIGKILL and waits for the process.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to timeout for the exit; it returns the
// exit code (-1 when killed by a signal), killing the group on timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	if !p.exited() {
		_ = syscall.Kill(p.pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(timeout):
			t.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killing it", p.name, p.pid(), timeout)
			p.kill()
		}
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// eventually polls cond every interval until it holds or timeout passes;
// then it fails the test with what cond last said.
func eventually(t *testing.T, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, last)
		}
		time.Sleep(interval)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a gateway upstream that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// reservePort holds a free port on 127.0.0.1 with a socket that is bound but
// does not listen: a connection to it is refused, and nothing else (another
// test, another test binary) can take the port until release, after which
// a PLC can be started on it.
func reservePort(t *testing.T) (int, func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { syscall.Close(fd) }) }
	t.Cleanup(release)
	return sa.(*syscall.SockaddrInet4).Port, release
}

func portAccepts(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// portListener tells who listens on TCP port: none, the process pid itself,
// or another process (a port that accepts may be another test's server).
func portListener(pid, port int) (listening, byPid bool) {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && int(p) == port {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return false, false
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, _ := os.ReadDir(fdDir)
	for _, fd := range fds {
		if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[link] {
			return true, true
		}
	}
	return true, false
}

// ---- the stand-in PLC: a pymodbus server ----

type plc struct {
	port int
	proc *proc
}

// startPLC runs testdata/pymodbus_server.py with holding (and input)
// registers set from addr=value pairs, and waits until it listens. On port 0
// it picks a free port, and picks another when someone else took the one it
// picked in the meantime (pymodbus then neither listens nor exits); on
// another port it must get that one.
func startPLC(t *testing.T, port int, values ...string) *plc {
	t.Helper()
	requirePeer(t, peerPymodbus)
	script, err := filepath.Abs(filepath.Join("testdata", "pymodbus_server.py"))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		p := port
		if p == 0 {
			p = freePort(t)
		}
		logPath := filepath.Join(t.TempDir(), fmt.Sprintf("plc-%d.log", p))
		args := append([]string{script, strconv.Itoa(p)}, values...)
		pr := startProc(t, "pymodbus server", logPath, []string{"PYTHONUNBUFFERED=1"}, systemPython, args...)
		var listening, ours bool
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !pr.exited(); time.Sleep(50 * time.Millisecond) {
			if listening, ours = portListener(pr.pid(), p); listening {
				break
			}
		}
		switch {
		case ours:
			return &plc{port: p, proc: pr}
		case pr.exited():
			t.Fatalf("pymodbus server on port %d exited: %v\n%s", p, pr.err, pr.output())
		case listening && port == 0 && attempt < 3:
			t.Logf("port %d was taken by another process before the pymodbus server bound it: trying another", p)
			pr.kill()
		case listening:
			t.Fatalf("port %d is taken by another process: the pymodbus server cannot listen on it", p)
		default:
			t.Fatalf("pymodbus server does not listen on port %d within 10s\n%s", p, pr.output())
		}
	}
}

// ---- the gateway ----

type gwOptions struct {
	upstreamPort   int
	requestTimeout string            // limits.request_timeout; default 2s
	policyTimeout  string            // policy.timeout; default e2ePolicyTimeout
	reloadInterval string            // policy.reload_interval; default 200ms
	rego           map[string]string // replaces the quickstart .rego files when set
	mode           string            // policy.mode; default enforce
	maxConns       int               // limits.max_conns; default 100
	frameTimeout   string            // modbus.frame_timeout; default 5s
	admin          bool              // admin.socket ./admin.sock (change tickets)
}

// e2ePolicyTimeout is policy.timeout unless a test sets its own. The
// product's default, 100ms, is no margin for the race-built gateway the
// tests run: it decides a quickstart write in about 25ms when idle (1ms
// without -race), and several times that on a loaded CI machine, where a
// 100ms bound denies allowed calls with policy_timeout. The test of the
// timeout itself sets 50ms.
const e2ePolicyTimeout = "2s"

// gw is one gateway: its directory, config, policy copy, audit log and,
// once started, its process and the port it listens on.
type gw struct {
	dir       string
	config    string
	policyDir string
	auditPath string
	logPath   string
	proc      *proc
	port      int
	logFrom   int64  // where this run's lines begin in the log (a restart appends)
	admin     bool   // the admin socket is configured: start waits for it too
	listener  string // the listener whose port start reads; "" is plc1
}

// newGateway writes a configuration and a policy directory into a temp dir:
// the quickstart policy (without tests; or opts.rego instead) with its data,
// whose maintenance window lies in the past. Source 127.0.0.1 is ews-alice,
// user alice, role engineer, as in the quickstart.
func newGateway(t *testing.T, opts gwOptions) *gw {
	t.Helper()
	dir := t.TempDir()
	g := &gw{
		dir:       dir,
		config:    filepath.Join(dir, "config.yaml"),
		policyDir: filepath.Join(dir, "policy"),
		auditPath: filepath.Join(dir, "audit", "audit.jsonl"),
		logPath:   filepath.Join(dir, "gateway.log"),
	}
	if err := os.MkdirAll(g.policyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(repoRoot, "examples", "quickstart", "policy")
	if opts.rego == nil {
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".rego") && !strings.HasSuffix(e.Name(), "_test.rego") {
				copyFile(t, filepath.Join(src, e.Name()), filepath.Join(g.policyDir, e.Name()))
			}
		}
	} else {
		for name, text := range opts.rego {
			writeFile(t, filepath.Join(g.policyDir, name), text)
		}
	}
	copyFile(t, filepath.Join(src, "data.json"), filepath.Join(g.policyDir, "data.json"))
	g.setWindows(t, pastWindow())

	maxConns := opts.maxConns
	if maxConns == 0 {
		maxConns = 100
	}
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	writeFile(t, g.config, fmt.Sprintf(`# written by the e2e tests
gateway:
  id: e2e-gw1
listeners:
  - name: plc1
    protocol: modbus
    listen: 127.0.0.1:0
    upstream: tcp://127.0.0.1:%d
    limits:
      max_conns: %d
      request_timeout: %s
    modbus:
      deny_action: exception
      deny_exception: 1
      connect_timeout: 500ms
      frame_timeout: %s
sources:
  - address: 127.0.0.1
    name: ews-alice
    owner: alice
    user: alice
    roles: [engineer]
policy:
  path: ./policy
  mode: %s
  timeout: %s
  reload_interval: %s
audit:
  path: ./audit/audit.jsonl
`, opts.upstreamPort, maxConns, def(opts.requestTimeout, "2s"), def(opts.frameTimeout, "5s"),
		def(opts.mode, "enforce"), def(opts.policyTimeout, e2ePolicyTimeout), def(opts.reloadInterval, "200ms")))
	if opts.admin {
		g.admin = true
		f, err := os.OpenFile(g.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(f, "admin:\n  socket: ./admin.sock\n")
		f.Close()
	}
	return g
}

// start runs `interlock run --config … --log-format json`, waits for the
// "gateway ready" line and reads the bound port from the "listening" line.
// When the test fails, the gateway log is dumped; a panic or data race in it
// fails the test.
func (g *gw) start(t *testing.T) {
	t.Helper()
	g.logFrom, g.port = 0, 0
	if fi, err := os.Stat(g.logPath); err == nil {
		g.logFrom = fi.Size()
	}
	p := startProc(t, "interlock run", g.logPath, nil, interlockBin, "run", "--config", g.config, "--log-format", "json")
	g.proc = p
	from := g.logFrom
	t.Cleanup(func() {
		p.stop(t, 5*time.Second)
		out := p.output()[from:]
		if strings.Contains(out, "panic:") || strings.Contains(out, "DATA RACE") {
			t.Errorf("the gateway log shows a panic or a data race:\n%s", out)
		}
		if t.Failed() {
			t.Logf("gateway log (%s, from byte %d):\n%s", g.logPath, from, out)
		}
	})
	eventually(t, 20*time.Second, 25*time.Millisecond, "gateway ready", func() (bool, string) {
		if g.proc.exited() {
			t.Fatalf("the gateway exited before it was ready: %v\n%s", g.proc.err, g.proc.output())
		}
		ready, adminReady := false, false
		for _, l := range g.logLines() {
			if l["message"] == "listening" && l["listener"] == cmp.Or(g.listener, "plc1") {
				if _, port, err := net.SplitHostPort(fmt.Sprint(l["listen"])); err == nil {
					g.port, _ = strconv.Atoi(port)
				}
			}
			ready = ready || l["message"] == "gateway ready"
			adminReady = adminReady || l["message"] == "admin socket ready"
		}
		switch {
		case !ready:
			return false, "no gateway ready line"
		case g.port == 0:
			return false, "no listening line with a port before gateway ready"
		case g.admin && !adminReady:
			// The gateway opens its admin socket after "gateway ready".
			return false, "no admin socket ready line"
		}
		return true, ""
	})
}

// logLines parses the JSON log of the gateway's current run; non-JSON
// lines are skipped.
func (g *gw) logLines() []map[string]any {
	var out []map[string]any
	text := g.proc.output()
	if int64(len(text)) >= g.logFrom {
		text = text[g.logFrom:]
	}
	for _, line := range strings.Split(text, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// waitLog waits for a gateway log line for which match holds.
func (g *gw) waitLog(t *testing.T, timeout time.Duration, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, timeout, 25*time.Millisecond, "gateway log: "+what, func() (bool, string) {
		for _, l := range g.logLines() {
			if match(l) {
				found = l
				return true, ""
			}
		}
		return false, "no such line"
	})
	return found
}

type window struct {
	Name    string   `json:"name"`
	Start   string   `json:"start"`
	End     string   `json:"end"`
	Targets []string `json:"targets"`
}

func pastWindow() window {
	now := time.Now().UTC()
	return window{Name: "CHG-E2E-PAST", Start: now.Add(-48 * time.Hour).Format(time.RFC3339),
		End: now.Add(-47 * time.Hour).Format(time.RFC3339), Targets: []string{"plc1"}}
}

func openWindow(name string) window {
	now := time.Now().UTC()
	return window{Name: name, Start: now.Add(-time.Minute).Format(time.RFC3339),
		End: now.Add(time.Hour).Format(time.RFC3339), Targets: []string{"plc1"}}
}

// setWindows replaces the maintenance windows in the policy's data.json,
// atomically (write and rename), keeping the rest of the document.
func (g *gw) setWindows(t *testing.T, ws ...window) {
	t.Helper()
	path := filepath.Join(g.policyDir, "data.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["maintenance_windows"] = ws
	b, err = json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path+".tmp", string(b))
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// stopGateway ends the gateway with SIGTERM and returns its exit code.
func (g *gw) stopGateway(t *testing.T) int {
	t.Helper()
	return g.proc.stop(t, 10*time.Second)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b))
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ---- running the binary ----

type cliResult struct {
	code           int
	stdout, stderr string
}

// interlock runs the binary with args and returns its exit code and output.
func interlock(t *testing.T, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interlockBin, args...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("interlock %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// ---- mbpoll ----

type mbpollResult struct {
	code   int
	out    string      // stdout and stderr
	values map[int]int // [ref]: value lines
}

var mbpollValueRe = regexp.MustCompile(`(?m)^\[(\d+)\]:\s+(-?\d+)\s*$`)

// mbpollTimeout is mbpoll's answer timeout (-o) unless a test sets its
// own: mbpoll's default of 1 s is no promise of the gateway's, and a write
// waits for an fsync, which a loaded CI disk can stretch past a second.
// Tests that bound how long an answer takes measure it themselves.
const mbpollTimeout = "5"

// mbpoll runs one poll (-1) of Modbus TCP unit 1 on 127.0.0.1:port with
// 0-based references (-0); extra holds more options (such as -r 100 -c 2;
// an -o there overrides mbpollTimeout), writes the values to write.
func mbpoll(t *testing.T, port int, extra []string, writes ...string) mbpollResult {
	t.Helper()
	requirePeer(t, peerMbpoll)
	args := append([]string{"-m", "tcp", "-a", "1", "-0", "-1", "-o", mbpollTimeout, "-p", strconv.Itoa(port)}, extra...)
	args = append(append(args, "127.0.0.1"), writes...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mbpoll", args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("mbpoll %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return mbpollResult{code: cmd.ProcessState.ExitCode(), out: string(out), values: parseMbpollValues(string(out))}
}

func parseMbpollValues(out string) map[int]int {
	vals := map[int]int{}
	for _, m := range mbpollValueRe.FindAllStringSubmatch(out, -1) {
		ref, _ := strconv.Atoi(m[1])
		v, _ := strconv.Atoi(m[2])
		vals[ref] = v
	}
	return vals
}

// mbpollPoller is mbpoll polling holding registers every 200 ms on one
// connection (answer timeout mbpollTimeout unless extra has an -o), its
// output line-buffered into a file.
type mbpollPoller struct {
	proc *proc
}

func startPoller(t *testing.T, port int, extra ...string) *mbpollPoller {
	t.Helper()
	requirePeer(t, peerMbpoll)
	args := append([]string{"-oL", "-eL", "mbpoll", "-m", "tcp", "-a", "1", "-0", "-l", "200", "-o", mbpollTimeout, "-p", strconv.Itoa(port)}, extra...)
	args = append(args, "127.0.0.1")
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "mbpoll (polling)", filepath.Join(t.TempDir(), "mbpoll.log"), nil, stdbuf, args...)
	return &mbpollPoller{proc: p}
}

// polls splits the output so far into one entry per poll.
func (m *mbpollPoller) polls() []string {
	parts := strings.Split(m.proc.output(), "-- Polling slave")
	if len(parts) <= 1 {
		return nil
	}
	return parts[1:]
}

// waitPoll waits for a poll after the first `after` polls whose text
// matches, and returns the index of that poll.
func (m *mbpollPoller) waitPoll(t *testing.T, after int, timeout time.Duration, what string, match func(string) bool) int {
	t.Helper()
	idx := -1
	eventually(t, timeout, 50*time.Millisecond, "mbpoll: "+what, func() (bool, string) {
		if m.proc.exited() {
			t.Fatalf("mbpoll exited: %v\n%s", m.proc.err, m.proc.output())
		}
		ps := m.polls()
		// The last entry may be a poll still being printed: skip it.
		for i := after; i < len(ps)-1; i++ {
			if match(ps[i]) {
				idx = i
				return true, ""
			}
		}
		last := "no polls yet"
		if len(ps) > 1 {
			last = strings.TrimSpace(ps[len(ps)-2])
		}
		return false, last
	})
	return idx
}

// ---- pymodbus client ----

type pyResult struct {
	Registers []int  `json:"registers"`
	Bits      []int  `json:"bits"`
	Exception *int   `json:"exception"`
	Error     string `json:"error"`
}

// pyclient runs testdata/pymodbus_client.py against 127.0.0.1:port, unit 1.
func pyclient(t *testing.T, port int, op string, args ...int) pyResult {
	t.Helper()
	return pyclientFrom(t, "", port, op, args...)
}

// pyclientFrom is pyclient connecting from a local address of its own
// (such as 127.0.0.2), or the default one when source is "".
func pyclientFrom(t *testing.T, source string, port int, op string, args ...int) pyResult {
	t.Helper()
	var env []string
	if source != "" {
		env = append(env, "SOURCE_ADDRESS="+source)
	}
	return pyclientEnv(t, env, port, op, args...)
}

// pyclientEnv is pyclient with variables added to its environment
// (SOURCE_ADDRESS; TLS_CA, TLS_CERT, TLS_KEY for Modbus/TCP Security).
func pyclientEnv(t *testing.T, env []string, port int, op string, args ...int) pyResult {
	t.Helper()
	requirePeer(t, peerPymodbus)
	cmdArgs := []string{filepath.Join("testdata", "pymodbus_client.py"), strconv.Itoa(port), "1", op}
	for _, a := range args {
		cmdArgs = append(cmdArgs, strconv.Itoa(a))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, systemPython, cmdArgs...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var r pyResult
	if jerr := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &r); jerr != nil {
		t.Fatalf("pymodbus client %s: %v (exit %v)\nstdout: %s\nstderr: %s", strings.Join(cmdArgs, " "), jerr, err, stdout.String(), stderr.String())
	}
	return r
}

// plcRegisters reads holding registers from the PLC directly (not through
// the gateway) with the pymodbus client.
func plcRegisters(t *testing.T, port, addr, count int) []int {
	t.Helper()
	r := pyclient(t, port, "read", addr, count)
	if r.Error != "" || len(r.Registers) != count {
		t.Fatalf("reading the PLC directly (port %d, %d×%d): %+v", port, addr, count, r)
	}
	return r.Registers
}

// ---- the audit log ----

type record map[string]any

// get returns the value at a dotted path, such as "source.ip".
func (r record) get(path string) any {
	var v any = map[string]any(r)
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (r record) str(path string) string {
	if s, ok := r.get(path).(string); ok {
		return s
	}
	return ""
}

// num returns a number at path, or -1 when there is none.
func (r record) num(path string) float64 {
	if f, ok := r.get(path).(float64); ok {
		return f
	}
	return -1
}

func (r record) strs(path string) []string {
	arr, _ := r.get(path).([]any)
	out := []string{}
	for _, v := range arr {
		out = append(out, fmt.Sprint(v))
	}
	return out
}

func (r record) ints(path string) []int {
	arr, _ := r.get(path).([]any)
	out := []int{}
	for _, v := range arr {
		f, _ := v.(float64)
		out = append(out, int(f))
	}
	return out
}

func (r record) String() string {
	b, _ := json.Marshal(map[string]any(r))
	return string(b)
}

// readAudit parses the JSONL audit file. A line that is not JSON fails the
// test: the log holds nothing else.
func readAudit(t *testing.T, path string) []record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s:%d: not JSON: %v: %q", path, n, err, sc.Text())
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

func eventsOf(recs []record, event string) []record {
	var out []record
	for _, r := range recs {
		if r.str("event") == event {
			out = append(out, r)
		}
	}
	return out
}

// callRecords returns the call records of a function whose operation
// address is addr (any address when addr < 0).
func callRecords(recs []record, function string, addr int) []record {
	var out []record
	for _, r := range eventsOf(recs, "call") {
		if r.str("operation.function") == function && (addr < 0 || int(r.num("operation.address")) == addr) {
			out = append(out, r)
		}
	}
	return out
}

// resultOf returns the result record of a call, or nil.
func resultOf(recs []record, callID string) record {
	for _, r := range eventsOf(recs, "result") {
		if r.str("call_id") == callID {
			return r
		}
	}
	return nil
}

// waitAudit re-reads the audit log until cond holds for its records.
func waitAudit(t *testing.T, path string, timeout time.Duration, what string, cond func([]record) bool) []record {
	t.Helper()
	var recs []record
	eventually(t, timeout, 50*time.Millisecond, "audit log: "+what, func() (bool, string) {
		if _, err := os.Stat(path); err != nil {
			return false, err.Error()
		}
		recs = readAudit(t, path)
		return cond(recs), fmt.Sprintf("%d records", len(recs))
	})
	return recs
}

// checkCallRecord asserts the fields every call record through the test
// gateway carries: who (ews-alice / alice from 127.0.0.1), what target
// (plc1, unit 1), and a decision with a revision and an id. It returns the
// call's result record.
func checkCallRecord(t *testing.T, recs []record, call record, allow bool) record {
	t.Helper()
	want := map[string]any{
		"source.ip":      "127.0.0.1",
		"source.name":    "ews-alice",
		"principal.user": "alice",
		"target.name":    "plc1",
		"target.unit_id": float64(1),
		"protocol":       "modbus",
		"decision.allow": allow,
	}
	for path, v := range want {
		if got := call.get(path); got != v {
			t.Errorf("call record %s = %v, want %v\n%s", path, got, v, call)
		}
	}
	for _, path := range []string{"call_id", "session_id", "decision.policy_revision", "decision.decision_id", "operation.function"} {
		if call.str(path) == "" {
			t.Errorf("call record has no %s\n%s", path, call)
		}
	}
	if _, ok := call.get("decision.reasons").([]any); !ok {
		t.Errorf("call record has no decision.reasons array\n%s", call)
	}
	res := resultOf(recs, call.str("call_id"))
	if res == nil {
		t.Fatalf("no result record for call %s\n%s", call.str("call_id"), call)
	}
	if res.str("session_id") != call.str("session_id") || res.str("function") != call.str("operation.function") {
		t.Errorf("result record does not match its call:\ncall:   %s\nresult: %s", call, res)
	}
	if res.num("seq") <= call.num("seq") {
		t.Errorf("result record (seq %v) is not after its call record (seq %v)", res.num("seq"), call.num("seq"))
	}
	return res
}

// verifyAudit runs `interlock audit verify` and fails unless it exits 0.
func verifyAudit(t *testing.T, path string) {
	t.Helper()
	r := interlock(t, "audit", "verify", path)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ok:") {
		t.Fatalf("interlock audit verify %s: exit %d\nstdout: %s\nstderr: %s", path, r.code, r.stdout, r.stderr)
	}
}
