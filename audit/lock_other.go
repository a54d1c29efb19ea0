//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

// lockFile does nothing where flock is not available; one gateway per log
// is then up to the configuration.
func lockFile(file) error { return nil }

// Held cannot tell here: no writer holds a lock.
func Held(string) (bool, error) { return false, nil }
