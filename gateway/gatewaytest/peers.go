package gatewaytest

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// PeerNodeOPCUA is node with node-opcua installed in .cache/node at the
	// repository root (scripts/install-peers.sh); run node with NODE_PATH set
	// to NodeModules().
	PeerNodeOPCUA = "node-opcua"
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
	case PeerNodeOPCUA:
		if _, err = exec.LookPath("node"); err == nil {
			var dir string
			if dir, err = NodeModules(); err == nil {
				_, err = os.Stat(filepath.Join(dir, "node-opcua", "package.json"))
			}
		}
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

// NodeModules is the node_modules folder scripts/install-peers.sh fills:
// .cache/node/node_modules at the root of this module, found by walking up
// from the working directory to the go.mod that names the module.
func NodeModules() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, ".cache", "node", "node_modules"), nil
}

// ModuleRoot is the directory of the interlock go.mod above the working
// directory (go test runs tests in their package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isInterlockModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("gatewaytest: no go.mod of github.com/interlock-ics/interlock above the working directory")
		}
		dir = parent
	}
}

func isInterlockModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "github.com/interlock-ics/interlock"
		}
	}
	return false
}
