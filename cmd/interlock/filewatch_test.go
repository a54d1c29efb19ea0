package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A folder's signature changes when a file is added, written, renamed in
// with an older time than the folder's files, or removed; not otherwise.
func TestStatSigOfAFolder(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	sig := statSig(dir)
	step := func(what string, change func(), want bool) {
		t.Helper()
		change()
		next := statSig(dir)
		if changed := next != sig; changed != want {
			t.Fatalf("%s: signature changed %v, want %v (%+v → %+v)", what, changed, want, sig, next)
		}
		sig = next
	}
	step("nothing", func() {}, false)
	step("a file added", func() { writeFile(t, filepath.Join(dir, "a.der"), "one") }, true)
	step("the file written", func() { writeFile(t, filepath.Join(dir, "a.der"), "two!") }, true)
	step("an old file renamed over it", func() {
		p := filepath.Join(t.TempDir(), "b.der")
		writeFile(t, p, "two!")
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		// the folder's own time is what moves: set it back to see the rename
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
		sig = statSig(dir)
		if err := os.Rename(p, filepath.Join(dir, "a.der")); err != nil {
			t.Fatal(err)
		}
	}, true)
	step("the file removed", func() {
		if err := os.Remove(filepath.Join(dir, "a.der")); err != nil {
			t.Fatal(err)
		}
	}, true)
	if missing := statSig(filepath.Join(dir, "nowhere")); missing.err == "" {
		t.Errorf("a missing folder: %+v, want its error", missing)
	}
}
