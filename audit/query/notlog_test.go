package query

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file whose first line is not an audit record is not read as a log of
// skipped lines: Read and CheckFiles refuse it, naming the file and line.
func TestNotAnAuditLogIsRefused(t *testing.T) {
	dir := t.TempDir()
	random := make([]byte, 3000)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(rnd.IntN(256))
	}
	noNewline := bytes.ReplaceAll(random, []byte{'\n'}, []byte{'x'})
	for _, tc := range []struct {
		name, text string
		line       int
		why        string
	}{
		{"text", "hello world\nthis is text\n", 1, "not a JSON object"},
		{"other JSON", `{"foo":1,"bar":[1,2]}` + "\n" + testLog[0] + "\n", 1, "a JSON object without seq, time, event"},
		{"JSON without event", `{"seq":1,"time":"2026-11-26T10:00:00Z"}` + "\n", 1, "without event"},
		{"blank lines first", "\n\n[1,2,3]\n", 3, "not a JSON object"},
		{"binary", string(random), 1, ""},
		{"binary without a newline", string(noNewline), 1, "no JSON object begins it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			var warn bytes.Buffer
			r := NewReader(path)
			r.Warn = &warn
			var rec Record
			err := r.Read(&rec)
			var nl *NotLogError
			if !errors.As(err, &nl) || nl.File != path || nl.Line != tc.line || !strings.Contains(nl.Why, tc.why) ||
				!strings.HasPrefix(err.Error(), path+": line ") || !strings.Contains(err.Error(), "not an audit log") {
				t.Fatalf("Read: %v; want a NotLogError for %s line %d (%s)", err, path, tc.line, tc.why)
			}
			if warn.Len() != 0 {
				t.Errorf("notes before the refusal:\n%s", warn.String())
			}
			good := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
			if err := CheckFiles(good, "-", path); !errors.As(err, &nl) || nl.File != path {
				t.Errorf("CheckFiles: %v; want it to refuse %s", err, path)
			}
		})
	}
}

// What an audit log may be: empty, or a live file whose only record is
// being written (no newline yet).
func TestAuditLogsThatAreNotRefused(t *testing.T) {
	dir := t.TempDir()
	empty := writeLog(t, dir, "empty.jsonl", nil)
	cut := filepath.Join(dir, "cut.jsonl")
	if err := os.WriteFile(cut, []byte(testLog[0][:40]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckFiles(empty, cut); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	r := NewReader(empty, cut)
	r.Warn = &warn
	var rec Record
	if err := r.Read(&rec); err != io.EOF || r.SkippedLines() != 1 || r.BadLines() != 0 || !strings.Contains(warn.String(), "has no end") {
		t.Errorf("Read: %v, %d skipped, %d bad, notes %q; want EOF and the cut line noted", err, r.SkippedLines(), r.BadLines(), warn.String())
	}
}

// Lines of a log that are not records are skipped, named and counted as
// bad lines; a last line cut short is skipped but is not one.
func TestBadLinesOfALogAreCounted(t *testing.T) {
	lines := append([]string{}, testLog[:3]...)
	lines = append(lines, `{"x":1}`, "garbage", "\x00\x01\x02")
	lines = append(lines, testLog[3:]...)
	text := strings.Join(lines, "\n") + "\n" + `{"seq":99,"time":"2026`
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	r := NewReader(path)
	r.Warn = &warn
	st, err := (&Query{}).Run(r, func(*Record) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != len(testLog) || st.BadLines != 3 || st.SkippedLines != 4 {
		t.Errorf("stats %+v: want %d records, 3 bad lines, 4 skipped", st, len(testLog))
	}
	for _, want := range []string{path + ":4: not an audit record (a JSON object without seq, time, event)",
		path + ":5: not an audit record (not a JSON object", path + ":6: not an audit record"} {
		if !strings.Contains(warn.String(), want) {
			t.Errorf("notes do not say %q:\n%s", want, warn.String())
		}
	}
}
