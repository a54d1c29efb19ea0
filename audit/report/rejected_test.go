package report

import (
	"strings"
	"testing"
	"time"
)

// The rejections a request.rejected_suppressed record counts are malformed
// requests like those recorded one by one: in the total, by reason, by
// source and listener, with one row for the record.
func TestReportCountsSuppressedRejections(t *testing.T) {
	l := newLog(t)
	t0 := ts("2026-11-26T00:00:00Z")
	for i, reason := range []string{"bad_length", "bad_protocol_id"} {
		l.add(t0.Add(time.Duration(i)*time.Second), "request.rejected", field{"listener", "plc0"},
			field{"source", map[string]any{"ip": "10.1.0.9", "port": 50000 + i}}, field{"reason", reason})
	}
	l.add(t0.Add(time.Minute), "request.rejected_suppressed", field{"listener", "plc0"}, field{"protocol", "modbus"},
		field{"source", map[string]any{"ip": "10.1.0.9", "name": "ews-9"}}, field{"target", map[string]any{"name": "plc0"}},
		field{"count", 5}, field{"reasons", map[string]int{"bad_length": 3, "quantity_out_of_range": 2}},
		field{"first_time", "2026-11-26T00:00:02.000000000Z"}, field{"last_time", "2026-11-26T00:00:09.000000000Z"},
		field{"recorded", 2}, field{"limit", 2}, field{"window_start", "2026-11-26T00:00:00.000000000Z"},
		field{"window_ms", 60000}, field{"cause", "window_end"})
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}})
	a := rep.agg
	if a.rejected != 7 || a.rejectedCounted != 5 {
		t.Errorf("rejected %d (counted %d), want 7 (5)", a.rejected, a.rejectedCounted)
	}
	for reason, want := range map[string]int64{"bad_length": 4, "bad_protocol_id": 1, "quantity_out_of_range": 2} {
		if got := a.rejectReasons.m[reason]; got != want {
			t.Errorf("reason %s: %d, want %d", reason, got, want)
		}
	}
	if got := a.rejectSources.m["10.1.0.9"]; got != 7 {
		t.Errorf("source 10.1.0.9: %d rejections, want 7", got)
	}
	if l := a.listener("plc0"); l == nil || l.Rejected != 7 {
		t.Errorf("listener plc0: %+v, want 7 rejected", l)
	}
	if a.rejectRows.Total != 3 {
		t.Errorf("%d rows, want 3 (two records, one summary)", a.rejectRows.Total)
	}
	if n := a.others.m["request.rejected_suppressed"]; n != nil {
		t.Errorf("the summary is also among the events not interpreted: %+v", n)
	}
	for _, s := range []string{
		`data-k="rejected"><div class="v" data-v="7">7<`,
		`<span data-k="rejected-counted">5</span>`,
		`bad_length ×3, quantity_out_of_range ×2`,
	} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
}
