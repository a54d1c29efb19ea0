package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// policy replay and learn read a rotated log whole with --log, and say so
// when given its live file alone.
func TestAuditInputsOfARotatedLog(t *testing.T) {
	live := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := audit.Open(audit.Options{Path: live, Gateway: "gw", RotateSize: 2048, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	for range 60 {
		if err := w.Record("policy.load", true, func(e *zerolog.Event) { e.Str("path", strings.Repeat("p", 100)) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
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
	if err != nil || len(got) != 1 || !strings.Contains(note.String(), "rotated file(s) beside it, not read; --log "+live+" reads the whole log") {
		t.Errorf("the live file alone: %v %v, note %q", got, err, note.String())
	}
	if _, err := auditInputs("policy replay", []string{live}, live, &note); err == nil {
		t.Error("--audit and --log together were taken")
	}
}
