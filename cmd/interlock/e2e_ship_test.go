package main

// Shipping the audit log to a SIEM, end to end: the real gateway (with
// rotation and signed checkpoints on) ships to a syslog receiver or an HTTP
// collector that goes away while thousands of calls pass and the gateway
// restarts; afterwards every record of the log has arrived, in order, the
// same bytes, exactly once after de-duplication by seq.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grid-x/modbus"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/ship"
	"github.com/interlock-ics/interlock/audit/ship/shiptest"
)

// startSim runs `interlock sim modbus` on a free port and returns the port.
func startSim(t *testing.T) int {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "sim.log")
	p := startProc(t, "interlock sim modbus", logPath, nil, interlockBin, "sim", "modbus", "--listen", "127.0.0.1:0", "--set", "0=7,1=8")
	port := 0
	eventually(t, 10*time.Second, 20*time.Millisecond, "simulator listening", func() (bool, string) {
		if p.exited() {
			t.Fatalf("the simulator exited: %v\n%s", p.err, p.output())
		}
		out := p.output()
		if i := strings.Index(out, "listening on 127.0.0.1:"); i >= 0 {
			rest := out[i+len("listening on 127.0.0.1:"):]
			if j := strings.IndexByte(rest, ' '); j > 0 {
				port, _ = strconv.Atoi(rest[:j])
			}
		}
		return port > 0, out
	})
	return port
}

// newShipGateway is a gateway in front of the simulator, its audit log
// rotated every 1 MiB and checkpointed every 500 records, shipping as the
// given `ship:` entries say.
func newShipGateway(t *testing.T, ships string) *gw {
	t.Helper()
	return newShipGatewayAudit(t, "", ships)
}

// newShipGatewayAudit is newShipGateway with more `audit:` keys (indented
// by two spaces, one per line).
func newShipGatewayAudit(t *testing.T, auditKeys, ships string) *gw {
	t.Helper()
	g := newGateway(t, gwOptions{upstreamPort: startSim(t)})
	if r := interlock(t, "audit", "keygen", "--out", filepath.Join(g.dir, "keys")); r.code != 0 {
		t.Fatalf("audit keygen: exit %d\n%s", r.code, r.stderr)
	}
	f, err := os.OpenFile(g.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  signing_key: ./keys/audit-signing.key\n  checkpoint_every: 500\n  rotate_size: 1MiB\n%s  ship:\n%s", auditKeys, ships)
	f.Close()
	return g
}

// driveCalls makes n calls through the gateway on `workers` connections
// with a Go Modbus client: reads of 10 holding registers, and every 50th a
// write that the quickstart policy denies outside a maintenance window.
func driveCalls(t *testing.T, port, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			h := modbus.NewTCPClientHandler("127.0.0.1:" + strconv.Itoa(port))
			h.SlaveID, h.Timeout = 1, 10*time.Second
			ctx := context.Background()
			if err := h.Connect(ctx); err != nil {
				errs <- err
				return
			}
			defer h.Close()
			c := modbus.NewClient(h)
			for i := w; i < n; i += workers {
				if i%50 == 49 {
					_, err := c.WriteSingleRegister(ctx, 100, uint16(i))
					var me *modbus.Error
					if !errors.As(err, &me) || me.ExceptionCode != modbus.ExceptionCodeIllegalFunction {
						errs <- fmt.Errorf("call %d: a write outside the window: %v, want exception 1", i, err)
						return
					}
					continue
				}
				if _, err := c.ReadHoldingRegisters(ctx, 0, 10); err != nil {
					errs <- fmt.Errorf("call %d: read: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// logLines reads every file of the log in chain order and returns its lines
// by seq, checking that seq runs 1..N without a gap.
func logLines(t *testing.T, path string) (lines []string, checkpoints, files int) {
	t.Helper()
	names, err := audit.LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v struct {
				Seq   int    `json:"seq"`
				Event string `json:"event"`
			}
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if v.Seq != len(lines)+1 {
				t.Fatalf("%s: seq %d after %d", name, v.Seq, len(lines))
			}
			if v.Event == "audit.checkpoint" {
				checkpoints++
			}
			lines = append(lines, sc.Text())
		}
		f.Close()
	}
	return lines, checkpoints, len(names)
}

// delivery is one record as a receiver got it.
type delivery struct {
	seq  int
	line string
	conn int // connection it came on; 0 when the receiver cannot tell
}

// checkDelivery checks what arrived against the log: every record, the same
// bytes, in order. On each connection the records run consecutively, and a
// connection starts no later than the record after the newest delivered
// (it may repeat what the last one may have lost). It returns the number of
// copies beyond the first, and on how many connections they came.
func checkDelivery(t *testing.T, lines []string, got []delivery) (dups, dupConns int) {
	t.Helper()
	next := 1
	conn, prev := -1, 0
	connDup := false
	for i, d := range got {
		if d.seq < 1 || d.seq > len(lines) {
			t.Fatalf("delivery %d: seq %d is not in the log (1..%d)", i, d.seq, len(lines))
		}
		if d.line != lines[d.seq-1] {
			t.Fatalf("record %d arrived changed:\n got %s\nwant %s", d.seq, d.line, lines[d.seq-1])
		}
		switch {
		case d.conn != conn:
			if d.seq > next {
				t.Fatalf("delivery %d: connection %d starts at %d, but %d never arrived", i, d.conn, d.seq, next)
			}
			conn, connDup = d.conn, false
		case d.seq != prev+1 && d.conn != 0:
			t.Fatalf("delivery %d: connection %d: %d after %d", i, d.conn, d.seq, prev)
		case d.seq > next:
			t.Fatalf("delivery %d: %d arrived before %d", i, d.seq, next)
		}
		prev = d.seq
		if d.seq < next {
			dups++
			if !connDup {
				dupConns++
				connDup = true
			}
			continue
		}
		next = d.seq + 1
	}
	if next != len(lines)+1 {
		t.Fatalf("records 1..%d arrived, the log has 1..%d", next-1, len(lines))
	}
	return dups, dupConns
}

// receiverDeliveries turns what the test receiver parsed into deliveries,
// checking the syslog header of each against its record.
func receiverDeliveries(t *testing.T, msgs []shiptest.Message) []delivery {
	t.Helper()
	out := make([]delivery, 0, len(msgs))
	for _, m := range msgs {
		var v struct {
			Seq      int    `json:"seq"`
			Event    string `json:"event"`
			Gateway  string `json:"gateway"`
			Decision *struct {
				Allow bool `json:"allow"`
			} `json:"decision"`
		}
		if err := json.Unmarshal(m.Msg, &v); err != nil {
			t.Fatalf("MSG is not a JSON record: %v\n%s", err, m.Raw)
		}
		if m.AppName != "interlock" || m.MsgID != v.Event || m.Hostname != v.Gateway || m.Facility != 13 ||
			m.Params["seq"] != strconv.Itoa(v.Seq) || m.Params["event"] != v.Event {
			t.Fatalf("syslog header does not match the record:\n%s", m.Raw)
		}
		if v.Event == "call" && v.Decision != nil && !v.Decision.Allow && m.Severity != 4 {
			t.Fatalf("a denied call has severity %d, want 4 (warning):\n%s", m.Severity, m.Raw)
		}
		out = append(out, delivery{seq: v.Seq, line: string(m.Msg), conn: m.Conn})
	}
	return out
}

// logCount counts the records of the log: its lines, in every file.
func logCount(t *testing.T, path string) int {
	t.Helper()
	names, err := audit.LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\n")
	}
	return n
}

// seqOf reads the seq at the start of a record line, or 0.
func seqOf(line string) int {
	rest, ok := strings.CutPrefix(line, `{"seq":`)
	if !ok {
		return 0
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return 0
	}
	n, _ := strconv.Atoi(rest[:end])
	return n
}

// waitDelivered waits until arrived() holds the seq of every record of the
// log. (The thorough checks come after, once.)
func waitDelivered(t *testing.T, g *gw, timeout time.Duration, arrived func() []int) {
	t.Helper()
	eventually(t, timeout, 100*time.Millisecond, "every audit record at the receiver", func() (bool, string) {
		n := logCount(t, g.auditPath)
		seen := make([]bool, n+1)
		for _, s := range arrived() {
			if s >= 1 && s <= n {
				seen[s] = true
			}
		}
		for s := 1; s <= n; s++ {
			if !seen[s] {
				return false, fmt.Sprintf("%d records in the log, %d the first missing", n, s)
			}
		}
		return true, ""
	})
}

// receiverSeqs is what the test receiver got, by the seq of the structured data.
func receiverSeqs(rcv *shiptest.Receiver) func() []int {
	return func() []int {
		var out []int
		for _, m := range rcv.Messages() {
			n, _ := strconv.Atoi(m.Params["seq"])
			out = append(out, n)
		}
		return out
	}
}

// siemOutage is the scenario of issue 4: the receiver stops, calls pass
// (and, with restart, the gateway restarts half way), the receiver comes
// back, and everything arrives. It returns the log's lines.
func siemOutage(t *testing.T, g *gw, calls int, restart bool, stopSIEM, startSIEM func(), arrived func() []int) []string {
	t.Helper()
	g.start(t)
	waitDelivered(t, g, 30*time.Second, arrived)
	stopSIEM()
	before := len(arrived())

	began := time.Now()
	driveCalls(t, g.port, calls/2, 4)
	if restart {
		if code := g.stopGateway(t); code != 0 {
			t.Fatalf("the gateway exited %d, want 0", code)
		}
		g.start(t)
	}
	driveCalls(t, g.port, calls-calls/2, 4)
	t.Logf("%d calls (restart: %v) in %s while the SIEM was down", calls, restart, time.Since(began).Round(time.Millisecond))
	// The shipper saw the outage, and nothing arrived during it.
	eventually(t, 10*time.Second, 50*time.Millisecond, "the shipper reporting the outage", func() (bool, string) {
		b, _ := os.ReadFile(g.logPath)
		return strings.Contains(string(b), "ship: cannot deliver audit records"), ""
	})
	if n := len(arrived()); n != before {
		t.Fatalf("%d records arrived while the SIEM was down", n-before)
	}

	startSIEM()
	began = time.Now()
	waitDelivered(t, g, 3*time.Minute, arrived)
	t.Logf("the backlog arrived %s after the SIEM came back", time.Since(began).Round(time.Millisecond))

	// The last records (gateway.stop, the closing checkpoint) go out at stop.
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d, want 0", code)
	}
	waitDelivered(t, g, 30*time.Second, arrived)
	lines, checkpoints, files := logLines(t, g.auditPath)
	if checkpoints == 0 || files < 2 {
		t.Fatalf("the log has %d checkpoints in %d files: the test wants both to travel", checkpoints, files)
	}
	var last struct {
		Event string `json:"event"`
	}
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	t.Logf("log: %d records in %d files, %d checkpoints, the last one %s", len(lines), files, checkpoints, last.Event)
	return lines
}

func TestE2EShipSyslogOutageAcrossRestart(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	g := newShipGateway(t, fmt.Sprintf("    - {name: siem1, type: syslog, address: '%s', retry_max: 500ms}\n", rcv.Addr()))
	lines := siemOutage(t, g, 10000, true, rcv.Stop, func() {
		if err := rcv.Start(); err != nil {
			t.Fatal(err)
		}
	}, receiverSeqs(rcv))
	if errs := rcv.Errors(); len(errs) > 0 {
		t.Fatalf("receiver: %v", errs)
	}
	got := receiverDeliveries(t, rcv.Messages())
	dups, dupConns := checkDelivery(t, lines, got)
	conns, clean := rcv.Connections()
	t.Logf("receiver: %d messages for %d records, %d duplicates on %d of %d connections (%d closed cleanly by the gateway)",
		len(got), len(lines), dups, dupConns, conns, clean)
}

func TestE2EShipSyslogOutage(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	g := newShipGateway(t, fmt.Sprintf("    - {name: siem1, type: syslog, address: '%s', retry_max: 500ms}\n", rcv.Addr()))
	lines := siemOutage(t, g, 10000, false, rcv.Stop, func() {
		if err := rcv.Start(); err != nil {
			t.Fatal(err)
		}
	}, receiverSeqs(rcv))
	if errs := rcv.Errors(); len(errs) > 0 {
		t.Fatalf("receiver: %v", errs)
	}
	got := receiverDeliveries(t, rcv.Messages())
	dups, dupConns := checkDelivery(t, lines, got)
	t.Logf("receiver: %d messages for %d records, %d duplicates on %d connections", len(got), len(lines), dups, dupConns)
}

func TestE2EShipSyslogTLS(t *testing.T) {
	pki, err := shiptest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := shiptest.NewReceiver(pki.ServerTLS(true))
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	g := newShipGateway(t, fmt.Sprintf("    - name: siem-tls\n      type: syslog\n      address: '%s'\n      retry_max: 500ms\n"+
		"      tls: {ca: '%s', cert: '%s', key: '%s'}\n", rcv.Addr(), pki.CA, pki.ClientCert, pki.ClientKey))
	lines := siemOutage(t, g, 2000, true, rcv.Stop, func() {
		if err := rcv.Start(); err != nil {
			t.Fatal(err)
		}
	}, receiverSeqs(rcv))
	if errs := rcv.Errors(); len(errs) > 0 {
		t.Fatalf("receiver: %v", errs)
	}
	dups, dupConns := checkDelivery(t, lines, receiverDeliveries(t, rcv.Messages()))
	t.Logf("TLS receiver: %d records, %d duplicates on %d connections", len(lines), dups, dupConns)
}

func TestE2EShipHTTPRetriesWhileUnavailable(t *testing.T) {
	var mu sync.Mutex
	var got []delivery
	unavailable := true
	requests, refused := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		requests++
		if r.Header.Get("Authorization") != "Bearer e2e-token" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if unavailable {
			refused++
			http.Error(w, "indexer busy", http.StatusServiceUnavailable)
			return
		}
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		var batch []delivery
		for sc.Scan() {
			var v struct {
				Seq int `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				http.Error(w, "bad line", http.StatusBadRequest)
				return
			}
			batch = append(batch, delivery{seq: v.Seq, line: sc.Text(), conn: requests})
		}
		got = append(got, batch...)
	}))
	defer srv.Close()
	g := newShipGateway(t, fmt.Sprintf("    - {name: collector, type: http, url: '%s/ingest', token_file: ./token, retry_max: 300ms}\n", srv.URL))
	writeFile(t, filepath.Join(g.dir, "token"), "e2e-token\n")
	if err := os.Chmod(filepath.Join(g.dir, "token"), 0o600); err != nil { // a credential: the gateway refuses it readable by others
		t.Fatal(err)
	}
	deliveries := func() []delivery {
		mu.Lock()
		defer mu.Unlock()
		return append([]delivery(nil), got...)
	}
	g.start(t)
	driveCalls(t, g.port, 1000, 4)
	eventually(t, 30*time.Second, 50*time.Millisecond, "three requests refused", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return refused >= 3, fmt.Sprint(refused)
	})
	if len(deliveries()) != 0 {
		t.Fatal("records arrived while the collector answered 503")
	}
	mu.Lock()
	unavailable = false
	mu.Unlock()
	arrived := func() []int {
		var out []int
		for _, d := range deliveries() {
			out = append(out, d.seq)
		}
		return out
	}
	waitDelivered(t, g, time.Minute, arrived)
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d", code)
	}
	waitDelivered(t, g, 30*time.Second, arrived)
	lines, _, _ := logLines(t, g.auditPath)
	// Each request is a connection of its own here: a batch is whole or absent.
	all := deliveries()
	for i := range all {
		all[i].conn = 0
	}
	dups, _ := checkDelivery(t, lines, all)
	mu.Lock()
	defer mu.Unlock()
	if dups != 0 {
		t.Fatalf("%d duplicates: an acknowledged batch was sent again", dups)
	}
	t.Logf("collector: %d records in %d requests after %d refused with 503", len(lines), requests-refused, refused)
}

// ---- rsyslog, a receiver nobody here wrote ----

func requireRsyslog(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"rsyslogd", "/usr/sbin/rsyslogd"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("INTERLOCK_REQUIRE_PEERS") == "1" {
		t.Fatalf("rsyslogd is missing and INTERLOCK_REQUIRE_PEERS=1: %s", peerHint)
	}
	t.Skipf("rsyslogd is missing: %s, or set INTERLOCK_REQUIRE_PEERS=1 to fail instead", peerHint)
	return ""
}

// rsyslog is rsyslogd in the foreground with a TCP input on port, writing
// every message it gets to a file: severity|msgid|hostname|app-name|MSG.
type rsyslog struct {
	bin, conf, out, dir string
	port                int
	proc                *proc
}

func newRsyslog(t *testing.T) *rsyslog {
	bin := requireRsyslog(t)
	dir := t.TempDir()
	r := &rsyslog{bin: bin, dir: dir, conf: filepath.Join(dir, "rsyslog.conf"), out: filepath.Join(dir, "out.log"), port: freePort(t)}
	os.MkdirAll(filepath.Join(dir, "work"), 0o755)
	writeFile(t, r.conf, fmt.Sprintf(`global(workDirectory="%s/work" maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port="%d" address="127.0.0.1" ruleset="interlock")
template(name="interlock" type="string" string="%%syslogseverity%%|%%msgid%%|%%hostname%%|%%app-name%%|%%msg%%\n")
ruleset(name="interlock") {
  action(type="omfile" file="%s" template="interlock")
}
`, dir, r.port, r.out))
	return r
}

func (r *rsyslog) start(t *testing.T) {
	t.Helper()
	r.proc = startProc(t, "rsyslogd", filepath.Join(r.dir, "rsyslogd.log"), nil, r.bin,
		"-n", "-f", r.conf, "-i", filepath.Join(r.dir, "rsyslogd.pid"))
	eventually(t, 20*time.Second, 50*time.Millisecond, "rsyslogd listening", func() (bool, string) {
		if r.proc.exited() {
			t.Fatalf("rsyslogd exited: %v\n%s", r.proc.err, r.proc.output())
		}
		listening, ours := portListener(r.proc.pid(), r.port)
		return listening && ours, r.proc.output()
	})
}

func (r *rsyslog) stop(t *testing.T) {
	t.Helper()
	if code := r.proc.stop(t, 20*time.Second); code != 0 {
		t.Fatalf("rsyslogd exited %d\n%s", code, r.proc.output())
	}
}

// deliveries reads what rsyslog wrote so far.
func (r *rsyslog) deliveries(t *testing.T) []delivery {
	b, err := os.ReadFile(r.out)
	if err != nil {
		return nil
	}
	var out []delivery
	for line := range strings.SplitSeq(string(b), "\n") {
		if !strings.HasSuffix(line, "}") {
			continue // the last line may still be being written
		}
		f := strings.SplitN(line, "|", 5)
		if len(f) != 5 {
			t.Fatalf("rsyslog wrote %q", line)
		}
		msg := strings.TrimPrefix(f[4], " ")
		var v struct {
			Seq      int    `json:"seq"`
			Event    string `json:"event"`
			Gateway  string `json:"gateway"`
			Decision *struct {
				Allow bool `json:"allow"`
			} `json:"decision"`
		}
		if err := json.Unmarshal([]byte(msg), &v); err != nil {
			t.Fatalf("rsyslog's MSG is not the JSON record: %v\n%s", err, line)
		}
		if f[1] != v.Event || f[2] != v.Gateway || f[3] != "interlock" {
			t.Fatalf("rsyslog parsed the header as msgid %q hostname %q app-name %q:\n%s", f[1], f[2], f[3], line)
		}
		if v.Event == "call" && v.Decision != nil && !v.Decision.Allow && f[0] != "4" {
			t.Fatalf("rsyslog got severity %s for a denied call, want 4:\n%s", f[0], line)
		}
		out = append(out, delivery{seq: v.Seq, line: msg})
	}
	return out
}

func TestE2EShipRsyslogOutageAcrossRestart(t *testing.T) {
	r := newRsyslog(t)
	r.start(t)
	g := newShipGateway(t, fmt.Sprintf("    - {name: rsyslog, type: syslog, address: '127.0.0.1:%d', retry_max: 500ms}\n", r.port))
	arrived := func() []int {
		b, _ := os.ReadFile(r.out)
		var out []int
		for line := range strings.SplitSeq(string(b), "\n") {
			if i := strings.Index(line, `{"seq":`); i >= 0 {
				out = append(out, seqOf(line[i:]))
			}
		}
		return out
	}
	lines := siemOutage(t, g, 4000, true, func() { r.stop(t) }, func() { r.start(t) }, arrived)
	r.stop(t)
	got := r.deliveries(t)
	dups, _ := checkDelivery(t, lines, got)
	t.Logf("rsyslog: %d messages for %d records, %d duplicates", len(got), len(lines), dups)
}

// lastSeq is the seq of the last record of the log (its live file's last
// line), 0 for an empty log.
func lastSeq(t *testing.T, path string) int {
	t.Helper()
	names, err := audit.LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(names) - 1; i >= 0; i-- {
		b, err := os.ReadFile(names[i])
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		s := strings.TrimRight(string(b), "\n")
		if s == "" {
			continue
		}
		return seqOf(s[strings.LastIndexByte(s, '\n')+1:])
	}
	return 0
}

// Retention (audit.retain_bytes) must not delete a rotated file that a
// shipper has not delivered yet: while the SIEM is down the log outgrows
// its retention limit many times over, and every record still arrives once
// the SIEM is back. Once they are delivered, retention deletes them.
func TestE2EShipRetentionKeepsUndelivered(t *testing.T) {
	rcv, err := shiptest.NewReceiver(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Stop()
	g := newShipGatewayAudit(t, "  retain_bytes: 2MiB\n",
		fmt.Sprintf("    - {name: siem1, type: syslog, address: '%s', retry_max: 500ms}\n", rcv.Addr()))
	g.start(t)
	waitDelivered(t, g, 30*time.Second, receiverSeqs(rcv))
	rcv.Stop()

	driveCalls(t, g.port, 6000, 4) // about 8 MiB of records: 4 times retain_bytes
	// Every file is still there: the log begins at seq 1 without a gap.
	lines, _, files := logLines(t, g.auditPath)
	if files < 5 {
		t.Fatalf("the log has %d files; the test wants it to outgrow retain_bytes", files)
	}
	for _, l := range lines {
		var v struct {
			Event string `json:"event"`
		}
		json.Unmarshal([]byte(l), &v)
		if v.Event == audit.EventRetention {
			t.Fatalf("retention deleted a file the shipper had not delivered: %s", l)
		}
	}

	if err := rcv.Start(); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, g, 3*time.Minute, receiverSeqs(rcv))
	// Retention goes by the cursor, which follows a second after delivery.
	eventually(t, 30*time.Second, 50*time.Millisecond, "the cursor at the end of the log", func() (bool, string) {
		c, _, err := ship.ReadCursor(ship.CursorPath(g.auditPath, "siem1"))
		return err == nil && int(c.Seq) >= len(lines), fmt.Sprintf("cursor %+v %v, log at %d", c, err, len(lines))
	})

	// Delivered: the next rotations let retention delete the old files.
	driveCalls(t, g.port, 2000, 4)
	eventually(t, time.Minute, 100*time.Millisecond, "retention deleting delivered files", func() (bool, string) {
		names, _ := audit.LogFiles(g.auditPath)
		first := 0
		if len(names) > 0 {
			if b, err := os.ReadFile(names[0]); err == nil {
				first = seqOf(string(b))
			}
		}
		return first > 1, fmt.Sprintf("%d files, the first begins at %d", len(names), first)
	})
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d, want 0", code)
	}
	last := lastSeq(t, g.auditPath)
	eventually(t, 30*time.Second, 100*time.Millisecond, "every record at the receiver", func() (bool, string) {
		seen := map[int]bool{}
		for _, s := range receiverSeqs(rcv)() {
			seen[s] = true
		}
		for s := 1; s <= last; s++ {
			if !seen[s] {
				return false, fmt.Sprintf("%d missing of 1..%d", s, last)
			}
		}
		return true, ""
	})
	// What was in the log before retention arrived byte for byte, in order,
	// and so did what is in it now. Records of the second run that
	// retention deleted before they could be read here are taken from the
	// receiver; the hash chain through them to the records still in the log
	// proves them.
	got := receiverDeliveries(t, rcv.Messages())
	delivered := map[int]string{}
	for _, d := range got {
		delivered[d.seq] = d.line
	}
	names, _ := audit.LogFiles(g.auditPath)
	gap := 0
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.SplitSeq(strings.TrimRight(string(b), "\n"), "\n") {
			s := seqOf(l)
			for ; s > len(lines)+1 && delivered[len(lines)+1] != ""; gap++ {
				lines = append(lines, delivered[len(lines)+1])
			}
			if s == len(lines)+1 {
				lines = append(lines, l)
			} else if s < 1 || s > len(lines) || lines[s-1] != l {
				t.Fatalf("the log's record %d changed after retention (or is missing before it)", s)
			}
		}
	}
	if len(lines) != last {
		t.Fatalf("%d lines known, the log ends at %d", len(lines), last)
	}
	if rep, err := audit.Verify(strings.NewReader(strings.Join(lines, "\n") + "\n")); err != nil {
		t.Fatalf("the log with %d records taken from the receiver does not verify: %v (%+v)", gap, err, rep)
	}
	dups, _ := checkDelivery(t, lines, got)
	retained := 0
	for _, l := range lines {
		if strings.Contains(l, `"event":"`+audit.EventRetention+`"`) {
			retained++
		}
	}
	if retained == 0 {
		t.Fatal("no audit.retention record: retention never deleted a file")
	}
	t.Logf("%d records (%d read back only from the receiver), %d files deleted by retention after delivery, %d duplicates", last, gap, retained, dups)
}

// `interlock check` validates the ship section: each bad value is reported
// with its key, and a good section passes.
func TestE2EShipCheckConfig(t *testing.T) {
	pki, err := shiptest.NewPKI(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	writeFile(t, notPEM, "not a certificate\n")
	for _, tc := range []struct{ ship, key string }{
		{"{name: s, type: syslog, address: 'siem.example'}", "audit.ship[0].address"},
		{"{name: s, type: syslog, address: 'siem.example:6514', format: xml}", "audit.ship[0].format"},
		{"{name: s, type: syslog, address: 'siem.example:6514', sd_id: interlock}", "audit.ship[0].sd_id"},
		{fmt.Sprintf("{name: s, type: syslog, address: 'siem.example:6514', tls: {ca: '%s'}}", notPEM), "audit.ship[0].tls.ca"},
		{fmt.Sprintf("{name: s, type: syslog, address: 'siem.example:6514', tls: {cert: '%s', key: '%s'}}", pki.ClientCert, pki.ServerKey), "audit.ship[0].tls.cert"},
		{"{name: h, type: http, url: 'https://siem.example/ingest', on_reject: retry}", "audit.ship[0].on_reject"},
		{"{name: h, type: http, url: 'https://siem.example/ingest', token_file: ./missing.token}", "audit.ship[0].token_file"},
	} {
		g := newGateway(t, gwOptions{upstreamPort: 1})
		f, err := os.OpenFile(g.config, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "  ship:\n    - %s\n", tc.ship)
		f.Close()
		r := interlock(t, "check", "--config", g.config)
		if r.code == 0 || !strings.Contains(r.stderr, tc.key) {
			t.Errorf("%s: exit %d, want an error naming %s:\n%s", tc.ship, r.code, tc.key, r.stderr)
		}
	}
	g := newGateway(t, gwOptions{upstreamPort: 1})
	f, err := os.OpenFile(g.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "  ship:\n    - {name: s, type: syslog, address: 'siem.example:6514', format: cef, tls: {ca: '%s', cert: '%s', key: '%s'}}\n"+
		"    - {name: h, type: http, url: 'https://siem.example/ingest'}\n", pki.CA, pki.ClientCert, pki.ClientKey)
	f.Close()
	if r := interlock(t, "check", "--config", g.config); r.code != 0 {
		t.Fatalf("a good ship section: exit %d\n%s", r.code, r.stderr)
	}
}
