package report

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// scenarioReport builds the scenario's report for the day, with its
// windows, three configured listeners, and the checkpoint key.
func scenarioReport(t *testing.T) (*Report, string) {
	t.Helper()
	return build(t, Options{
		Files: []string{scenario(t)}, From: periodFrom, To: periodTo, Windows: scenarioWindows(),
		Listeners: []Listener{{Name: "plc1", Protocol: "modbus"}, {Name: "plc2", Protocol: "modbus"}, {Name: "plc3", Protocol: "modbus", Listen: "127.0.0.1:5022"}},
		Verify:    ChainVerifier(audit.VerifyOptions{Key: testKey.Public().(ed25519.PublicKey)}),
	})
}

func TestAggregateScenario(t *testing.T) {
	rep, _ := scenarioReport(t)
	a := rep.agg
	eq := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	s := rep.Summary()
	// In the period: five reads and a write by alice inside the window, a
	// write under the ticket outside it, a hostile write (denied), bob's
	// diagnostics (denied) and a hostile read with an alert.
	eq("calls", s.Calls, 10)
	eq("allowed", s.Allowed, 8)
	eq("denied", s.Denied, 2)
	eq("alerts", s.Alerts, 3)
	eq("state-changing", s.StateChanging, 4)
	eq("sessions opened", s.Sessions, 1)
	eq("rejected", s.Rejected, 2)
	eq("records", s.Records, 40)
	eq("records in the period", s.InPeriod, 34) // all but the 4 before (start, load, c0 and its result) and the 2 after (carol's call and result)
	eq("unreadable", s.Unreadable, 0)
	eq("state allowed/denied/alerted", [3]int64{a.stateAllowed, a.stateDenied, a.stateAlerted}, [3]int64{2, 2, 2})

	// Outcomes of the state-changing calls: two ok, one denied, and bob's
	// diagnostics without a result record.
	want := map[string]int64{"ok": 2, "denied": 1}
	for k, v := range want {
		eq("state outcome "+k, a.stateOutcomes.m[k], v)
	}
	eq("state outcomes tracked", a.stateOutcomes.Len(), 2)
	eq("all outcomes", a.outcomes.m["ok"], 7)
	eq("exception outcome", a.outcomes.m["exception"], 1)

	// Outside the windows: the ticket write (allowed), the hostile write on
	// plc2 (whose monthly window is shut), bob's diagnostics.
	eq("outside", a.outside, 3)
	eq("outside allowed", a.outsideAllowed, 1)
	eq("outside denied", a.outsideDenied, 2)
	eq("inside a window", a.insideWindow, 1)
	var outsideIDs []string
	for _, r := range a.outsideRows.Rows {
		outsideIDs = append(outsideIDs, r.CallID)
	}
	eq("outside rows", outsideIDs, []string{"w2", "x1", "d1"})
	eq("window of w1", a.stateRows.Rows[0].Window, "CHG-1 tuning")

	// First seen over the whole log, marked new when first seen in the period.
	newOf := func(k *keyed[seen]) (seenIn, fresh []string) {
		for key, s := range k.m {
			if s.InPeriod {
				seenIn = append(seenIn, key)
				if s.FirstInRange {
					fresh = append(fresh, key)
				}
			}
		}
		slices.Sort(seenIn)
		slices.Sort(fresh)
		return
	}
	in, fresh := newOf(&a.seenSources)
	eq("sources in the period", in, []string{"10.0.5.7", "10.0.5.8", "10.0.9.9"})
	eq("new sources", fresh, []string{"10.0.5.8", "10.0.9.9"})
	in, fresh = newOf(&a.seenUsers)
	eq("users in the period", in, []string{hostileUser, "alice", "bob"})
	eq("new users", fresh, []string{hostileUser, "bob"})
	eq("carol, after the period, is known", a.seenUsers.m["carol"] != nil && !a.seenUsers.m["carol"].InPeriod, true)
	in, fresh = newOf(&a.seenTargets)
	eq("new targets", fresh, []string{"plc2"})
	_, fresh = newOf(&a.seenFunctions)
	eq("new functions", fresh, []string{hostileFunc, "diagnostics", "write_multiple_registers", "write_single_coil", "write_single_register"})
	eq("alice first seen", a.seenUsers.m["alice"].First, ts("2026-11-25T23:00:02Z"))

	// Policy: rev-1 in force at the start, one change to rev-2, one failure.
	eq("revision at start", a.revAtStart, "rev-1")
	eq("changes", len(a.revChanges.Rows), 1)
	eq("change", a.revChanges.Rows[0].From+"→"+a.revChanges.Rows[0].To, "rev-1→rev-2")
	eq("change time", a.revChanges.Rows[0].Time, ts("2026-11-26T13:00:00Z"))
	eq("load failures", a.loadFails.Total, 1)
	eq("decisions under rev-2 in the period", a.revs.m["rev-2"].Decisions, 3)

	// The ticket: opened, approved by bob, closed; one call under it.
	tk := a.ticketCur["T-1"]
	eq("ticket approvals", tk.Approvals, []string{"bob"})
	eq("ticket closed", tk.Closed, ts("2026-11-26T14:00:00Z"))
	eq("ticket closed by", tk.ClosedBy, "ops")
	eq("ticket calls", tk.Calls, 1)
	eq("calls under tickets", a.ticketCalls, 1)

	// Sessions, starts, checkpoints, unknown events.
	eq("sessions refused", a.sessRefused, 1)
	eq("refusal reason", a.refuseReasons.m["limit: max_conns"], 1)
	eq("sessions closed", a.sessClosed, 1)
	eq("duration histogram", a.durHist, [6]int64{0, 0, 0, 0, 0, 1})
	eq("starts in the period", a.starts.Total, 2)
	eq("unclean starts", a.unclean, 1)
	eq("stops", a.stops, 1)
	eq("checkpoints", a.checkpointsAll, 1)
	eq("other events", a.others.m["audit.mystery"].Count, 1)
	eq("rejected by reason", a.rejectReasons.m["bad_length"], 2)

	// Who called what.
	eq("alice on plc1", a.userTarget.m["alice\x00plc1"], 7)
	eq("hostile on plc2", a.userTarget.m[hostileUser+"\x00plc2"], 2)
	eq("bob on plc1", a.userTarget.m["bob\x00plc1"], 1)

	// Listeners: plc3 saw nothing.
	p := rep.view()
	eq("silent listeners", p.SilentListeners, 1)
	for _, l := range p.Listeners {
		eq("listener "+l.Name+" silent", l.Silent, l.Name == "plc3")
	}
	eq("plc1 use", [3]int64{a.listeners.m["plc1"].Calls, a.listeners.m["plc1"].Sessions, a.listeners.m["plc1"].Rejected}, [3]int64{8, 1, 2})

	// The chart holds every call of the period, by class.
	var byClass [numClasses]int64
	for _, b := range p.Buckets {
		for k := range numClasses {
			byClass[k] += b.Counts[k]
		}
	}
	eq("chart classes", byClass, [numClasses]int64{7, 1, 2})
	eq("chart width", p.ChartWidth, 15*time.Minute)

	// The verifier ran over the same file, with the key.
	v := rep.Verify
	eq("chain ok", v.OK(), true)
	eq("verified records", v.Records, uint64(40))
	eq("checkpoints verified", v.Checkpoints, 1)
	eq("signatures", strings.HasPrefix(v.Signatures, "checked: the 1 checkpoint is signed by key id "+audit.KeyID(testKey.Public().(ed25519.PublicKey))), true)
}

func TestReportSections(t *testing.T) {
	_, page := scenarioReport(t)
	// Nothing before the doctype: file(1) and mail scanners look for it at byte 0.
	if !strings.HasPrefix(page, "<!DOCTYPE html>\n") {
		t.Errorf("the page starts with %q, want <!DOCTYPE html>", page[:min(len(page), 20)])
	}
	ids := regexp.MustCompile(`<section id="([a-z]+)">\s*<h2>\d+\. ([^<]+)</h2>`).FindAllStringSubmatch(page, -1)
	var got []string
	for _, m := range ids {
		got = append(got, m[1]+": "+m[2])
	}
	want := []string{"summary: Summary", "integrity: Integrity of the log", "activity: Calls over time",
		"who: Who called which target", "functions: Functions", "state: State-changing calls",
		"denials: Denials and alerts", "windows: Calls outside maintenance windows", "firstseen: First seen",
		"policy: Policy revisions", "tickets: Change tickets", "sessions: Sessions", "rejected: Malformed requests",
		"listeners: Listeners and blind spots", "gateway: Gateway events", "about: About this report"}
	if !slices.Equal(got, want) {
		t.Errorf("sections:\n got %q\nwant %q", got, want)
	}
	for _, id := range want {
		id, _, _ = strings.Cut(id, ":")
		if !strings.Contains(page, `<a href="#`+id+`">`) {
			t.Errorf("the table of contents does not link #%s", id)
		}
	}
	for k, v := range map[string]int{"calls": 10, "denied": 2, "alerts": 3, "state_changing": 4, "sessions": 1, "rejected": 2} {
		if !strings.Contains(page, `data-k="`+k+`"><div class="v" data-v="`+strconv.Itoa(v)+`">`) {
			t.Errorf("the summary does not show %s = %d", k, v)
		}
	}
	for _, s := range []string{`data-v="ok">OK<`, `<span data-k="outside-total">3</span>`, `<span data-k="policy-changes">1</span>`,
		`<span data-k="silent-listeners">1</span>`, "limit: max_conns", "CHG-1234", "rev-1", "no stop recorded",
		"audit.mystery", "restart_communications", "values=[1,2,3,4,5,6,7,8,… 12 in all]", `bundle unsigned</span>`,
		"Calls were decided under policy bundles whose signature was not verified: rev-2 (unsigned)."} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	// Self-contained: no fetch of anything, a strict content security
	// policy, no inline event handler or style attribute.
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<(link|img|iframe|object|embed)\b`), regexp.MustCompile(`(?i)\s(src|href)="(https?:)?//`),
		regexp.MustCompile(`(?i)<[a-z]+[^>]*\son[a-z]+=`), regexp.MustCompile(`(?i)<[a-z]+[^>]*\sstyle=`), regexp.MustCompile(`(?i)url\(`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("the page has %q", m)
		}
	}
	if !strings.Contains(html.UnescapeString(page), `content="default-src 'none'; style-src 'sha256-`) {
		t.Errorf("no content security policy")
	}
	if got := strings.Count(page, "<script"); got != 1 {
		t.Errorf("%d script elements, want the report's own only", got)
	}
	if !strings.Contains(page, "A signed checkpoint, checked with the public key") || strings.Contains(page, "holds no signed checkpoints") {
		t.Errorf("the integrity note of a signed log is not the signed one")
	}
}

// An unsigned log's report says what its chain cannot show, next to OK.
func TestReportUnsignedLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := audit.Open(audit.Options{Path: path, Gateway: "gw-unsigned"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record("gateway.start", true, func(*zerolog.Event) {}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, page := build(t, Options{Files: []string{path}})
	if !rep.Verify.OK() {
		t.Fatalf("verification: %+v", rep.Verify)
	}
	for _, s := range []string{`data-v="ok">OK<`, "<b>This log holds no signed checkpoints</b>: a log rewritten from any record on"} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
}

// TestReportEscapesHostileValues: user names, reasons, functions and event
// fields carrying markup come out as text.
func TestReportEscapesHostileValues(t *testing.T) {
	_, page := scenarioReport(t)
	for _, h := range []string{hostileUser, hostileReason, hostileFunc, "<svg onload", "<img", `<script>alert`} {
		if strings.Contains(page, h) {
			t.Errorf("the page holds %q unescaped", h)
		}
	}
	for _, h := range []string{hostileUser, hostileReason, hostileFunc} {
		if !strings.Contains(page, html.EscapeString(h)) && !strings.Contains(page, strings.ReplaceAll(html.EscapeString(h), "&#34;", "&quot;")) {
			t.Errorf("the page does not show %q as text", h)
		}
	}
}

// TestReportCapsTables: tables keep MaxRows rows and say how many more,
// and every total stays exact.
func TestReportCapsTables(t *testing.T) {
	l := newLog(t)
	t0 := ts("2026-11-26T00:00:00Z")
	const writes = 57
	for i := range writes {
		l.call(t0.Add(time.Duration(i)*time.Second), callSpec{id: fmt.Sprint("w", i), session: "s", user: fmt.Sprint("user", i%7), ip: "10.0.0.1",
			target: fmt.Sprint("plc", i%3), function: "write_single_register", access: "write", code: 6,
			allow: i%2 == 0, alert: i%2 == 1, reasons: []string{fmt.Sprint("reason", i%5)}, rev: "r", status: "ok"})
	}
	for i := range 23 {
		l.add(t0.Add(time.Hour+time.Duration(i)*time.Second), "request.rejected", field{"listener", "plc0"},
			field{"source", map[string]any{"ip": fmt.Sprint("10.1.0.", i)}}, field{"reason", "bad_length"})
	}
	path := l.write(t.TempDir())
	rep, page := build(t, Options{Files: []string{path}, MaxRows: 10})
	a := rep.agg
	// Odd writes are denied (with an alert): 28 of the 57.
	if len(a.stateRows.Rows) != 10 || a.stateRows.Total != writes || len(a.denyRows.Rows) != 10 || a.denyRows.Total != writes/2 {
		t.Errorf("state rows %d of %d, deny rows %d of %d", len(a.stateRows.Rows), a.stateRows.Total, len(a.denyRows.Rows), a.denyRows.Total)
	}
	if a.rejectRows.Total != 23 || len(a.rejectRows.Rows) != 10 {
		t.Errorf("rejected rows %d of %d", len(a.rejectRows.Rows), a.rejectRows.Total)
	}
	for _, s := range []string{
		`data-shown="10" data-total="57">… and 47 more (57 in all`,
		`data-shown="10" data-total="28">… and 18 more (28 in all`,
		`data-shown="10" data-total="23">… and 13 more (23 in all`,
		`data-k="state_changing"><div class="v" data-v="57">57<`,
		`data-k="rejected"><div class="v" data-v="23">23<`,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if got := strings.Count(page, `<table class="calls sortable">`); got != 2 {
		t.Errorf("%d call tables, want 2 (state-changing, denials and alerts)", got)
	}
	if n := regexp.MustCompile(`(?s)<section id="state">.*?</section>`).FindString(page); strings.Count(n, "<tr><td data-v=") != 10 {
		t.Errorf("the state-changing table has %d rows, want 10", strings.Count(n, "<tr><td data-v="))
	}
}

// TestReportBoundsTallies: past the tracking limit, counts go to "other"
// and stay exact.
func TestReportBoundsTallies(t *testing.T) {
	tl := newTally(3)
	for i := range 10 {
		tl.add(fmt.Sprint(i%5), 1)
	}
	if tl.Len() != 3 || tl.Sum() != 10 || tl.Other != 4 || !tl.Overflow {
		t.Errorf("tally: len %d sum %d other %d overflow %v", tl.Len(), tl.Sum(), tl.Other, tl.Overflow)
	}
	c := newCapped[int](2)
	for i := range 5 {
		c.add(i)
	}
	if len(c.Rows) != 2 || c.Total != 5 || c.More() != 3 {
		t.Errorf("capped: %v total %d more %d", c.Rows, c.Total, c.More())
	}
}

// TestTimelineWidens: a timeline over a long span widens its buckets and
// keeps every count.
func TestTimelineWidens(t *testing.T) {
	var tl timeline
	start := ts("2026-01-01T00:00:00Z")
	var n int64
	for d := time.Duration(0); d < 400*24*time.Hour; d += 37 * time.Minute {
		tl.add(start.Add(d), int(n%3))
		n++
	}
	tl.add(start.Add(-time.Hour), classDenied) // earlier than the first
	n++
	if len(tl.counts) > maxBuckets {
		t.Errorf("%d buckets", len(tl.counts))
	}
	var sum int64
	for _, c := range tl.counts {
		sum += c[0] + c[1] + c[2]
	}
	if sum != n {
		t.Errorf("the timeline holds %d calls, want %d", sum, n)
	}
	bs, w := tl.view(start.Add(-time.Hour), start.Add(400*24*time.Hour), 96)
	if len(bs) > 96 || w < 24*time.Hour {
		t.Errorf("view: %d bars of %s", len(bs), w)
	}
	sum = 0
	for _, b := range bs {
		sum += b.Total()
	}
	if sum != n {
		t.Errorf("the view holds %d calls, want %d", sum, n)
	}
}

// TestReportPeriodBounds: --from and --to select records by time; the rest
// still count for first-seen.
func TestReportPeriodBounds(t *testing.T) {
	path := scenario(t)
	rep, _ := build(t, Options{Files: []string{path}, From: ts("2026-11-26T07:00:00Z"), To: ts("2026-11-26T12:00:00Z")})
	s := rep.Summary()
	if s.Calls != 1 || s.StateChanging != 1 { // w1 at 07:00; w2 at 12:00 is past the end
		t.Errorf("calls %d, state-changing %d in [07:00, 12:00), want 1 and 1", s.Calls, s.StateChanging)
	}
	rep, page := build(t, Options{Files: []string{path}})
	if s := rep.Summary(); s.Calls != 12 {
		t.Errorf("whole log: %d calls, want 12", s.Calls)
	}
	if !strings.Contains(page, "no configuration given") && !strings.Contains(page, `data-k="no-listeners"`) {
		t.Errorf("without listeners the page does not say the blind spots cannot be known")
	}
	if !strings.Contains(page, `data-k="no-windows"`) {
		t.Errorf("without windows the page does not say there is no window data")
	}
}

// TestReportBrokenChain: a changed record shows as BROKEN with the first
// break, and the report is still written; lines that are not records are
// counted.
func TestReportBrokenChain(t *testing.T) {
	path := scenario(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), `"user":"bob"`, `"user":"eve"`, 1))
	b = append(b, "not a record\n"...)
	broken := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(broken, b, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, page := build(t, Options{Files: []string{broken}})
	if rep.Verify.OK() || rep.Verify.Break == nil || rep.Verify.Break.Kind != audit.BreakHashMismatch {
		t.Fatalf("verification: %+v", rep.Verify)
	}
	if s := rep.Summary(); s.Unreadable != 1 || s.Calls != 12 {
		t.Errorf("unreadable %d, calls %d", s.Unreadable, s.Calls)
	}
	for _, s := range []string{`data-v="broken">BROKEN<`, "hash does not match the record", "1 line is not an audit record"} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
}

func TestLoadWindows(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, text string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("policy.rego", "package interlock\n")
	write("sites/a/data.yaml", `maintenance_windows:
  governed_access: [write]
  windows:
    - name: weekly
      cron: "0 6 * * SAT"
      duration: 4h
      tz: Europe/Berlin
      targets: [plc1]
      access: [write]
      roles: [engineer]
    - name: broken
      start: "yesterday"
      end: "2026-11-27T00:00:00Z"
`)
	write("accounts.json", `{"accounts": {}}`)
	ws, err := LoadWindows(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ws == nil || ws.Key != "data.sites.a.maintenance_windows.windows" || len(ws.List) != 2 {
		t.Fatalf("windows: %+v", ws)
	}
	if ws.List[1].Err == "" {
		t.Errorf("a window with a bad start is not marked")
	}
	sat := ts("2026-11-28T06:30:00Z") // 07:30 in Berlin, a Saturday
	for _, c := range []struct {
		at                   time.Time
		target, access, user string
		roles                []string
		want                 string
	}{
		{sat, "plc1", "write", "alice", []string{"engineer"}, "weekly"},
		{sat, "plc2", "write", "alice", []string{"engineer"}, ""},
		{sat, "plc1", "program", "alice", []string{"engineer"}, ""},
		{sat, "plc1", "write", "bob", []string{"operator"}, ""},
		{sat.Add(4 * time.Hour), "plc1", "write", "alice", []string{"engineer"}, ""},
	} {
		if got := ws.openFor(c.at, c.target, c.access, c.user, c.roles); got != c.want {
			t.Errorf("openFor(%s, %s, %s, %s) = %q, want %q", c.at, c.target, c.access, c.user, got, c.want)
		}
	}
	empty := t.TempDir()
	if ws, err := LoadWindows(empty); ws != nil || err != nil {
		t.Errorf("no data: %v, %v", ws, err)
	}
}

// A rotated file someone gzipped is read decompressed: the report counts
// the same records, and the chain verifies, as with the file plain.
func TestReportReadsGzippedRotatedFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := audit.Open(audit.Options{Path: path, Gateway: "gw-gz", RotateSize: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := w.Record("gateway.start", true, func(e *zerolog.Event) { e.Int("n", i) }); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	files, err := audit.LogFiles(path)
	if err != nil || len(files) < 3 {
		t.Fatalf("files %v, %v: want rotations", files, err)
	}
	plain, _ := build(t, Options{Files: files})
	for _, f := range files[:len(files)-1] {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		if err := os.WriteFile(f+".gz", z.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Remove(f)
	}
	gz, err := audit.LogFilesWithGzip(path)
	if err != nil || len(gz) != len(files) {
		t.Fatalf("gzipped files %v, %v", gz, err)
	}
	rep, _ := build(t, Options{Files: gz})
	if !rep.Verify.OK() || rep.Verify.Records != plain.Verify.Records || rep.agg.records != plain.agg.records {
		t.Errorf("gzipped: verify %+v, %d records; plain: %d records", rep.Verify, rep.agg.records, plain.agg.records)
	}
}

// Free text of a record is clipped like other text of a record, where the
// report takes it: a 100 KiB text full of markup shows its first 400 bytes,
// escaped, and an ellipsis, and the rest is not in the page. Each field
// below: the error of a failed load (policy, users file, Modbus/TCP Security
// files of a listener and toward its PLCs, OPC UA trust lists) or start; the
// reason of a refused session or failed authentication and the error a
// session closed with; a malformed request's reason, detail and response, and
// a reason counted by request.rejected_suppressed; a call's decision reason,
// the window it names and the result's detail; a change ticket's reason, and
// the reasons of ticket.load_refused and ticket.refused. Counts by reason
// group by the clipped text: reasons that differ only past it are one row.
func TestRecordTextClipped(t *testing.T) {
	const tail = "END-OF-THE-TEXT"
	long := strings.Repeat(`<img src=x onerror=alert("é")>`, 100<<10/30) + tail
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	l.add(at("08:00:00"), "policy.load_failed", field{"path", "/etc/interlock/policy"}, field{"error", "policy: " + long})
	l.add(at("08:01:00"), "users.load_failed", field{"listener", "line1"}, field{"path", "/etc/interlock/users.yaml"},
		field{"users", 2}, field{"error", "users: " + long})
	l.add(at("08:02:00"), "tls.load_failed", field{"listener", "plc1-tls"}, field{"error", "tls: " + long})
	l.add(at("08:02:30"), "upstream_tls.load_failed", field{"listener", "plc1"}, field{"error", "upstream tls: " + long})
	l.add(at("08:03:00"), "pki.load_failed", field{"listener", "line1"}, field{"error", "pki: " + long})
	l.add(at("08:04:00"), "gateway.start_failed", field{"error", "start: " + long})
	src := field{"source", map[string]any{"ip": "10.0.9.9", "port": 50123}}
	const refusals = 30
	for i := range refusals {
		l.add(at("08:05:00").Add(time.Duration(i)*time.Second), "session.open", field{"session_id", fmt.Sprint("r", i)},
			field{"listener", "plc1"}, src, field{"principal", map[string]any{"user": "mallory", "auth": "inventory"}},
			field{"target", map[string]any{"name": "plc1"}}, field{"success", false}, field{"reason", "refused: " + long + fmt.Sprint(i)})
	}
	l.add(at("08:06:00"), "session.auth_failed", field{"session_id", "a1"}, field{"listener", "line1"}, src, field{"reason", "auth: " + long})
	l.add(at("08:07:00"), "session.close", field{"session_id", "c1"}, field{"listener", "plc1"}, field{"duration_ms", 10},
		field{"error", "close: " + long})
	l.add(at("08:08:00"), "request.rejected", field{"listener", "plc1"}, src,
		field{"reason", "reason: " + long}, field{"detail", "detail: " + long}, field{"response", "response: " + long})
	l.add(at("08:09:00"), "request.rejected_suppressed", field{"listener", "plc1"}, field{"source", map[string]any{"ip": "10.0.9.9"}},
		field{"count", 3}, field{"reasons", map[string]int{"suppressed: " + long: 3}})
	c := callSpec{id: "w1", session: "s1", user: "alice", ip: "10.0.5.7", target: "plc1", function: "write_single_register", access: "write",
		code: 6, fields: []field{{"address", 100}}, allow: true, reasons: []string{"maintenance_window:" + long}, rev: "r"}
	l.call(at("12:00:00"), c)
	l.add(at("12:00:01"), "result", field{"call_id", "w1"}, field{"session_id", "s1"}, field{"status", "exception"},
		field{"code", 4}, field{"detail", "result: " + long})
	// A decision with more reasons than a row shows.
	c.id, c.allow, c.reasons = "w2", false, append([]string{"decision: " + long}, slices.Repeat([]string{"x"}, maxReasons+4)...)
	l.call(at("12:01:00"), c)
	l.add(at("09:00:00"), "ticket.open", field{"ticket_id", "T1"}, field{"by", "root"}, field{"ticket", orderedObject{
		{"id", "T1"}, {"user", "alice"}, {"targets", []string{"plc1"}}, {"access", []string{"write"}}, {"reason", "ticket: " + long},
		{"opened_by", "root"}, {"opened", "2026-11-26T09:00:00Z"}, {"expires", "2026-11-26T17:00:00Z"}}})
	l.add(at("09:01:00"), "ticket.load_refused", field{"reason", "load refused: " + long})
	l.add(at("09:02:00"), "ticket.refused", field{"action", "approve"}, field{"ticket_id", "T1"}, field{"by", "bob"},
		field{"reason", "admin: " + long})
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo, Windows: scenarioWindows()})
	a := rep.agg
	one := func(name string, total int64) {
		if total != 1 {
			t.Fatalf("%s: %d rows, want 1", name, total)
		}
	}
	one("policy.load_failed", a.loadFails.Total)
	one("users.load_failed", a.usersFails.Total)
	one("tls.load_failed", a.tlsFails.Total)
	one("upstream_tls.load_failed", a.upFails.Total)
	one("pki.load_failed", a.pkiFails.Total)
	one("gateway.start_failed", a.startFails.Total)
	one("ticket.load_refused", a.ticketRefused.Total)
	one("ticket.refused", a.adminRefused.Total)
	one("tickets", int64(len(a.tickets)))
	if a.sessRows.Total != refusals+1 || a.rejectRows.Total != 2 || a.stateRows.Total != 2 || a.denyRows.Total != 1 {
		t.Fatalf("rows: sessions %d, rejected %d, state-changing %d, denied %d; want %d, 2, 2, 1",
			a.sessRows.Total, a.rejectRows.Total, a.stateRows.Total, a.denyRows.Total, refusals+1)
	}
	key := func(tl *tally) string {
		if tl.Len() != 1 {
			t.Errorf("%d keys %v, want 1", tl.Len(), tl.Top(3))
			return ""
		}
		return tl.Top(1)[0].Key
	}
	allowed, denied := a.stateRows.Rows[0], a.stateRows.Rows[1]
	clipped := func(prefix string) string { return clip(prefix+long, maxFieldText) }
	for _, e := range []struct{ field, shown, want string }{
		{"policy.load_failed error", a.loadFails.Rows[0].Fields, clipped("policy: ")},
		{"users.load_failed error", a.usersFails.Rows[0].Error, clipped("users: ")},
		{"tls.load_failed error", a.tlsFails.Rows[0].Error, clipped("tls: ")},
		{"upstream_tls.load_failed error", a.upFails.Rows[0].Error, clipped("upstream tls: ")},
		{"pki.load_failed error", a.pkiFails.Rows[0].Error, clipped("pki: ")},
		{"gateway.start_failed error", a.startFails.Rows[0].Fields, clipped("start: ")},
		{"session refusal reason", a.sessRows.Rows[0].Reason, clipped("refused: ")},
		{"session refusal reason counted", key(&a.refuseReasons), clipped("refused: ")},
		{"auth failure reason", a.sessRows.Rows[refusals].Reason, clipped("auth: ")},
		{"auth failure reason counted", key(&a.authReasons), clipped("auth: ")},
		{"session close error counted", key(&a.closeErrors), clipped("close: ")},
		{"request.rejected reason", a.rejectRows.Rows[0].Reason, clipped("reason: ")},
		{"request.rejected detail", a.rejectRows.Rows[0].Detail, clipped("detail: ")},
		{"request.rejected response", a.rejectRows.Rows[0].Response, clipped("response: ")},
		{"request.rejected_suppressed reasons", a.rejectRows.Rows[1].Reason, clipped("suppressed: ")},
		{"result detail", allowed.ResDetail, clipped("result: ")},
		{"window named by the decision", allowed.Window, clip(long+" (as the decision recorded it)", maxFieldText)},
		{"decision reason", denied.Reasons[0], clipped("decision: ")},
		{"ticket reason", a.tickets[0].Reason, clipped("ticket: ")},
		{"ticket.load_refused reason", a.ticketRefused.Rows[0].Fields, clipped("load refused: ")},
		{"ticket.refused reason", a.adminRefused.Rows[0].Fields, "approve T1 by bob: " + clip("admin: "+long, maxFieldText)},
	} {
		if e.shown != e.want || !strings.HasSuffix(e.shown, "…") {
			t.Errorf("%s: %d bytes kept %q…, want the first %d bytes and …", e.field, len(e.shown), e.shown[:min(len(e.shown), 60)], maxFieldText)
			continue
		}
		if !strings.Contains(page, html.EscapeString(e.shown)) {
			t.Errorf("%s: the page lacks the clipped text, escaped", e.field)
		}
	}
	if r := a.reasons.m; len(r) != 2 || r[clipped("decision: ")] == nil || r[clipped("decision: ")][0] != 1 {
		t.Errorf("denials by reason: %d reasons, want the clipped one and x", len(r))
	}
	if r := denied.Reasons; len(r) != maxReasons+1 || r[maxReasons] != "… 5 more" {
		t.Errorf("the denied call shows %d reasons, last %q; want %d and … 5 more", len(r), r[len(r)-1], maxReasons)
	}
	if r := a.rejectReasons.m; len(r) != 2 || r[clipped("reason: ")] != 1 || r[clipped("suppressed: ")] != 3 {
		t.Errorf("malformed requests by reason: %v, want the two reasons clipped", a.rejectReasons.Top(3))
	}
	if n := a.refuseReasons.Sum(); n != refusals {
		t.Errorf("refusals counted %d, want %d under the one clipped reason", n, refusals)
	}
	if strings.Contains(page, tail) || strings.Contains(page, `<img src=x`) {
		t.Errorf("the page holds the rest of a text, or its markup unescaped")
	}
	// About 80 KiB: a single text of 100 KiB shown whole (over 150 KiB
	// escaped) breaks the bound.
	if len(page) > 200<<10 {
		t.Errorf("a page of %d bytes", len(page))
	}
}
