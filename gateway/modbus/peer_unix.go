//go:build unix

package modbus

import (
	"errors"
	"net"
	"syscall"
)

// peerClosed looks at an idle connection without reading from it: true
// when the other end closed or reset it (a peek finds the end of the
// stream or an error), false when nothing is waiting or data is.
func peerClosed(c net.Conn) bool {
	closed, _ := peerState(c)
	return closed
}

// peerState is peerClosed that also reports whether data is waiting.
func peerState(c net.Conn) (closed, data bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true, false
	}
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			closed, data = n == 0, n > 0
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EINTR):
		default:
			closed = true
		}
		return true // never wait for the socket
	})
	return closed || err != nil, data
}
