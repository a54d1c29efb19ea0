package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/report/reporttest"
)

// Targets of issue 4 ("Speed"): a report over 1,000,000 records in under
// 30 s, with a peak RSS under 500 MB.
const (
	reportSpeedRecords = 1_000_000
	reportSpeedMaxTime = 30 * time.Second
	reportSpeedMaxRSS  = 500 << 20
)

// TestReportSpeedMillionRecords writes a log of a million records with the
// real audit writer, runs `interlock audit report` over it as a separate
// process, and checks its time and peak memory against the targets, and
// its numbers against what was written. It takes a minute or two, so it
// runs only with INTERLOCK_REPORT_SPEED=1 (INTERLOCK_REPORT_RECORDS sets
// another size), and not under -race, whose numbers say nothing.
func TestReportSpeedMillionRecords(t *testing.T) {
	if os.Getenv("INTERLOCK_REPORT_SPEED") != "1" {
		t.Skip("set INTERLOCK_REPORT_SPEED=1 to measure the report over a million records")
	}
	if raceBuild {
		t.Skip("speed is measured without -race")
	}
	records := uint64(reportSpeedRecords)
	if v := os.Getenv("INTERLOCK_REPORT_RECORDS"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("INTERLOCK_REPORT_RECORDS=%q: %v", v, err)
		}
		records = n
	}
	// A tmpfs makes the writer's per-call fsyncs cheap; the report reads
	// the same bytes either way.
	dir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "interlock-report-speed-"); err == nil {
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	logPath := filepath.Join(dir, "audit.jsonl")
	began := time.Now()
	want, err := reporttest.Generate(audit.Options{Path: logPath}, records, 4)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(logPath)
	t.Logf("generated %d records (%d calls, %.0f MB) in %s", want.Records, want.Calls, float64(fi.Size())/1e6, time.Since(began).Round(time.Millisecond))

	out := filepath.Join(t.TempDir(), "report.html")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, interlockBin, "audit", "report", "--log", logPath, "--out", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began = time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("audit report: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	elapsed := time.Since(began)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	rss := ru.Maxrss << 10 // KiB on Linux
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	page, _ := os.Stat(out)
	t.Logf("report over %d records: %s wall, %s CPU, peak RSS %.0f MB, page %.0f KB; %s",
		want.Records, elapsed.Round(time.Millisecond), cpu.Round(time.Millisecond), float64(rss)/(1<<20), float64(page.Size())/1024, bytes.TrimSpace(stdout.Bytes()))
	if elapsed > reportSpeedMaxTime {
		t.Errorf("the report took %s, over the %s target", elapsed, reportSpeedMaxTime)
	}
	if rss > reportSpeedMaxRSS {
		t.Errorf("peak RSS %d MB, over the %d MB target", rss>>20, reportSpeedMaxRSS>>20)
	}

	html, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"calls": want.Calls, "denied": want.Denied, "alerts": want.Alerts,
		"state_changing": want.StateChanging, "sessions": want.Sessions, "rejected": want.Rejected} {
		re := regexp.MustCompile(`data-k="` + k + `"><div class="v" data-v="(\d+)"`)
		m := re.FindSubmatch(html)
		if m == nil || string(m[1]) != strconv.FormatInt(v, 10) {
			t.Errorf("the page shows %s = %s, the generator wrote %d", k, m, v)
		}
	}
	if !bytes.Contains(html, []byte(`data-k="chain"><div class="v" data-v="ok"`)) {
		t.Errorf("the page does not show the chain as ok")
	}
}
