package query

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustSource(t *testing.T, v string) SourceMatch {
	t.Helper()
	m, err := ParseSource(v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustSpan(t *testing.T, v string) Span {
	t.Helper()
	s, err := ParseSpan(v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Each kind of filter, values of one kind OR-ed, kinds AND-ed, over the
// test log; the expected items are counted by hand from testLog's comments.
func TestFilters(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	all := []string{"gateway.start", "open-s1", "c1", "c2", "open-s2", "c3", "c4", "rejected", "checkpoint", "c5", "close-s1", "c6"}
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"none", Filter{}, all},
		{"user", Filter{Users: []string{"alice"}}, []string{"open-s1", "c1", "c2", "c4", "close-s1", "c6"}},
		{"users OR", Filter{Users: []string{"alice", "bob"}}, []string{"open-s1", "c1", "c2", "c4", "c5", "close-s1", "c6"}},
		{"user glob", Filter{Users: []string{"b*"}}, []string{"c5"}},
		{"user AND function glob", Filter{Users: []string{"alice"}, Functions: []string{"write_*"}}, []string{"c2", "c4"}},
		{"function code", Filter{Functions: []string{"16"}}, []string{"c4"}},
		{"function name or code", Filter{Functions: []string{"read_coils", "23"}}, []string{"c3", "c5"}},
		{"source CIDR", Filter{Sources: []SourceMatch{mustSource(t, "10.0.6.0/24")}}, []string{"open-s2", "c3", "rejected"}},
		{"source name", Filter{Sources: []SourceMatch{mustSource(t, "ews-bob")}}, []string{"c5"}},
		{"source IP", Filter{Sources: []SourceMatch{mustSource(t, "10.0.5.7")}}, []string{"open-s1", "c1", "c2", "c4", "close-s1", "c6"}},
		{"sources OR", Filter{Sources: []SourceMatch{mustSource(t, "ews-bob"), mustSource(t, "10.0.6.9")}}, []string{"open-s2", "c3", "rejected", "c5"}},
		{"source IPv6 CIDR matches no IPv4", Filter{Sources: []SourceMatch{mustSource(t, "::/0")}}, nil},
		{"target", Filter{Targets: []string{"drives"}}, []string{"c5"}},
		{"target falls back to the listener", Filter{Targets: []string{"plc1"}, Events: []string{"session.close"}}, []string{"close-s1"}},
		{"protocol", Filter{Protocols: []string{"modbus"}}, []string{"open-s1", "c1", "c2", "open-s2", "c3", "c4", "rejected", "c5", "c6"}},
		{"access", Filter{Accesses: []string{"write"}}, []string{"c2", "c4", "c5"}},
		{"decision deny", Filter{Decisions: []string{"deny"}}, []string{"c2"}},
		{"decision alert", Filter{Decisions: []string{"alert"}}, []string{"c2", "open-s2", "c3"}},
		{"decision allow", Filter{Decisions: []string{"allow"}}, []string{"open-s1", "c1", "c4", "c5", "c6"}},
		{"status ok", Filter{Statuses: []string{"ok"}}, []string{"c1", "c4"}},
		{"status OR", Filter{Statuses: []string{"exception", "error"}}, []string{"c3", "c5"}},
		{"status denied", Filter{Statuses: []string{"denied"}}, []string{"c2"}},
		{"status AND user", Filter{Statuses: []string{"ok"}, Users: []string{"alice"}, Accesses: []string{"write"}}, []string{"c4"}},
		{"address inside a span", Filter{Addresses: []Span{mustSpan(t, "101")}}, []string{"c1"}},
		{"address at a span's end", Filter{Addresses: []Span{mustSpan(t, "209")}}, []string{"c4"}},
		{"address past a span", Filter{Addresses: []Span{mustSpan(t, "210")}}, nil},
		{"address range overlaps", Filter{Addresses: []Span{mustSpan(t, "102-105")}}, []string{"c2"}},
		{"address range covers", Filter{Addresses: []Span{mustSpan(t, "0-1000")}}, []string{"c1", "c2", "c3", "c4", "c5", "c6"}},
		{"address of the read half", Filter{Addresses: []Span{mustSpan(t, "404")}}, []string{"c5"}},
		{"addresses OR", Filter{Addresses: []Span{mustSpan(t, "7"), mustSpan(t, "50")}}, []string{"c3", "c6"}},
		{"event glob", Filter{Events: []string{"session.*"}}, []string{"open-s1", "open-s2", "close-s1"}},
		{"event call", Filter{Events: []string{"call"}}, []string{"c1", "c2", "c3", "c4", "c5", "c6"}},
		{"event result is the call unit", Filter{Events: []string{"result"}}, []string{"c1", "c2", "c3", "c4", "c5", "c6"}},
		{"unknown event", Filter{Events: []string{"audit.checkpoint"}}, []string{"checkpoint"}},
		{"call id", Filter{CallIDs: []string{"c3", "r1"}}, []string{"c3", "rejected"}},
		{"time range", Filter{From: base.Add(5 * time.Second), To: base.Add(9 * time.Second)}, []string{"c2", "open-s2", "c3"}},
		{"time from only", Filter{From: base.Add(16 * time.Second)}, []string{"close-s1", "c6"}},
		{"time to only", Filter{To: base.Add(2*time.Second + time.Nanosecond)}, []string{"gateway.start", "open-s1"}},
		{"time and source", Filter{From: base.Add(8 * time.Second), Sources: []SourceMatch{mustSource(t, "10.0.0.0/8")}}, []string{"c3", "c4", "rejected", "c5", "close-s1", "c6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, st := run(t, Query{Filter: tc.f}, path)
			if got := names(recs); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if st.Records != len(testLog) || st.Items != len(recs) {
				t.Errorf("stats %+v: want %d records read and %d items", st, len(testLog), len(recs))
			}
		})
	}
}

// A call's result record is joined to it, in log order even when results
// come out of order; a call without a result has none.
func TestResultJoining(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	recs, st := run(t, Query{Filter: Filter{Events: []string{"call"}}}, path)
	want := map[string]struct {
		status  string
		code    int
		latency int64
		seq     uint64
	}{
		"c1": {"ok", 0, 1200, 4}, "c2": {"denied", 0, 0, 6}, "c3": {"exception", 2, 800, 10},
		"c4": {"ok", 0, 3000, 11}, "c5": {"error", 11, 2000000, 15},
	}
	for _, r := range recs {
		w, ok := want[r.CallID]
		if !ok {
			if r.Result != nil {
				t.Errorf("%s: joined to %s, want no result", r.CallID, r.Result.Line)
			}
			continue
		}
		if r.Result == nil {
			t.Errorf("%s: no result joined", r.CallID)
			continue
		}
		res := r.Result
		if res.Status != w.status || res.Code != w.code || res.LatencyUS != w.latency || res.Seq != w.seq || res.CallID != r.CallID {
			t.Errorf("%s: result %+v, want %+v", r.CallID, res, w)
		}
	}
	if st.Matched != 11 || st.Calls != 6 || st.Unjoined != 1 {
		t.Errorf("stats %+v: want 11 records matched (6 calls, 5 results) and 1 call unjoined", st)
	}
}

// jsonl output of the query writes a call's record and then its result's.
func TestMatchedRecordsAreTheRawLines(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	recs, _ := run(t, Query{Filter: Filter{CallIDs: []string{"c3"}}}, path)
	if len(recs) != 1 || recs[0].Line != testLog[7] || recs[0].Result == nil || recs[0].Result.Line != testLog[9] {
		t.Fatalf("c3: got %v", recs)
	}
	if recs[0].File != path || recs[0].LineNo != 8 || recs[0].Result.LineNo != 10 {
		t.Errorf("c3 at %s:%d, result at line %d; want %s:8 and line 10", recs[0].File, recs[0].LineNo, recs[0].Result.LineNo, path)
	}
}

// A result past the window is not waited for: the call goes out without it
// and the late result is a record of its own.
func TestJoinWindowBoundsTheWait(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	recs, st := run(t, Query{Window: 1, Filter: Filter{Events: []string{"call", "result"}}}, path)
	var got []string
	for _, r := range recs {
		s := r.Event + ":" + r.CallID
		if r.Result != nil {
			s += "+result"
		}
		got = append(got, s)
	}
	// The results of c3 and c4 come two records after their calls: past a
	// window of one.
	want := []string{"call:c1+result", "call:c2+result", "call:c3", "call:c4", "result:c3", "result:c4", "call:c5+result", "call:c6"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if st.Unjoined != 3 {
		t.Errorf("unjoined %d, want 3 (c3, c4, c6)", st.Unjoined)
	}
	// With a status filter, a call whose result was not seen does not match.
	recs, _ = run(t, Query{Window: 1, Filter: Filter{Statuses: []string{"exception"}}}, path)
	if got := names(recs); !slices.Equal(got, []string{"result"}) {
		t.Errorf("status exception with a window of 1: got %v, want the lone result", got)
	}
	recs, _ = run(t, Query{Window: 2, Filter: Filter{Statuses: []string{"exception"}}}, path)
	if got := names(recs); !slices.Equal(got, []string{"c3"}) {
		t.Errorf("status exception with a window of 2: got %v, want c3", got)
	}
}

// A result whose call is in a file not given is a record of its own.
func TestOrphanResult(t *testing.T) {
	dir := t.TempDir()
	path := writeLog(t, dir, "audit.jsonl", testLog[9:12])
	recs, _ := run(t, Query{}, path)
	if got := names(recs); !slices.Equal(got, []string{"result", "result", "rejected"}) {
		t.Fatalf("got %v", got)
	}
	recs, _ = run(t, Query{Filter: Filter{Statuses: []string{"exception"}, Functions: []string{"read_coils"}}}, path)
	if len(recs) != 1 || recs[0].CallID != "c3" {
		t.Errorf("status and function of a lone result: got %v", names(recs))
	}
	recs, _ = run(t, Query{Filter: Filter{Users: []string{"alice"}}}, path)
	if len(recs) != 0 {
		t.Errorf("a lone result has no user, yet --user matched %v", names(recs))
	}
}

// A log in several files reads as one, in the order given, joining a call
// in one file to its result in the next.
func TestManyFilesInOrder(t *testing.T) {
	dir := t.TempDir()
	f1 := writeLog(t, dir, "audit-1.jsonl", testLog[:8]) // ends with call c3
	f2 := writeLog(t, dir, "audit-2.jsonl", testLog[8:13])
	f3 := writeLog(t, dir, "audit.jsonl", testLog[13:])
	one := writeLog(t, dir, "whole.jsonl", testLog)
	want, _ := run(t, Query{}, one)
	got, st := run(t, Query{}, f1, f2, f3)
	if !slices.Equal(names(got), names(want)) {
		t.Fatalf("three files: %v\none file:    %v", names(got), names(want))
	}
	for i := range got {
		if (got[i].Result == nil) != (want[i].Result == nil) {
			t.Errorf("%s: joined %v in three files, %v in one", names(got)[i], got[i].Result != nil, want[i].Result != nil)
		}
	}
	if got[5].CallID != "c3" || got[5].Result == nil || got[5].File != f1 || got[5].Result.File != f2 {
		t.Errorf("c3 in %s joined to a result in %v", got[5].File, got[5].Result)
	}
	if st.Files != 3 || st.Records != len(testLog) {
		t.Errorf("stats %+v", st)
	}
	// The order given is the order read.
	rev, _ := run(t, Query{Filter: Filter{Events: []string{"gateway.start", "audit.checkpoint"}}}, f3, f2, f1)
	if got := names(rev); !slices.Equal(got, []string{"checkpoint", "gateway.start"}) {
		t.Errorf("files in reverse: %v", got)
	}
}

// A last line without a newline (a crash) is skipped with a note; so is a
// line that is not a record. Everything else is read.
func TestPartialAndBadLinesSkipped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	cut := testLog[16][:len(testLog[16])/2]
	text := strings.Join(testLog[:5], "\n") + "\nthis is not JSON\n\n" + strings.Join(testLog[5:16], "\n") + "\n" + cut
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	r := NewReader(path)
	r.Warn = &warn
	var n int
	st, err := (&Query{}).Run(r, func(*Record) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 16 || st.SkippedLines != 2 {
		t.Errorf("stats %+v: want 16 records read, 2 lines skipped", st)
	}
	lines := strings.Split(strings.TrimSpace(warn.String()), "\n")
	if len(lines) != 2 ||
		!strings.HasPrefix(lines[0], path+":6: not an audit record") ||
		!strings.Contains(lines[1], path+": the last line (line 19, ") || !strings.Contains(lines[1], "no end") {
		t.Errorf("notes:\n%s", warn.String())
	}
}

func TestLongLinesAndCRLF(t *testing.T) {
	long := line(1, "policy.load", kv{"files", strings.Repeat("x", 3*readBuffer)})
	path := writeLog(t, t.TempDir(), "audit.jsonl", []string{long, testLog[1] + "\r"})
	recs, st := run(t, Query{}, path)
	if len(recs) != 2 || recs[0].Line != long || recs[1].Event != "session.open" || st.SkippedLines != 0 {
		t.Fatalf("got %d records, %d skipped", len(recs), st.SkippedLines)
	}
}

func TestGzipAndStdin(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(strings.Join(testLog[:4], "\n") + "\n"))
	zw.Close()
	gz := filepath.Join(dir, "audit-old.jsonl.gz")
	if err := os.WriteFile(gz, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r := NewReader(gz, "-")
	r.Stdin = strings.NewReader(strings.Join(testLog[4:], "\n") + "\n")
	var got []*Record
	st, err := (&Query{}).Run(r, func(rec *Record) error { got = append(got, rec.Clone()); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != len(testLog) || len(got) != 12 {
		t.Errorf("read %d records, %d matches; want %d and 12", st.Records, len(got), len(testLog))
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	_, err := (&Query{}).Run(NewReader(filepath.Join(t.TempDir(), "nope.jsonl")), func(*Record) error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not exist", err)
	}
}

func TestLimit(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	recs, st := run(t, Query{Limit: 3, Filter: Filter{Users: []string{"alice"}}}, path)
	if got := names(recs); !slices.Equal(got, []string{"open-s1", "c1", "c2"}) {
		t.Errorf("got %v", got)
	}
	if recs[2].Result == nil {
		t.Error("the last match before the limit lost its result")
	}
	if st.Items != 3 {
		t.Errorf("items %d", st.Items)
	}
}

func TestEmitErrorStops(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	boom := errors.New("boom")
	n := 0
	_, err := (&Query{}).Run(NewReader(path), func(*Record) error { n++; return boom })
	if !errors.Is(err, boom) || n != 1 {
		t.Errorf("err %v after %d emits", err, n)
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-11-26T02:00:00Z":           time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC),
		"2026-11-26T03:00:00.5+01:00":    time.Date(2026, 11, 26, 2, 0, 0, 5e8, time.UTC),
		"2026-11-26":                     time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC),
		"2026-11-26T02:30":               time.Date(2026, 11, 26, 2, 30, 0, 0, time.UTC),
		"now":                            now,
		"-2h":                            now.Add(-2 * time.Hour),
		"-90m":                           now.Add(-90 * time.Minute),
		"-7d":                            now.Add(-7 * 24 * time.Hour),
		"-1d12h":                         now.Add(-36 * time.Hour),
		"-1w":                            now.Add(-7 * 24 * time.Hour),
		"+1h":                            now.Add(time.Hour),
		"2026-11-26T02:00:00.123456789Z": time.Date(2026, 11, 26, 2, 0, 0, 123456789, time.UTC),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "-2x", "-d", "26.11.2026"} {
		if _, err := ParseTime(in, now); err == nil {
			t.Errorf("ParseTime(%q): no error", in)
		}
	}
}

func TestParseSpanAndSource(t *testing.T) {
	for in, want := range map[string]Span{"0": {0, 0}, "100-199": {100, 199}, "65535": {65535, 65535}, " 5 - 6": {5, 6}} {
		if got, err := ParseSpan(in); err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "x", "10-5", "65536", "-1", "1-70000"} {
		if _, err := ParseSpan(in); err == nil {
			t.Errorf("ParseSpan(%q): no error", in)
		}
	}
	if m := mustSource(t, "10.0.5.7"); m.Name != "" || m.Prefix.Bits() != 32 {
		t.Errorf("address: %+v", m)
	}
	if m := mustSource(t, "10.0.5.9/24"); m.Prefix.String() != "10.0.5.0/24" {
		t.Errorf("CIDR: %+v", m)
	}
	if m := mustSource(t, "ews-alice"); m.Name != "ews-alice" {
		t.Errorf("name: %+v", m)
	}
	if _, err := ParseSource("10.0.0.0/33"); err == nil {
		t.Error("bad CIDR accepted")
	}
}

// A time that is not in the writer's fixed layout is parsed, not compared
// as text.
func TestTimeFilterParsesOtherLayouts(t *testing.T) {
	f := Filter{From: base, To: base.Add(time.Hour)}
	f.prepare()
	for s, want := range map[string]bool{
		"2026-11-26T10:30:00Z":                true,
		"2026-11-26T11:30:00+01:00":           true, // 10:30 UTC
		"2026-11-26T10:00:00.000000000Z":      true,
		"2026-11-26T11:00:00.000000000Z":      false, // To is exclusive
		"2026-11-26T09:59:59.999999999Z":      false,
		"2026-11-26T10:59:59.999999999+00:00": true,
		"garbage":                             false,
		"":                                    false,
	} {
		if got := f.matchTime(s); got != want {
			t.Errorf("matchTime(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"write_*", "write_single_register", true},
		{"write_*", "read_coils", false},
		{"*register*", "write_single_register", true},
		{"*_coils", "read_coils", true},
		{"session.*", "session.open", true},
		{"ns=1;s=/Plant/*/Setpoint", "ns=1;s=/Plant/Line1/Setpoint", true},
		{"a*b*c", "abbc", true},
		{"a*b*c", "acb", false},
		{"*", "", true},
		{"exact", "exact", true},
		{"ab*ab", "ab", false},
	} {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

// Records more than timeSlack outside the time range are passed over
// without being decoded, but for gateway.start; the matches are those of
// a scan that decodes every record.
func TestTimeRangePassesOverRecordsOutsideIt(t *testing.T) {
	dir := t.TempDir()
	day := func(lines []string, date, hour string) []string {
		var out []string
		for _, l := range lines {
			out = append(out, strings.Replace(l, `"2026-11-26T10:`, `"`+date+"T"+hour+":", -1))
		}
		return out
	}
	files := []string{
		writeLog(t, dir, "audit-1.jsonl", day(testLog[:4], "2026-11-23", "10")),
		writeLog(t, dir, "audit-2.jsonl", day(testLog[4:7], "2026-11-24", "10")),
		writeLog(t, dir, "audit-3.jsonl", day(testLog[7:13], "2026-11-26", "10")),
		writeLog(t, dir, "audit.jsonl", day(testLog[13:], "2026-11-26", "12")),
	}
	for _, tc := range []struct {
		name         string
		f            Filter
		want         []string
		read, passed int
	}{
		{"from", Filter{From: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)},
			[]string{"c3", "c4", "rejected", "checkpoint", "c5", "close-s1", "c6"}, 11, 6}, // gateway.start and the last two files
		{"to", Filter{To: time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)},
			[]string{"gateway.start", "open-s1", "c1", "c2", "open-s2", "c3", "c4", "rejected", "checkpoint"}, 13, 4}, // all but the last file
		{"from and to", Filter{From: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)},
			[]string{"c3", "c4", "rejected", "checkpoint"}, 7, 10}, // gateway.start and the third file
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, st := run(t, Query{Filter: tc.f}, files...)
			if !slices.Equal(names(got), tc.want) {
				t.Errorf("got  %v\nwant %v", names(got), tc.want)
			}
			// Every record is decoded or passed over.
			var all []*Record
			r := NewReader(files...)
			for {
				var rec Record
				if r.Read(&rec) != nil {
					break
				}
				all = append(all, &rec)
			}
			for _, g := range got {
				if g.Event == EventCall && g.Result == nil && g.CallID != "c6" {
					t.Errorf("%s: its result was not joined", g.CallID)
				}
			}
			if st.Records != tc.read || st.PassedOver != tc.passed || len(all) != tc.read+tc.passed {
				t.Errorf("decoded %d records, passed over %d; want %d and %d of %d", st.Records, st.PassedOver, tc.read, tc.passed, len(all))
			}
		})
	}
}

// A call whose result a crash took is not waited for past the gateway's
// restart.
func TestRestartEndsTheWait(t *testing.T) {
	lines := []string{
		testLog[2], // c1, its result lost
		line(20, "gateway.start", kv{"version", "1.2.3"}),
		line(21, "gateway.start", kv{"version", "other"}), // another gateway's log merged in
		testLog[3], // c1's result, in a log where it cannot be: a lone result now
	}
	lines[2] = strings.Replace(lines[2], `"gateway":"gw1"`, `"gateway":"gw2"`, 1)
	path := writeLog(t, t.TempDir(), "audit.jsonl", lines)
	var order []string
	r := NewReader(path)
	st, err := (&Query{}).Run(r, func(rec *Record) error {
		order = append(order, fmt.Sprintf("%s@%d", names([]*Record{rec})[0], r.Records()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// c1 goes out as soon as its gateway's restart is read, not at the end.
	if want := []string{"c1@2", "gateway.start@2", "gateway.start@3", "result@4"}; !slices.Equal(order, want) {
		t.Errorf("got %v, want %v", order, want)
	}
	if st.Unjoined != 1 {
		t.Errorf("unjoined %d", st.Unjoined)
	}
}

// OPC UA calls: --node matches the node of a read or write and the method
// of a Call, and the table's address column names them.
func TestNodeFilterOPCUA(t *testing.T) {
	tgt := kv{"target", obj{{"name", "line1"}, {"upstream", "opc.tcp://10.0.0.20:4840"}}}
	path := writeLog(t, t.TempDir(), "audit.jsonl", []string{
		callLine(1, "w1", "s1", alice, tgt,
			obj{{"function", "write"}, {"access", "write"}, {"node_id", "ns=1;s=Setpoint"}, {"value", 42.5}},
			decision(true, false)),
		callLine(2, "m1", "s1", alice, tgt,
			obj{{"function", "call"}, {"access", "execute"}, {"object_id", "ns=1;s=PLC"}, {"method_id", "ns=1;s=Start"}},
			decision(false, false, "limit")),
		callLine(3, "r1", "s1", alice, tgt,
			obj{{"function", "read"}, {"access", "read"}, {"node_id", "ns=1;s=Temperature"}},
			decision(true, false)),
	})
	for _, tc := range []struct {
		nodes []string
		want  []string
	}{
		{[]string{"ns=1;s=Setpoint"}, []string{"w1"}},
		{[]string{"ns=1;s=Start"}, []string{"m1"}},
		{[]string{"ns=1;s=S*"}, []string{"w1", "m1"}},
		{[]string{"ns=1;s=PLC"}, nil},
	} {
		recs, _ := run(t, Query{Filter: Filter{NodeIDs: tc.nodes}}, path)
		if got := names(recs); !slices.Equal(got, tc.want) {
			t.Errorf("node %v: got %v, want %v", tc.nodes, got, tc.want)
		}
	}
	recs, _ := run(t, Query{Filter: Filter{CallIDs: []string{"m1"}}}, path)
	if len(recs) != 1 || recs[0].Operation.Target() != "ns=1;s=Start" || recs[0].Operation.Registers() != "" {
		t.Errorf("the address column of a Call: %+v", recs)
	}
}

// LogOrder emits a call's result where the log has it, after the records
// written in between, so the records come out in the log's order; a call
// and its result still match and count as one, and a limit never cuts a
// call from its result.
func TestLogOrder(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	for _, tc := range []struct {
		name  string
		q     Query
		seqs  []uint64
		items int
	}{
		{"everything", Query{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, 12},
		{"a user", Query{Filter: Filter{Users: []string{"alice"}}}, []uint64{2, 3, 4, 5, 6, 9, 11, 16, 17}, 6},
		{"a status", Query{Filter: Filter{Statuses: []string{"ok", "exception"}}}, []uint64{3, 4, 8, 9, 10, 11}, 3},
		// The sixth match is c3: its result (10) comes after c4's call (9),
		// which is past the limit.
		{"a limit", Query{Limit: 6}, []uint64{1, 2, 3, 4, 5, 6, 7, 8, 10}, 6},
		{"calls and a limit", Query{Filter: Filter{Events: []string{"call"}}, Limit: 3}, []uint64{3, 4, 5, 6, 8, 10}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			joined, jst := run(t, tc.q, path)
			q := tc.q
			q.LogOrder = true
			recs, st := run(t, q, path)
			var seqs []uint64
			for _, r := range recs {
				if r.Result != nil {
					t.Errorf("call %s: its result joined to it", r.CallID)
				}
				seqs = append(seqs, r.Seq)
			}
			if !slices.Equal(seqs, tc.seqs) {
				t.Errorf("seqs %v\nwant %v", seqs, tc.seqs)
			}
			if st.Items != tc.items || st.Items != jst.Items || st.Matched != jst.Matched || st.Matched != len(tc.seqs) || st.Calls != jst.Calls {
				t.Errorf("stats %+v; joined %+v; want %d items", st, jst, tc.items)
			}
			if len(joined) != tc.items {
				t.Errorf("joined: %d matches, want %d", len(joined), tc.items)
			}
		})
	}
}
