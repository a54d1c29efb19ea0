package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What the demos (examples/*/run.sh, scripts/demo.sh) promise beyond the
// calls they show: a second run leaves a running demo alone, and every
// command under "Try next" works as printed.

// tryNext is one command of a demo's "Try next" list and the comment
// printed above it.
type tryNext struct {
	comment, cmd string
	out          string // after runTryNext
	code         int
}

// parseTryNext returns the commands of the "Try next" block of a demo's
// output, each with the comment printed above it or above the commands
// before it.
func parseTryNext(t *testing.T, out string) []*tryNext {
	t.Helper()
	_, block, ok := strings.Cut(out, "\nTry next")
	if !ok {
		t.Fatalf("no \"Try next\" in the demo's output:\n%s", out)
	}
	block, _, _ = strings.Cut(block, "\n\n")
	var cmds []*tryNext
	var comment []string
	newComment := true
	for _, line := range strings.Split(block, "\n")[1:] {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "#"):
			if newComment {
				comment, newComment = nil, false
			}
			comment = append(comment, strings.TrimSpace(strings.TrimPrefix(line, "#")))
		case line != "":
			// A comment is about the commands below it, up to the next one.
			cmds = append(cmds, &tryNext{comment: strings.Join(comment, " "), cmd: line})
			newComment = true
		}
	}
	if len(cmds) < 3 || !strings.HasPrefix(cmds[0].cmd, "cd ") {
		t.Fatalf("the \"Try next\" list does not start with a cd to the repository root:\n%s", block)
	}
	return cmds
}

// runTryNext runs the commands in order in one shell, as a user pastes
// them into a new terminal: from another folder, without bin/ on PATH.
// Each must exit 0, except one whose comment says it may be denied.
func runTryNext(t *testing.T, cmds []*tryNext) {
	t.Helper()
	const mark = "@@try-next@@"
	var script strings.Builder
	script.WriteString("exec </dev/null 2>&1\n")
	for i, c := range cmds {
		fmt.Fprintf(&script, "echo %s %d start\n%s\nrc=$?; echo; echo %s %d rc=$rc\n", mark, i, c.cmd, mark, i)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the \"Try next\" commands: %v\n%s", err, out)
	}
	re := regexp.MustCompile(`(?s)` + mark + ` (\d+) start\n(.*?)\n` + mark + ` (\d+) rc=(\d+)\n`)
	ms := re.FindAllStringSubmatch(string(out), -1)
	if len(ms) != len(cmds) {
		t.Fatalf("%d of %d \"Try next\" commands ran to their end:\n%s", len(ms), len(cmds), out)
	}
	for i, m := range ms {
		c := cmds[i]
		c.out = m[2]
		c.code, _ = strconv.Atoi(m[4])
		mayFail := strings.Contains(c.comment, "denied")
		if (c.code != 0 && !mayFail) || strings.Contains(c.out, "No such file") || strings.Contains(c.out, "command not found") {
			t.Errorf("printed command %q (under %q) does not work as printed: exit %d\n%s", c.cmd, c.comment, c.code, c.out)
		}
	}
}

// findTryNext returns the commands that start with prefix, in order.
func findTryNext(t *testing.T, cmds []*tryNext, prefix string, n int) []*tryNext {
	t.Helper()
	var out []*tryNext
	for _, c := range cmds {
		if strings.HasPrefix(c.cmd, prefix) {
			out = append(out, c)
		}
	}
	if len(out) != n {
		t.Fatalf("%d printed commands start with %q, want %d", len(out), prefix, n)
	}
	return out
}

// secondDemoRun runs script again while the demo of pid runs: it must stop
// at once naming that pid, and leave runDir (the running demo's files,
// such as its audit log) be.
func secondDemoRun(t *testing.T, script string, pid int, runDir string) {
	t.Helper()
	auditPath := filepath.Join(runDir, "audit", "audit.jsonl")
	before, err := os.Stat(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Env = childEnv()
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Errorf("a second %s while one runs: %v, want exit 1\n%s", script, err, out)
	}
	want := fmt.Sprintf("a demo is already running (pid %d)", pid)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), fmt.Sprintf("kill %d", pid)) {
		t.Errorf("a second %s does not say %q and how to stop it:\n%s", script, want, out)
	}
	if after, err := os.Stat(auditPath); err != nil || !os.SameFile(before, after) || after.Size() < before.Size() {
		t.Errorf("a second %s replaced or cut the running demo's audit log %s (%v)", script, auditPath, err)
	}
}

// demo_wait (scripts/demo.sh) gives up on a process that never says it
// listens, and on one that exits, naming the log to read.
func TestDemoWait(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "sim.log")
	for _, tc := range []struct {
		name, proc, want string
	}{
		{"silent", "sleep 30", "did not start within 1 s"},
		{"exits", "echo bind: address already in use; exit 1", "did not start (it exited)"},
		{"listens", "echo listening on 127.0.0.1:5502; sleep 30", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("bash", "-c", `set -euo pipefail; . scripts/demo.sh
bash -c "$1" >"$2" 2>&1 &
trap 'kill $! 2>/dev/null || true' EXIT
demo_wait "$2" $! "listening on" "the PLC simulator"
echo waited`, "demo_wait", tc.proc, log)
			cmd.Dir = repoRoot
			cmd.Env = append(childEnv(), "DEMO_WAIT_SECONDS=1")
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if tc.want == "" {
				if err != nil || !strings.Contains(string(out), "waited") {
					t.Errorf("demo_wait on a process that listens: %v\n%s", err, out)
				}
				return
			}
			if err == nil || !strings.Contains(string(out), "the PLC simulator "+tc.want) || !strings.Contains(string(out), "its log, "+log) {
				t.Errorf("demo_wait: %v, want exit 1 saying %q and naming %s\n%s", err, tc.want, log, out)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("demo_wait gave up after %s, past its DEMO_WAIT_SECONDS=1", d)
			}
		})
	}
}

// A demo whose port is taken stops before it builds or deletes anything,
// naming the port.
func demoPortTaken(t *testing.T, script string, port int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on the demo's port %d: %v", port, err)
	}
	defer ln.Close()
	cmd := exec.Command("bash", script)
	cmd.Env = childEnv()
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 ||
		!strings.Contains(string(out), fmt.Sprintf("port 127.0.0.1:%d is in use", port)) || strings.Contains(string(out), "building") {
		t.Errorf("%s with port %d taken: exit %d, want 1 before the build, naming the port\n%s", script, port, code, out)
	}
}

// checkQuickstartTryNext runs the quickstart's "Try next" commands against
// the running demo and checks that each does what its comment says.
func checkQuickstartTryNext(t *testing.T, out, runDir string) {
	t.Helper()
	cmds := parseTryNext(t, out)
	runTryNext(t, cmds)
	writes := findTryNext(t, cmds, "mbpoll -m tcp -p 5020 -a 1 -0 -r 100 -1 127.0.0.1 1600", 2)
	if !strings.Contains(writes[0].out, "Illegal function") && !strings.Contains(writes[0].out, "Written 1 references") {
		t.Errorf("the first printed write shows neither its denial nor its success:\n%s", writes[0].out)
	}
	open := findTryNext(t, cmds, "bin/interlock ticket open", 1)[0]
	m := regexp.MustCompile(`ticket (\S+) opened`).FindStringSubmatch(open.out)
	if m == nil {
		t.Fatalf("the printed ticket open says no ticket opened:\n%s", open.out)
	}
	ticket := m[1]
	if !strings.Contains(findTryNext(t, cmds, "bin/interlock ticket list", 1)[0].out, ticket) {
		t.Errorf("the printed ticket list does not list %s", ticket)
	}
	if !strings.Contains(writes[1].out, "Written 1 references") {
		t.Errorf("the printed write after the ticket is not allowed:\n%s", writes[1].out)
	}
	if w := findTryNext(t, cmds, "examples/quickstart/open-window.sh", 1)[0]; !strings.Contains(w.out, "maintenance window for plc1 open until") {
		t.Errorf("open-window.sh:\n%s", w.out)
	}
	if w := findTryNext(t, cmds, "mbpoll -m tcp -p 5020 -a 1 -0 -r 205", 1)[0]; !strings.Contains(w.out, "Written 1 references") {
		t.Errorf("the printed write to the protected range is not allowed:\n%s", w.out)
	}
	report := filepath.Join(runDir, "report.html")
	findTryNext(t, cmds, "bin/interlock audit report", 1)
	if b, err := os.ReadFile(report); err != nil || !strings.HasPrefix(string(b), "<!DOCTYPE html>") {
		t.Errorf("the printed audit report: %s starts with %q (%v), want <!DOCTYPE html>", report, b[:min(len(b), 20)], err)
	}
	// The audit log names the ticket that allowed the write at 100 (unless
	// the example's monthly window was open, which allows it first), and
	// has the write at 205 allowed with an alert.
	recs := readAudit(t, filepath.Join(runDir, "audit", "audit.jsonl"))
	inWindow := strings.Contains(writes[0].out, "Written 1 references")
	var byTicket int
	for _, c := range callRecords(recs, "write_single_register", 100) {
		if c.str("decision.ticket") == ticket && resultOf(recs, c.str("call_id")).str("status") == "ok" {
			byTicket++
		}
	}
	if byTicket != 1 && !inWindow {
		t.Errorf("%d writes at 100 in the audit log were allowed by ticket %s, want 1", byTicket, ticket)
	}
	protected := callRecords(recs, "write_single_register", 205)
	if len(protected) != 1 || protected[0].get("decision.allow") != true || protected[0].get("decision.alert") != true ||
		resultOf(recs, protected[0].str("call_id")).str("status") != "ok" {
		t.Errorf("the write at 205 in the audit log: %v, want one, allowed with an alert, ok", protected)
	}
}

// checkOPCUATryNext runs the OPC UA demo's "Try next" commands against the
// running demo: alice's write is denied (unless a window is open), the
// printed ticket lets her write, anonymous reads and cannot write.
func checkOPCUATryNext(t *testing.T, out string) {
	t.Helper()
	cmds := parseTryNext(t, out)
	runTryNext(t, cmds)
	writes := findTryNext(t, cmds, "examples/opcua/client.sh alice engineer-pw write Setpoint 55.5", 2)
	if !strings.Contains(writes[0].out, "write   ns=1;s=Setpoint := 55.5  BadUserAccessDenied") &&
		!strings.Contains(writes[0].out, "write   ns=1;s=Setpoint := 55.5  Good") {
		t.Errorf("alice's first printed write shows no status:\n%s", writes[0].out)
	}
	if open := findTryNext(t, cmds, "bin/interlock ticket open", 1)[0]; !strings.Contains(open.out, "opened: alice may write on line1") {
		t.Errorf("the printed ticket open:\n%s", open.out)
	}
	if !strings.Contains(writes[1].out, "write   ns=1;s=Setpoint := 55.5  Good") || !strings.Contains(writes[1].out, "read    ns=1;s=Setpoint = 55.5  Good") {
		t.Errorf("alice's printed write under the ticket is not allowed:\n%s", writes[1].out)
	}
	if r := findTryNext(t, cmds, "examples/opcua/client.sh anonymous - read", 1)[0]; !strings.Contains(r.out, "read    ns=1;s=Setpoint = 55.5  Good") {
		t.Errorf("the printed anonymous read:\n%s", r.out)
	}
	if w := findTryNext(t, cmds, "examples/opcua/client.sh anonymous - write", 1)[0]; !strings.Contains(w.out, "write   ns=1;s=Setpoint := 20  BadUserAccessDenied") {
		t.Errorf("the printed anonymous write is not denied:\n%s", w.out)
	}
	if q := findTryNext(t, cmds, "bin/interlock audit query", 1)[0]; !strings.Contains(q.out, "change-ticket:pass:") {
		t.Errorf("the printed audit query does not show the write the ticket allowed:\n%s", q.out)
	}
	report := regexp.MustCompile(`--out (\S+)`).FindStringSubmatch(findTryNext(t, cmds, "bin/interlock audit report", 1)[0].cmd)
	if b, err := os.ReadFile(filepath.Join(repoRoot, report[1])); err != nil || !strings.HasPrefix(string(b), "<!DOCTYPE html>") {
		t.Errorf("the printed audit report %s: %v, or it does not start with <!DOCTYPE html>", report[1], err)
	}
}
