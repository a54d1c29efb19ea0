package report

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// oddLines are records a writer would not write but a log may hold: escapes,
// nulls, unknown fields of every shape, invalid UTF-8, numbers as floats.
var oddLines = []string{
	`{"seq":1,"time":"2026-11-26T00:00:00Z","event":"call","gateway":"g\u0041\n","source":{"ip":"10.0.0.1","port":1,"name":"a\"b","extra":{"x":[1,{"y":null}]}},"principal":null,"operation":{"function":"f","access":"write","code":null,"values":[1,2,3],"nested":{"a":[[],{}]}},"decision":{"allow":false,"alert":true,"reasons":["r1","\u003cscript\u003e"],"ticket":"T"},"prev":"x","hash":"y"}`,
	`{"seq":2,"time":"2026-11-26T00:00:00Z","event":"session.open","success":null,"duration_ms":null,"target":{"name":"t","unit_id":null},"unknown":true,"more":-1.5e3,"files":null}`,
	`{"seq":3,"time":"t","event":"e","files":[],"detail":"` + "\xff\xfe bad utf-8" + `","checkpoint":{"seq":2,"hash":"h","key_id":"k","reason":"count","every":1000},"fill_percent":91.5}`,
	`  {"seq":4,"event":"ticket.open","ticket":{"id":"T-1","targets":["plc1"],"access":["write"],"approvals":[]},"ticket_id":"T-1"}  `,
	`{}`,
	`{"seq":5,"event":"x","a":{"b":{"c":{"d":[{"e":"\"}\\"}]}}}}`,
}

// badLines must fail both decoders.
var badLines = []string{
	``, `[]`, `{`, `{"seq":}`, `{"seq":1,}`, `{"seq":1 "time":"x"}`, `{"seq":"1"}`, `{"seq":-1}`, `{"seq":1.5}`,
	`{"event":"x"} trailing`, `{"source":[1]}`, `{"success":"yes"}`, `{"x":[1,2}`, `{"x":{"a" 1}}`, `{"event":"unterminated}`,
	`{"decision":{"reasons":[1]}}`, `{"x":tru}`, `{"port":1}x`,
}

func TestDecodeRecordAgreesWithEncodingJSON(t *testing.T) {
	lines := append([]string(nil), oddLines...)
	b, err := os.ReadFile(scenario(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		lines = append(lines, string(l))
	}
	for _, line := range lines {
		var want, got record
		if err := json.Unmarshal([]byte(line), &want); err != nil {
			t.Fatalf("encoding/json refuses %s: %v", line, err)
		}
		if err := decodeRecord([]byte(line), &got, newDecoder()); err != nil {
			t.Errorf("decodeRecord refuses %s: %v", line, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeRecord(%s)\n got %+v\nwant %+v", line, got, want)
		}
	}
	for _, line := range badLines {
		var r record
		if json.Unmarshal([]byte(line), &r) == nil {
			t.Errorf("encoding/json takes the bad line %q: fix the test", line)
		}
		if err := decodeRecord([]byte(line), &record{}, nil); err == nil {
			t.Errorf("decodeRecord takes the bad line %q", line)
		}
	}
}

func TestDecodeRecordDeepNesting(t *testing.T) {
	deep := `{"seq":1,"x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`
	if err := decodeRecord([]byte(deep), &record{}, nil); err == nil || !strings.Contains(err.Error(), "nested too deep") {
		t.Errorf("100,000 nested arrays: %v, want nested too deep", err)
	}
	ok := `{"seq":1,"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	if err := decodeRecord([]byte(ok), &record{}, nil); err != nil {
		t.Errorf("100 nested arrays: %v", err)
	}
}

// FuzzDecodeRecord: no input panics or hangs the decoder, and a line both
// decoders take decodes the same, unless its keys differ only in case
// (encoding/json matches keys case-insensitively; the log's never do).
func FuzzDecodeRecord(f *testing.F) {
	for _, l := range append(oddLines, badLines...) {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var got record
		err := decodeRecord(line, &got, newDecoder())
		var want record
		if err != nil || json.Unmarshal(line, &want) != nil || bytes.ContainsFunc(line, func(r rune) bool { return r >= 'A' && r <= 'Z' || r == 'ſ' || r == 'K' }) {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeRecord(%q)\n got %+v\nwant %+v", line, got, want)
		}
	})
}
