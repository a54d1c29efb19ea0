package opcua

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// An upstream socket ends when what it sent stays unacknowledged for
// lostPathAfter (TCP_USER_TIMEOUT): a path lost without a reset is found
// in seconds, not after the kernel's many minutes of retransmissions,
// while a paused server (its TCP stack acknowledges) keeps its connection.
func TestUpstreamSocketLostPathTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := dialTCP(t.Context(), "opc.tcp://"+l.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ms int
	var gerr error
	if err := raw.Control(func(fd uintptr) { ms, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if want := int(lostPathAfter.Milliseconds()); ms != want {
		t.Errorf("TCP_USER_TIMEOUT of an upstream socket is %d ms, want %d", ms, want)
	}
}
