package audit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestLogFilesInChainOrder(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.jsonl")
	at := time.Date(2026, 11, 26, 5, 10, 0, 0, time.UTC)
	names := []string{
		RotatedName(live, at.Add(2*time.Hour), 1001),
		RotatedName(live, at, 1),
		RotatedName(live, at.Add(time.Hour), 999999999999999), // sorts by number, not text
		live,
		filepath.Join(dir, "audit-notatime-5.jsonl"), // not ours
		filepath.Join(dir, "other-20261126T051000Z-000000000000001.jsonl"),
		filepath.Join(dir, "audit.jsonl.tmp"),
	}
	for _, n := range names {
		if err := os.WriteFile(n, nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if got := filepath.Base(names[1]); got != "audit-20261126T051000Z-000000000000001.jsonl" {
		t.Fatalf("rotated name %s", got)
	}
	files, err := LogFiles(live)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{names[1], names[0], names[2], live}
	if !slices.Equal(files, want) {
		t.Fatalf("LogFiles = %v\nwant %v", files, want)
	}
}
