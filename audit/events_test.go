package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// keys returns the keys of a JSON object in the order they are written.
func keys(t *testing.T, obj []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(obj))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", obj)
	}
	var out []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// oneRecord writes records with fn and returns the last line.
func oneRecord(t *testing.T, fn func(w *Writer)) []byte {
	t.Helper()
	l := newTestLog(t)
	w := l.open(t)
	fn(w)
	w.Close()
	l.verify(t, uint64(len(l.lines(t))))
	lines := l.lines(t)
	return bytes.TrimSuffix(lines[len(lines)-1], []byte("\n"))
}

func TestCallRecordContract(t *testing.T) {
	s := testSession()
	c := writeCall("c1")
	c.Operation.String("node_id", "ns=1;s=Setpoint")
	c.Operation.Bool("force", true)
	c.Operation.Strings("names", []string{"a", "b"})
	c.Operation.Any("arguments", []any{1.5, "x", map[string]any{"k": []any{true}}})
	d := gateway.Decision{Allow: false, Alert: true, Reasons: []string{"outside_window", gateway.ReasonMonitorWouldDeny},
		Revision: "r42", ID: "d9", Mode: "monitor"}
	line := oneRecord(t, func(w *Writer) {
		if err := w.Call(context.Background(), s, c, d); err != nil {
			t.Fatal(err)
		}
	})

	wantKeys := []string{"seq", "time", "event", "gateway", "call_id", "session_id", "listener", "call_time",
		"source", "principal", "target", "protocol", "operation", "decision", "prev", "hash"}
	if got := keys(t, line); !reflect.DeepEqual(got, wantKeys) {
		t.Errorf("keys\n got %v\nwant %v", got, wantKeys)
	}

	var rec struct {
		Seq       uint64          `json:"seq"`
		Time      string          `json:"time"`
		Event     string          `json:"event"`
		Gateway   string          `json:"gateway"`
		CallID    string          `json:"call_id"`
		SessionID string          `json:"session_id"`
		Listener  string          `json:"listener"`
		CallTime  string          `json:"call_time"`
		Protocol  string          `json:"protocol"`
		Operation json.RawMessage `json:"operation"`
		Prev      string          `json:"prev"`
		Hash      string          `json:"hash"`
		Source    struct {
			IP    string `json:"ip"`
			Port  uint16 `json:"port"`
			Name  string `json:"name"`
			Owner string `json:"owner"`
		} `json:"source"`
		Principal struct {
			User  string   `json:"user"`
			Auth  string   `json:"auth"`
			Roles []string `json:"roles"`
		} `json:"principal"`
		Target struct {
			Name     string `json:"name"`
			Upstream string `json:"upstream"`
			UnitID   *int   `json:"unit_id"`
		} `json:"target"`
		Decision struct {
			Allow          *bool    `json:"allow"`
			Alert          *bool    `json:"alert"`
			Reasons        []string `json:"reasons"`
			PolicyRevision string   `json:"policy_revision"`
			DecisionID     string   `json:"decision_id"`
			Mode           string   `json:"mode"`
		} `json:"decision"`
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		t.Fatalf("decode: %v\n%s", err, line)
	}
	if rec.Seq != 1 || rec.Event != "call" || rec.Gateway != "site-a-gw1" || rec.CallID != "c1" ||
		rec.SessionID != "5e55" || rec.Listener != "plc1" || rec.Protocol != "modbus" {
		t.Errorf("envelope: %+v", rec)
	}
	if _, err := time.Parse(time.RFC3339Nano, rec.Time); err != nil {
		t.Errorf("time: %v", err)
	}
	if rec.CallTime != "2026-11-26T02:14:27.123456789Z" {
		t.Errorf("call_time = %q", rec.CallTime)
	}
	if rec.Prev != GenesisPrev || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(rec.Hash) {
		t.Errorf("prev %q hash %q", rec.Prev, rec.Hash)
	}
	if rec.Source.IP != "10.0.0.5" || rec.Source.Port != 50123 || rec.Source.Name != "ews-1" || rec.Source.Owner != "controls team" {
		t.Errorf("source: %+v", rec.Source)
	}
	if rec.Principal.User != "alice" || rec.Principal.Auth != "inventory" || !reflect.DeepEqual(rec.Principal.Roles, []string{"engineer"}) {
		t.Errorf("principal: %+v", rec.Principal)
	}
	if rec.Target.Name != "plc1" || rec.Target.Upstream != "tcp://127.0.0.1:502" || rec.Target.UnitID == nil || *rec.Target.UnitID != 1 {
		t.Errorf("target: %+v", rec.Target)
	}
	dd := rec.Decision
	if dd.Allow == nil || *dd.Allow || dd.Alert == nil || !*dd.Alert || dd.PolicyRevision != "r42" || dd.DecisionID != "d9" ||
		dd.Mode != "monitor" || !reflect.DeepEqual(dd.Reasons, d.Reasons) {
		t.Errorf("decision: %+v", dd)
	}

	// operation: function, access, then the fields in order, each with its JSON type.
	wantOpKeys := []string{"function", "access", "code", "address", "quantity", "values", "node_id", "force", "names", "arguments"}
	if got := keys(t, rec.Operation); !reflect.DeepEqual(got, wantOpKeys) {
		t.Errorf("operation keys\n got %v\nwant %v", got, wantOpKeys)
	}
	var op map[string]any
	if err := json.Unmarshal(rec.Operation, &op); err != nil {
		t.Fatal(err)
	}
	wantOp := map[string]any{
		"function": "write_multiple_registers", "access": "write",
		"code": 16.0, "address": 100.0, "quantity": 2.0, "values": []any{1.0, 2.0},
		"node_id": "ns=1;s=Setpoint", "force": true, "names": []any{"a", "b"},
		"arguments": []any{1.5, "x", map[string]any{"k": []any{true}}},
	}
	if !reflect.DeepEqual(op, wantOp) {
		t.Errorf("operation\n got %v\nwant %v", op, wantOp)
	}
}

func TestSessionOpenRecord(t *testing.T) {
	s := testSession()
	s.Protocol, s.SecurityPolicy, s.SecurityMode = "opcua", "Basic256Sha256", "SignAndEncrypt"
	s.Target.UnitID = -1
	s.Principal = gateway.Principal{Auth: gateway.AuthX509, CertThumbprint: "ab12", ApplicationURI: "urn:ews-1"}
	d := gateway.Decision{Allow: false, Reasons: []string{"unknown_source"}, Revision: "r1", ID: "d1", Mode: "enforce"}
	line := oneRecord(t, func(w *Writer) {
		w.SessionStart(context.Background(), s, &d, "policy: unknown_source")
	})
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"session_id": "5e55", "listener": "plc1", "protocol": "opcua",
		"session": map[string]any{"id": "5e55", "started": "2026-11-26T02:14:00.123456789Z",
			"security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt"},
		"source":    map[string]any{"ip": "10.0.0.5", "port": 50123.0, "name": "ews-1", "owner": "controls team"},
		"principal": map[string]any{"auth": "x509", "cert_thumbprint": "ab12", "application_uri": "urn:ews-1"},
		"target":    map[string]any{"name": "plc1", "upstream": "tcp://127.0.0.1:502"},
		"success":   false,
		"reason":    "policy: unknown_source",
		"decision": map[string]any{"allow": false, "alert": false, "reasons": []any{"unknown_source"},
			"policy_revision": "r1", "decision_id": "d1", "mode": "enforce"},
	}
	checkFields(t, rec, "session.open", want)

	// A session refused before any decision (connection limit) has no decision.
	line = oneRecord(t, func(w *Writer) {
		w.SessionStart(context.Background(), testSession(), nil, "connection_limit")
	})
	rec = nil
	json.Unmarshal(line, &rec)
	if _, ok := rec["decision"]; ok || rec["success"] != false || rec["reason"] != "connection_limit" {
		t.Errorf("refused session: %s", line)
	}
}

func TestResultRecord(t *testing.T) {
	s, c := testSession(), writeCall("c1")
	line := oneRecord(t, func(w *Writer) {
		w.Result(context.Background(), s, c, &gateway.Result{Status: gateway.StatusOK, Latency: 2500 * time.Microsecond})
	})
	var rec map[string]any
	json.Unmarshal(line, &rec)
	checkFields(t, rec, "result", map[string]any{
		"call_id": "c1", "session_id": "5e55", "function": "write_multiple_registers", "status": "ok", "latency_us": 2500.0,
	})
	line = oneRecord(t, func(w *Writer) {
		w.Result(context.Background(), s, c, &gateway.Result{Status: gateway.StatusException, Code: 2, Detail: "illegal data address"})
	})
	rec = nil
	json.Unmarshal(line, &rec)
	checkFields(t, rec, "result", map[string]any{
		"call_id": "c1", "session_id": "5e55", "function": "write_multiple_registers", "status": "exception",
		"code": 2.0, "detail": "illegal data address", "latency_us": 0.0,
	})
	if _, ok := rec["call_record_lost"]; ok {
		t.Errorf("call_record_lost on the result of a recorded call: %v", rec)
	}
	c.RecordLost = true // the log could not take its call record
	line = oneRecord(t, func(w *Writer) {
		w.Result(context.Background(), s, c, &gateway.Result{Status: gateway.StatusOK})
	})
	rec = nil
	json.Unmarshal(line, &rec)
	checkFields(t, rec, "result", map[string]any{
		"call_id": "c1", "session_id": "5e55", "function": "write_multiple_registers", "status": "ok", "latency_us": 0.0, "call_record_lost": true,
	})
}

func TestRejectedRecord(t *testing.T) {
	s := testSession()
	c := &gateway.Call{ID: "c7", Operation: gateway.Operation{Function: "write_multiple_registers", Access: gateway.AccessWrite}}
	c.Operation.Int("quantity", 200)
	line := oneRecord(t, func(w *Writer) {
		w.Rejected(context.Background(), s, c, "quantity_out_of_range", "quantity 200 > 123", "exception 0x03")
	})
	var rec map[string]any
	json.Unmarshal(line, &rec)
	checkFields(t, rec, "request.rejected", map[string]any{
		"call_id": "c7", "session_id": "5e55", "listener": "plc1", "protocol": "modbus",
		"source":    map[string]any{"ip": "10.0.0.5", "port": 50123.0, "name": "ews-1", "owner": "controls team"},
		"principal": map[string]any{"user": "alice", "auth": "inventory", "roles": []any{"engineer"}},
		"target":    map[string]any{"name": "plc1", "upstream": "tcp://127.0.0.1:502", "unit_id": 1.0},
		"operation": map[string]any{"function": "write_multiple_registers", "access": "write", "quantity": 200.0},
		"reason":    "quantity_out_of_range", "detail": "quantity 200 > 123", "response": "exception 0x03",
	})
}

func TestSessionCloseRecord(t *testing.T) {
	s := testSession()
	s.Started = time.Now().Add(-1500 * time.Millisecond)
	s.Source.IP = netipZero
	want := map[string]any{
		"session_id": "5e55", "listener": "plc1",
		"source":    map[string]any{"ip": "", "port": 50123.0, "name": "ews-1", "owner": "controls team"},
		"principal": map[string]any{"user": "alice", "auth": "inventory", "roles": []any{"engineer"}},
	}
	for _, tc := range []struct {
		err       error
		wantError any // nil: no error field
	}{
		{errors.New("idle timeout"), "idle timeout"},
		{nil, nil},
	} {
		line := oneRecord(t, func(w *Writer) { w.SessionEnd(context.Background(), s, tc.err) })
		var rec map[string]any
		json.Unmarshal(line, &rec)
		ms, _ := rec["duration_ms"].(float64)
		if ms < 1500 || ms > 60000 {
			t.Errorf("duration_ms = %v", rec["duration_ms"])
		}
		delete(rec, "duration_ms")
		w := maps.Clone(want)
		if tc.wantError != nil {
			w["error"] = tc.wantError
		}
		checkFields(t, rec, "session.close", w)
	}
}

// checkFields compares a record's event fields, leaving out the envelope.
func checkFields(t *testing.T, rec map[string]any, event string, want map[string]any) {
	t.Helper()
	if rec["event"] != event {
		t.Errorf("event = %v, want %s", rec["event"], event)
	}
	for _, k := range []string{"seq", "time", "event", "gateway", "prev", "hash"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("no %s", k)
		}
		delete(rec, k)
	}
	if !reflect.DeepEqual(rec, want) {
		t.Errorf("%s record\n got %v\nwant %v", event, rec, want)
	}
}

// TestHashDefinition recomputes the hash the way the package doc defines it,
// independently of the writer's code.
func TestHashDefinition(t *testing.T) {
	l := newTestLog(t)
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()
	prev := GenesisPrev
	re := regexp.MustCompile(`^(\{.*),"hash":"([0-9a-f]{64})"\}\n$`)
	for i, line := range l.lines(t) {
		m := re.FindSubmatch(line)
		if m == nil {
			t.Fatalf("line %d does not end in the hash field: %s", i+1, line)
		}
		canonical := append(m[1], '}')
		sum := sha256.Sum256(canonical)
		if got := hex.EncodeToString(sum[:]); got != string(m[2]) {
			t.Errorf("line %d: hash %s, want sha256 of the canonical bytes %s", i+1, m[2], got)
		}
		var rec struct {
			Prev string `json:"prev"`
		}
		json.Unmarshal(canonical, &rec)
		if rec.Prev != prev {
			t.Errorf("line %d: prev %s, want %s", i+1, rec.Prev, prev)
		}
		prev = string(m[2])
	}
}

var netipZero netip.Addr
