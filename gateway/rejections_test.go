package gateway

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func newTestRejections(limit int, window time.Duration) *rejections {
	r := &rejections{}
	r.init(&Listener{Name: "plc1", Protocol: "modbus", Target: Target{Name: "plc1", UnitID: -1},
		Limits: Limits{RejectedPerSource: limit, RejectedWindow: window}}, nil)
	return r
}

func src(ip string) Source {
	return Source{IP: netip.MustParseAddr(ip), Port: 50123, Name: "ews", Owner: "ops"}
}

func TestRejectionsCapPerSourceAndWindow(t *testing.T) {
	r := newTestRejections(3, time.Minute)
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	a, b := src("10.0.0.1"), src("10.0.0.2")
	var full, began int
	for i := range 10 {
		reason := "bad_length"
		if i%2 == 1 {
			reason = "bad_protocol_id"
		}
		f, bg, ended := r.take(a, reason, t0.Add(time.Duration(i)*time.Second))
		if ended != nil {
			t.Fatalf("rejection %d: a summary within the window: %+v", i, ended)
		}
		if f {
			full++
		}
		if bg {
			began++
			if i != 3 {
				t.Fatalf("counting began at rejection %d, want 3", i)
			}
		}
	}
	if full != 3 || began != 1 {
		t.Fatalf("%d recorded in full, counting began %d times; want 3 and 1", full, began)
	}
	// Another source has its own cap.
	if f, _, _ := r.take(b, "bad_length", t0.Add(10*time.Second)); !f {
		t.Fatal("another source's first rejection was not recorded in full")
	}
	if sums := r.due(t0.Add(59*time.Second), false); len(sums) != 0 {
		t.Fatalf("summaries before the window ended: %+v", sums)
	}

	// The window ends: the next rejection of the source comes after its
	// window's summary, and is recorded in full again.
	f, _, ended := r.take(a, "bad_length", t0.Add(61*time.Second))
	if !f || ended == nil {
		t.Fatalf("first rejection after the window: full %v, summary %+v; want both", f, ended)
	}
	want := RejectedSummary{Listener: "plc1", Protocol: "modbus", Source: Source{IP: a.IP, Name: "ews", Owner: "ops"},
		Target: Target{Name: "plc1", UnitID: -1}, Count: 7, Recorded: 3, Limit: 3, WindowStart: t0, Window: time.Minute,
		First: t0.Add(3 * time.Second), Last: t0.Add(9 * time.Second), Cause: SummaryWindowEnd}
	got := *ended
	if got.Reasons["bad_length"] != 3 || got.Reasons["bad_protocol_id"] != 4 || len(got.Reasons) != 2 {
		t.Fatalf("reasons %v, want bad_length 3, bad_protocol_id 4", got.Reasons)
	}
	got.Reasons = nil
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("summary\n %+v\nwant\n %+v", got, want)
	}

	// At stop: what is counted in an open window is summed up (shutdown),
	// a window with nothing counted leaves nothing, and from then on every
	// rejection is recorded in full.
	for range 4 {
		r.take(a, "stalled_frame", t0.Add(62*time.Second))
	}
	sums := r.due(t0.Add(63*time.Second), true)
	if len(sums) != 1 || sums[0].Count != 2 || sums[0].Recorded != 3 || sums[0].Cause != SummaryShutdown ||
		sums[0].Reasons["stalled_frame"] != 2 || sums[0].WindowStart != t0.Add(61*time.Second) {
		t.Fatalf("summaries at stop: %+v, want one of 2 stalled_frame (shutdown)", sums)
	}
	for range 10 {
		if f, _, _ := r.take(a, "bad_length", t0.Add(64*time.Second)); !f {
			t.Fatal("a rejection after the stop was counted, not recorded")
		}
	}
}

func TestRejectionsWindowEndWithoutMore(t *testing.T) {
	r := newTestRejections(1, 10*time.Second)
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	a := src("10.0.0.1")
	for i := range 5 {
		r.take(a, "bad_length", t0.Add(time.Duration(i)*time.Second))
	}
	r.take(src("10.0.0.2"), "bad_length", t0) // in full: no summary
	sums := r.due(t0.Add(10*time.Second), false)
	if len(sums) != 1 || sums[0].Count != 4 || sums[0].Cause != SummaryWindowEnd {
		t.Fatalf("summaries at the window's end: %+v, want one of 4", sums)
	}
	if len(r.by) != 0 {
		t.Fatalf("%d sources still held after their windows ended", len(r.by))
	}
	if sums := r.due(t0.Add(20*time.Second), true); len(sums) != 0 {
		t.Fatalf("summaries at stop after the window's: %+v", sums)
	}
}

// Summaries stay small whatever a source sends: reasons beyond
// maxSummaryReasons are counted as other, sources beyond maxRejectionKeys
// share one count; every rejection is still counted.
func TestRejectionsBounded(t *testing.T) {
	r := newTestRejections(1, time.Minute)
	t0 := time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)
	a := src("10.0.0.1")
	const reasons = maxSummaryReasons + 8
	r.take(a, "first", t0)
	for i := range reasons {
		r.take(a, fmt.Sprintf("reason_%d", i), t0)
	}
	base := netip.MustParseAddr("10.1.0.0")
	ip := base
	for range maxRejectionKeys + 10 {
		ip = ip.Next()
		r.take(Source{IP: ip}, "bad_length", t0)
		r.take(Source{IP: ip}, "bad_length", t0)
	}
	if len(r.by) > maxRejectionKeys+1 {
		t.Fatalf("%d sources held, want at most %d", len(r.by), maxRejectionKeys+1)
	}
	total := 0
	for _, s := range r.due(t0, true) {
		n := 0
		for _, c := range s.Reasons {
			n += c
		}
		if n != s.Count {
			t.Fatalf("summary of %v: reasons %v add up to %d, count %d", s.Source.IP, s.Reasons, n, s.Count)
		}
		if len(s.Reasons) > maxSummaryReasons+1 {
			t.Fatalf("summary of %v counts %d reasons apart", s.Source.IP, len(s.Reasons))
		}
		if s.Source.IP == a.IP && s.Reasons[ReasonOther] != reasons-maxSummaryReasons {
			t.Fatalf("other: %d, want %d", s.Reasons[ReasonOther], reasons-maxSummaryReasons)
		}
		total += s.Count + s.Recorded
	}
	// Each source recorded one in full (the shared count: one for all).
	if want := 1 + reasons + 2*(maxRejectionKeys+10); total != want {
		t.Fatalf("full records and counts add up to %d, want %d", total, want)
	}
}
