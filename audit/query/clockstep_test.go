package query

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// stepClock is a clock that advances a second at each reading.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// clockStepLog writes a log with the real audit.Writer in two runs on one
// path: run 1 at 12:00, then run 2 with the clock set back to 09:00 (a
// gateway restarted with a wrong clock). The writer rotates its file every
// few records, so files of run 2 follow files of run 1 and begin earlier.
func clockStepLog(t *testing.T) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	for _, run := range []struct {
		name  string
		start time.Time
	}{
		{"run1", time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)},
		{"run2", time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)},
	} {
		o := audit.Options{Path: path, Gateway: "gw1", Log: zerolog.Nop(), RotateSize: 1 << 10, Clock: (&stepClock{t: run.start}).now}
		w, err := audit.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Record(EventGatewayStart, true, func(e *zerolog.Event) { e.Str("version", run.name) }); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := w.Record("test.mark", false, func(e *zerolog.Event) { e.Str("detail", run.name).Int("n", i) }); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	files, err := audit.LogFiles(path)
	if err != nil || len(files) < 4 {
		t.Fatalf("the log was not rotated into several files: %v, %v", files, err)
	}
	return files
}

// A gateway restarted with its clock set back writes earlier times after
// later ones, in later files: a time range must still find every record in
// it, wherever it is in the log.
func TestTimeRangeAcrossAClockStepBack(t *testing.T) {
	files := clockStepLog(t)
	marks := func(recs []*Record) []string {
		var out []string
		for _, r := range recs {
			if r.Event == "test.mark" {
				out = append(out, r.Detail)
			}
		}
		return out
	}
	all, _ := run(t, Query{}, files...)
	if got := marks(all); len(got) != 20 || got[0] != "run1" || got[19] != "run2" {
		t.Fatalf("the log holds %v", got)
	}
	ten := func(run string) []string { return slices.Repeat([]string{run}, 10) }
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		// Run 2's records, all before 10:00, come after run 1's at 12:00.
		{"to", Filter{To: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}, ten("run2")},
		// Run 1's records are in files followed by files that begin at 09:00.
		{"from", Filter{From: time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)}, ten("run1")},
		{"from and to", Filter{From: time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}, ten("run2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _ := run(t, Query{Filter: tc.f}, files...)
			if got := marks(recs); !slices.Equal(got, tc.want) {
				t.Errorf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}
