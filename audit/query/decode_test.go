package query

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDecodeCallRecord(t *testing.T) {
	r, err := Parse([]byte(sampleCall))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{
		Line: sampleCall, Seq: 4, Time: "2026-11-26T04:24:57.692761324Z", Event: "call", Gateway: "site-a-gw1",
		Prev:   "a4c0a85489b2a8ce8c9833dd03fec7d101658114cc80984d812a95b72612c331",
		Hash:   "6771802ce38ecba6c4ed0d4f7613a55a0f5a0625304f28cc507358ac4a719695",
		CallID: "f7cd22935aceeafb852c74addb752487", SessionID: "9a393e4f0fc01cce2120a41014a31eb4", Listener: "plc1",
		CallTime: "2026-11-26T04:24:57.692435578Z", Protocol: "modbus",
		Source:    Source{Present: true, IP: "10.0.5.7", Port: 55424, HasPort: true, Name: "ews-alice", Owner: "alice"},
		Principal: Principal{Present: true, User: "alice", Auth: "inventory", Roles: []string{"engineer"}},
		Target:    Target{Present: true, Name: "plc1", Upstream: "tcp://10.0.0.20:502", UnitID: 1, HasUnitID: true},
		Operation: Operation{
			Raw:      `{"function":"write_multiple_registers","access":"write","code":16,"address":100,"quantity":2,"values":[1500,42]}`,
			Function: "write_multiple_registers", Access: "write", Code: 16, HasCode: true,
			Address: 100, HasAddress: true, Quantity: 2, HasQuantity: true, ValuesJSON: "[1500,42]",
		},
		Decision: Decision{Present: true, Allow: false, Alert: true, Reasons: []string{"outside_maintenance_window"},
			PolicyRevision: "625cc695ee7ff6e5", DecisionID: "a0ee4f217dad179485b7dcf676a363bc", Mode: "enforce"},
	}
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("got  %+v\nwant %+v", *r, want)
	}
}

// Escapes are decoded; unknown keys, values of unexpected types and nested
// values of any depth are skipped without losing the fields around them.
func TestDecodeIsLenient(t *testing.T) {
	line := `{"seq":7, "time":"2026-11-26T04:24:57.692761324Z" ,"event":"call","future":{"a":[1,{"b":"}]\"{"}],"c":null},` +
		`"gateway":"gw\"1\\\u00e9\n\ud834\udd1e","status":{"code":1},"code":"x","latency_us":12.9,"success":"yes",` +
		`"principal":{"user":"al\/ice","roles":["a",7,"b",null,"c\u0041"],"extra":[[]]},"source":"not an object",` +
		`"operation":{"function":"f","address":1e2,"quantity":-3,"values":[1,2]},"decision":{"reasons":"x","allow":true},` +
		`"target":{"unit_id":99999999999},"hash":"h"}`
	r, err := Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case r.Seq != 7 || r.Event != "call" || r.Hash != "h":
		t.Errorf("envelope: %+v", r)
	case r.Gateway != "gw\"1\\é\n𝄞":
		t.Errorf("gateway %q", r.Gateway)
	case r.Status != "" || r.HasCode || r.HasSuccess:
		t.Errorf("values of other types were not skipped: %+v", r)
	case r.LatencyUS != 12 || !r.HasLatency:
		t.Errorf("latency %d", r.LatencyUS)
	case r.Principal.User != "al/ice" || !slices.Equal(r.Principal.Roles, []string{"a", "b", "cA"}):
		t.Errorf("principal %+v", r.Principal)
	case r.Source != (Source{}):
		t.Errorf("source %+v", r.Source)
	case r.Operation.Address != 100 || r.Operation.Quantity != -3 || r.Operation.Function != "f":
		t.Errorf("operation %+v", r.Operation)
	case !r.Decision.Present || !r.Decision.Allow || r.Decision.Reasons != nil:
		t.Errorf("decision %+v", r.Decision)
	case r.Target.HasUnitID:
		t.Errorf("an out-of-range unit id was kept: %+v", r.Target)
	}
}

func TestDecodeRejectsWhatIsNotARecord(t *testing.T) {
	for _, line := range []string{
		``, `[]`, `"call"`, `{"seq":1`, `{"seq":1,"event":"call"`, `{"seq":1,"event":"ca`,
		`{"seq":1,}`, `{"seq" 1}`, `{"seq":1} x`, `{seq:1}`, `{"a":"\q"}`, `{"a":"\u12"}`, `{"a":[1,2}`, `{"a":{"b":1}`,
		// Skipped values are checked too.
		`{"x":tru}`, `{"x":{"a" 1}}`, `{"x":[1 2]}`, `{"x":-}`, `{"x":{"a":1,}}`, `{"x":["\q"]}`, `{"x":"\u12x4"}`,
		`{"x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`,
	} {
		if _, err := Parse([]byte(line)); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}

// On random records, the decoder reads what encoding/json reads.
func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	type src struct {
		IP   string `json:"ip"`
		Port int    `json:"port"`
		Name string `json:"name,omitempty"`
	}
	type principal struct {
		User  string   `json:"user,omitempty"`
		Auth  string   `json:"auth"`
		Roles []string `json:"roles,omitempty"`
	}
	type operation struct {
		Function string `json:"function"`
		Access   string `json:"access"`
		Address  int    `json:"address"`
		Quantity int    `json:"quantity"`
		NodeID   string `json:"node_id,omitempty"`
	}
	type decision struct {
		Allow   bool     `json:"allow"`
		Alert   bool     `json:"alert"`
		Reasons []string `json:"reasons"`
		Ticket  string   `json:"ticket,omitempty"`
	}
	type rec struct {
		Seq       uint64    `json:"seq"`
		Time      string    `json:"time"`
		Event     string    `json:"event"`
		Extra     any       `json:"extra,omitempty"`
		Source    src       `json:"source"`
		Principal principal `json:"principal"`
		Operation operation `json:"operation"`
		Decision  decision  `json:"decision"`
		Detail    string    `json:"detail"`
		Hash      string    `json:"hash"`
	}
	rng := rand.New(rand.NewPCG(7, 7))
	alphabet := []string{"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "é", "€", "𝄞", "<", "&", "{", "}", "[", "]", ":", ","}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(10) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	strs := func() []string {
		out := []string{}
		for range rng.IntN(4) {
			out = append(out, str())
		}
		return out
	}
	for range 3000 {
		in := rec{
			Seq: rng.Uint64N(1 << 53), Time: str(), Event: str(),
			Source:    src{IP: str(), Port: rng.IntN(65536), Name: str()},
			Principal: principal{User: str(), Auth: str(), Roles: strs()},
			Operation: operation{Function: str(), Access: str(), Address: rng.IntN(65536), Quantity: rng.IntN(200) - 10, NodeID: str()},
			Decision:  decision{Allow: rng.IntN(2) == 0, Alert: rng.IntN(2) == 0, Reasons: strs(), Ticket: str()},
			Detail:    str(), Hash: str(),
		}
		if rng.IntN(2) == 0 {
			in.Extra = map[string]any{"k": strs(), "n": rng.Float64(), "o": map[string]any{str(): str()}}
		}
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		var want rec
		json.Unmarshal(b, &want)
		got := rec{
			Seq: r.Seq, Time: r.Time, Event: r.Event, Extra: want.Extra,
			Source:    src{IP: r.Source.IP, Port: r.Source.Port, Name: r.Source.Name},
			Principal: principal{User: r.Principal.User, Auth: r.Principal.Auth, Roles: r.Principal.Roles},
			Operation: operation{Function: r.Operation.Function, Access: r.Operation.Access, Address: r.Operation.Address, Quantity: r.Operation.Quantity, NodeID: r.Operation.NodeID},
			Decision:  decision{Allow: r.Decision.Allow, Alert: r.Decision.Alert, Reasons: r.Decision.Reasons, Ticket: r.Decision.Ticket},
			Detail:    r.Detail, Hash: r.Hash,
		}
		// An empty list and none read the same.
		if len(want.Principal.Roles) == 0 && len(got.Principal.Roles) == 0 {
			want.Principal.Roles, got.Principal.Roles = nil, nil
		}
		if len(want.Decision.Reasons) == 0 && len(got.Decision.Reasons) == 0 {
			want.Decision.Reasons, got.Decision.Reasons = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s\ngot  %#v\nwant %#v", b, got, want)
		}
		var op map[string]any
		if err := json.Unmarshal([]byte(r.Operation.Raw), &op); err != nil || op["function"] != want.Operation.Function {
			t.Fatalf("operation raw %q: %v", r.Operation.Raw, err)
		}
	}
}

// A record read into again does not change a clone of it.
func TestCloneOwnsItsBytes(t *testing.T) {
	path := writeLog(t, t.TempDir(), "audit.jsonl", testLog)
	r := NewReader(path)
	var rec Record
	if err := r.Read(&rec); err != nil {
		t.Fatal(err)
	}
	for rec.Event != "call" {
		r.Read(&rec)
	}
	c := rec.Clone()
	want := *c
	for r.Read(&rec) == nil {
	}
	if c.CallID != "c1" || c.Principal.Roles[0] != "engineer" || !reflect.DeepEqual(*c, want) || c.Line != testLog[2] {
		t.Errorf("clone changed: %+v", c)
	}
}

// plainEnd finds the first quote, backslash or byte past ASCII wherever it
// falls in the eight-byte words, as a byte-by-byte loop does.
func TestPlainEnd(t *testing.T) {
	want := func(s string, j int) int {
		for ; j < len(s); j++ {
			if c := s[j]; c == '"' || c == '\\' || c >= 0x80 {
				return j
			}
		}
		return j
	}
	rng := rand.New(rand.NewPCG(3, 3))
	kinds := []byte{'a', '0', ' ', '"', '\\', 0x80, 0xff, 0x7f, 0x00, 0x21, 0x23, 0x5b, 0x5d, 0x01}
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = 'a'
			if rng.IntN(8) == 0 {
				b[i] = kinds[rng.IntN(len(kinds))]
			}
		}
		s := string(b)
		j := rng.IntN(len(s) + 1)
		if got, w := plainEnd(s, j), want(s, j); got != w {
			t.Fatalf("plainEnd(%q, %d) = %d, want %d", s, j, got, w)
		}
	}
}

// FuzzParse: no input panics or hangs the decoder, and it takes every JSON
// object encoding/json takes (up to its nesting bound).
func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleCall))
	f.Add([]byte(`{"seq":1,"x":[{"a":null,"b":[true,false,-1.5e3]}],"detail":"\u00e9\ud834\udd1e"}`))
	f.Add([]byte(`{"principal":{"roles":["a",7,null]},"source":"x","seq":-1}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		_, err := Parse(line)
		trimmed := bytes.TrimLeft(line, " \t\r\n")
		if err != nil && json.Valid(line) && len(trimmed) > 0 && trimmed[0] == '{' && bytes.Count(line, []byte("["))+bytes.Count(line, []byte("{")) < maxSkipDepth {
			t.Errorf("Parse(%q): %v, but it is a JSON object", line, err)
		}
	})
}
