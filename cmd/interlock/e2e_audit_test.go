package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/report/reporttest"
)

// The audit log a real gateway wrote verifies; a changed byte, a deleted
// record, two swapped records and a cut last record each make
// `interlock audit verify` exit 1 naming the file and line.
func TestE2EAuditTamperDetectedByCLI(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)
	for range 2 {
		if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 {
			t.Fatalf("read: exit %d\n%s", r.code, r.out)
		}
	}
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "5"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("write outside a window: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d on SIGTERM, want 0", code)
	}
	recs := readAudit(t, g.auditPath)
	if last := recs[len(recs)-1]; last.str("event") != "gateway.stop" {
		t.Fatalf("the last record is %s, want gateway.stop", last)
	}
	b, err := os.ReadFile(g.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 10 {
		t.Fatalf("only %d records", len(lines))
	}
	mid := len(lines) / 2 // 0-based index of a record in the middle

	join := func(ls []string) string { return strings.Join(ls, "") }
	withLine := func(i int, s string) []string {
		out := append([]string(nil), lines...)
		out[i] = s
		return out
	}
	flipped := strings.Replace(lines[mid], `"gateway":"e2e-gw1"`, `"gateway":"e2e-gw2"`, 1)
	if flipped == lines[mid] {
		t.Fatalf("record %d has no gateway field: %s", mid+1, lines[mid])
	}
	deleted := append(append([]string(nil), lines[:mid]...), lines[mid+1:]...)
	swapped := withLine(mid, lines[mid+1])
	swapped[mid+1] = lines[mid]
	last := lines[len(lines)-1]
	cut := withLine(len(lines)-1, last[:len(last)/2])

	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content string
		line    int // the line verify must name; 0 for a log that verifies
	}{
		{"unchanged", string(b), 0},
		{"one byte changed", join(withLine(mid, flipped)), mid + 1},
		{"one record deleted", join(deleted), mid + 1},
		{"two records swapped", join(swapped), mid + 1},
		{"last record cut", join(cut), len(lines)},
		// The log has no rotation: nothing may come before its first record.
		{"first record deleted", join(lines[1:]), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".jsonl")
			writeFile(t, path, tc.content)
			r := interlock(t, "audit", "verify", path)
			if tc.line == 0 {
				if r.code != 0 || !strings.HasPrefix(r.stdout, "ok:") {
					t.Errorf("verify: exit %d, stdout %q, stderr %q; want exit 0 and ok", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != 1 {
				t.Errorf("verify: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			msg := strings.TrimSpace(r.stderr)
			if want := fmt.Sprintf("%s:%d", path, tc.line); !strings.Contains(msg, want) {
				t.Errorf("verify stderr %q does not name %s", msg, want)
			}
			if strings.Count(msg, "\n") != 0 {
				t.Errorf("verify stderr is %d lines, want one: %q", strings.Count(msg, "\n")+1, msg)
			}
		})
	}
}

// The gateway killed (SIGKILL) and a record cut by a crash: the restarted
// gateway removes the cut line (audit.recovered), continues the chain, and
// the whole log verifies.
func TestE2EAuditChainSurvivesCrashAndRestart(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)
	if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code != 0 || r.values[100] != v100 {
		t.Fatalf("read: exit %d\n%s", r.code, r.out)
	}
	// Killed right after answering: a result record may still have been in
	// memory; what is on disk must still be a whole chain.
	g.proc.kill()
	verifyAudit(t, g.auditPath)
	before := readAudit(t, g.auditPath)

	// A crash in the middle of a write leaves half a line.
	f, err := os.OpenFile(g.auditPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	cut := fmt.Sprintf(`{"seq":%d,"time":"2026-11-26T03:00:00.000000000Z","event":"call","gate`, len(before)+1)
	if _, err := f.WriteString(cut); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if r := interlock(t, "audit", "verify", g.auditPath); r.code != 1 {
		t.Errorf("verify of a log with a cut last line: exit %d, want 1\n%s", r.code, r.stderr)
	}

	g.start(t)
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "1"); r.code == 0 || !strings.Contains(r.out, "Illegal function") {
		t.Fatalf("a write outside a window after the restart: exit %d, want it denied with Illegal function\n%s", r.code, r.out)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM, want 0", code)
	}
	verifyAudit(t, g.auditPath)
	recs := readAudit(t, g.auditPath)
	for i, r := range recs {
		if int(r.num("seq")) != i+1 {
			t.Fatalf("record %d has seq %v, want %d", i+1, r.get("seq"), i+1)
		}
	}
	for i := range before {
		if recs[i].str("hash") != before[i].str("hash") {
			t.Errorf("record %d changed across the restart", i+1)
		}
	}
	if n := len(eventsOf(recs, "gateway.start")); n != 2 {
		t.Errorf("%d gateway.start records, want 2", n)
	}
	if n := len(eventsOf(recs, "gateway.stop")); n != 1 || recs[len(recs)-1].str("event") != "gateway.stop" {
		t.Errorf("%d gateway.stop records, and the last record is %s; want one, at the end", n, recs[len(recs)-1].str("event"))
	}
	rec := eventsOf(recs, "audit.recovered")
	if len(rec) != 1 || int(rec[0].num("truncated_bytes")) != len(cut) {
		t.Errorf("audit.recovered records %v, want one with truncated_bytes %d", rec, len(cut))
	}
	if w := callRecords(recs, "write_single_register", 100); len(w) != 1 || resultOf(recs, w[0].str("call_id")) == nil {
		t.Errorf("the write after the restart: call records %v", w)
	}
}

// rotatedLog writes an unsigned log of some records under dir with the
// real writer, rotated every 16 KiB into three files or more, and returns
// its live file's path and its files in chain order.
func rotatedLog(t *testing.T, dir string, records uint64) (string, []string) {
	t.Helper()
	logPath := filepath.Join(dir, "audit", "audit.jsonl")
	if _, err := reporttest.Generate(audit.Options{Path: logPath, RotateSize: 16 << 10}, records, 3); err != nil {
		t.Fatal(err)
	}
	files, err := audit.LogFiles(logPath)
	if err != nil || len(files) < 3 {
		t.Fatalf("the log was not rotated into several files: %v, %v", files, err)
	}
	return logPath, files
}

// A log with its newest records gone is a break: the live file deleted or
// emptied beside its rotated files (no checkpoint says so in a log without
// a signing key), or the one file of a log emptied.
func TestE2EAuditVerifyMissingLiveFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logPath, files := rotatedLog(t, dir, 400)
	if r := interlock(t, "audit", "verify", "--log", logPath); r.code != 0 || !strings.HasPrefix(r.stdout, "ok:") {
		t.Fatalf("the whole log: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if err := os.Rename(logPath, logPath+".away"); err != nil {
		t.Fatal(err)
	}
	r := interlock(t, "audit", "verify", "--log", logPath)
	if r.code != 1 || !strings.Contains(r.stderr, "audit verify: "+logPath+": the live file is missing, but "+fmt.Sprint(len(files)-1)+" rotated files of its log are beside it: the newest records of the log are gone") {
		t.Errorf("the live file deleted: exit %d, want 1 naming it\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	if r := interlock(t, "audit", "verify", "--max-unsigned", "-5", "--log", logPath+".away"); r.code != 2 || !strings.Contains(r.stderr, "--max-unsigned -5") {
		t.Errorf("--max-unsigned -5: exit %d, want 2\nstderr: %s", r.code, r.stderr)
	}
	empty := filepath.Join(dir, "empty.jsonl")
	writeFile(t, empty, "")
	r = interlock(t, "audit", "verify", empty)
	if r.code != 1 || !strings.Contains(r.stderr, "no records in 1 file:") {
		t.Errorf("an emptied log: exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// An export or report written over the log it reads is refused, and the
// log is left as it was.
func TestE2EAuditOutputNotOverInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logPath, files := rotatedLog(t, dir, 300)
	before := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		before[f] = string(b)
	}
	link := filepath.Join(dir, "link.jsonl")
	if err := os.Symlink(logPath, link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "export", "--format", "csv", "--out", logPath, logPath},
		{"audit", "export", "--format", "jsonl", "--log", logPath, "--out", files[0]},
		{"audit", "export", "--format", "cef", "--out", link, files[0], logPath},
		{"audit", "report", "--log", logPath, "--out", logPath},
		{"audit", "report", "--audit", files[0], "--out", files[0]},
		{"audit", "report", "--log", logPath, "--out", filepath.Join(dir, "r.html"), "--pdf", files[1]},
	} {
		r := interlock(t, args...)
		if r.code != 2 || !strings.Contains(r.stderr, "is the audit log") {
			t.Errorf("%v: exit %d, want 2 and a refusal\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
		}
	}
	for f, b := range before {
		if got, err := os.ReadFile(f); err != nil || string(got) != b {
			t.Errorf("%s changed (%v)", f, err)
		}
	}
	out := filepath.Join(dir, "export.csv")
	if r := interlock(t, "audit", "export", "--format", "csv", "--log", logPath, "--out", out); r.code != 0 {
		t.Errorf("an export beside the log: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

// Rotated files an operator gzipped stay part of the log: `audit verify
// --log` and `audit query --log` read them decompressed, and find the same
// records as before; a damaged one is named.
func TestE2EAuditGzippedRotatedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	logPath, files := rotatedLog(t, dir, 400)
	before := interlock(t, "audit", "verify", "--log", logPath)
	query := interlock(t, "audit", "query", "--log", logPath, "--format", "jsonl")
	if before.code != 0 || query.code != 0 {
		t.Fatalf("the plain log: verify exit %d, query exit %d\n%s%s", before.code, query.code, before.stderr, query.stderr)
	}
	for _, f := range files[:len(files)-1] {
		gzipInPlace(t, f)
	}
	after := interlock(t, "audit", "verify", "--log", logPath)
	if after.code != 0 || after.stdout != before.stdout {
		t.Errorf("verify --log, rotated files gzipped: exit %d\n%s%s\nwant\n%s", after.code, after.stdout, after.stderr, before.stdout)
	}
	gzQuery := interlock(t, "audit", "query", "--log", logPath, "--format", "jsonl")
	if gzQuery.code != 0 || gzQuery.stdout != query.stdout || strings.Count(gzQuery.stdout, "\n") < 400 {
		t.Errorf("query --log, rotated files gzipped: exit %d, %d lines, want the %d of the plain log\n%s",
			gzQuery.code, strings.Count(gzQuery.stdout, "\n"), strings.Count(query.stdout, "\n"), gzQuery.stderr)
	}
	damaged := files[1] + ".gz"
	if err := os.WriteFile(damaged, []byte("not gzip\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if r := interlock(t, "audit", "verify", "--log", logPath); r.code != 1 || !strings.Contains(r.stderr, damaged+": not a readable gzip file") {
		t.Errorf("verify --log, a damaged gzip file: exit %d, want 1 naming it\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// gzipInPlace replaces name with name.gz, as gzip does.
func gzipInPlace(t *testing.T, name string) {
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
