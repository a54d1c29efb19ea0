//go:build linux || darwin || freebsd || netbsd || openbsd

package ship

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peek looks at the socket under conn without reading from it or waiting:
// pending is true when bytes are waiting; io.EOF means the receiver closed
// its side. A deadline in the past cannot do this: Go then fails the read
// before it reaches the socket.
func peek(conn net.Conn) (pending bool, err error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true, nil // let a read decide
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var n int
	var rerr error
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false, err
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK):
		return false, nil
	case rerr != nil:
		return false, rerr
	case n == 0:
		return false, io.EOF
	}
	return true, nil
}
