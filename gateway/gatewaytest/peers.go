package gatewaytest

import (
	"os"
	"os/exec"
	"testing"
)

// SystemPython is Debian's python3, which has python3-pymodbus; the python3
// first on PATH may be another installation without it.
const SystemPython = "/usr/bin/python3"

// Peer names for RequirePeer.
const (
	PeerMbpoll   = "mbpoll"
	PeerPymodbus = "pymodbus"
	PeerSocat    = "socat"
)

// RequirePeer stops the test when a third-party peer is not installed: it
// skips, unless INTERLOCK_REQUIRE_PEERS=1 (as in CI), where a missing peer is
// a failure, so that no test passes by silently not running.
func RequirePeer(t testing.TB, name string) {
	t.Helper()
	var err error
	switch name {
	case PeerPymodbus:
		err = exec.Command(SystemPython, "-c", "import pymodbus, serial").Run()
	default:
		_, err = exec.LookPath(name)
	}
	if err == nil {
		return
	}
	msg := "peer " + name + " is not installed (scripts/install-peers.sh installs it): " + err.Error()
	if os.Getenv("INTERLOCK_REQUIRE_PEERS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
