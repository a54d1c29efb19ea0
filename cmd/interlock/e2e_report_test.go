package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/report/reporttest"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// TestE2EReportInChromium records a known mix of calls through the real
// gateway (mbpoll and pymodbus clients, raw frames), builds the evidence
// report with the binary, opens it in headless Chromium with scripts on
// and off, and checks that the page says nothing at warning level or
// above, that every section is there, and that the numbers it shows equal
// counts taken from the same log here. INTERLOCK_REPORT_SCREENSHOT names a
// file to keep the screenshot in.
func TestE2EReportInChromium(t *testing.T) {
	requirePeer(t, peerMbpoll, peerPymodbus)
	gatewaytest.RequirePeer(t, "chromium")
	plc := startPLC(t, 0, "100=11", "101=12", "200=20")
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)

	// Reads: allowed.
	for range 3 {
		if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 {
			t.Fatalf("mbpoll read: exit %d\n%s", r.code, r.out)
		}
	}
	// Writes outside the (past) maintenance window: denied.
	for i := range 2 {
		if r := pyclient(t, g.port, "write", 100, 500+i); r.Exception == nil {
			t.Fatalf("a write outside the window was not refused: %+v", r)
		}
	}
	// A read from a source the inventory does not know: allowed, alert.
	if r := pyclientFrom(t, "127.0.0.2", g.port, "read", 100, 1); r.Error != "" {
		t.Fatalf("read from 127.0.0.2: %+v", r)
	}
	// Diagnostics (FC 8, return query data): denied.
	rawCall(t, g.port, []byte{0x08, 0x00, 0x00, 0xAB, 0xCD})
	// A malformed frame (MBAP protocol id 1): request.rejected.
	rawFrame(t, g.port, 7, 1, []byte{0x03, 0x00, 100, 0x00, 0x01})

	// A window opens (the policy data changes: a new revision), and writes
	// go through; one touches the protected range (an alert).
	// The window starts after the calls above, so that the report, which
	// judges calls by the windows as they are now, finds those outside it.
	time.Sleep(1100 * time.Millisecond)
	now := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	g.setWindows(t, window{Name: "CHG-E2E-NOW", Start: now.Format(time.RFC3339), End: now.Add(time.Hour).Format(time.RFC3339), Targets: []string{"plc1"}})
	for time.Now().Before(now) {
		time.Sleep(50 * time.Millisecond)
	}
	waitAudit(t, g.auditPath, 15*time.Second, "the policy with the open window", func(recs []record) bool {
		return len(eventsOf(recs, "policy.load")) >= 2
	})
	if r := pyclient(t, g.port, "write", 100, 700); r.Error != "" {
		t.Fatalf("a write inside the window: %+v", r)
	}
	if r := pyclient(t, g.port, "write", 200, 21); r.Error != "" {
		t.Fatalf("a write to the protected range inside the window: %+v", r)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("gateway exit %d", code)
	}

	// What the log says, counted here from the JSONL itself.
	want := countLog(t, g.auditPath, readWindows(t, g))
	if want["calls"] < 9 || want["denied"] < 3 || want["alerts"] < 5 || want["state_changing"] < 5 || want["outside"] < 3 || want["rejected"] < 1 {
		t.Fatalf("the log does not hold the mix this test made: %v", want)
	}
	t.Logf("counted from the log: %v", want)

	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	pdf := filepath.Join(dir, "report.pdf")
	res := interlock(t, "audit", "report", "--config", g.config, "--out", html, "--pdf", pdf, "--title", "E2E evidence report")
	if res.code != 0 {
		t.Fatalf("audit report: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "chain ok") {
		t.Errorf("audit report stdout does not say the chain is ok: %s", res.stdout)
	}
	if b, err := os.ReadFile(pdf); err != nil || !bytes.HasPrefix(b, []byte("%PDF-")) {
		t.Errorf("--pdf did not write a PDF (%v)", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := reporttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, scripts := range []bool{true, false} {
		p, err := b.NewPage(ctx, 1280, 900, scripts)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Navigate(ctx, "file://"+html); err != nil {
			t.Fatalf("%v\nchromium: %s", err, b.Stderr())
		}
		what := "scripts on"
		if !scripts {
			what = "scripts off"
		}
		checkReportPage(t, ctx, p, what, want)
		if scripts {
			checkSorting(t, ctx, p)
			shot := filepath.Join(dir, "report.png")
			if err := p.Screenshot(ctx, shot, 16000); err != nil {
				t.Fatal(err)
			}
			if keep := os.Getenv("INTERLOCK_REPORT_SCREENSHOT"); keep != "" {
				copyFile(t, shot, keep)
				t.Logf("screenshot: %s", keep)
			}
		}
		time.Sleep(200 * time.Millisecond) // late console messages
		for _, m := range p.Problems() {
			t.Errorf("%s: the page said %s", what, m)
		}
	}
}

// reportSections are the sections the page must have, by id and heading.
var reportSections = map[string]string{
	"summary": "Summary", "integrity": "Integrity of the log", "activity": "Calls over time",
	"who": "Who called which target", "functions": "Functions", "state": "State-changing calls",
	"denials": "Denials and alerts", "windows": "Calls outside maintenance windows", "firstseen": "First seen",
	"policy": "Policy revisions", "tickets": "Change tickets", "sessions": "Sessions", "rejected": "Malformed requests",
	"listeners": "Listeners and blind spots", "gateway": "Gateway events", "about": "About this report",
}

func checkReportPage(t *testing.T, ctx context.Context, p *reporttest.Page, what string, want map[string]int) {
	t.Helper()
	var headings map[string]string
	if err := p.Eval(ctx, `Object.fromEntries(Array.from(document.querySelectorAll("main > section")).map(s => [s.id, s.querySelector("h2").textContent]))`, &headings); err != nil {
		t.Fatal(err)
	}
	for id, h := range reportSections {
		if !strings.Contains(headings[id], h) {
			t.Errorf("%s: section #%s has heading %q, want %q", what, id, headings[id], h)
		}
	}
	var links int
	if err := p.Eval(ctx, `document.querySelectorAll("nav.toc a[href^='#']").length`, &links); err != nil {
		t.Fatal(err)
	}
	if links != len(reportSections) {
		t.Errorf("%s: the table of contents has %d links, want %d", what, links, len(reportSections))
	}
	var shown map[string]string
	if err := p.Eval(ctx, `Object.fromEntries(Array.from(document.querySelectorAll(".kpi[data-k]")).map(k => [k.dataset.k, k.querySelector(".v").dataset.v + "|" + k.querySelector(".v").textContent]))`, &shown); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"calls", "denied", "alerts", "state_changing", "rejected"} {
		v, text, _ := strings.Cut(shown[k], "|")
		if v != strconv.Itoa(want[k]) || strings.ReplaceAll(text, ",", "") != v {
			t.Errorf("%s: the page shows %s = %q (text %q), the log holds %d", what, k, v, text, want[k])
		}
	}
	if v, _, _ := strings.Cut(shown["chain"], "|"); v != "ok" {
		t.Errorf("%s: the page shows the chain as %q", what, v)
	}
	// The tables agree with the summary.
	var counts map[string]string
	if err := p.Eval(ctx, `Object.fromEntries(["state-total","denied-total","alerts-total","rejected-total","policy-changes","silent-listeners"].map(k => [k, (document.querySelector("[data-k='"+k+"']")||{}).textContent]))`, &counts); err != nil {
		t.Fatal(err)
	}
	for k, w := range map[string]int{"state-total": want["state_changing"], "denied-total": want["denied"], "alerts-total": want["alerts"],
		"rejected-total": want["rejected"], "policy-changes": want["policy_changes"]} {
		if counts[k] != strconv.Itoa(w) {
			t.Errorf("%s: [data-k=%s] shows %q, want %d", what, k, counts[k], w)
		}
	}
	// The one listener saw traffic: no count of silent ones, no blind-spot sentence.
	var listeners string
	if err := p.Eval(ctx, `document.querySelector("#listeners p").innerText`, &listeners); err != nil {
		t.Fatal(err)
	}
	if counts["silent-listeners"] != "" || listeners != "The listeners of the configuration and what each saw in the period." {
		t.Errorf("%s: every listener saw traffic, and the page shows [data-k=silent-listeners] %q and says %q", what, counts["silent-listeners"], listeners)
	}
	// Counts read as words, and the bucket width too.
	var body string
	if err := p.Eval(ctx, `document.body.innerText`, &body); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"(s)", "(ies)", "per 1 s", "per 1 min", "per 5 min", "per 1 h"} {
		if strings.Contains(body, bad) {
			t.Errorf("%s: the page says %q", what, bad)
		}
	}
	var rows map[string]int
	if err := p.Eval(ctx, `({state: document.querySelectorAll("#state table.calls tbody tr").length,
		denials: document.querySelectorAll("#denials table.calls tbody tr").length,
		outside: document.querySelectorAll("#windows table.calls tbody tr").length,
		bars: document.querySelectorAll("#activity svg rect").length})`, &rows); err != nil {
		t.Fatal(err)
	}
	if rows["state"] != want["state_changing"] || rows["denials"] != want["denied_or_alert"] || rows["outside"] != want["outside"] {
		t.Errorf("%s: table rows %v, want state %d, denials %d, outside %d", what, rows, want["state_changing"], want["denied_or_alert"], want["outside"])
	}
	if rows["bars"] == 0 {
		t.Errorf("%s: the calls-over-time chart has no bars", what)
	}
}

// readWindows reads the one-off maintenance windows of the gateway's
// policy data as they are now.
func readWindows(t *testing.T, g *gw) []window {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(g.policyDir, "data.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Windows []window `json:"maintenance_windows"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Windows
}

// checkSorting clicks the Total head of the functions table twice: the
// rows sort ascending, then descending.
func checkSorting(t *testing.T, ctx context.Context, p *reporttest.Page) {
	t.Helper()
	const table = `document.querySelector("#functions table.sortable")`
	read := `Array.from(` + table + `.tBodies[0].rows).map(r => Number(r.cells[5].dataset.v))`
	var before []int
	if err := p.Eval(ctx, read, &before); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"ascending", "descending"} {
		var got []int
		var aria string
		if err := p.Eval(ctx, table+`.tHead.rows[0].cells[5].click()`, nil); err != nil {
			t.Fatal(err)
		}
		if err := p.Eval(ctx, read, &got); err != nil {
			t.Fatal(err)
		}
		if err := p.Eval(ctx, table+`.tHead.rows[0].cells[5].getAttribute("aria-sort")`, &aria); err != nil {
			t.Fatal(err)
		}
		sorted := slices.IsSorted(got)
		if dir == "descending" {
			sorted = slices.IsSortedFunc(got, func(a, b int) int { return b - a })
		}
		if !sorted || aria != dir || len(got) != len(before) {
			t.Errorf("sorting the functions by total, %s: %v (aria-sort %q), from %v", dir, got, aria, before)
		}
	}
}

// countLog counts, from the JSONL itself, what the report must show; a
// state-changing call is outside when no window of ws for its target
// holds its call time.
func countLog(t *testing.T, path string, ws []window) map[string]int {
	t.Helper()
	n := map[string]int{}
	rev := ""
	for _, r := range readAudit(t, path) {
		switch r.str("event") {
		case "call":
			n["calls"]++
			allow, _ := r.get("decision.allow").(bool)
			alert, _ := r.get("decision.alert").(bool)
			if !allow {
				n["denied"]++
			}
			if alert {
				n["alerts"]++
			}
			if !allow || alert {
				n["denied_or_alert"]++
			}
			switch r.str("operation.access") {
			case "read", "browse", "subscribe":
			default:
				n["state_changing"]++
				if !inWindow(t, ws, r.str("target.name"), r.str("call_time")) {
					n["outside"]++
				}
			}
		case "request.rejected":
			n["rejected"]++
		case "policy.load":
			if rv := r.str("policy_revision"); rev != "" && rv != rev {
				n["policy_changes"]++
			}
			rev = r.str("policy_revision")
		}
	}
	return n
}

func inWindow(t *testing.T, ws []window, target, at string) bool {
	t.Helper()
	ct, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		t.Fatalf("call_time %q: %v", at, err)
	}
	for _, w := range ws {
		start, err1 := time.Parse(time.RFC3339, w.Start)
		end, err2 := time.Parse(time.RFC3339, w.End)
		if err1 != nil || err2 != nil {
			t.Fatalf("window %+v is not a one-off window", w)
		}
		if slices.Contains(w.Targets, target) && !ct.Before(start) && ct.Before(end) {
			return true
		}
	}
	return false
}

// rawCall sends one Modbus request (unit 1) on a new connection and reads
// the answer.
func rawCall(t *testing.T, port int, pdu []byte) []byte {
	t.Helper()
	c := rawFrame(t, port, 1, 0, pdu)
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 7)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("no answer to % x: %v", pdu, err)
	}
	body := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return body
}

// rawFrame sends one MBAP frame with the given protocol id and returns the
// connection.
func rawFrame(t *testing.T, port int, tid, proto uint16, pdu []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, proto)
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(pdu)))
	b = append(append(b, 1), pdu...)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}
