package querytest

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/interlock-ics/interlock/audit"
)

// CacheDir is where generated benchmark logs are kept for later runs:
// $INTERLOCK_BENCH_DIR, else /dev/shm, else the temp dir.
func CacheDir() string {
	if dir := os.Getenv("INTERLOCK_BENCH_DIR"); dir != "" {
		return dir
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// BenchFiles returns the files, in chain order, of a generated log of about
// n records in CacheDir (made once, shared by the benchmarks of several
// packages), and sets the garbage collector as the audit commands do
// unless GOGC says otherwise.
func BenchFiles(b testing.TB, n int) []string {
	b.Helper()
	path, records, err := Cached(CacheDir(), n)
	if err != nil {
		b.Fatal(err)
	}
	files, err := audit.LogFiles(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d records in %d files under %s", records, len(files), path)
	if os.Getenv("GOGC") == "" { // as cmd/interlock's lazyGC sets it
		old := debug.SetGCPercent(400)
		b.Cleanup(func() { debug.SetGCPercent(old) })
	}
	return files
}
