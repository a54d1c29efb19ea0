package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// jsonlRecords parses the JSONL output of audit query or export.
func jsonlRecords(t *testing.T, out string) []record {
	t.Helper()
	var recs []record
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("not a JSON line: %v: %q", err, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

// queryCalls runs `audit query … --format jsonl` and returns the call
// records it printed (each result after its call, which is checked).
func queryCalls(t *testing.T, args ...string) []record {
	t.Helper()
	r := interlock(t, append([]string{"audit", "query", "--format", "jsonl"}, args...)...)
	if r.code != 0 {
		t.Fatalf("audit query %v: exit %d\n%s", args, r.code, r.stderr)
	}
	recs := jsonlRecords(t, r.stdout)
	var calls []record
	seen := map[string]bool{}
	for _, rec := range recs {
		switch rec.str("event") {
		case "call":
			calls = append(calls, rec)
			seen[rec.str("call_id")] = true
		case "result":
			if !seen[rec.str("call_id")] {
				t.Errorf("the result of call %s comes before the call", rec.str("call_id"))
			}
		}
	}
	return calls
}

func callIDs(calls []record) []string {
	var ids []string
	for _, c := range calls {
		ids = append(ids, c.str("call_id"))
	}
	return ids
}

// audit query and export over the sample log a gateway recorded
// (examples/ci/sample-audit.jsonl: 13 calls, counted by hand below). No
// peers needed.
func TestAuditQueryCLIOnSampleLog(t *testing.T) {
	t.Parallel()
	sample := filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl")
	for _, tc := range []struct {
		args []string
		want int // calls
	}{
		{[]string{"--event", "call"}, 13},
		{[]string{"--decision", "deny"}, 5}, // writes 100, 205, 100 outside a window, coil 3, diagnostics
		{[]string{"--function", "write_single_register"}, 5},
		{[]string{"--function", "6", "--status", "ok"}, 2}, // the two writes under ticket T-CI-1
		{[]string{"--function", "write_*", "--function", "diagnostics"}, 7},
		{[]string{"--address", "100"}, 5},      // reads 100-101 twice, writes to 100 three times
		{[]string{"--address", "201-204"}, 1},  // the read of 200-203
		{[]string{"--address", "203-205"}, 3},  // the read of 200-203, writes to 205 twice
		{[]string{"--source", "127.0.0.2"}, 1}, // the unknown workstation's read
		{[]string{"--source", "ews-alice", "--event", "call"}, 12},
		{[]string{"--source", "127.0.0.0/30", "--access", "read", "--status", "ok"}, 5}, // FC 3 twice, 1, 4, and 3 from 127.0.0.2
		{[]string{"--user", "alice", "--decision", "alert", "--access", "write"}, 5},    // all but the ticket's write to 100
		{[]string{"--user", "alice", "--decision", "allow", "--access", "write"}, 1},    // that one
		{[]string{"--target", "plc1", "--protocol", "modbus", "--access", "diagnostic"}, 2},
		{[]string{"--status", "denied,exception,error"}, 5},
		{[]string{"--to", "2026-11-26T04:24:57.800Z", "--event", "call"}, 4},
		{[]string{"--from", "2026-11-26T04:24:59Z", "--event", "call"}, 6},
		{[]string{"--from", "now"}, 0},
		{[]string{"--event", "call", "--limit", "3"}, 3},
	} {
		calls := queryCalls(t, append([]string{sample}, tc.args...)...)
		if len(calls) != tc.want {
			t.Errorf("audit query %v: %d calls %v, want %d", tc.args, len(calls), callIDs(calls), tc.want)
		}
	}

	// Flags before, between and after files; --log reads the rotated files
	// of a log first, in chain order.
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	dir := t.TempDir()
	live := filepath.Join(dir, "audit.jsonl")
	rotated := audit.RotatedName(live, time.Date(2026, 11, 26, 4, 24, 58, 0, time.UTC), 1)
	writeFile(t, rotated, strings.Join(lines[:30], ""))
	writeFile(t, live, strings.Join(lines[30:], "")+"\n")
	whole := queryCalls(t, sample, "--event", "call")
	viaLog := queryCalls(t, "--event", "call", "--log", live)
	if !slices.Equal(callIDs(viaLog), callIDs(whole)) {
		t.Errorf("--log over a rotated log: %v\nthe whole file: %v", callIDs(viaLog), callIDs(whole))
	}
	if got := queryCalls(t, "--decision", "deny", rotated, "--event", "call", live); len(got) != 5 {
		t.Errorf("flags between files: %d denials, want 5", len(got))
	}

	// The table: a header, a row per match, and the summary on stderr.
	r := interlock(t, "audit", "query", sample, "--decision", "deny")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 6 || !strings.HasPrefix(rows[0], "TIME ") || !strings.Contains(rows[0], " REASONS") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	for _, row := range rows[1:] {
		if !strings.Contains(row, "deny") || !strings.Contains(row, "denied") {
			t.Errorf("row %q", row)
		}
	}
	if !strings.Contains(r.stdout, "outside_maintenance_window,protected_range:safety_limits") {
		t.Errorf("the reasons of the write to 205 are missing:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "59 records read from 1 file") || !strings.Contains(r.stderr, "10 matched: 5 calls with their results, 0 other records") ||
		!strings.Contains(r.stderr, "records/s") {
		t.Errorf("summary: %q", r.stderr)
	}

	// Usage errors exit 2 and say what is wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "query"}, "name a log"},
		{[]string{"audit", "query", sample, "--decision", "maybe"}, `--decision "maybe"`},
		{[]string{"audit", "query", sample, "--status", "fine"}, `--status "fine"`},
		{[]string{"audit", "query", sample, "--address", "70000"}, "--address"},
		{[]string{"audit", "query", sample, "--from", "yesterday"}, "--from"},
		{[]string{"audit", "query", sample, "--from", "-1h", "--to", "-2h"}, "is not before"},
		{[]string{"audit", "query", sample, "--source", "10.0.0.0/40"}, "--source"},
		{[]string{"audit", "query", sample, "--format", "xml"}, `--format "xml"`},
		{[]string{"audit", "export", sample}, "--format is required"},
		{[]string{"audit", "export", sample, "--format", "xml"}, `--format "xml"`},
		// a name that is no event or function would match nothing
		{[]string{"audit", "query", sample, "--event", "sesion.open"}, `--event "sesion.open" is no event the gateway writes; the events: gateway.start, `},
		{[]string{"audit", "query", sample, "--event", "sessions.*"}, `--event "sessions.*" matches no event the gateway writes; the events: `},
		{[]string{"audit", "export", "--format", "csv", sample, "--event", "call,resutl"}, `--event "resutl" is no event`},
		{[]string{"audit", "query", sample, "--function", "write_register"}, `--function "write_register" is no Modbus or OPC UA function; give a name, a glob such as write_*, or a function code such as 16. Modbus: read_coils, `},
		{[]string{"audit", "query", sample, "--function", "wirte_*"}, `--function "wirte_*" matches no Modbus or OPC UA function`},
		{[]string{"audit", "export", "--format", "cef", sample, "--function", "300"}, `--function 300: a function code is 0 to 255`},
	} {
		r := interlock(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if r := interlock(t, "audit", "query", filepath.Join(dir, "missing.jsonl")); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("missing file: exit %d, %q", r.code, r.stderr)
	}
	for _, cmd := range []string{"query", "export"} {
		if r := interlock(t, "audit", cmd, "--help"); r.code != 0 || !strings.Contains(r.stderr, "interlock audit verify") {
			t.Errorf("audit %s --help: exit %d, %q", cmd, r.code, r.stderr)
		}
	}

	// A last line cut by a crash is skipped with a note.
	cut := filepath.Join(dir, "cut.jsonl")
	writeFile(t, cut, string(b)+`{"seq":60,"time":"2026-11-26T04:25:00.000000000Z","event":"call","gate`)
	r = interlock(t, "audit", "query", cut, "--event", "call", "--format", "jsonl")
	if r.code != 0 || len(jsonlRecords(t, r.stdout)) != 26 || !strings.Contains(r.stderr, "no end") || !strings.Contains(r.stderr, "; 1 last line cut short skipped") {
		t.Errorf("cut log: exit %d, %d records\n%s", r.code, len(jsonlRecords(t, r.stdout)), r.stderr)
	}

	// A file that is not an audit log is refused before any output, named
	// with its first line; query and export alike.
	for name, text := range notAuditLogs(b) {
		p := filepath.Join(dir, name)
		writeFile(t, p, text)
		for _, args := range [][]string{{"audit", "query", sample, p}, {"audit", "export", "--format", "csv", p}} {
			r := interlock(t, args...)
			if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, p+": line 1 is not an audit record") ||
				!strings.Contains(r.stderr, "not an audit log") {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 naming %s line 1 and nothing printed", args, r.code, r.stdout, r.stderr, p)
			}
		}
	}

	// Lines of a log that are not records are named (FILE:LINE), counted and
	// left out; the rest is printed (exported, with --out too), and the exit
	// is 1 so that nobody takes the output for the whole log.
	damaged := filepath.Join(dir, "damaged.jsonl")
	writeFile(t, damaged, strings.Join(lines[:10], "")+"garbage\n"+`{"x":1}`+"\n"+strings.Join(lines[10:], "")+"\n")
	r = interlock(t, "audit", "query", damaged, "--format", "jsonl")
	if r.code != 1 || len(jsonlRecords(t, r.stdout)) != 59 || !strings.Contains(r.stderr, damaged+":11: not an audit record") ||
		!strings.Contains(r.stderr, damaged+":12: not an audit record") || !strings.Contains(r.stderr, "audit query: 2 lines are not audit records (FILE:LINE above) and are left out of the output") {
		t.Errorf("damaged log: exit %d, %d records\n%s", r.code, len(jsonlRecords(t, r.stdout)), r.stderr)
	}
	out := filepath.Join(dir, "damaged.csv")
	r = interlock(t, "audit", "export", "--format", "csv", damaged, "--out", out)
	if csv, err := os.ReadFile(out); r.code != 1 || err != nil || strings.Count(string(csv), "\n") != 47 ||
		!strings.Contains(r.stderr, damaged+":11:") || !strings.Contains(r.stderr, "audit export: 2 lines are not audit records (FILE:LINE above) and are left out of the output") {
		t.Errorf("export of the damaged log: exit %d, %d lines, %v\n%s", r.code, strings.Count(string(csv), "\n"), err, r.stderr)
	}

	// Every format exports, --out replaces the file only when done.
	for _, format := range []string{"ocsf", "cef", "csv", "jsonl"} {
		out := filepath.Join(dir, "export."+format)
		r := interlock(t, "audit", "export", "--format", format, sample, "--out", out)
		if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "to "+out) {
			t.Errorf("export %s: exit %d, stdout %d bytes, stderr %q", format, r.code, len(r.stdout), r.stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.Count(string(b), "\n")
		want := 46 // 13 calls with their results and 33 other records
		switch format {
		case "jsonl":
			want = 59
		case "csv":
			want = 47 // and a header
		}
		if n != want {
			t.Errorf("export %s: %d lines, want %d", format, n, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("a temporary file was left behind: %s", e.Name())
		}
	}
}

// A real gateway's log: the calls the test makes are exactly what audit
// query finds with each filter, and audit export maps a known call to OCSF,
// CEF and CSV with the values the gateway recorded.
func TestE2EAuditQueryAndExport(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)

	// The calls, numbered as the comments below count them.
	read := func(args ...string) {
		t.Helper()
		if r := mbpoll(t, g.port, args); r.code != 0 {
			t.Fatalf("mbpoll %v: exit %d\n%s", args, r.code, r.out)
		}
	}
	read("-r", "100", "-c", "2")          // 1: read_holding_registers 100-101, alice
	read("-r", "100", "-c", "2")          // 2: the same
	read("-r", "10", "-c", "5")           // 3: read_holding_registers 10-14
	read("-t", "0", "-r", "0", "-c", "8") // 4: read_coils 0-7
	time.Sleep(20 * time.Millisecond)
	beforeWrite := time.Now().UTC()
	if r := mbpoll(t, g.port, []string{"-r", "100"}, "5"); r.code == 0 { // 5: write_single_register 100, denied
		t.Fatalf("a write outside a window was not refused:\n%s", r.out)
	}
	if r := pyclientFrom(t, "127.0.0.2", g.port, "read", 102, 3); r.Error != "" { // 6: 102-104 from an unknown source
		t.Fatalf("read from 127.0.0.2: %+v", r)
	}
	if r := pyclient(t, g.port, "read", 2000, 2); r.Exception == nil || *r.Exception != 2 { // 7: 2000-2001, exception 2 from the PLC
		t.Fatalf("read past the PLC's registers: %+v", r)
	}
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d", code)
	}
	verifyAudit(t, g.auditPath)
	recs := readAudit(t, g.auditPath)
	calls := eventsOf(recs, "call")
	if len(calls) != 7 {
		t.Fatalf("%d call records, want 7", len(calls))
	}
	id := func(n int) string { return calls[n-1].str("call_id") }
	ids := func(ns ...int) []string {
		var out []string
		for _, n := range ns {
			out = append(out, id(n))
		}
		return out
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--event", "call"}, ids(1, 2, 3, 4, 5, 6, 7)},
		{[]string{"--function", "read_holding_registers"}, ids(1, 2, 3, 6, 7)},
		{[]string{"--function", "read_coils,write_single_register"}, ids(4, 5)},
		{[]string{"--address", "101"}, ids(1, 2)},
		{[]string{"--address", "100-105"}, ids(1, 2, 5, 6)},
		{[]string{"--address", "7", "--address", "14"}, ids(3, 4)},
		{[]string{"--address", "2001-3000"}, ids(7)},
		{[]string{"--user", "alice", "--decision", "deny"}, ids(5)},
		{[]string{"--status", "denied"}, ids(5)},
		{[]string{"--status", "exception"}, ids(7)},
		{[]string{"--status", "ok", "--access", "read"}, ids(1, 2, 3, 4, 6)},
		{[]string{"--source", "127.0.0.2", "--event", "call"}, ids(6)},
		{[]string{"--source", "ews-alice", "--event", "call"}, ids(1, 2, 3, 4, 5, 7)},
		{[]string{"--source", "127.0.0.0/24", "--function", "read_*", "--status", "ok"}, ids(1, 2, 3, 4, 6)},
		{[]string{"--user", "alice", "--target", "plc1", "--protocol", "modbus", "--access", "write"}, ids(5)},
		{[]string{"--from", beforeWrite.Format(time.RFC3339Nano), "--event", "call"}, ids(5, 6, 7)},
		{[]string{"--to", beforeWrite.Format(time.RFC3339Nano), "--event", "call"}, ids(1, 2, 3, 4)},
		{[]string{"--call-id", id(3)}, ids(3)},
		{[]string{"--event", "call", "--limit", "2"}, ids(1, 2)},
	} {
		got := queryCalls(t, append([]string{"--log", g.auditPath}, tc.args...)...)
		if !slices.Equal(callIDs(got), tc.want) {
			t.Errorf("audit query %v: calls %v, want %v", tc.args, callIDs(got), tc.want)
		}
	}

	// jsonl: the call and result records exactly as the gateway wrote them.
	r := interlock(t, "audit", "query", "--log", g.auditPath, "--call-id", id(5), "--format", "jsonl")
	raw, _ := os.ReadFile(g.auditPath)
	got := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(got) != 2 || !strings.Contains(string(raw), got[0]+"\n") || !strings.Contains(string(raw), got[1]+"\n") ||
		!strings.Contains(got[1], `"event":"result"`) {
		t.Errorf("jsonl of the denied write:\n%s", r.stdout)
	}

	// The table row of the denied write and of the exception.
	r = interlock(t, "audit", "query", "--log", g.auditPath, "--status", "denied,exception")
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 3 ||
		!containsAll(rows[1], "alice", "ews-alice", "plc1/u1", "write_single_register", "100", "deny", "denied", "outside_maintenance_window") ||
		!containsAll(rows[2], "alice", "read_holding_registers", "2000-2001", "allow", "exception 2") {
		t.Errorf("table:\n%s", r.stdout)
	}

	// OCSF: every line an event; the denied write mapped field by field.
	start := eventsOf(recs, "gateway.start")[0]
	write := calls[4]
	r = interlock(t, "audit", "export", "--format", "ocsf", "--log", g.auditPath)
	if r.code != 0 {
		t.Fatalf("export ocsf: exit %d\n%s", r.code, r.stderr)
	}
	events := jsonlRecords(t, r.stdout)
	var ev record
	for _, e := range events {
		if e.num("class_uid") != 6003 && e.num("class_uid") != 6002 {
			t.Errorf("class_uid %v", e.get("class_uid"))
		}
		if e.str("api.request.uid") == write.str("call_id") {
			ev = e
		}
	}
	if ev == nil {
		t.Fatalf("no OCSF event for the denied write %s", write.str("call_id"))
	}
	callTime, _ := time.Parse(time.RFC3339Nano, write.str("time"))
	for path, want := range map[string]any{
		"class_uid":                         float64(6003),
		"category_uid":                      float64(6),
		"activity_id":                       float64(3),
		"type_uid":                          float64(600303),
		"time":                              float64(callTime.UnixMilli()),
		"status_id":                         float64(2),
		"status":                            "Failure",
		"actor.user.name":                   "alice",
		"actor.session.uid":                 write.str("session_id"),
		"src_endpoint.ip":                   "127.0.0.1",
		"src_endpoint.port":                 write.num("source.port"),
		"src_endpoint.hostname":             "ews-alice",
		"dst_endpoint.name":                 "plc1",
		"dst_endpoint.port":                 float64(plc.port),
		"api.operation":                     "write_single_register",
		"api.service.name":                  "modbus",
		"metadata.uid":                      write.str("hash"),
		"metadata.sequence":                 write.num("seq"),
		"metadata.product.name":             "Interlock",
		"metadata.product.version":          start.str("version"),
		"unmapped.decision.decision_id":     write.str("decision.decision_id"),
		"unmapped.decision.policy_revision": write.str("decision.policy_revision"),
	} {
		if got := ev.get(path); got != want {
			t.Errorf("OCSF %s = %v, want %v", path, got, want)
		}
	}
	if !strings.Contains(ev.str("status_detail"), "outside_maintenance_window") {
		t.Errorf("status_detail %q", ev.str("status_detail"))
	}
	if g := ev.strs("actor.user.groups"); len(g) != 1 {
		t.Errorf("groups %v", ev.get("actor.user.groups"))
	}

	// CEF of the same call.
	r = interlock(t, "audit", "export", "--format", "cef", "--log", g.auditPath, "--call-id", write.str("call_id"))
	cef := strings.TrimSpace(r.stdout)
	if r.code != 0 || strings.Count(cef, "\n") != 0 ||
		!strings.HasPrefix(cef, "CEF:0|Interlock|interlock|"+start.str("version")+"|write_single_register|write_single_register denied|6|") ||
		!containsAll(cef, " src=127.0.0.1 ", " spt="+strconv.Itoa(int(write.num("source.port")))+" ", " suser=alice ", " dhost=plc1 ",
			" act=deny ", " outcome=failure ", " cs6=100 ", " cs3="+write.str("decision.decision_id")+" ", " flexString1="+write.str("hash")) {
		t.Errorf("CEF: exit %d\n%s", r.code, cef)
	}

	// CSV: a header and one row per call.
	r = interlock(t, "audit", "export", "--format", "csv", "--log", g.auditPath, "--event", "call")
	table, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil || len(table) != 8 {
		t.Fatalf("CSV: %v, %d rows\n%s", err, len(table), r.stdout)
	}
	col := map[string]int{}
	for i, name := range table[0] {
		col[name] = i
	}
	row := table[5]
	if row[col["call_id"]] != write.str("call_id") || row[col["status"]] != "denied" || row[col["decision"]] != "deny" ||
		row[col["user"]] != "alice" || row[col["address"]] != "100" || row[col["hash"]] != write.str("hash") {
		t.Errorf("CSV row of the denied write: %q", row)
	}
	if row := table[7]; row[col["status"]] != "exception" || row[col["status_code"]] != "2" {
		t.Errorf("CSV row of the exception: %q", row)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// `audit export --format jsonl` of a whole log writes its records in the
// log's order, each result where it was written: the export verifies, and
// is the log itself. So does `audit query --format jsonl`.
func TestAuditExportJSONLOfAWholeLogVerifies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sample := filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl")
	logPath, files := rotatedLog(t, dir, 300)
	var whole []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		whole = append(whole, b...)
	}
	want, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		args []string
		want []byte
	}{
		{[]string{"audit", "export", "--format", "jsonl", sample}, want},
		{[]string{"audit", "export", "--format", "jsonl", "--log", logPath}, whole},
		{[]string{"audit", "query", "--format", "jsonl", "--log", logPath}, whole},
	} {
		out := filepath.Join(dir, fmt.Sprintf("export-%d.jsonl", i))
		r := interlock(t, tc.args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d\n%s", tc.args, r.code, r.stderr)
		}
		writeFile(t, out, r.stdout)
		if v := interlock(t, "audit", "verify", out); v.code != 0 || !strings.HasPrefix(v.stdout, "ok:") {
			t.Errorf("%v: the export does not verify: exit %d\n%s%s", tc.args, v.code, v.stdout, v.stderr)
		}
		if r.stdout != string(tc.want) {
			t.Errorf("%v: the export (%d bytes) is not the log (%d bytes)", tc.args, len(r.stdout), len(tc.want))
		}
	}
}

// --user and --source take each value whole, as --node-id does: a name
// with commas in it matches, and several values are given by repeating
// the flag.
func TestAuditQueryValuesWithCommas(t *testing.T) {
	t.Parallel()
	const evil = `=HYPERLINK("http://evil/","x")`
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	name, _ := json.Marshal(evil)
	text := strings.ReplaceAll(string(b), `"user":"alice"`, `"user":`+string(name))
	text = strings.ReplaceAll(text, `"name":"ews-alice"`, `"name":"ews,alice"`)
	if text == string(b) {
		t.Fatal("the sample log has no user alice")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	writeFile(t, path, text)
	alice := len(queryCalls(t, filepath.Join(repoRoot, "examples", "ci", "sample-audit.jsonl"), "--user", "alice", "--event", "call"))
	if alice == 0 {
		t.Fatal("no calls of alice in the sample log")
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--user", evil}, alice},
		{[]string{"--user", "nobody", "--user", evil}, alice}, // repeated: any of them
		{[]string{"--user", "=HYPERLINK(*"}, alice},
		{[]string{"--user", `=HYPERLINK("http://evil/"`}, 0}, // a part of the name is not the name
		{[]string{"--user", "alice"}, 0},
		{[]string{"--source", "ews,alice"}, 12},
		{[]string{"--source", "ews,alice", "--source", "127.0.0.2"}, 13},
		{[]string{"--source", "ews"}, 0},
	} {
		calls := queryCalls(t, append([]string{path, "--event", "call"}, tc.args...)...)
		if len(calls) != tc.want {
			t.Errorf("audit query %q: %d calls, want %d", tc.args, len(calls), tc.want)
		}
	}
	if r := interlock(t, "audit", "query", path, "--user", ""); r.code != 2 || !strings.Contains(r.stderr, "--user: empty user name") {
		t.Errorf("--user '': exit %d, want 2\n%s", r.code, r.stderr)
	}
	if r := interlock(t, "audit", "query", "--help"); !strings.Contains(r.stderr, "repeat for several (commas are part of the name)") {
		t.Errorf("the help does not say how to give several users:\n%s", r.stderr)
	}
}

// notAuditLogs are files that audit commands must refuse as not audit logs,
// by name: text, another JSON file (followed by a real log's lines, b) and
// binary bytes.
func notAuditLogs(b []byte) map[string]string {
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(i*7 + i/13)
	}
	return map[string]string{
		"notes.txt":  "hello world\nthis is text\n",
		"other.json": `{"foo":1,"bar":[1,2]}` + "\n" + string(b),
		"blob.bin":   string(random),
	}
}
