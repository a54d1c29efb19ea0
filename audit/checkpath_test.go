package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPath: the paths Open can use pass, the ones it cannot are named
// with what is wrong, and nothing is created either way.
func TestCheckPath(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "audit.jsonl")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{existing, filepath.Join(dir, "new.jsonl"), filepath.Join(dir, "a", "b", "audit.jsonl")} {
		if err := CheckPath(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for p, want := range map[string]string{
		dir:                                   "is not a regular file",
		filepath.Join(notDir, "audit.jsonl"):  "is not a folder",
		filepath.Join(notDir, "x", "a.jsonl"): "is not a folder",
	} {
		if err := CheckPath(p); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming it and saying %q", p, err, want)
		}
	}
	// A file of the kernel's that opens for writing but takes no write.
	if fi, err := os.Stat("/proc/version"); err == nil && fi.Mode().IsRegular() {
		if err := CheckPath("/proc/version"); err == nil || !strings.Contains(err.Error(), "cannot be written") {
			t.Errorf("/proc/version: %v, want it refused", err)
		}
	}
	if b, err := os.ReadFile(existing); err != nil || len(b) != 0 {
		t.Errorf("CheckPath changed the existing log: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err == nil {
		t.Error("CheckPath created a folder")
	}
	if _, err := os.Stat(filepath.Join(dir, "new.jsonl")); err == nil {
		t.Error("CheckPath created the log")
	}
}
