package audit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// Rotated files an operator compressed with gzip are part of the log for
// the tools that decompress them, in their place in the chain; a file
// there both compressed and not is read once. The writer, retention and
// the shipper read files raw and do not see them.
func TestLogFilesWithGzip(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.jsonl")
	at := time.Date(2026, 11, 26, 5, 10, 0, 0, time.UTC)
	first := RotatedName(live, at, 1)
	second := RotatedName(live, at.Add(time.Hour), 1001)
	third := RotatedName(live, at.Add(2*time.Hour), 2001)
	for _, n := range []string{
		first + ".gz",
		second, second + ".gz", // gzip still at work
		third,
		live,
		filepath.Join(dir, "audit.jsonl.gz"), // not a rotated file
		filepath.Join(dir, "other-20261126T051000Z-000000000000001.jsonl.gz"), // not ours
		RotatedName(live, at, 5) + ".bz2",
	} {
		if err := os.WriteFile(n, nil, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	files, err := LogFilesWithGzip(live)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{first + ".gz", second, third, live}; !slices.Equal(files, want) {
		t.Errorf("LogFilesWithGzip = %v\nwant %v", files, want)
	}
	files, err = LogFiles(live)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{second, third, live}; !slices.Equal(files, want) {
		t.Errorf("LogFiles = %v\nwant %v", files, want)
	}
}

// A log whose rotated files were gzipped verifies as it did before: the
// chain runs over the decompressed records. A file that is not gzip, or
// whose stream is cut, is an error naming it.
func TestVerifyGzippedRotatedFiles(t *testing.T) {
	l := newTestLog(t)
	l.opts.RotateSize = 4 << 10
	w := l.open(t)
	writeSome(t, w, 60)
	w.Close()
	plain := mustLogFiles(t, l.path)
	if len(plain) < 4 {
		t.Fatalf("not rotated: %v", plain)
	}
	want, err := VerifyLog(plain, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(t.TempDir(), filepath.Base(plain[1]))
	if err := os.WriteFile(saved, mustRead(t, plain[1]), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, f := range plain[:len(plain)-1] {
		gzipInPlace(t, f)
	}
	files, err := LogFilesWithGzip(l.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(plain) || !strings.HasSuffix(files[0], ".jsonl.gz") {
		t.Fatalf("LogFilesWithGzip = %v", files)
	}
	got, err := VerifyLog(files, VerifyOptions{})
	if err != nil {
		t.Fatalf("VerifyLog over gzipped rotated files: %v", err)
	}
	if got.Records != want.Records || got.LastHash != want.LastHash || got.Files != want.Files {
		t.Errorf("gzipped: %s\nplain:   %s", got, want)
	}

	// A gzipped file with records cut off its end: the next file's
	// audit.rotated names it without .gz, and the break is the cut.
	cut := filepath.Join(t.TempDir(), filepath.Base(plain[1]))
	lines := bytes.SplitAfter(mustRead(t, saved), []byte("\n"))
	if err := os.WriteFile(cut, bytes.Join(lines[:len(lines)-3], nil), 0o640); err != nil {
		t.Fatal(err)
	}
	gzipInPlace(t, cut)
	_, err = VerifyLog([]string{files[0], cut + ".gz", files[2]}, VerifyOptions{})
	var br *Break
	if !errors.As(err, &br) || br.Kind != BreakSeqGap || !strings.Contains(br.Message, "were cut off its end") {
		t.Errorf("a gzipped file cut short: %v, want %s", err, BreakSeqGap)
	}

	// A damaged file: its name and what is wrong with it.
	b, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[1], b[:len(b)/2], 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyLog(files, VerifyOptions{})
	if err == nil || !strings.Contains(err.Error(), files[1]) || !strings.Contains(err.Error(), "gzip stream is damaged") {
		t.Errorf("a cut gzip file: %v", err)
	}
	if err := os.WriteFile(files[1], []byte("{\"seq\":1}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyFiles(files...)
	if err == nil || !strings.Contains(err.Error(), files[1]+": not a readable gzip file") {
		t.Errorf("a file named .gz that is not gzip: %v", err)
	}
}

// gzipInPlace replaces name with name.gz, as gzip does.
func gzipInPlace(t testing.TB, name string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name+".gz", z.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(name); err != nil {
		t.Fatal(err)
	}
}

func mustRead(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
