package main

import (
	"bytes"
	"strings"
	"testing"
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
