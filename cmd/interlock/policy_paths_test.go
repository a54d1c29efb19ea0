package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A path a policy command cannot read is refused in one line naming the
// command, the flag (or argument) and what is wrong with it.
func TestPolicyCommandsNameMissingPaths(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gwOptions{upstreamPort: 502})
	tmp := t.TempDir()
	nope := filepath.Join(tmp, "nope")
	in := filepath.Join(tmp, "in.json")
	writeFile(t, in, `{"operation": {"function": "read_coils", "access": "read"}}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "test", nope}, "policy test: " + nope + ": no such directory"},
		{[]string{"policy", "test", in}, "policy test: " + in + ": not a directory"},
		{[]string{"policy", "eval", "--policy", g.policyDir, "--input", nope + ".json"}, "policy eval: --input " + nope + ".json: no such file"},
		{[]string{"policy", "eval", "--policy", nope, "--input", in}, "policy eval: --policy " + nope + ": no such directory or bundle file"},
		{[]string{"policy", "replay", "--config", g.config, "--audit", nope + ".jsonl"}, "policy replay: --audit " + nope + ".jsonl: no such file"},
		{[]string{"policy", "replay", "--config", g.config, "--audit", in, "--policy", nope}, "policy replay: --policy " + nope + ": no such directory or bundle file"},
		{[]string{"policy", "learn", "--audit", nope + ".jsonl"}, "policy learn: --audit " + nope + ".jsonl: no such file"},
		{[]string{"policy", "check", "--policy", nope}, "policy check: --policy " + nope + ": no such directory"},
		{[]string{"policy", "check", "--policy", g.policyDir, "--input", nope + ".json"}, "policy check: --input " + nope + ".json: no such file"},
	} {
		r := interlock(t, tc.args...)
		if got := strings.TrimSpace(r.stderr); r.code != 1 || got != "interlock: "+tc.want {
			t.Errorf("interlock %s: exit %d, stderr %q\nwant exit 1 and %q", strings.Join(tc.args, " "), r.code, got, "interlock: "+tc.want)
		}
	}
}

// policy test without a DIR tests the current directory: its help says so,
// and an error says which directory it tested.
func TestPolicyTestDefaultDirectory(t *testing.T) {
	t.Parallel()
	r := interlock(t, "policy", "test", "--help")
	if help := r.stdout + r.stderr; !strings.Contains(help, "without a DIR, of the current directory") {
		t.Errorf("policy test --help does not say it defaults to the current directory:\n%s", help)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.rego"), "package interlock\n\nallow if {\n")
	cmd := exec.Command(interlockBin, "policy", "test")
	cmd.Dir, cmd.Env = dir, childEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if want := "interlock: policy test: no DIR given, tested the current directory: "; err == nil || !strings.HasPrefix(stderr.String(), want) ||
		!strings.Contains(stderr.String(), "p.rego:") {
		t.Errorf("policy test in a directory that does not parse: %v\nstderr: %s\nwant it to begin %q and name p.rego", err, stderr.String(), want)
	}
}
