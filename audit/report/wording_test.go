package report

import (
	"encoding/json"
	"strings"
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

// "via" names the listener only when it is not the target's own name, in
// the calls, the session refusals and the malformed requests alike.
func TestViaOnlyWhenTheListenerIsNotTheTarget(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	l := newLog(t)
	for i, listener := range []string{"plc1", "edge-a"} {
		at := at.Add(time.Duration(i) * time.Minute)
		l.call(at, callSpec{id: "c" + listener, session: "s" + listener, user: "alice", ip: "10.0.5.7", target: "plc1", listener: listener,
			function: "write_single_register", access: "write", code: 6, allow: false, reasons: []string{"no"}, rev: "r", status: "denied"})
		l.add(at.Add(time.Second), "session.open", field{"session_id", "x" + listener}, field{"listener", listener},
			field{"source", map[string]any{"ip": "10.0.9.9", "port": 4000}}, field{"principal", map[string]any{"auth": "none"}},
			field{"target", map[string]any{"name": "plc1"}}, field{"success", false}, field{"reason", "limit: max_conns"})
		l.add(at.Add(2*time.Second), "request.rejected", field{"call_id", "j"}, field{"session_id", "s6"}, field{"listener", listener},
			field{"source", map[string]any{"ip": "10.0.9.9", "port": 4001}}, field{"principal", map[string]any{"auth": "none"}},
			field{"target", map[string]any{"name": "plc1"}}, field{"protocol", "modbus"},
			field{"reason", "bad_length"}, field{"detail", "length 0"}, field{"response", "close"})
	}
	_, page := build(t, Options{Files: []string{l.write(t.TempDir())}})
	if n := strings.Count(page, "via plc1"); n != 0 {
		t.Errorf("the page says \"via plc1\" %d times, of calls made through the listener named like their target", n)
	}
	for _, want := range []string{"unit 1 via edge-a</div>", `plc1 <span class="sub">via edge-a</span></td>`} {
		if n := strings.Count(page, want); n == 0 {
			t.Errorf("the page lacks %q", want)
		}
	}
	if n := strings.Count(page, `plc1 <span class="sub">via edge-a</span></td>`); n != 2 {
		t.Errorf("the session refusals and malformed requests name listener edge-a %d times, want 2", n)
	}
}
