//go:build !linux

package audit

import "errors"

// statfsDir is not built for this system: no capacity warnings.
func statfsDir(string) (diskUsage, error) {
	return diskUsage{}, errors.New("measuring the filesystem is not supported on this system")
}
