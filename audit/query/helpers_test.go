package query

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A call record as the gateway writes it (hash chain values shortened: the
// query does not check them).
const sampleCall = `{"seq":4,"time":"2026-11-26T04:24:57.692761324Z","event":"call","gateway":"site-a-gw1","call_id":"f7cd22935aceeafb852c74addb752487","session_id":"9a393e4f0fc01cce2120a41014a31eb4","listener":"plc1","call_time":"2026-11-26T04:24:57.692435578Z","source":{"ip":"10.0.5.7","port":55424,"name":"ews-alice","owner":"alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"plc1","upstream":"tcp://10.0.0.20:502","unit_id":1},"protocol":"modbus","operation":{"function":"write_multiple_registers","access":"write","code":16,"address":100,"quantity":2,"values":[1500,42]},"decision":{"allow":false,"alert":true,"reasons":["outside_maintenance_window"],"policy_revision":"625cc695ee7ff6e5","decision_id":"a0ee4f217dad179485b7dcf676a363bc","mode":"enforce"},"prev":"a4c0a85489b2a8ce8c9833dd03fec7d101658114cc80984d812a95b72612c331","hash":"6771802ce38ecba6c4ed0d4f7613a55a0f5a0625304f28cc507358ac4a719695"}`

// obj keeps the keys of a hand-written record in the order given.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// base is the time of the first record of the test logs; record n is n
// seconds later.
var base = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func at(sec int) string { return base.Add(time.Duration(sec) * time.Second).Format(recordTimeLayout) }

// line builds one record: the envelope, fields, and a fake chain.
func line(seq int, event string, fields ...kv) string {
	o := obj{{"seq", seq}, {"time", at(seq)}, {"event", event}, {"gateway", "gw1"}}
	o = append(o, fields...)
	o = append(o, kv{"prev", fmt.Sprintf("%064x", seq-1)}, kv{"hash", fmt.Sprintf("%064x", seq)})
	b, err := json.Marshal(o)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type who struct {
	user, ip, name string
	port           int
}

var (
	alice   = who{"alice", "10.0.5.7", "ews-alice", 50123}
	bob     = who{"bob", "10.0.5.8", "ews-bob", 50200}
	unknown = who{"", "10.0.6.9", "", 40001}
)

func (w who) source() kv {
	o := obj{{"ip", w.ip}, {"port", w.port}}
	if w.name != "" {
		o = append(o, kv{"name", w.name}, kv{"owner", w.user})
	}
	return kv{"source", o}
}

func (w who) principal() kv {
	if w.user == "" {
		return kv{"principal", obj{{"auth", "none"}}}
	}
	return kv{"principal", obj{{"user", w.user}, {"auth", "inventory"}, {"roles", []string{"engineer"}}}}
}

func target(name string, unit int) kv {
	return kv{"target", obj{{"name", name}, {"upstream", "tcp://10.0.0.20:502"}, {"unit_id", unit}}}
}

func decision(allow, alert bool, reasons ...string) kv {
	if reasons == nil {
		reasons = []string{}
	}
	return kv{"decision", obj{{"allow", allow}, {"alert", alert}, {"reasons", reasons},
		{"policy_revision", "r1"}, {"decision_id", "d-" + strings.Join(reasons, "-")}, {"mode", "enforce"}}}
}

func callLine(seq int, id, session string, w who, tgt kv, op obj, d kv) string {
	return line(seq, "call", kv{"call_id", id}, kv{"session_id", session}, kv{"listener", "plc1"},
		kv{"call_time", at(seq)}, w.source(), w.principal(), tgt, kv{"protocol", "modbus"},
		kv{"operation", op}, d)
}

func resultLine(seq int, id, session, fn, status string, code, latency int) string {
	f := []kv{{"call_id", id}, {"session_id", session}, {"function", fn}, {"status", status}}
	if code != 0 {
		f = append(f, kv{"code", code})
	}
	if status == "denied" {
		f = append(f, kv{"detail", "outside_maintenance_window"})
	}
	f = append(f, kv{"latency_us", latency})
	return line(seq, "result", f...)
}

func sessionOpen(seq int, id string, w who, alert bool) string {
	return line(seq, "session.open", kv{"session_id", id}, kv{"listener", "plc1"}, kv{"protocol", "modbus"},
		kv{"session", obj{{"id", id}, {"started", at(seq)}}}, w.source(), w.principal(),
		kv{"target", obj{{"name", "plc1"}, {"upstream", "tcp://10.0.0.20:502"}}}, kv{"success", true},
		decision(true, alert, "session"))
}

// testLog is a small log with every kind of record: calls whose results
// come later and out of order, a denial, an exception, an error, a call
// without a result, a rejected request and an event this package does not
// know. The comments name the items a query returns.
var testLog = []string{
	line(1, "gateway.start", kv{"version", "1.2.3"}, kv{"boot_id", "b1"}), // gateway.start
	sessionOpen(2, "s1", alice, false),                                    // open-s1
	callLine(3, "c1", "s1", alice, target("plc1", 1),
		obj{{"function", "read_holding_registers"}, {"access", "read"}, {"code", 3}, {"address", 100}, {"quantity", 2}},
		decision(true, false, "read")), // c1
	resultLine(4, "c1", "s1", "read_holding_registers", "ok", 0, 1200),
	callLine(5, "c2", "s1", alice, target("plc1", 1),
		obj{{"function", "write_single_register"}, {"access", "write"}, {"code", 6}, {"address", 105}, {"values", []int{7}}},
		decision(false, true, "outside_maintenance_window")), // c2
	resultLine(6, "c2", "s1", "write_single_register", "denied", 0, 0),
	sessionOpen(7, "s2", unknown, true), // open-s2
	callLine(8, "c3", "s2", unknown, target("plc1", 1),
		obj{{"function", "read_coils"}, {"access", "read"}, {"code", 1}, {"address", 0}, {"quantity", 8}},
		decision(true, true, "read")), // c3
	callLine(9, "c4", "s1", alice, target("plc1", 1),
		obj{{"function", "write_multiple_registers"}, {"access", "write"}, {"code", 16}, {"address", 200}, {"quantity", 10}, {"values", make([]int, 10)}},
		decision(true, false, "maintenance_window:CHG-1")), // c4
	resultLine(10, "c3", "s2", "read_coils", "exception", 2, 800),
	resultLine(11, "c4", "s1", "write_multiple_registers", "ok", 0, 3000),
	line(12, "request.rejected", kv{"call_id", "r1"}, kv{"session_id", "s2"}, kv{"listener", "plc1"}, unknown.source(), unknown.principal(),
		target("plc1", 1), kv{"protocol", "modbus"}, kv{"reason", "quantity_out_of_range"}, kv{"detail", "quantity 0 not in 1..125"},
		kv{"response", "exception 3"}), // rejected
	line(13, "audit.checkpoint", kv{"checkpoint", obj{{"seq", 12}, {"hash", "x"}}}, kv{"reason", "count"}), // checkpoint
	callLine(14, "c5", "s3", bob, target("drives", 3),
		obj{{"function", "read_write_multiple_registers"}, {"access", "write"}, {"code", 23}, {"address", 300}, {"quantity", 2},
			{"values", []int{1, 2}}, {"read_address", 400}, {"read_quantity", 5}},
		decision(true, false, "maintenance_window:CHG-2")), // c5
	resultLine(15, "c5", "s3", "read_write_multiple_registers", "error", 11, 2000000),
	line(16, "session.close", kv{"session_id", "s1"}, kv{"listener", "plc1"}, alice.source(), alice.principal(), kv{"duration_ms", 14000}), // close-s1
	callLine(17, "c6", "s1", alice, target("plc1", 1),
		obj{{"function", "read_input_registers"}, {"access", "read"}, {"code", 4}, {"address", 50}, {"quantity", 1}},
		decision(true, false, "read")), // c6 (no result)
}

// names says which item a match is, as in testLog's comments.
func names(recs []*Record) []string {
	var out []string
	for _, r := range recs {
		switch r.Event {
		case "call":
			out = append(out, r.CallID)
		case "session.open", "session.close":
			out = append(out, strings.TrimPrefix(r.Event, "session.")+"-"+r.SessionID)
		case "request.rejected":
			out = append(out, "rejected")
		case "audit.checkpoint":
			out = append(out, "checkpoint")
		default:
			out = append(out, r.Event)
		}
	}
	return out
}

func writeLog(t testing.TB, dir, name string, lines []string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	text := strings.Join(lines, "\n")
	if len(lines) > 0 {
		text += "\n"
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run queries files and returns the matches (copied) and the stats.
func run(t testing.TB, q Query, files ...string) ([]*Record, Stats) {
	t.Helper()
	var out []*Record
	r := NewReader(files...)
	st, err := q.Run(r, func(rec *Record) error {
		out = append(out, rec.Clone())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, st
}
