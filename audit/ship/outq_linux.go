package ship

import (
	"net"
	"syscall"
	"unsafe"
)

// siocoutq is SIOCOUTQ (TIOCOUTQ): the bytes of a TCP socket's send queue
// that the peer has not acknowledged yet.
const siocoutq = 0x5411

// unackedBytes returns how many bytes written on conn its peer's TCP has not
// acknowledged yet; ok is false when it cannot tell.
func unackedBytes(conn net.Conn) (n int64, ok bool) {
	sc, isSC := conn.(syscall.Conn)
	if !isSC {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var v int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, siocoutq, uintptr(unsafe.Pointer(&v)))
	}); err != nil || errno != 0 {
		return 0, false
	}
	return int64(v), true
}
