package query

import (
	"slices"
	"testing"
)

// A request.rejected_suppressed record's count and reasons decode in the
// record's order, and its first and last times as written, interned or not; under Strict a count that is not an
// integer fails the record, leniently it is skipped.
func TestDecodeRejectedSummary(t *testing.T) {
	const line = `{"seq":72,"time":"2026-11-26T05:02:01.000000000Z","event":"request.rejected_suppressed","gateway":"gw","listener":"plc1","source":{"ip":"10.0.6.9"},"count":495,"reasons":{"bad_protocol_id":195,"quantity_out_of_range":300},"first_time":"2026-11-26T05:01:02.000000000Z","last_time":"2026-11-26T05:01:59.000000000Z","cause":"window_end","prev":"h71","hash":"h72"}`
	want := []ReasonCount{{"bad_protocol_id", 195}, {"quantity_out_of_range", 300}}
	for _, dc := range []*Decoder{{}, {Strict: true, Intern: true}} {
		var r Record
		if err := dc.Decode(line, &r); err != nil {
			t.Fatal(err)
		}
		if r.Event != EventRequestRejectedSuppressed || r.Count != 495 || !slices.Equal(r.ReasonCounts, want) || r.Source.IP != "10.0.6.9" {
			t.Errorf("strict %v: %s count %d reasons %v source %q", dc.Strict, r.Event, r.Count, r.ReasonCounts, r.Source.IP)
		}
		if r.FirstTime != "2026-11-26T05:01:02.000000000Z" || r.LastTime != "2026-11-26T05:01:59.000000000Z" ||
			r.FirstWhen().UnixMilli() != 1795669262000 || r.LastWhen().UnixMilli() != 1795669319000 {
			t.Errorf("strict %v: first %q (%v), last %q (%v)", dc.Strict, r.FirstTime, r.FirstWhen(), r.LastTime, r.LastWhen())
		}
	}
	const bad = `{"seq":1,"event":"request.rejected_suppressed","count":2,"reasons":{"a":1,"b":"x","c":1}}`
	var r Record
	if err := (&Decoder{Strict: true}).Decode(bad, &r); err == nil {
		t.Error("strict: a count that is a string was read")
	}
	r = Record{}
	if err := (&Decoder{}).Decode(bad, &r); err != nil || !slices.Equal(r.ReasonCounts, []ReasonCount{{"a", 1}, {"c", 1}}) {
		t.Errorf("lenient: %v, %v", r.ReasonCounts, err)
	}
}
