//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import (
	"errors"
	"fmt"
	"syscall"
)

// lockFile takes an exclusive lock on the log: two writers at the same end
// offset would overwrite each other's records.
func lockFile(f file) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errors.New("the audit log is in use by another writer")
	}
	if err != nil {
		return fmt.Errorf("locking the audit log: %w", err)
	}
	return nil
}
