package audit

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDisk is a filesystem for Options.statfs whose fill the test sets.
type fakeDisk struct {
	mu    sync.Mutex
	fill  float64 // percent
	err   error
	calls int
}

func (d *fakeDisk) statfs(string) (diskUsage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	const size = 1 << 30
	used := uint64(d.fill / 100 * size)
	return diskUsage{size: size, free: size - used, avail: size - used}, d.err
}

func (d *fakeDisk) set(fill float64, err error) {
	d.mu.Lock()
	d.fill, d.err = fill, err
	d.mu.Unlock()
}

func (d *fakeDisk) checks() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// waitChecks waits until the writer has measured the disk n more times.
func (d *fakeDisk) waitChecks(t *testing.T, n int) {
	t.Helper()
	want := d.checks() + n
	deadline := time.Now().Add(5 * time.Second)
	for d.checks() < want {
		if time.Now().After(deadline) {
			t.Fatal("the capacity check does not run")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCapacityWarning(t *testing.T) {
	l := newTestLog(t)
	disk := &fakeDisk{fill: 50}
	l.opts.statfs = disk.statfs
	l.opts.CapacityInterval = 5 * time.Millisecond
	l.opts.WarnFillPercent = 80
	w := l.open(t)
	disk.waitChecks(t, 2)
	if st := w.Stats(); st.FillPercent != 50 || st.CapacityWarning || st.CapacityWarnings != 0 {
		t.Fatalf("stats at 50%%: %+v", st)
	}
	disk.set(85.5, nil)
	disk.waitChecks(t, 5) // several checks over the level: one warning
	if st := w.Stats(); st.FillPercent != 85.5 || !st.CapacityWarning || st.CapacityWarnings != 1 {
		t.Errorf("stats at 85.5%%: %+v", st)
	}
	disk.set(79, nil) // under the level, within the hysteresis: still warned
	disk.waitChecks(t, 2)
	if !w.Stats().CapacityWarning {
		t.Error("the warning cleared within the hysteresis")
	}
	disk.set(60, nil)
	disk.waitChecks(t, 2)
	disk.set(90, nil)
	disk.waitChecks(t, 2)
	w.Close()
	if st := w.Stats(); st.CapacityWarnings != 2 {
		t.Errorf("stats %+v, want 2 warnings", st)
	}
	var states []string
	for _, r := range readLog(t, l.path) {
		if r.event() == EventCapacity {
			states = append(states, r.str("state")+"@"+strings.TrimSuffix(r.str("fill_percent"), ".5"))
			if r.str("warn_fill_percent") != "80" || r.str("path") == "" || r.str("size_bytes") != "1073741824" {
				t.Errorf("capacity record %s", r.raw)
			}
		}
	}
	if got := strings.Join(states, " "); got != "warning@85 ok@60 warning@90" {
		t.Errorf("capacity records: %s", got)
	}
	logged := l.log.String()
	if strings.Count(logged, "the audit filesystem is filling up") != 2 {
		t.Errorf("operational log: %s", logged)
	}
}

// A warning that cannot be recorded (the log is full) is recorded when the
// log takes records again; the log line and the counter come at once.
func TestCapacityWarningRecordedLater(t *testing.T) {
	l := newTestLog(t).withFaults()
	disk := &fakeDisk{fill: 10}
	l.opts.statfs = disk.statfs
	l.opts.CapacityInterval = 5 * time.Millisecond
	w := l.open(t)
	writeSome(t, w, 1)
	l.ff.set(func(f *faultFile) { f.limit = fileSize(t, l.path) })
	disk.set(100, nil)
	disk.waitChecks(t, 3)
	if st := w.Stats(); st.CapacityWarnings != 1 || !strings.Contains(l.log.String(), "filling up") {
		t.Fatalf("stats %+v, log %s", st, l.log)
	}
	time.Sleep(20 * time.Millisecond) // the record comes later than the measurement
	l.ff.set(func(f *faultFile) { f.limit = -1 })
	disk.waitChecks(t, 3)
	w.Close()
	n := 0
	for _, r := range readLog(t, l.path) {
		if r.event() == EventCapacity {
			n++
			// it says when the fill was measured, before it could be written
			measured, err := time.Parse(time.RFC3339Nano, r.str(FieldMeasuredAt))
			written, werr := time.Parse(time.RFC3339Nano, r.str("time"))
			if err != nil || werr != nil || !measured.Before(written.Add(-10*time.Millisecond)) {
				t.Errorf("capacity record %s: measured_at %q, want a time well before the record's own", r.raw, r.str(FieldMeasuredAt))
			}
		}
	}
	if n != 1 {
		t.Errorf("%d capacity records, want the one that waited", n)
	}
	l.verify(t, 3) // the call, audit.capacity, audit.write_failed for its first try
}

func TestCapacityStatfsFailure(t *testing.T) {
	l := newTestLog(t)
	disk := &fakeDisk{}
	disk.set(0, errors.New("statfs: not supported"))
	l.opts.statfs = disk.statfs
	l.opts.CapacityInterval = 5 * time.Millisecond
	w := l.open(t)
	disk.waitChecks(t, 3)
	w.Close()
	if n := strings.Count(l.log.String(), "cannot measure the audit filesystem"); n != 1 {
		t.Errorf("said %d times: %s", n, l.log)
	}
	if st := w.Stats(); st.FillPercent != -1 {
		t.Errorf("fill %v before any measurement", st.FillPercent)
	}
}

func TestFillPercent(t *testing.T) {
	for _, tc := range []struct {
		u    diskUsage
		want float64
	}{
		{diskUsage{size: 1000, free: 1000, avail: 1000}, 0},
		{diskUsage{size: 1000, free: 250, avail: 250}, 75},
		{diskUsage{size: 1000, free: 100, avail: 50}, 94.7}, // reserved blocks count as not available, as in df
		{diskUsage{size: 1000, free: 0, avail: 0}, 100},
		{diskUsage{}, 0},
	} {
		if got := tc.u.fillPercent(); got != tc.want {
			t.Errorf("%+v: %v%%, want %v%%", tc.u, got, tc.want)
		}
	}
}

// The real statfs of the test's filesystem.
func TestStatfsDir(t *testing.T) {
	u, err := statfsDir(t.TempDir())
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatal(err) // statfs always works here: a failure is a bug, not a missing feature
		}
		t.Skip(err)
	}
	if u.size == 0 || u.avail > u.size || u.fillPercent() < 0 || u.fillPercent() > 100 {
		t.Errorf("%+v", u)
	}
}
