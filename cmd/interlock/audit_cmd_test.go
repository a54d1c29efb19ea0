package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A malformed --after or --key is named with its flag and value and what is
// wanted, not taken for a break of the log.
func TestAuditVerifyBadArguments(t *testing.T) {
	t.Parallel()
	sample := filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "notes.txt")
	writeFile(t, notPEM, "hello\n")
	var stdout, stderr bytes.Buffer
	if err := cmdAuditKeygen([]string{"--out", dir}, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--after", "nothex"}, 2, `audit verify: --after "nothex": want a record's hash, 64 hex digits`},
		{[]string{"--after", "abcd"}, 2, `audit verify: --after "abcd": want a record's hash, 64 hex digits`},
		{[]string{"--max-unsigned-age", "-5m"}, 2, "audit verify: --max-unsigned-age -5m0s: want a duration, 0 (the checkpoint's own checkpoint_interval) or -1s (no limit)"},
		{[]string{"--max-unsigned-age", "-1ns"}, 2, "audit verify: --max-unsigned-age -1ns: want a duration"},
		{[]string{"--max-unsigned-age", "-2s"}, 2, "audit verify: --max-unsigned-age -2s: want a duration"},
		{[]string{"--key", filepath.Join(dir, "missing.pub")}, 1, "audit verify: --key " + filepath.Join(dir, "missing.pub") + ": no such file or directory (want the Ed25519 public key"},
		{[]string{"--key", notPEM}, 1, "audit verify: --key " + notPEM + ": not a PEM file (want the Ed25519 public key in PEM"},
		{[]string{"--key", filepath.Join(dir, "audit-signing.key")}, 1, "audit verify: --key " + filepath.Join(dir, "audit-signing.key") + ": a private key; verify with the public key (audit-signing.pub)"},
	} {
		err := cmdAuditVerify(append(tc.args, sample), nil, &stdout, &stderr)
		var ee *exitError
		if !errors.As(err, &ee) && err != nil {
			ee = &exitError{code: 1, msg: err.Error()}
		}
		if ee == nil || ee.code != tc.code || !strings.HasPrefix(ee.msg, tc.want) {
			t.Errorf("audit verify %v: %v; want exit %d and %q", tc.args, err, tc.code, tc.want)
		}
	}
	// -1s, as the help says, and 0 are taken.
	for _, age := range []string{"-1s", "0", "1h"} {
		if err := cmdAuditVerify([]string{"--max-unsigned-age", age, sample}, nil, &stdout, &stderr); err != nil {
			t.Errorf("audit verify --max-unsigned-age %s: %v", age, err)
		}
	}
	// A log kept in parts: --after the hash of the record before the part,
	// in capitals too.
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	var rec struct{ Hash string }
	if err := json.Unmarshal([]byte(lines[9]), &rec); err != nil || len(rec.Hash) != 64 {
		t.Fatalf("line 10 of %s: %v", sample, err)
	}
	part := filepath.Join(dir, "part.jsonl")
	writeFile(t, part, strings.Join(lines[10:], ""))
	if err := cmdAuditVerify([]string{"--after", strings.ToUpper(rec.Hash), part}, nil, &stdout, &stderr); err != nil {
		t.Errorf("a part --after the hash before it: %v", err)
	}
}

// A log whose live file is missing names how many rotated files are left,
// in words: "1 rotated file ... is", "2 rotated files ... are".
func TestLiveFileThereCountsInWords(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.jsonl")
	r1, r2 := filepath.Join(dir, "audit-1.jsonl"), filepath.Join(dir, "audit-2.jsonl")
	for _, tc := range []struct {
		files []string
		want  string
	}{
		{[]string{r1}, "audit verify: " + live + ": the live file is missing, but 1 rotated file of its log is beside it: the newest records of the log are gone"},
		{[]string{r1, r2}, "audit verify: " + live + ": the live file is missing, but 2 rotated files of its log are beside it: the newest records of the log are gone"},
	} {
		if err := liveFileThere(live, tc.files); err == nil || err.Error() != tc.want {
			t.Errorf("%d rotated files: %v\nwant %s", len(tc.files), err, tc.want)
		}
	}
}
