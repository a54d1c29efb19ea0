//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import "syscall"

// writable asks the kernel whether this process may write path (for a
// folder: create files in it), by its real user and group.
func writable(path string) error {
	const wOK = 2 // W_OK
	return syscall.Access(path, wOK)
}
