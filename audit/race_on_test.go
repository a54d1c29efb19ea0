//go:build race

package audit

// raceEnabled: the race detector makes sync.Pool drop a quarter of what is
// put back, so allocation counts mean nothing in this build.
const raceEnabled = true
