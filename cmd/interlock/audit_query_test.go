package main

import (
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/query"
)

// The summary after a query or export counts in words, singular and plural:
// "1 record", "2 records", never "record(s)".
func TestQueryStatsLineCountsInWords(t *testing.T) {
	one := query.Stats{Records: 1, Files: 1, Bytes: 300, Elapsed: time.Second, Matched: 2, Items: 2, Calls: 1,
		PassedOver: 1, SkippedLines: 2, BadLines: 1, Unjoined: 1}
	two := query.Stats{Records: 2, Files: 2, Bytes: 600, Elapsed: time.Second, Matched: 6, Items: 4, Calls: 2,
		PassedOver: 2, SkippedLines: 4, BadLines: 2, Unjoined: 2}
	for _, tc := range []struct {
		st   query.Stats
		want string
	}{
		{one, "1 record read from 1 file (0.0 MB) in 1s (1 records/s); 2 matched: 1 call with its result, 1 other record; " +
			"1 record well outside --from/--to passed over; 1 line that is not an audit record left out; 1 last line cut short skipped; " +
			"1 call without a result record"},
		{two, "2 records read from 2 files (0.0 MB) in 1s (2 records/s); 6 matched: 2 calls with their results, 2 other records; " +
			"2 records well outside --from/--to passed over; 2 lines that are not audit records left out; 2 last lines cut short skipped; " +
			"2 calls without a result record"},
	} {
		if got := queryStatsLine(tc.st, "matched"); got != tc.want {
			t.Errorf("stats %+v:\n got %s\nwant %s", tc.st, got, tc.want)
		}
	}
}

// A query over lines that are not records fails naming how many, in words.
func TestBadLinesErrCountsInWords(t *testing.T) {
	const verify = "; run 'interlock audit verify' on the same files to see whether the log was changed"
	for n, want := range map[int]string{
		1: "audit query: 1 line is not an audit record (FILE:LINE above) and is left out of the output" + verify,
		2: "audit query: 2 lines are not audit records (FILE:LINE above) and are left out of the output" + verify,
	} {
		err := badLinesErr("audit query", query.Stats{BadLines: n, SkippedLines: n})
		if err == nil || err.Error() != want {
			t.Errorf("%d bad lines: %v\nwant %s", n, err, want)
		}
	}
	if err := badLinesErr("audit query", query.Stats{SkippedLines: 1}); err != nil {
		t.Errorf("a last line cut short only: %v, want no error", err)
	}
}
