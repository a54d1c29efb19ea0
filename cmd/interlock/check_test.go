package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// policyPathLine is the line of the gateway configuration's policy.path.
func policyPathLine(t *testing.T, g *gw) int {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	before, _, ok := strings.Cut(string(b), "  path: ./policy\n")
	if !ok {
		t.Fatalf("the gateway configuration has no policy.path line:\n%s", b)
	}
	return strings.Count(before, "\n") + 1
}

// A policy directory's errors name the configuration file and the line of
// policy.path first, as a bundle file's do, then the file at fault.
func TestCheckPolicyDirErrorsNameConfigLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // after the prefix; {dir} is the policy directory
	}{
		{"Rego v0", map[string]string{"v0.rego": "package interlock\n\nlegacy { true }\n"},
			"{dir}/v0.rego:3: rego_parse_error: `if` keyword is required before rule body"},
		{"data collision", map[string]string{"sites/data.json": `{"x": 1}`, "zz.json": `{"sites": {"x": 2}}`},
			"{dir}: {dir}/zz.json collides with key \"x\" of {dir}/sites/data.json: both define data.sites.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			for name, text := range tc.files {
				writeFile(t, filepath.Join(g.policyDir, name), text)
			}
			var stdout, stderr bytes.Buffer
			err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr)
			want := fmt.Sprintf("%s:%d: policy.path: %s", g.config, policyPathLine(t, g), strings.ReplaceAll(tc.want, "{dir}", g.policyDir))
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("check: %v\nwant an error starting %s", err, want)
			}
		})
	}
}

// With users: passthrough the gateway knows no user list: check samples
// the users of sources and of open change tickets, and with neither says,
// at the line of opcua.users, that no named user's call was decided.
func TestCheckPassthroughUsers(t *testing.T) {
	t.Parallel()
	// The decision is undefined for bob alone: check's warning names his
	// calls when, and only when, he is sampled.
	const rego = "package interlock\n\ndecision := {\"allow\": true, \"alert\": false, \"reasons\": []} if input.principal.user != \"bob\"\n"
	now := time.Now().UTC()
	ticket := fmt.Sprintf(`[{"id": "CHG-1", "user": "bob", "targets": ["line1"], "access": ["write"], "reason": "retune",
  "opened_by": "carol", "opened": %q, "expires": %q}]`, now.Add(-time.Minute).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	for _, tc := range []struct {
		name  string
		extra string // appended to the configuration
		named bool   // bob is sampled
	}{
		{"no user named", "", false},
		{"a source's user", "sources:\n  - address: 10.0.5.7\n    name: ews-bob\n    user: bob\n", true},
		{"an open ticket's user", "admin:\n  socket: ./admin.sock\n  tickets: ./tickets.json\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newOPCUAGateway(t, fmt.Sprintf("opc.tcp://127.0.0.1:%d", freePort(t)))
			writeFile(t, filepath.Join(g.policyDir, "interlock.rego"), rego)
			writeFile(t, filepath.Join(g.dir, "tickets.json"), ticket)
			b, err := os.ReadFile(g.config)
			if err != nil {
				t.Fatal(err)
			}
			const fileUsers = "users: ./users.yaml\n      upstream_identity: anonymous\n"
			before, after, ok := strings.Cut(string(b), fileUsers)
			if !ok {
				t.Fatalf("the test config no longer has %q:\n%s", fileUsers, b)
			}
			writeFile(t, g.config, before+"users: passthrough\n"+after+tc.extra)
			var stdout, stderr bytes.Buffer
			if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr); err != nil {
				t.Fatalf("check: %v\n%s", err, stdout.String())
			}
			note := fmt.Sprintf("%s:%d: note: listeners[0].opcua.users: passthrough, and the configuration names no user: ",
				g.config, strings.Count(before, "\n")+1)
			bob := "OPC UA user bob to line1"
			if got := strings.Contains(stdout.String(), note); got == tc.named {
				t.Errorf("note %q printed: %v, want %v\n%s", note, got, !tc.named, stdout.String())
			}
			if got := strings.Contains(stdout.String(), bob); got != tc.named {
				t.Errorf("%q among the undefined samples: %v, want %v\n%s", bob, got, tc.named, stdout.String())
			}
		})
	}
}

// check warns of a per-source connection burst under max_conns_per_source
// (a host that reconnects cannot reopen what it may hold) and of a burst
// that has no effect without a rate; the defaults get no warning.
func TestCheckWarnsConnRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limits string
		want   string // "": no warning
	}{
		{"", ""},
		{"      conn_rate_per_source: 0\n", ""},
		{"      max_conns_per_source: 8\n      conn_burst_per_source: 4\n", "warning: listeners[0].limits.conn_burst_per_source: 4 is under max_conns_per_source (8)"},
		{"      conn_rate_per_source: 0\n      conn_burst_per_source: 50\n", "warning: listeners[0].limits.conn_burst_per_source: 50 has no effect: limits.conn_rate_per_source is 0"},
		{"      conn_rate_per_source: 0.0001\n", "warning: listeners[0].limits.conn_rate_per_source: 0.0001 new connections a second: a host that has used its burst of 20 gets one more every 2h46m40s"},
		// both warnings, each at its key's line: the burst's (the last line) second
		{"      conn_rate_per_source: 0.01\n      max_conns_per_source: 10\n      conn_burst_per_source: 2\n", "warning: listeners[0].limits.conn_burst_per_source: 2 is under max_conns_per_source (10)"},
	} {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		before, after, ok := strings.Cut(string(b), "    limits:\n")
		if !ok {
			t.Fatalf("the gateway configuration has no listener limits:\n%s", b)
		}
		line := strings.Count(before, "\n") + 2 + strings.Count(tc.limits, "\n") - 1
		writeFile(t, g.config, before+"    limits:\n"+tc.limits+after)
		cfg, err := config.Load(g.config)
		if err != nil {
			t.Fatalf("%q: %v", tc.limits, err)
		}
		var out bytes.Buffer
		warnConnRate(&out, cfg, &cfg.Listeners[0])
		if tc.want == "" {
			if out.Len() > 0 {
				t.Errorf("%q: warned %q, want nothing", tc.limits, out.String())
			}
			continue
		}
		last := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if want := fmt.Sprintf("%s:%d: %s", cfg.File, line, tc.want); !strings.HasPrefix(last[len(last)-1], want) {
			t.Errorf("%q: warned %q\nwant its last line to start %q", tc.limits, out.String(), want)
		}
		if strings.Contains(tc.limits, "0.01") && !strings.Contains(out.String(), "0.01 new connections a second") {
			t.Errorf("%q: warned %q, want the rate's warning too", tc.limits, out.String())
		}
	}
}

// A route that names unit id 0 on a serial-line upstream is valid, but the
// gateway refuses every request to it (a broadcast there): check says so at
// the route's unit_ids line. On a tcp:// upstream unit 0 is the device.
func TestCheckWarnsSerialBroadcastRoute(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		upstream string
		warn     bool
	}{{"rtuovertcp://127.0.0.1:4001", true}, {"rtu:///dev/ttyS0?baud=19200", true}, {"tcp://127.0.0.1:503", false}} {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		before, after, ok := strings.Cut(string(b), "    modbus:\n")
		if !ok {
			t.Fatalf("the gateway configuration has no modbus section:\n%s", b)
		}
		routes := "      routes:\n" +
			"        - upstream: " + tc.upstream + "\n" +
			"          unit_ids: [0, 1]\n" + // the warning's line
			"          target: drives\n" +
			"        - unit_ids: [2, 3]\n" +
			"          upstream: " + tc.upstream + "\n"
		line := strings.Count(before, "\n") + 4
		writeFile(t, g.config, before+"    modbus:\n"+routes+after)
		var stdout, stderr bytes.Buffer
		if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr); err != nil {
			t.Fatalf("%s: %v\n%s", tc.upstream, err, stderr.String())
		}
		want := fmt.Sprintf("%s:%d: warning: listeners[0].modbus.routes[0].unit_ids: unit id 0 is a broadcast on the serial line behind %s", g.config, line, tc.upstream)
		if got := strings.Contains(stdout.String(), want); got != tc.warn {
			t.Errorf("%s: check printed\n%s\nwant a line starting %q: %v", tc.upstream, stdout.String(), want, tc.warn)
		}
		if strings.Contains(stdout.String(), "routes[1]") || (!tc.warn && strings.Contains(stdout.String(), "broadcast")) {
			t.Errorf("%s: check printed\n%s\nwant no other broadcast warning", tc.upstream, stdout.String())
		}
	}
}

// check proves the audit folder takes new files by making and removing
// one: a log file that can be appended to is not enough, since rotation
// creates files beside it. Root passes every permission check, so the
// command runs as nobody (uid 65534) when the test runs as root.
func TestCheckMakesAFileInTheAuditFolder(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gwOptions{upstreamPort: 502})
	auditDir := filepath.Dir(g.auditPath)
	writeFile(t, g.auditPath, "")
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		const nobody = 65534
		cred = &syscall.Credential{Uid: nobody, Gid: nobody}
		// nobody reads the configuration and policy, and owns the log, as a
		// gateway's user would
		for _, d := range []string{filepath.Dir(g.dir), g.dir} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(g.auditPath, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(g.dir, "interlock")
	copyFile(t, interlockBin, bin)
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	check := func() cliResult {
		t.Helper()
		cmd := exec.Command(bin, "check", "--config", g.config)
		cmd.Env = childEnv()
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("interlock check: %v", err)
		}
		return cliResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	}
	if err := os.Chmod(auditDir, 0o777); err != nil {
		t.Fatal(err)
	}
	if r := check(); r.code != 0 {
		t.Fatalf("check with a writable audit folder: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if ents, err := os.ReadDir(auditDir); err != nil || len(ents) != 1 {
		t.Errorf("the audit folder after check: %v, %v; want the log alone (check removes its file)", ents, err)
	}
	if err := os.Chmod(auditDir, 0o555); err != nil {
		t.Fatal(err)
	}
	r := check()
	if want := "audit.path: " + g.auditPath + ": no file can be made in " + auditDir; r.code != 1 || !strings.Contains(r.stderr, want) ||
		!strings.Contains(r.stderr, "permission denied") {
		t.Errorf("check with an audit folder that takes no file: exit %d, stderr %q; want 1 and %q", r.code, r.stderr, want)
	}
}

// A listen address's scheme is the protocol's own, or none: any other
// (tls://, udp://) would be listened on as plain TCP all the same.
func TestListenSchemeIsTheProtocols(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		protocol, listen, want string // want "": accepted
	}{
		{"modbus", "tls://127.0.0.1:802", `config.yaml:6: listeners[0].listen: "tls://127.0.0.1:802": tls:// is not a scheme of modbus listeners (want host:port; Modbus/TCP Security is the listener's tls section)`},
		{"modbus", "udp://127.0.0.1:502", "udp:// is not a scheme of modbus listeners"},
		{"modbus", "opc.tcp://127.0.0.1:502", "opc.tcp:// is not a scheme of modbus listeners"},
		{"modbus", "tcp://127.0.0.1:502", ""},
		{"modbus", "127.0.0.1:502", ""},
		{"opcua", "tcp://127.0.0.1:4841", `config.yaml:6: listeners[0].listen: "tcp://127.0.0.1:4841": tcp:// is not a scheme of opcua listeners (want opc.tcp://host:port or host:port)`},
		{"opcua", "opc.tcp://127.0.0.1:4841", ""},
		{"opcua", "127.0.0.1:4841", ""},
	} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "policy"), 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "config.yaml")
		writeFile(t, p, fmt.Sprintf("gateway:\n  id: gw1\nlisteners:\n  - name: plc1\n    protocol: %s\n    listen: %s\npolicy:\n  path: ./policy\naudit:\n  path: ./audit/audit.jsonl\n",
			tc.protocol, tc.listen))
		_, err := config.Load(p)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s listen %s: %v, want it accepted", tc.protocol, tc.listen, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s listen %s: %v, want an error with %q", tc.protocol, tc.listen, err, tc.want)
		}
	}
}
