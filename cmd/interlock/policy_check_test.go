package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A failed policy check counts the samples without a decision and the
// network calls in words: "1 sample", "2 samples", "1 network call".
func TestPolicyCheckFailureCountsInWords(t *testing.T) {
	t.Parallel()
	const undefinedWhenBad = "package interlock\n\ndecision := {\"allow\": true} if not input.bad\n"
	// The network builtins sit behind input.never: found by the check,
	// never called.
	const network = "package interlock\n\ndecision := {\"allow\": true} if not probe\n\nprobe if {\n\tinput.never\n" +
		"\thttp.send({\"method\": \"GET\", \"url\": \"http://cmdb.invalid/\"}).status_code == 200\n}\n"
	const lookup = "\nprobe if {\n\tinput.never\n\tnet.lookup_ip_addr(\"cmdb.invalid\")\n}\n"
	for _, tc := range []struct {
		name, rego string
		bad        int // inputs the policy has no decision for
		want       string
	}{
		{"one sample", undefinedWhenBad, 1, "failed: 1 sample without a valid decision, 0 network calls"},
		{"two samples", undefinedWhenBad, 2, "failed: 2 samples without a valid decision, 0 network calls"},
		{"one network call", network, 0, "failed: 0 samples without a valid decision, 1 network call"},
		{"two network calls", network + lookup, 0, "failed: 0 samples without a valid decision, 2 network calls"},
	} {
		dir := t.TempDir()
		pol := filepath.Join(dir, "policy")
		if err := os.Mkdir(pol, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(pol, "main.rego"), tc.rego)
		args := []string{"--policy", pol}
		for i := range tc.bad {
			in := filepath.Join(dir, "bad"+string(rune('a'+i))+".json")
			writeFile(t, in, `{"bad": true}`)
			args = append(args, "--input", in)
		}
		var stdout, stderr bytes.Buffer
		err := cmdPolicyCheck(args, nil, &stdout, &stderr)
		var ee *exitError
		if err == nil || !errors.As(err, &ee) || ee.code != 1 || !strings.HasPrefix(ee.msg, "policy check: "+pol+" (revision ") ||
			!strings.HasSuffix(ee.msg, tc.want) {
			t.Errorf("%s: %v\nwant exit 1 ending %q\nstdout: %s", tc.name, err, tc.want, stdout.String())
		}
	}
}
