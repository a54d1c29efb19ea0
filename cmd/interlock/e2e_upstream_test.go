package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The PLC down at start, killed mid-session, and hung: the client gets the
// Modbus gateway exceptions (0x0A path unavailable, 0x0B target did not
// respond), never a hang, and the gateway recovers as soon as the PLC does.
func TestE2EUpstreamFaults(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	// Nothing listens on the PLC's port until the PLC starts, and nothing
	// else can take the port in the meantime.
	port, release := reservePort(t)
	g := newGateway(t, gwOptions{upstreamPort: port, requestTimeout: "500ms"})
	g.start(t)
	read := []string{"-o", "3", "-r", "100", "-c", "2"}

	// outcomes returns (status, code) of the results of reads at 100, in order.
	type outcome struct {
		status string
		code   int
	}
	outcomes := func() []outcome {
		recs := readAudit(t, g.auditPath)
		var out []outcome
		for _, c := range callRecords(recs, "read_holding_registers", 100) {
			if res := resultOf(recs, c.str("call_id")); res != nil {
				out = append(out, outcome{res.str("status"), int(res.num("code"))})
			}
		}
		return out
	}
	countOutcome := func(want outcome) int {
		n := 0
		for _, o := range outcomes() {
			if o == want {
				n++
			}
		}
		return n
	}
	// waitOutcome waits for n results like want (result records may trail
	// the answer to the client by a few milliseconds).
	waitOutcome := func(want outcome, n int) {
		t.Helper()
		eventually(t, 3*time.Second, 20*time.Millisecond, fmt.Sprintf("%d results %+v", n, want), func() (bool, string) {
			return countOutcome(want) >= n, fmt.Sprint(outcomes())
		})
		if got := countOutcome(want); got != n {
			t.Errorf("%d results %+v, want %d: %v", got, want, n, outcomes())
		}
	}

	// Down at start: nothing listens on the upstream port. A refused
	// connection is answered at once.
	start := time.Now()
	r := mbpoll(t, g.port, read)
	if r.code == 0 || !strings.Contains(r.out, "Gateway path unavailable") {
		t.Fatalf("read with the PLC down: exit %d, want Gateway path unavailable (0x0A)\n%s", r.code, r.out)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("the 0x0A answer for a refused connection took %s", d)
	}
	waitOutcome(outcome{"error", 10}, 1)

	v100, v101, init := plcValues()
	release()
	plc := startPLC(t, port, init...)
	eventually(t, 5*time.Second, 100*time.Millisecond, "reads work once the PLC is up", func() (bool, string) {
		r := mbpoll(t, g.port, read)
		return r.code == 0 && r.values[100] == v100 && r.values[101] == v101, r.out
	})

	// Killed mid-session: one mbpoll connection polls all along.
	{
		poller := startPoller(t, g.port, "-o", "3", "-r", "100", "-c", "2")
		values := func(a, b int) func(string) bool {
			return func(p string) bool {
				v := parseMbpollValues(p)
				return v[100] == a && v[101] == b
			}
		}
		n := poller.waitPoll(t, 0, 5*time.Second, "a good poll", values(v100, v101))
		before := countOutcome(outcome{"error", 10})
		plc.proc.kill()
		n = poller.waitPoll(t, n+1, 5*time.Second, "Gateway path unavailable after the PLC was killed", func(p string) bool {
			return strings.Contains(p, "Gateway path unavailable")
		})
		// The same pymodbus server, restarted on the same port, with new
		// values so that its answers are told apart from stale ones.
		v101b := v101 + 1
		plc = startPLC(t, port, "100="+strconv.Itoa(v100), "101="+strconv.Itoa(v101b))
		poller.waitPoll(t, n+1, 5*time.Second, "the restarted PLC's values", values(v100, v101b))
		eventually(t, 3*time.Second, 20*time.Millisecond, "a result with status error, code 10 while the PLC was down", func() (bool, string) {
			return countOutcome(outcome{"error", 10}) > before, fmt.Sprint(outcomes())
		})
		// One mbpoll connection, one session, through all of it: ok, then
		// error 10 while the PLC was gone, then ok again.
		recs := readAudit(t, g.auditPath)
		seen := map[string][]string{} // session → outcomes in order
		for _, c := range callRecords(recs, "read_holding_registers", 100) {
			if res := resultOf(recs, c.str("call_id")); res != nil {
				o := res.str("status")
				if o == "error" {
					o += strconv.Itoa(int(res.num("code")))
				}
				seen[c.str("session_id")] = append(seen[c.str("session_id")], o)
			}
		}
		survived := false
		for _, outs := range seen {
			first := slices.Index(outs, "error10")
			if first > 0 && outs[0] == "ok" && slices.Contains(outs[first:], "ok") {
				survived = true
			}
		}
		if !survived {
			t.Errorf("no session saw ok, then error 10, then ok: the client session did not survive the PLC restart: %v", seen)
		}
		poller.proc.kill()
		v101 = v101b
	}

	// Hung: SIGSTOP, the gateway answers 0x0B after limits.request_timeout.
	{
		before := countOutcome(outcome{"error", 11})
		plc.proc.signal(t, syscall.SIGSTOP)
		stopped := true
		t.Cleanup(func() {
			if stopped {
				_ = syscall.Kill(plc.proc.pid(), syscall.SIGCONT)
			}
		})
		t0 := time.Now()
		r := mbpoll(t, g.port, read)
		took := time.Since(t0)
		if r.code == 0 || !strings.Contains(r.out, "Target device failed to respond") {
			t.Errorf("read with the PLC stopped: exit %d, want Target device failed to respond (0x0B)\n%s", r.code, r.out)
		}
		if took > 2500*time.Millisecond {
			t.Errorf("the 0x0B answer took %s; limits.request_timeout is 500ms", took)
		}
		waitOutcome(outcome{"error", 11}, before+1)

		plc.proc.signal(t, syscall.SIGCONT)
		stopped = false
		// The PLC now answers the stalled request late, on the gateway's
		// upstream connection: that answer must not be taken for the next
		// request's (a read of another size), which must simply work.
		r = mbpoll(t, g.port, []string{"-o", "3", "-r", "100", "-c", "3"})
		if r.code != 0 || r.values[100] != v100 || r.values[101] != v101 || r.values[102] != 0 || len(r.values) != 3 {
			t.Errorf("the first read after the PLC runs again: exit %d, values %v, want [100]=%d [101]=%d [102]=0\n%s", r.code, r.values, v100, v101, r.out)
		}
		waitOutcome(outcome{"error", 11}, before+1) // and no other 0x0B
	}
}
