package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// Configuration and policy mistakes stop `interlock check` (and `run`) with
// exit 1 and one line on stderr naming the file, the line where the YAML
// has one, and the key.
func TestE2ECLIConfigErrors(t *testing.T) {
	t.Parallel()
	lineOf := func(t *testing.T, text, needle string) int {
		t.Helper()
		for i, l := range strings.Split(text, "\n") {
			if strings.Contains(l, needle) {
				return i + 1
			}
		}
		t.Fatalf("%q not in the config", needle)
		return 0
	}
	cases := []struct {
		name       string
		old, new   string // replaced in config.yaml
		policyFile string // written into the policy directory when set
		policyText string
		cmd        string   // check (default) or run
		lineAt     []string // the error names config.yaml at the line of one of these
		mention    []string // and says these
	}{
		{name: "typo key", old: "  reload_interval:", new: "  reload_intervall:",
			lineAt: []string{"reload_intervall"}, mention: []string{"reload_intervall"}},
		{name: "typo key (run)", cmd: "run", old: "  reload_interval:", new: "  reload_intervall:",
			lineAt: []string{"reload_intervall"}, mention: []string{"reload_intervall"}},
		{name: "bad duration in policy", old: "  timeout: " + e2ePolicyTimeout + "\n", new: "  timeout: 100 ms\n",
			lineAt: []string{"timeout: 100 ms"}, mention: []string{"policy.timeout", "100 ms"}},
		{name: "bad duration in limits", old: "request_timeout: 2s", new: "request_timeout: soon",
			lineAt: []string{"request_timeout: soon"}, mention: []string{"request_timeout", "soon"}},
		{name: "unknown protocol", old: "protocol: modbus", new: "protocol: modbuss",
			lineAt: []string{"- name: plc1", "protocol: modbuss"}, mention: []string{"listeners[0].protocol", "modbuss"}},
		{name: "missing policy dir", old: "path: ./policy", new: "path: ./no-such-policy",
			mention: []string{"policy.path", "no-such-policy"}},
		{name: "policy syntax error", policyFile: "broken.rego",
			policyText: "package interlock\n\nbroken if {\n\tinput.x ==\n}\n",
			mention:    []string{"broken.rego:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			b, err := os.ReadFile(g.config)
			if err != nil {
				t.Fatal(err)
			}
			text := string(b)
			if tc.old != "" {
				if !strings.Contains(text, tc.old) {
					t.Fatalf("%q not in the config", tc.old)
				}
				text = strings.Replace(text, tc.old, tc.new, 1)
				writeFile(t, g.config, text)
			}
			if tc.policyFile != "" {
				writeFile(t, filepath.Join(g.policyDir, tc.policyFile), tc.policyText)
			}
			cmd := tc.cmd
			if cmd == "" {
				cmd = "check"
			}
			r := interlock(t, cmd, "--config", g.config)
			msg := strings.TrimSpace(r.stderr)
			if r.code != 1 {
				t.Errorf("interlock %s: exit %d, want 1\nstderr: %s", cmd, r.code, msg)
			}
			if n := strings.Count(msg, "\n") + 1; msg == "" || n != 1 {
				t.Errorf("stderr has %d lines, want one:\n%s", n, msg)
			}
			first, _, _ := strings.Cut(msg, "\n")
			if tc.policyFile == "" && !strings.Contains(first, g.config) {
				t.Errorf("the error does not name the file %s: %s", g.config, first)
			}
			if len(tc.lineAt) > 0 {
				ok := false
				for _, at := range tc.lineAt {
					ok = ok || strings.Contains(first, g.config+":"+strconv.Itoa(lineOf(t, text, at))+":")
				}
				if !ok {
					t.Errorf("the error does not name the line of %q in %s: %s", tc.lineAt, g.config, first)
				}
			}
			for _, m := range tc.mention {
				if !strings.Contains(first, m) {
					t.Errorf("the error does not mention %q: %s", m, first)
				}
			}
			if tc.policyFile != "" {
				re := regexp.MustCompile(regexp.QuoteMeta(tc.policyFile) + `:\d+`)
				if !re.MatchString(first) {
					t.Errorf("the error does not name %s:LINE: %s", tc.policyFile, first)
				}
			}
		})
	}
}

// Usage, help and version.
func TestE2ECLIUsage(t *testing.T) {
	t.Parallel()
	t.Run("no command", func(t *testing.T) {
		r := interlock(t)
		if r.code != 2 || !strings.Contains(r.stdout+r.stderr, "Usage:") {
			t.Errorf("interlock: exit %d, want 2 and the usage\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("run without flags", func(t *testing.T) {
		r := interlock(t, "run")
		out := r.stdout + r.stderr
		if r.code != 2 {
			t.Errorf("interlock run: exit %d, want 2\n%s", r.code, out)
		}
		if !strings.Contains(out, "--config") {
			t.Errorf("interlock run does not say --config is missing:\n%s", out)
		}
		if !strings.Contains(out, "Usage: interlock run") {
			t.Errorf("interlock run without flags prints no usage:\n%s", out)
		}
	})
	t.Run("help", func(t *testing.T) {
		r := interlock(t, "--help")
		if r.code != 0 {
			t.Errorf("interlock --help: exit %d, want 0", r.code)
		}
		for _, cmd := range []string{"Usage:", "run", "check", "policy test", "audit verify", "sim modbus", "version"} {
			if !strings.Contains(r.stdout, cmd) {
				t.Errorf("interlock --help does not mention %q:\n%s", cmd, r.stdout)
			}
		}
	})
	t.Run("run --help", func(t *testing.T) {
		r := interlock(t, "run", "--help")
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "-config") {
			t.Errorf("interlock run --help: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		r := interlock(t, "frobnicate")
		if r.code != 2 || !strings.Contains(r.stderr, "frobnicate") {
			t.Errorf("interlock frobnicate: exit %d, want 2 naming the command\n%s", r.code, r.stderr)
		}
	})
	t.Run("version", func(t *testing.T) {
		r := interlock(t, "version")
		if v := strings.TrimSpace(r.stdout); r.code != 0 || !strings.HasPrefix(v, "interlock ") || len(v) <= len("interlock ") {
			t.Errorf("interlock version: exit %d, stdout %q", r.code, r.stdout)
		}
	})
	t.Run("check ok", func(t *testing.T) {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		r := interlock(t, "check", "--config", g.config)
		if r.code != 0 || !strings.Contains(r.stdout, "ok") || r.stderr != "" {
			t.Errorf("interlock check of a good config: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("policy eval and check within policy.timeout", func(t *testing.T) {
		// a decision that takes longer than the gateway allows is denied
		// there (policy_timeout): eval and check say so too
		slow := t.TempDir()
		writeFile(t, filepath.Join(slow, "p.rego"), "package interlock\n\nn := count([x | some x in numbers.range(1, 50000000); x % 7 == 0])\n\n"+
			"decision := {\"allow\": n > 0, \"alert\": false, \"reasons\": [\"slow\"]}\n")
		in := filepath.Join(t.TempDir(), "in.json")
		writeFile(t, in, `{"operation": {"function": "read_coils", "access": "read"}}`)
		r := interlock(t, "policy", "eval", "--policy", slow, "--input", in, "--timeout", "50ms")
		var d struct {
			Allow, Alert bool
			Reasons      []string
		}
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &d) != nil || d.Allow || !d.Alert ||
			!slices.Equal(d.Reasons, []string{"policy_error", "policy_timeout"}) {
			t.Errorf("policy eval of a slow policy: exit %d, want 1 and the gateway's decision (deny, alert, policy_error, policy_timeout)\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		r = interlock(t, "policy", "check", "--policy", slow, "--timeout", "50ms")
		if r.code != 1 || !strings.Contains(r.stdout, "policy_timeout") {
			t.Errorf("policy check of a slow policy: exit %d, want 1 naming policy_timeout\nstdout: %.300s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		writeFile(t, in, `[1]`)
		if r := interlock(t, "policy", "eval", "--policy", slow, "--input", in); r.code != 1 || !strings.Contains(r.stderr, "the input is a JSON array") {
			t.Errorf("policy eval of an array: exit %d\nstderr: %s", r.code, r.stderr)
		}
		writeFile(t, in, `{"operation": {}} {"operation": {}}`)
		if r := interlock(t, "policy", "eval", "--policy", slow, "--input", in); r.code != 1 || !strings.Contains(r.stderr, "more than one JSON document") {
			t.Errorf("policy eval of two documents: exit %d\nstderr: %s", r.code, r.stderr)
		}
	})
	t.Run("flags after arguments", func(t *testing.T) {
		// as the synopses show them: "policy test DIR --format json"
		r := interlock(t, "policy", "test", filepath.Join(repoRoot, "examples", "quickstart", "policy"), "--format", "json")
		if r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Errorf("policy test DIR --format json: exit %d\nstdout: %.200s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		broken := t.TempDir()
		writeFile(t, filepath.Join(broken, "p.rego"), "package interlock\n\nallow if {\n")
		r = interlock(t, "policy", "test", "--format", "json", broken)
		var out struct{ Error string }
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || !strings.Contains(out.Error, "p.rego:") {
			t.Errorf("policy test --format json of a policy that does not parse: exit %d, want 1 and the error as JSON\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		for _, p := range []string{"150", "-5"} {
			if r := interlock(t, "policy", "test", "--min-coverage", p, broken); r.code != 2 || !strings.Contains(r.stderr, "0..100") {
				t.Errorf("policy test --min-coverage %s: exit %d, want 2\nstderr: %s", p, r.code, r.stderr)
			}
		}
		for _, cmd := range [][]string{{"audit", "query"}, {"audit", "export", "--format", "csv"}} {
			r := interlock(t, append(cmd, "/no/such/audit.jsonl")...)
			if r.code != 1 || r.stdout != "" || strings.TrimSpace(r.stderr) != "interlock: "+strings.Join(cmd[:2], " ")+": /no/such/audit.jsonl: no such file or directory" {
				t.Errorf("%v of a missing file: exit %d, want 1, nothing on stdout and one line naming it\nstdout: %s\nstderr: %s", cmd, r.code, r.stdout, r.stderr)
			}
		}
		if r := interlock(t, "audit", "query", os.DevNull, "--protocol", "dnp3"); r.code != 2 || !strings.Contains(r.stderr, `--protocol "dnp3": want one of modbus, opcua`) {
			t.Errorf("audit query --protocol dnp3: exit %d, want 2\nstderr: %s", r.code, r.stderr)
		}
		g := newGateway(t, gwOptions{upstreamPort: 502})
		r = interlock(t, "check", "--config", g.config, "extra")
		if r.code != 2 || !strings.Contains(r.stderr, `check: unexpected argument "extra"`) {
			t.Errorf("check with an extra argument: exit %d, want 2\nstderr: %s", r.code, r.stderr)
		}
		if r := interlock(t, "check", "--", "--config", g.config); r.code != 2 {
			t.Errorf("check -- --config: exit %d, want 2 (after -- every word is an argument)", r.code)
		}
	})
	t.Run("check finds what run would fail on", func(t *testing.T) {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, _ := os.ReadFile(g.config)
		base := string(b)
		line := func(text, sub string) int { return strings.Count(text[:strings.Index(text, sub)], "\n") + 1 }

		// an address no interface has
		text := strings.Replace(base, "listen: 127.0.0.1:0", "listen: 192.0.2.1:5020", 1)
		writeFile(t, g.config, text)
		want := fmt.Sprintf("%s:%d: listeners[0].listen: ", g.config, line(text, "listen: 192.0.2.1"))
		if r := interlock(t, "check", "--config", g.config); r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("check of a listen address no interface has: exit %d, want 1 and %q\nstderr: %s", r.code, want, r.stderr)
		}
		// a port in use: maybe the running gateway's, so a warning
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		text = strings.Replace(base, "listen: 127.0.0.1:0", "listen: "+taken.Addr().String(), 1)
		writeFile(t, g.config, text)
		want = fmt.Sprintf("%s:%d: warning: listeners[0].listen: %s is in use", g.config, line(text, "listen: "+taken.Addr().String()), taken.Addr())
		if r := interlock(t, "check", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("check of a listen port in use: exit %d, want 0 and %q\nstdout: %s\nstderr: %s", r.code, want, r.stdout, r.stderr)
		}
		// an admin socket in a folder that is not there
		text = strings.Replace(base, "\naudit:\n", "\nadmin:\n  socket: ./no-such-dir/admin.sock\naudit:\n", 1)
		writeFile(t, g.config, text)
		want = fmt.Sprintf("%s:%d: admin.socket: ", g.config, line(text, "socket: ./no-such-dir"))
		if r := interlock(t, "check", "--config", g.config); r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "is not there") {
			t.Errorf("check of an admin socket in a missing folder: exit %d, want 1 and %q\nstderr: %s", r.code, want, r.stderr)
		}
		// a ticket of the ticket file for a target no longer served
		writeFile(t, g.config, strings.Replace(base, "\naudit:\n", "\nadmin:\n  socket: ./admin.sock\naudit:\n", 1))
		now := time.Now().UTC()
		writeFile(t, filepath.Join(filepath.Dir(g.config), "tickets.json"), fmt.Sprintf(`[{"id": "T-9", "user": "alice", "targets": ["plc9"],
			"access": ["write"], "reason": "CHG-9", "opened_by": "root", "opened": %q, "expires": %q, "approvals": []}]`,
			now.Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)))
		if r := interlock(t, "check", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, `warning: admin.tickets: ticket T-9 names target "plc9", which this gateway does not serve`) {
			t.Errorf("check of a ticket for an unserved target: exit %d, want 0 and a warning\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		// the admin socket held by a running gateway
		sock, err := net.Listen("unix", filepath.Join(filepath.Dir(g.config), "admin.sock"))
		if err != nil {
			t.Fatal(err)
		}
		if r := interlock(t, "check", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, "warning: admin.socket: ") || !strings.Contains(r.stdout, "admin.sock is in use") {
			t.Errorf("check of an admin socket in use: exit %d, want 0 and a warning\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		sock.Close()
		// an audit filesystem over its warning level (this one is more
		// than 1% full)
		writeFile(t, g.config, strings.Replace(base, "\naudit:\n", "\naudit:\n  warn_fill_percent: 1\n", 1))
		if r := interlock(t, "check", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, "warning: audit.path: the filesystem of") ||
			!strings.Contains(r.stdout, "(warn_fill_percent 1)") {
			t.Errorf("check of a full audit filesystem: exit %d, want 0 and a warning\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		// a maintenance window whose tz is not a time zone: every governed
		// write would be denied with policy_error
		writeFile(t, g.config, base)
		data := filepath.Join(g.policyDir, "data.json")
		var doc map[string]any
		if b, err := os.ReadFile(data); err != nil || json.Unmarshal(b, &doc) != nil {
			t.Fatalf("data.json: %v", err)
		}
		doc["maintenance_windows"] = []map[string]any{{"name": "monthly shutdown", "cron": "0 5 1 * *", "duration": "3h",
			"tz": "Europe/Brelin", "targets": []string{"plc1"}}}
		nb, _ := json.Marshal(doc)
		writeFile(t, data, string(nb))
		r := interlock(t, "check", "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, "policy.path: ") || !strings.Contains(r.stderr, `maintenance window "monthly shutdown": window tz "Europe/Brelin" is not a time zone`) {
			t.Errorf("check of a window with a bad tz: exit %d, want 1 naming the window\nstderr: %s", r.code, r.stderr)
		}
	})
	t.Run("a start that fails is recorded", func(t *testing.T) {
		// the port is taken: run fails after the audit log has its
		// policy.load, and says why in it (gateway.start_failed)
		taken, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, _ := os.ReadFile(g.config)
		text := strings.Replace(string(b), "listen: 127.0.0.1:0", "listen: "+taken.Addr().String(), 1)
		writeFile(t, g.config, text)
		want := fmt.Sprintf("%s:%d: listeners[0].listen: ", g.config, strings.Count(text[:strings.Index(text, "listen: "+taken.Addr().String())], "\n")+1)
		r := interlock(t, "run", "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "address already in use") {
			t.Errorf("run on a port in use: exit %d, want 1 and an error with %q\nstderr: %s", r.code, want, r.stderr)
		}
		recs := readAudit(t, g.auditPath)
		failed := eventsOf(recs, "gateway.start_failed")
		if len(failed) != 1 || !strings.Contains(failed[0].str("error"), "address already in use") || failed[0].str("boot_id") == "" {
			t.Errorf("gateway.start_failed records: %v", failed)
		}
		if len(eventsOf(recs, "gateway.start")) != 0 {
			t.Errorf("a gateway.start record of a start that failed")
		}
		verifyAudit(t, g.auditPath)
	})
	t.Run("check of a signing key that is no private key", func(t *testing.T) {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		_, _, pub, err := audit.GenerateSigningKey(filepath.Join(t.TempDir(), "keys"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(pub, 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(g.config)
		if err != nil || !strings.Contains(string(b), "\naudit:\n") {
			t.Fatalf("no audit section in the config (%v)", err)
		}
		text := strings.Replace(string(b), "\naudit:\n", "\naudit:\n  signing_key: "+pub+"\n", 1)
		writeFile(t, g.config, text)
		for _, cmd := range []string{"check", "run"} {
			r := interlock(t, cmd, "--config", g.config)
			want := fmt.Sprintf("%s:%d: audit.signing_key: ", g.config, strings.Count(text[:strings.Index(text, "signing_key:")], "\n")+1)
			if r.code != 1 || !strings.HasPrefix(strings.TrimSpace(r.stderr), "interlock: "+want) {
				t.Errorf("interlock %s with a public key as audit.signing_key: exit %d, want 1 and an error beginning %q\nstderr: %s", cmd, r.code, want, r.stderr)
			}
		}
	})
	t.Run("check of the admin socket and the ticket file", func(t *testing.T) {
		g := newGateway(t, gwOptions{upstreamPort: 502, admin: true})
		dir := filepath.Dir(g.config)
		writeFile(t, filepath.Join(dir, "tickets.json"), "{not json")
		r := interlock(t, "check", "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, "admin.tickets") || !strings.Contains(r.stderr, "is not a ticket list") {
			t.Errorf("check with a broken ticket file: exit %d, want 1 naming admin.tickets\nstderr: %s", r.code, r.stderr)
		}
		writeFile(t, filepath.Join(dir, "tickets.json"), `[{"id":"FORGED","user":"alice"}]`)
		r = interlock(t, "check", "--config", g.config)
		if r.code != 0 || !strings.Contains(r.stdout, `warning: admin.tickets: not loaded at start:`) || !strings.Contains(r.stdout, `(id "FORGED"): a field is missing`) {
			t.Errorf("check with a ticket run would not load: exit %d, want 0 and a warning\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		writeFile(t, filepath.Join(dir, "tickets.json"), "[]")
		writeFile(t, filepath.Join(dir, "admin.sock"), "a file")
		r = interlock(t, "check", "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, "admin.socket") || !strings.Contains(r.stderr, "is not a socket") {
			t.Errorf("check with a regular file at admin.socket: exit %d, want 1 naming admin.socket\nstderr: %s", r.code, r.stderr)
		}
	})
	t.Run("check of an audit path that cannot be written", func(t *testing.T) {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		// the log's folder is a file: run could not create the log
		writeFile(t, filepath.Dir(g.auditPath), "not a folder")
		r := interlock(t, "check", "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, "audit.path") || !strings.Contains(r.stderr, g.auditPath) ||
			!strings.Contains(r.stderr, "is not a folder") {
			t.Errorf("interlock check with the audit folder a file: exit %d, want 1 naming audit.path and why\nstderr: %s", r.code, r.stderr)
		}
		// a kernel file system: nothing kept on disk (/dev/shm is memory)
		for _, p := range []string{"/dev/shm/interlock/audit.jsonl", "/proc/interlock/audit.jsonl", "/sys/kernel/audit.jsonl"} {
			b, err := os.ReadFile(g.config)
			if err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(g.dir, "kernel.yaml")
			writeFile(t, cfg, strings.Replace(string(b), "path: ./audit/audit.jsonl", "path: "+p, 1))
			r := interlock(t, "check", "--config", cfg)
			if r.code != 1 || !strings.Contains(r.stderr, "audit.path: "+p+" is under /"+strings.Split(p, "/")[1]+", a kernel file system") {
				t.Errorf("interlock check with audit.path %s: exit %d, want 1 naming audit.path and the value\nstderr: %s", p, r.code, r.stderr)
			}
		}
	})
}

// examples/quickstart/run.sh as a new user runs it: it builds bin/interlock,
// starts the simulator and the gateway on the fixed ports 5020 and 5502,
// shows a read and a denied write with mbpoll, names an audit log that
// verifies, refuses a second run while it runs, runs every command it
// prints under "Try next" as printed, and leaves nothing running.
func TestE2EQuickstart(t *testing.T) {
	// Parallel: no other test uses the quickstart's fixed ports.
	t.Parallel()
	// run.sh installs (scripts/install-peers.sh) and uses mbpoll alone.
	requirePeer(t, peerMbpoll)
	for _, port := range []int{5020, 5502} {
		if portAccepts(port) {
			t.Fatalf("port %d is in use (a quickstart already running?): the quickstart needs it", port)
		}
	}
	script := filepath.Join(repoRoot, "examples", "quickstart", "run.sh")
	demoPortTaken(t, script, 5502)
	// It runs until Ctrl-C, as for a user: then it stops everything and
	// exits 0 (make reports no error).
	p := startProc(t, "quickstart run.sh", filepath.Join(t.TempDir(), "quickstart.log"), nil, "bash", script)
	eventually(t, 3*time.Minute, 100*time.Millisecond, "run.sh waits for Ctrl-C", func() (bool, string) {
		return p.exited() || strings.Contains(p.output(), "Ctrl-C stops"), p.output()
	})
	// The records of the demo itself: those before the "Try next" commands.
	var demoRecs int
	if !p.exited() {
		runDir := filepath.Join(repoRoot, "examples", "quickstart", "run")
		secondDemoRun(t, script, p.pid(), runDir)
		demoRecs = len(readAudit(t, filepath.Join(runDir, "audit", "audit.jsonl")))
		checkQuickstartTryNext(t, p.output(), runDir)
		_ = syscall.Kill(-p.pid(), syscall.SIGINT) // a terminal's Ctrl-C goes to the whole group
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("run.sh did not end within a minute of Ctrl-C:\n%s", p.output())
	}
	out := p.output()
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("run.sh: exit %d, want 0 (after Ctrl-C too)\n%s", code, out)
	}
	if v := parseMbpollValues(out); v[100] != 1500 || v[101] != 42 {
		t.Errorf("run.sh shows the read values %v, want [100]=1500 [101]=42\n%s", v, out)
	}
	// On the 1st of the month, 05:00-08:00 Berlin, the example's monthly
	// shutdown window is open and the write is allowed: the demo says which.
	inWindow := strings.Contains(out, "== a write inside a maintenance window")
	if !inWindow && (!strings.Contains(out, "== a write outside a maintenance window") || !strings.Contains(out, "Illegal function")) {
		t.Errorf("run.sh does not show the denied write (Illegal function):\n%s", out)
	}
	m := regexp.MustCompile(`(?m)^\s*audit log\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("run.sh does not name the audit log:\n%s", out)
	}
	auditPath := m[1]
	verifyAudit(t, auditPath)
	all := readAudit(t, auditPath)
	if demoRecs == 0 || demoRecs > len(all) {
		t.Fatalf("the quickstart audit log has %d records, %d of them before the try-next commands", len(all), demoRecs)
	}
	recs := all[:demoRecs]
	reads := callRecords(recs, "read_holding_registers", 100)
	writes := callRecords(recs, "write_single_register", 100)
	if len(reads) != 1 || len(writes) != 1 {
		t.Fatalf("the quickstart audit log has %d reads and %d writes at 100, want 1 and 1", len(reads), len(writes))
	}
	if res := resultOf(recs, reads[0].str("call_id")); res == nil || res.str("status") != "ok" {
		t.Errorf("the quickstart read's result: %v", res)
	}
	if res := resultOf(recs, writes[0].str("call_id")); inWindow {
		if res == nil || res.str("status") != "ok" {
			t.Errorf("run.sh says a window is open, but the quickstart write: call %s, result %v", writes[0], res)
		}
	} else if res == nil || res.str("status") != "denied" ||
		!slices.Contains(writes[0].strs("decision.reasons"), "outside_maintenance_window") {
		t.Errorf("the quickstart write: call %s, result %v", writes[0], res)
	}
	if last := all[len(all)-1]; last.str("event") != "gateway.stop" {
		t.Errorf("the quickstart audit log ends with %s, want gateway.stop (the gateway was not stopped cleanly)", last.str("event"))
	}
	// Nothing is left running on the quickstart's ports.
	for _, port := range []int{5020, 5502} {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still accepts after run.sh exited", port)
		}
	}
}
