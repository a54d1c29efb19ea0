//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package audit

import "syscall"

// unlinked reports whether no name links to f any more (it was deleted
// while open).
func unlinked(f file) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
