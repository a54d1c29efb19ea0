//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

// writable cannot ask where there is no access(2); Open then finds out.
func writable(string) error { return nil }
