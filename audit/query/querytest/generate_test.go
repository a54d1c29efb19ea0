package querytest

import (
	"path/filepath"
	"testing"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/query"
)

// A generated log is a genuine one: its chain verifies across rotations,
// and every call in it has its result.
func TestGenerate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	n, err := Generate(Options{Path: path, Records: 3000, Workers: 4, RotateSize: 256 << 10, Sign: true, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	files, err := audit.LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Errorf("%d files, want the log rotated", len(files))
	}
	if _, err := audit.VerifyFiles(files...); err != nil {
		t.Fatalf("the generated log does not verify: %v", err)
	}
	events := map[string]int{}
	st, err := (&query.Query{}).Run(query.NewReader(files...), func(r *query.Record) error {
		events[r.Event]++
		if r.Event == "call" && r.Result == nil {
			t.Errorf("call %s has no result", r.CallID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != n || n < 3000 || n > 3100 {
		t.Errorf("%d records read, %d written; want about 3000", st.Records, n)
	}
	for _, e := range []string{"call", "session.open", "session.close", "request.rejected", "audit.checkpoint", "gateway.start", "gateway.stop"} {
		if events[e] == 0 {
			t.Errorf("no %s records: %v", e, events)
		}
	}
}
