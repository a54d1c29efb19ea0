package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// runCLI runs a command in this process and returns its exit code and output.
func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// A ticket command that names no gateway says what to give, with an example,
// and reaches no default path.
func TestTicketCommandWithoutGatewayNamesBothFlags(t *testing.T) {
	for _, args := range [][]string{
		{"ticket", "list"},
		{"ticket", "close", "T-1"},
		{"ticket", "open", "--user", "alice", "--target", "plc1", "--access", "write", "--for", "1h", "--reason", "CHG-1"},
	} {
		code, _, stderr := runCLI(args...)
		verb := strings.Join(args[:2], " ")
		for _, want := range []string{verb + ":", "--config FILE", "admin.socket", "--socket PATH", "e.g. interlock " + verb + " --config "} {
			if code != 2 || !strings.Contains(stderr, want) {
				t.Errorf("interlock %s: exit %d, want 2 and %q in\n%s", strings.Join(args, " "), code, want, stderr)
			}
		}
	}
}

// queryFilterFlags are the filters of audit query and export, which their
// synopses show as [filters].
var queryFilterFlags = map[string]bool{
	"access": true, "address": true, "call-id": true, "decision": true, "event": true, "function": true,
	"node-id": true, "protocol": true, "source": true, "status": true, "target": true, "user": true,
}

var flagLineRe = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// commandUsage runs a command's --help and returns its usage line and flags.
func commandUsage(t *testing.T, c command) (usage string, flags []string) {
	t.Helper()
	args := strings.Fields(c.group + " " + c.name)
	if c.group == "policy" && c.name == "bundle" {
		args = append(args, "build") // the verb is part of its synopsis
	}
	code, _, stderr := runCLI(append(args, "--help")...)
	if code != 0 {
		t.Fatalf("interlock %s --help: exit %d\n%s", strings.Join(args, " "), code, stderr)
	}
	usage, _, _ = strings.Cut(stderr, "\n")
	for _, m := range flagLineRe.FindAllStringSubmatch(stderr, -1) {
		flags = append(flags, m[1])
	}
	return usage, flags
}

// Each command's --help shows the synopsis of interlock --help, every flag
// of the command is in it, and README's command line block has it: they
// cannot drift apart.
func TestEverySynopsisShowsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(readme), "## Command line\n\n```\n")
	block, _, _ = strings.Cut(block, "```")
	var readmeLines []string
	for l := range strings.SplitSeq(block, "\n") {
		readmeLines = append(readmeLines, strings.Join(strings.Fields(l), " "))
	}
	for _, c := range commands {
		full := strings.TrimSpace(c.group + " " + c.name + " " + c.synopsis)
		usage, flags := commandUsage(t, c)
		if usage != "Usage: interlock "+full {
			t.Errorf("interlock %s %s --help says\n  %s\nand interlock --help\n  interlock %s", c.group, c.name, usage, full)
		}
		for _, f := range flags {
			if f == "v" && slices.Contains(flags, "verbose") {
				continue // short for --verbose
			}
			if c.group == "audit" && queryFilterFlags[f] && strings.Contains(c.synopsis, "[filters]") {
				continue
			}
			if !regexp.MustCompile(`--` + regexp.QuoteMeta(f) + `([ \]|)…,=]|$)`).MatchString(c.synopsis) {
				t.Errorf("interlock %s %s: --%s is not in its synopsis %q", c.group, c.name, f, c.synopsis)
			}
		}
		want := strings.Join(strings.Fields("interlock "+full), " ")
		if !slices.ContainsFunc(readmeLines, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("README.md's command line block has no line beginning\n  %s", want)
		}
	}
}

// version prints the version, and nothing else takes it: an argument or
// an unknown flag is a usage error, as for every command.
func TestVersionTakesNoArguments(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, stdout, stderr := runCLI(args...); code != 0 || !strings.HasPrefix(stdout, "interlock ") {
			t.Errorf("interlock %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
	}
	for _, args := range [][]string{{"version", "extra"}, {"version", "--bogus"}} {
		if code, stdout, _ := runCLI(args...); code != 2 || stdout != "" {
			t.Errorf("interlock %s: exit %d, stdout %q; want exit 2 and no version", strings.Join(args, " "), code, stdout)
		}
	}
}

// sim modbus refuses a negative --delay before it listens (it answered at
// once and printed "delay -1s").
func TestSimModbusNegativeDelay(t *testing.T) {
	type out struct {
		code           int
		stdout, stderr string
	}
	done := make(chan out, 1)
	go func() {
		code, stdout, stderr := runCLI("sim", "modbus", "--listen", "127.0.0.1:0", "--delay", "-1s")
		done <- out{code, stdout, stderr}
	}()
	var o out
	select {
	case o = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("sim modbus --delay -1s: still running after 10s; want it refused")
	}
	code, stdout, stderr := o.code, o.stdout, o.stderr
	if code != 2 || stdout != "" || !strings.Contains(stderr, "sim modbus: --delay -1s: want how long to wait, 0 or more") {
		t.Errorf("sim modbus --delay -1s: exit %d, stdout %q, stderr %q; want exit 2 naming --delay", code, stdout, stderr)
	}
}
