package ship

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// The audit writer's retention, given OldestNeeded as RetainFrom, keeps
// every file a shipper has not delivered, however far the log outgrows
// RetainBytes, and deletes them once they are delivered.
func TestRetentionWaitsForTheShipper(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	cursor := CursorPath(path, "test")
	w, err := audit.Open(audit.Options{
		Path: path, Gateway: "gw1", RotateSize: 8 << 10, RetainBytes: 16 << 10,
		RetainFrom: func() (string, error) { return OldestNeeded(path, []string{cursor}) },
		Log:        zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(n int) {
		for i := range n {
			if err := w.Record("call", false, func(e *zerolog.Event) { e.Int("i", i).Str("pad", fmt.Sprintf("%0200d", i)) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := &collect{}
	c.setFail(func([]Record) error { return errors.New("down") })
	s := startShipper(t, &testLog{t: t, path: path}, c, nil)
	write(1000) // about 280 KiB: 17 times RetainBytes
	files, _ := audit.LogFiles(path)
	if first, _ := firstSeq(files[0]); len(files) < 10 || first != 1 {
		t.Fatalf("%d files, the first beginning at %d: retention deleted what was not delivered", len(files), first)
	}
	if st := w.Stats(); st.RetentionDeletes != 0 {
		t.Fatalf("%d files deleted", st.RetentionDeletes)
	}

	c.setFail(nil)
	last := w.Stats().Seq
	waitFor(t, "the cursor at the end", func() (bool, string) {
		cur, _, _ := ReadCursor(cursor)
		return cur.Seq >= last, fmt.Sprint(cur.Seq)
	})
	write(200) // rotations: retention runs again
	waitFor(t, "retention deleting delivered files", func() (bool, string) {
		return w.Stats().RetentionDeletes > 0, ""
	})
	// Retention writes audit.retention records as it goes: wait for the
	// log to stand still, shipped to its end.
	waitFor(t, "every record shipped", func() (bool, string) {
		got, last := c.got(), w.Stats().Seq
		return len(got) > 0 && got[len(got)-1] == last, fmt.Sprintf("want %d; %s", last, summarize(got))
	})
	if got := c.got(); !equalSeqs(got, seqRange(1, got[len(got)-1])) {
		var miss []uint64
		seen := map[uint64]bool{}
		for _, q := range got {
			seen[q] = true
		}
		for q := uint64(1); q <= got[len(got)-1]; q++ {
			if !seen[q] {
				miss = append(miss, q)
			}
		}
		t.Fatalf("shipped %s, want every record once, in order; missing %v; stats %+v", summarize(got), miss, s.Stats())
	}
	stopShipper(s)
}
