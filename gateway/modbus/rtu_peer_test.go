package modbus_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// startProcess runs a peer for the length of the test, in its own process
// group so that everything it starts stops with it.
func startProcess(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", name, b)
		}
		logf.Close()
	})
	return cmd
}

// waitListening waits until process pid listens on TCP port itself: a port
// picked free may be taken by another test's server before the peer binds
// it (pymodbus then neither listens nor exits).
func waitListening(t *testing.T, pid, port int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		inodes := map[string]bool{}
		for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, _ := os.ReadFile(table)
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
					continue
				}
				if _, hexPort, _ := strings.Cut(f[1], ":"); hexPort == fmt.Sprintf("%04X", port) {
					inodes["socket:["+f[9]+"]"] = true
				}
			}
		}
		fdDir := fmt.Sprintf("/proc/%d/fd", pid)
		fds, _ := os.ReadDir(fdDir)
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[link] {
				return
			}
		}
		if len(inodes) > 0 {
			t.Fatalf("port %d was taken by another process before the peer (pid %d) bound it", port, pid)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the peer (pid %d) does not listen on port %d within 10s", pid, port)
		}
	}
}

func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// readThrough reads holding registers 10..12 of unit 1 through the gateway,
// retrying while the peer starts.
func readThrough(t *testing.T, g *gw) []uint16 {
	t.Helper()
	c := client(t, g.addr, 1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := c.ReadHoldingRegisters(context.Background(), 10, 3)
		if err == nil {
			return regs(got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer through the gateway: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRTUOverTCPUpstream: a pymodbus device speaking RTU framing over TCP
// behind a Modbus TCP listener. The gateway converts MBAP to RTU and back.
func TestRTUOverTCPUpstream(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerPymodbus)
	addr := freeTCPAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := startProcess(t, gatewaytest.SystemPython, "testdata/pymodbus_rtu_server.py", "tcp", port)
	portNum, _ := strconv.Atoi(port)
	waitListening(t, cmd.Process.Pid, portNum)
	g := startGateway(t, gwOpts{upstream: "rtuovertcp://" + addr, limits: gateway.Limits{RequestTimeout: 2 * time.Second}})
	if got := readThrough(t, g); !slices.Equal(got, []uint16{1010, 1011, 1012}) {
		t.Fatalf("read %v, want [1010 1011 1012]", got)
	}
	c := client(t, g.addr, 1)
	if _, err := c.WriteSingleRegister(context.Background(), 11, 7); err != nil {
		t.Fatal(err)
	}
	if got := readThrough(t, g); !slices.Equal(got, []uint16{1010, 7, 1012}) {
		t.Fatalf("after the write: %v", got)
	}
}

// TestSerialRTUUpstream: a pymodbus device on one end of a pty pair (a
// serial line made by socat), the gateway on the other, at 19200 8N1 (a
// pty refuses to enable parity).
func TestSerialRTUUpstream(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerPymodbus)
	gatewaytest.RequirePeer(t, gatewaytest.PeerSocat)
	dir := t.TempDir()
	gwEnd, plcEnd := filepath.Join(dir, "gw"), filepath.Join(dir, "plc")
	startProcess(t, "socat", "pty,raw,echo=0,link="+gwEnd, "pty,raw,echo=0,link="+plcEnd)
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, e1 := os.Stat(gwEnd)
		_, e2 := os.Stat(plcEnd)
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socat made no pty pair")
		}
		time.Sleep(20 * time.Millisecond)
	}
	startProcess(t, gatewaytest.SystemPython, "testdata/pymodbus_rtu_server.py", "serial", plcEnd)
	g := startGateway(t, gwOpts{upstream: "rtu://" + gwEnd + "?baud=19200&parity=N",
		limits: gateway.Limits{RequestTimeout: 2 * time.Second}})
	if got := readThrough(t, g); !slices.Equal(got, []uint16{1010, 1011, 1012}) {
		t.Fatalf("read %v, want [1010 1011 1012]", got)
	}
	c := client(t, g.addr, 1)
	if _, err := c.WriteMultipleRegisters(context.Background(), 10, 2, []byte{0, 5, 0, 6}); err != nil {
		t.Fatal(err)
	}
	if got := readThrough(t, g); !slices.Equal(got, []uint16{5, 6, 1012}) {
		t.Fatalf("after the write: %v", got)
	}
	// A unit the device does not serve: no answer on the line → 0x0B within
	// the request timeout, and the line serves unit 1 again afterwards.
	start := time.Now()
	if _, err := client(t, g.addr, 9).ReadHoldingRegisters(context.Background(), 10, 1); exceptionCode(err) != modbus.ExGatewayTargetNoResponse {
		t.Fatalf("unit 9: got %v, want exception 0x0B", err)
	}
	if el := time.Since(start); el > 2*time.Second+time.Second {
		t.Fatalf("0x0B after %v; the request timeout is 2s", el)
	}
	if got := readThrough(t, g); !slices.Equal(got, []uint16{5, 6, 1012}) {
		t.Fatalf("after the timeout: %v", got)
	}
}
