package opcua

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// lostPathControl sets TCP_USER_TIMEOUT (lostPathAfter) on an upstream
// socket before it connects.
func lostPathControl(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(lostPathAfter.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
