//go:build !linux

package opcua

import "syscall"

// lostPathControl does nothing where TCP_USER_TIMEOUT is not known: a
// connection whose path was lost ends when the kernel gives up on it.
func lostPathControl(_, _ string, _ syscall.RawConn) error { return nil }
