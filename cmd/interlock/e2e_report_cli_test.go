package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/report/reporttest"
)

// TestAuditReportSignedRotatedLog: a log written with a signing key and
// rotated into several files is reported over with --log; with its public
// key every checkpoint verifies, with another key the page says BROKEN
// (and the command still writes it, exit 0).
func TestAuditReportSignedRotatedLog(t *testing.T) {
	dir := t.TempDir()
	_, privPath, pubPath, err := audit.GenerateSigningKey(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := audit.LoadSigningKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	_, _, otherPub, err := audit.GenerateSigningKey(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "audit", "audit.jsonl")
	want, err := reporttest.Generate(audit.Options{Path: logPath, SigningKey: priv, CheckpointEvery: 500,
		CheckpointInterval: time.Hour, RotateSize: 1 << 20}, 12_000, 9)
	if err != nil {
		t.Fatal(err)
	}
	files, err := audit.LogFiles(logPath)
	if err != nil || len(files) < 3 {
		t.Fatalf("the log was not rotated into several files: %v, %v", files, err)
	}

	out := filepath.Join(dir, "report.html")
	r := interlock(t, "audit", "report", "--log", logPath, "--key", pubPath, "--out", out)
	if r.code != 0 || !strings.Contains(r.stdout, "chain ok") {
		t.Fatalf("audit report: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	summary := fmt.Sprintf("in the period: calls %d, denied %d, alerts %d, state-changing %d;",
		want.Calls, want.Denied, want.Alerts, want.StateChanging)
	if !strings.Contains(r.stdout, summary) {
		t.Errorf("audit report printed %q; want the counts the writer wrote: %q", r.stdout, summary)
	}
	page := readPage(t, out)
	for k, v := range map[string]int64{"calls": want.Calls, "denied": want.Denied, "alerts": want.Alerts, "state_changing": want.StateChanging} {
		if got := kpi(page, k); got != strconv.FormatInt(v, 10) {
			t.Errorf("the page shows %s = %q, the writer wrote %d", k, got, v)
		}
	}
	if got := strings.Count(page, `<tr><td><code>`+filepath.Dir(logPath)); got != len(files) {
		t.Errorf("the page lists %d files, the log has %d", got, len(files))
	}
	if !regexp.MustCompile(`data-k="signatures">checked: all \d+ checkpoints are signed by key id [0-9a-f]{16}<`).MatchString(page) {
		t.Errorf("the page does not say the checkpoints were checked with the key:\n%s", grep(page, "signatures"))
	}
	if !strings.Contains(page, "audit.rotated") {
		t.Errorf("the page does not show the rotations")
	}

	r = interlock(t, "audit", "report", "--log", logPath, "--key", otherPub, "--out", out)
	if r.code != 1 || !strings.Contains(r.stdout, "chain BROKEN") || !strings.Contains(r.stderr, "is written, but the chain BROKEN") {
		t.Fatalf("with another key: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	page = readPage(t, out)
	if !strings.Contains(page, `data-v="broken">BROKEN<`) || !strings.Contains(page, string(audit.BreakWrongKey)) {
		t.Errorf("with another key the page does not show a wrong_key break:\n%s", grep(page, "chain-status"))
	}
}

// TestAuditReportUsage: usage errors exit 2 and say what is wrong; --pdf
// without Chromium is a clear error that names what to install.
func TestAuditReportUsage(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.jsonl")
	if _, err := reporttest.Generate(audit.Options{Path: logPath}, 300, 1); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.html")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--log", logPath}, "--out FILE is required"},
		{[]string{"--out", out}, "name the log"},
		{[]string{"--out", out, "--log", logPath, logPath}, "not both"},
		{[]string{"--out", out, "--log", logPath, "--from", "yesterday"}, "--from"},
		{[]string{"--out", out, "--log", logPath, "--from", "2026-11-27", "--to", "2026-11-26"}, "is not before"},
		{[]string{"--out", out, "--log", logPath, "--max-rows", "0"}, "--max-rows"},
	} {
		r := interlock(t, append([]string{"audit", "report"}, c.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("audit report %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
	r := interlock(t, "audit", "report", "--out", out, "--log", filepath.Join(dir, "none.jsonl"))
	if r.code != 1 || !strings.Contains(r.stderr, "no audit log") {
		t.Errorf("a missing log: exit %d, stderr %q", r.code, r.stderr)
	}
	missing := filepath.Join(dir, "no-such-dir", "r.html")
	r = interlock(t, "audit", "report", "--out", missing, "--log", logPath)
	if r.code != 1 || !strings.Contains(r.stderr, missing) || strings.Contains(r.stderr, ".report-") {
		t.Errorf("--out into a missing directory: exit %d, stderr %q; want exit 1 naming %s and no temporary file", r.code, r.stderr, missing)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interlockBin, "audit", "report", "--audit", logPath, "--out", out, "--pdf", filepath.Join(dir, "r.pdf"))
	cmd.Env = append(childEnv(), "INTERLOCK_CHROMIUM="+filepath.Join(dir, "no-such-chromium"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(stderr.String(), "--pdf") || !strings.Contains(stderr.String(), "INTERLOCK_CHROMIUM") {
		t.Errorf("--pdf without Chromium: %v, stderr %q", err, stderr.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("the HTML report was not written before the PDF failed: %v", err)
	}
}

func readPage(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kpi returns the value of a summary figure of the page.
func kpi(page, key string) string {
	m := regexp.MustCompile(`data-k="` + regexp.QuoteMeta(key) + `"><div class="v" data-v="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return m[1]
}

// grep returns the lines of text holding s, for a failure message.
func grep(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestAuditReportNotALog: a file that is not an audit log is refused, named
// with its first line, before any report is written, as audit query
// refuses it; lines of a log that are not records are counted per file on
// stderr, the report is written, and the exit is 1.
func TestAuditReportNotALog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.jsonl")
	if _, err := reporttest.Generate(audit.Options{Path: logPath}, 300, 1); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "r.html")
	for name, text := range notAuditLogs(b) {
		p := filepath.Join(dir, name)
		writeFile(t, p, text)
		for _, args := range [][]string{{"--audit", p}, {"--audit", logPath, p}} {
			r := interlock(t, append([]string{"audit", "report", "--out", out}, args...)...)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "audit report: "+p+": line 1 is not an audit record") ||
				!strings.Contains(r.stderr, "this is not an audit log") || strings.Contains(r.stderr, "chain") {
				t.Errorf("audit report %v: exit %d, stdout %q, stderr %q; want exit 1 naming %s line 1", args, r.code, r.stdout, r.stderr, p)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("audit report %v wrote %s for a file that is not an audit log (%v)", args, out, err)
			}
		}
	}

	lines := strings.SplitAfter(string(b), "\n")
	damaged := filepath.Join(dir, "damaged.jsonl")
	writeFile(t, damaged, strings.Join(lines[:10], "")+"garbage\n"+`{"x":1}`+"\n"+strings.Join(lines[10:], ""))
	r := interlock(t, "audit", "report", "--out", out, "--audit", damaged)
	if r.code != 1 || !strings.Contains(r.stderr, "audit report: "+damaged+": 2 lines are not audit records: the report names them (FILE:LINE) and leaves them out\n") ||
		!strings.Contains(r.stderr, "audit report: "+out+" is written, but the chain BROKEN") ||
		!strings.Contains(r.stderr, "; and 2 lines are not audit records and are left out of it") {
		t.Errorf("a damaged log: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if page := readPage(t, out); !strings.Contains(page, damaged+":11") || !strings.Contains(page, damaged+":12") {
		t.Errorf("the report does not name the lines that are not records:\n%s", grep(page, damaged))
	}
	// One such line is counted in the singular.
	writeFile(t, damaged, strings.Join(lines[:10], "")+"garbage\n"+strings.Join(lines[10:], ""))
	r = interlock(t, "audit", "report", "--out", out, "--audit", damaged)
	if r.code != 1 || !strings.Contains(r.stderr, "audit report: "+damaged+": 1 line is not an audit record: the report names it (FILE:LINE) and leaves it out\n") ||
		!strings.Contains(r.stderr, "; and 1 line is not an audit record and is left out of it") {
		t.Errorf("a log with one line that is not a record: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
