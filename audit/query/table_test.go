package query

import (
	"bytes"
	"strings"
	"testing"
)

// The table of the test log: aligned columns, one row per call with its
// result joined, "-" for nothing.
func TestTableLayout(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	var b bytes.Buffer
	tab := NewTable(&b)
	if _, err := (&Query{}).Run(NewReader(path), tab.Write); err != nil {
		t.Fatal(err)
	}
	if err := tab.Flush(); err != nil {
		t.Fatal(err)
	}
	want := `TIME                      USER   SOURCE     TARGET     FUNCTION                       ADDRESS           DECISION  STATUS       LATENCY  REASONS
2026-11-26T10:00:01.000Z  -      -          -          gateway.start                  -                 -         -            -        -
2026-11-26T10:00:02.000Z  alice  ews-alice  plc1       session.open                   -                 allow     ok           -        session
2026-11-26T10:00:03.000Z  alice  ews-alice  plc1/u1    read_holding_registers         100-101           allow     ok           1.2ms    read
2026-11-26T10:00:05.000Z  alice  ews-alice  plc1/u1    write_single_register          105               deny      denied       0µs      outside_maintenance_window
2026-11-26T10:00:07.000Z  -      10.0.6.9   plc1       session.open                   -                 alert     ok           -        session
2026-11-26T10:00:08.000Z  -      10.0.6.9   plc1/u1    read_coils                     0-7               alert     exception 2  800µs    read
2026-11-26T10:00:09.000Z  alice  ews-alice  plc1/u1    write_multiple_registers       200-209           allow     ok           3.0ms    maintenance_window:CHG-1
2026-11-26T10:00:12.000Z  -      10.0.6.9   plc1/u1    request.rejected               -                 -         rejected     -        quantity_out_of_range; quantity 0 not in 1..125
2026-11-26T10:00:13.000Z  -      -          -          audit.checkpoint               -                 -         -            -        count
2026-11-26T10:00:14.000Z  bob    ews-bob    drives/u3  read_write_multiple_registers  300-301 r400-404  allow     error 11     2.0s     maintenance_window:CHG-2
2026-11-26T10:00:16.000Z  alice  ews-alice  plc1       session.close                  -                 -         closed       14.0s    -
2026-11-26T10:00:17.000Z  alice  ews-alice  plc1/u1    read_input_registers           50                allow     no result    -        read
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Widths come from the first rows; a longer cell later is cut with an
// ellipsis, and control characters never reach the terminal.
func TestTableTruncatesAndCleans(t *testing.T) {
	var b bytes.Buffer
	tab := NewTable(&b)
	short, err := Parse([]byte(testLog[1]))
	if err != nil {
		t.Fatal(err)
	}
	for range widthRows {
		tab.Write(short)
	}
	long, _ := Parse([]byte(line(99, "session.close", kv{"session_id", "s9"}, kv{"listener", "a-very-long-listener-name"},
		alice.source(), alice.principal(), kv{"error", "line one\nline two\x1b[31m red"})))
	tab.Write(long)
	tab.Flush()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != widthRows+2 {
		t.Fatalf("%d lines", len(lines))
	}
	last := lines[len(lines)-1]
	if !strings.Contains(last, "a-ver…  session.clo…") || strings.ContainsAny(last, "\x1b\n") || !strings.Contains(last, "line one line two [31m red") {
		t.Errorf("last row %q", last)
	}
	if len([]rune(last)) > len([]rune(lines[0]))+len("line one line two [31m red") {
		t.Errorf("the row is not aligned: %q", last)
	}
}
