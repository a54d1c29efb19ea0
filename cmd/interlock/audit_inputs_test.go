package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit"
)

// policy replay and learn read a rotated log whole with --log, and say so
// when given its live file alone.
func TestAuditInputsOfARotatedLog(t *testing.T) {
	live, _ := rotatedLog(t, t.TempDir(), 400)
	all, err := audit.LogFilesWithGzip(live)
	if err != nil || len(all) < 3 {
		t.Fatalf("the log has %d files (%v); want rotated ones", len(all), err)
	}
	var note bytes.Buffer
	got, err := auditInputs("policy replay", nil, live, &note)
	if err != nil || len(got) != len(all) || got[len(got)-1] != live || note.Len() != 0 {
		t.Errorf("--log: %v %v, note %q; want the %d files, the live one last", got, err, note.String(), len(all))
	}
	got, err = auditInputs("policy replay", []string{live}, "", &note)
	want := fmt.Sprintf("policy replay: note: %s has %d rotated files beside it, not read; --log %s reads the whole log\n", live, len(all)-1, live)
	if err != nil || len(got) != 1 || note.String() != want {
		t.Errorf("the live file alone: %v %v, note %q; want %q", got, err, note.String(), want)
	}
	if _, err := auditInputs("policy replay", []string{live}, live, &note); err == nil {
		t.Error("--audit and --log together were taken")
	}
	// One rotated file left is counted in the singular.
	for _, f := range all[:len(all)-2] {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	note.Reset()
	want = fmt.Sprintf("policy learn: note: %s has 1 rotated file beside it, not read; --log %s reads the whole log\n", live, live)
	if got, err := auditInputs("policy learn", []string{live}, "", &note); err != nil || len(got) != 1 || note.String() != want {
		t.Errorf("the live file beside one rotated file: %v %v, note %q; want %q", got, err, note.String(), want)
	}
}

// --log whose live file is missing reads the rotated files and says so;
// with nothing there at all it is an error naming the path.
func TestAuditInputsWithoutTheLiveFile(t *testing.T) {
	dir := t.TempDir()
	live, _ := rotatedLog(t, dir, 400)
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	rotated, err := audit.LogFilesWithGzip(live)
	if err != nil || len(rotated) < 2 {
		t.Fatalf("the log has %d rotated files (%v); want some", len(rotated), err)
	}
	for _, cmd := range []string{"policy replay", "policy learn"} {
		var note bytes.Buffer
		got, err := auditInputs(cmd, nil, live, &note)
		want := fmt.Sprintf("%s: note: --log %s: the live file is not there; read %d rotated files only, %s to %s\n",
			cmd, live, len(rotated), rotated[0], rotated[len(rotated)-1])
		if err != nil || !slices.Equal(got, rotated) || note.String() != want {
			t.Errorf("%s --log without the live file: %v %v, note %q; want the rotated files and %q", cmd, got, err, note.String(), want)
		}
	}
	// One rotated file left is counted in the singular.
	last := rotated[len(rotated)-1]
	for _, f := range rotated[:len(rotated)-1] {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	var note bytes.Buffer
	want := fmt.Sprintf("policy replay: note: --log %s: the live file is not there; read 1 rotated file only, %s to %s\n", live, last, last)
	if got, err := auditInputs("policy replay", nil, live, &note); err != nil || !slices.Equal(got, []string{last}) || note.String() != want {
		t.Errorf("--log with one rotated file and no live file: %v %v, note %q; want %q", got, err, note.String(), want)
	}
	if err := os.Remove(last); err != nil {
		t.Fatal(err)
	}
	note.Reset()
	got, err := auditInputs("policy learn", nil, live, &note)
	if err == nil || !strings.Contains(err.Error(), "policy learn: --log "+live+": nothing to read") || len(got) != 0 {
		t.Errorf("--log of nothing: %v %v; want an error naming %s", got, err, live)
	}
}
