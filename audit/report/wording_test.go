package report

import (
	"encoding/json"
	"testing"
	"time"
)

// Every width a timeline can take reads as words after "per".
func TestPerWidthNamesEveryBucketWidth(t *testing.T) {
	want := map[time.Duration]string{
		10 * time.Millisecond: "10 ms", 100 * time.Millisecond: "100 ms", time.Second: "second", 10 * time.Second: "10 seconds",
		time.Minute: "minute", 5 * time.Minute: "5 minutes", 15 * time.Minute: "15 minutes", time.Hour: "hour",
		6 * time.Hour: "6 hours", 24 * time.Hour: "day", 7 * 24 * time.Hour: "week", 28 * 24 * time.Hour: "4 weeks",
		364 * 24 * time.Hour: "52 weeks",
	}
	for _, w := range bucketWidths {
		got, ok := want[w]
		if !ok {
			t.Errorf("bucket width %v has no expected name here", w)
			continue
		}
		if perWidth(w) != got {
			t.Errorf("perWidth(%v) = %q, want %q", w, perWidth(w), got)
		}
	}
	if got := perWidth(36 * time.Hour); got != "36 hours" {
		t.Errorf("perWidth(36h) = %q", got)
	}
}

func TestCountsInWords(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{plural(0, "call"), "0 calls"}, {plural(1, "call"), "1 call"}, {plural(1234, "call"), "1,234 calls"},
		{plural(1, "entry", "entries"), "1 entry"}, {plural(2, "entry", "entries"), "2 entries"},
		{were(0), "were"}, {were(1), "was"}, {were(2), "were"},
		{times(1), "once"}, {times(2), "twice"}, {times(3), "3 times"}, {times(0), "0 times"},
		{humanDuration(300 * time.Microsecond), "under 1 ms"}, {humanDuration(0), "0 s"}, {humanDuration(21 * time.Millisecond), "21 ms"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// An operation field that says nothing is not shown; one that says
// something, even zero, false or an empty list, is.
func TestOperationSummaryOmitsEmptyFields(t *testing.T) {
	line := `{"event":"call","operation":{"function":"write","access":"write","node_id":"ns=1;s=X","index_range":"","data_encoding":null,` +
		`"extra":{ },"value":0,"quantity":0,"recheck":false,"arguments":[]}}`
	if !json.Valid([]byte(line)) {
		t.Fatal("the test line is not JSON")
	}
	if got, want := operationSummary([]byte(line)), "quantity=0 node_id=ns=1;s=X value=0 arguments=[] recheck=false"; got != want {
		t.Errorf("operationSummary = %q, want %q", got, want)
	}
}
