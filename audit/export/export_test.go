package export

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/interlock-ics/interlock/audit/query"
)

// The OCSF event of a denied write, every field: the mapping of
// docs/ocsf-mapping.md on one call.
func TestOCSFDeniedCall(t *testing.T) {
	got := AppendOCSF(nil, joined(t, lineCallDenied, lineResultDenied), "1.4.0")
	const want = `{
	  "class_uid": 6003, "class_name": "API Activity",
	  "category_uid": 6, "category_name": "Application Activity",
	  "activity_id": 3, "activity_name": "Update",
	  "type_uid": 600303, "type_name": "API Activity: Update",
	  "time": 1795667097826, "timezone_offset": 0,
	  "severity_id": 3, "severity": "Medium",
	  "status_id": 2, "status": "Failure", "status_detail": "outside_maintenance_window",
	  "end_time": 1795667097827, "duration": 0,
	  "message": "alice from ews-alice (10.0.5.7) called write_single_register on plc1 unit 1 registers 100: denied (outside_maintenance_window)",
	  "metadata": {
	    "version": "1.3.0",
	    "product": {"name": "Interlock", "vendor_name": "Interlock", "version": "1.4.0"},
	    "uid": "h20", "original_time": "2026-11-26T04:24:57.826370077Z",
	    "log_name": "audit.jsonl", "log_provider": "interlock", "sequence": 20,
	    "event_code": "call", "correlation_uid": "52a52c40"
	  },
	  "actor": {
	    "user": {"name": "alice", "account": {"name": "alice"}, "groups": [{"name": "engineer"}, {"name": "approver"}]},
	    "session": {"uid": "52a52c40"},
	    "authorizations": [{"decision": "deny", "policy": {"name": "data.interlock.decision", "uid": "625cc695ee7ff6e5", "version": "625cc695ee7ff6e5"}}]
	  },
	  "api": {
	    "operation": "write_single_register",
	    "service": {"name": "modbus"},
	    "request": {"uid": "6279bd63", "data": {"function": "write_single_register", "access": "write", "code": 6, "address": 100, "values": [1600]}},
	    "response": {"error": "denied", "error_message": "outside_maintenance_window", "message": "denied"}
	  },
	  "src_endpoint": {"ip": "10.0.5.7", "port": 55480, "hostname": "ews-alice", "owner": {"name": "alice"}},
	  "dst_endpoint": {"name": "plc1", "svc_name": "modbus", "ip": "10.0.0.20", "port": 502},
	  "resources": [
	    {"name": "plc1", "type": "target", "uid": "tcp://10.0.0.20:502", "data": {"unit_id": 1, "listener": "plc1"}},
	    {"name": "100", "type": "modbus.holding_registers", "data": {"address": 100}}
	  ],
	  "unmapped": {
	    "gateway": "site-a-gw1", "event": "call", "listener": "plc1", "call_time": "2026-11-26T04:24:57.824854366Z",
	    "principal": {"auth": "inventory"},
	    "operation": {"access": "write"},
	    "decision": {"allow": false, "alert": true, "reasons": ["outside_maintenance_window"],
	                 "policy_revision": "625cc695ee7ff6e5", "decision_id": "2a33af42", "mode": "enforce"},
	    "result": {"seq": 21, "time": "2026-11-26T04:24:57.827627289Z", "hash": "h21", "status": "denied",
	               "detail": "outside_maintenance_window", "latency_us": 0}
	  }
	}`
	sameJSON(t, got, want)
	if bytes.ContainsAny(got, "\n") {
		t.Error("the event spans lines")
	}
}

// A request.rejected_suppressed record is an aggregate event: count is the
// rejections it counts, start_time and end_time the first and last of them
// (first_time, last_time); a Failure as request.rejected is, the reasons in
// status_detail; every field.
func TestOCSFRejectedSuppressed(t *testing.T) {
	got := AppendOCSF(nil, parse(t, lineRejectedCount), "1.4.0")
	const want = `{
	  "class_uid": 6003, "class_name": "API Activity",
	  "category_uid": 6, "category_name": "Application Activity",
	  "activity_id": 99, "activity_name": "request.rejected_suppressed",
	  "type_uid": 600399, "type_name": "API Activity: request.rejected_suppressed",
	  "time": 1795669321000, "timezone_offset": 0,
	  "severity_id": 3, "severity": "Medium",
	  "status_id": 2, "status": "Failure", "status_detail": "bad_protocol_id,quantity_out_of_range",
	  "start_time": 1795669262000, "end_time": 1795669319000, "count": 495,
	  "message": "495 rejected requests not recorded one by one from 10.0.6.9 on plc1: bad_protocol_id 195, quantity_out_of_range 300",
	  "metadata": {
	    "version": "1.3.0",
	    "product": {"name": "Interlock", "vendor_name": "Interlock", "version": "1.4.0"},
	    "uid": "h72", "original_time": "2026-11-26T05:02:01.000000000Z",
	    "log_name": "audit.jsonl", "log_provider": "interlock", "sequence": 72,
	    "event_code": "request.rejected_suppressed"
	  },
	  "actor": {"app_name": "Interlock", "app_uid": "site-a-gw1"},
	  "api": {"operation": "request.rejected_suppressed", "service": {"name": "modbus"}},
	  "src_endpoint": {"ip": "10.0.6.9"},
	  "dst_endpoint": {"name": "plc1", "svc_name": "modbus", "ip": "10.0.0.20", "port": 502},
	  "resources": [{"name": "plc1", "type": "target", "uid": "tcp://10.0.0.20:502", "data": {"listener": "plc1"}}],
	  "unmapped": {
	    "gateway": "site-a-gw1", "event": "request.rejected_suppressed", "listener": "plc1",
	    "record": ` + lineRejectedCount + `
	  }
	}`
	sameJSON(t, got, want)

	// A record without its times (or with a count of 0) leaves those out
	// rather than writing 0, which would be 1970.
	bare := strings.NewReplacer(`"count":495,`, ``, `"first_time":"2026-11-26T05:01:02.000000000Z",`, ``,
		`"last_time":"2026-11-26T05:01:59.000000000Z",`, ``).Replace(lineRejectedCount)
	var ev map[string]any
	if err := json.Unmarshal(AppendOCSF(nil, parse(t, bare), "v"), &ev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"count", "start_time", "end_time"} {
		if v, ok := ev[k]; ok {
			t.Errorf("a record without it: %s = %v", k, v)
		}
	}
}

// A request.rejected_suppressed record has the status of the
// request.rejected records it stands for. Its actor stays the gateway: it
// has no principal or session (a source address over many connections),
// and the source's owner answers for the workstation, it is not the user;
// the source is the src_endpoint, as a request.rejected's is.
func TestOCSFRejectedSuppressedAsRejected(t *testing.T) {
	pick := func(line string) string {
		t.Helper()
		var ev map[string]any
		if err := json.Unmarshal(AppendOCSF(nil, parse(t, line), "v"), &ev); err != nil {
			t.Fatal(err)
		}
		out := map[string]any{}
		for _, k := range []string{"status_id", "status", "status_detail", "actor", "src_endpoint"} {
			if v, ok := ev[k]; ok {
				out[k] = v
			}
		}
		b, _ := json.Marshal(out) // keys sorted
		return string(b)
	}
	for _, tc := range []struct{ name, line, want string }{
		{"request.rejected", lineRejected,
			`{"actor":{"session":{"uid":"s69"}},"src_endpoint":{"ip":"10.0.6.9","port":40001},` +
				`"status":"Failure","status_detail":"quantity_out_of_range: quantity 0 not in 1..125","status_id":2}`},
		{"request.rejected_suppressed, named source",
			strings.Replace(lineRejectedCount, `"source":{"ip":"10.0.6.9"}`, `"source":{"ip":"10.0.6.9","name":"hmi-3","owner":"ops"}`, 1),
			`{"actor":{"app_name":"Interlock","app_uid":"site-a-gw1"},"src_endpoint":{"hostname":"hmi-3","ip":"10.0.6.9","owner":{"name":"ops"}},` +
				`"status":"Failure","status_detail":"bad_protocol_id,quantity_out_of_range","status_id":2}`},
		{"request.rejected_suppressed without reasons",
			strings.Replace(lineRejectedCount, `"reasons":{"bad_protocol_id":195,"quantity_out_of_range":300},`, ``, 1),
			`{"actor":{"app_name":"Interlock","app_uid":"site-a-gw1"},"src_endpoint":{"ip":"10.0.6.9"},` +
				`"status":"Failure","status_id":2}`},
	} {
		if got := pick(tc.line); got != tc.want {
			t.Errorf("%s:\ngot  %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		wb, _ := json.MarshalIndent(w, "", "  ")
		gb, _ := json.MarshalIndent(g, "", "  ")
		t.Errorf("got:\n%s\nwant:\n%s", gb, wb)
	}
}

func TestCEFDeniedCall(t *testing.T) {
	got := CEF(joined(t, lineCallDenied, lineResultDenied), "1.4.0")
	want := `CEF:0|Interlock|interlock|1.4.0|write_single_register|write_single_register denied|6|` +
		`rt=1795667097826 dvchost=site-a-gw1 cat=call externalId=6279bd63 src=10.0.5.7 spt=55480 shost=ews-alice ` +
		`suser=alice spriv=engineer,approver dhost=plc1 dst=10.0.0.20 dpt=502 destinationServiceName=modbus ` +
		`act=deny outcome=failure reason=outside_maintenance_window ` +
		`msg=alice from ews-alice (10.0.5.7) called write_single_register on plc1 unit 1 registers 100: denied (outside_maintenance_window) ` +
		`cs1Label=policyRevision cs1=625cc695ee7ff6e5 cs2Label=reasons cs2=outside_maintenance_window ` +
		`cs3Label=decisionId cs3=2a33af42 cs5Label=sessionId cs5=52a52c40 cs6Label=registers cs6=100 ` +
		`cn1Label=seq cn1=20 cn2Label=latencyUs cn2=0 flexNumber1Label=unitId flexNumber1=1 ` +
		`flexString1Label=hash flexString1=h20 flexString2Label=access flexString2=write interlockValues=[1600]`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// Other records in CEF: an allowed write with an alert, a ticket and an
// exception; an IPv6 client; a record on its own, as a shipper sends it;
// the count of a request.rejected_suppressed in cnt, the reasons it counts
// in reason and cs2 as a decision's are, and act and outcome as those of
// the request.rejected records it stands for.
func TestCEFOtherRecords(t *testing.T) {
	for _, tc := range []struct {
		rec  *query.Record
		want string
	}{
		{joined(t, lineCallWrite, lineResultExc),
			`CEF:0|Interlock|interlock|v|write_multiple_registers|write_multiple_registers exception 2|6|rt=1795667099385 dvchost=site-a-gw1 cat=call externalId=c47 src=10.0.5.7 spt=55600 shost=ews-alice suser=alice spriv=engineer dhost=drives destinationServiceName=modbus act=alert outcome=failure reason=ticket:T-1,protected_range:safety_limits msg=alice from ews-alice (10.0.5.7) called write_multiple_registers on drives unit 3 registers 1000-1001: exception 2 (ticket:T-1, protected_range:safety_limits): illegal data address cs1Label=policyRevision cs1=r9 cs2Label=reasons cs2=ticket:T-1,protected_range:safety_limits cs3Label=decisionId cs3=d47 cs4Label=ticket cs4=T-1 cs5Label=sessionId cs5=s46 cs6Label=registers cs6=1000-1001 cn1Label=seq cn1=47 cn2Label=latencyUs cn2=2591 cn3Label=code cn3=2 flexNumber1Label=unitId flexNumber1=3 flexString1Label=hash flexString1=h47 flexString2Label=access flexString2=write interlockValues=[1,2]`},
		{joined(t, lineCallProg, lineResultMon),
			`CEF:0|Interlock|interlock|v|unknown|unknown error|6|rt=1795669200000 dvchost=site-a-gw1 cat=call externalId=c60 c6a2=fd00::5 c6a2Label=Source IPv6 Address spt=40000 dhost=plc1 c6a3=fd00::20 c6a3Label=Destination IPv6 Address dpt=502 destinationServiceName=modbus act=deny outcome=failure reason=unknown_function_denied msg=unknown user from fd00::5 called unknown on plc1 unit 1: error (unknown_function_denied): upstream timeout cs1Label=policyRevision cs1=r9 cs2Label=reasons cs2=unknown_function_denied cs3Label=decisionId cs3=d60 cs5Label=sessionId cs5=s59 cn1Label=seq cn1=60 cn2Label=latencyUs cn2=2000000 cn3Label=code cn3=11 flexNumber1Label=unitId flexNumber1=1 flexString1Label=hash flexString1=h60 flexString2Label=access flexString2=program`},
		{parse(t, lineResultExc),
			`CEF:0|Interlock|interlock|v|write_multiple_registers|write_multiple_registers exception|3|rt=1795667099388 dvchost=site-a-gw1 cat=result externalId=c47 outcome=failure msg=result of call c47 (write_multiple_registers): exception: illegal data address cs5Label=sessionId cs5=s46 cn1Label=seq cn1=48 cn2Label=latencyUs cn2=2591 cn3Label=code cn3=2 flexString1Label=hash flexString1=h48`},
		{parse(t, lineSessionRefused),
			`CEF:0|Interlock|interlock|v|session.open|session.open refused|6|rt=1795669320000 dvchost=site-a-gw1 cat=session.open src=10.0.6.9 spt=40002 dhost=plc1 dst=10.0.0.20 dpt=502 destinationServiceName=modbus outcome=failure reason=limit: max_conns msg=unknown user from 10.0.6.9 was refused a session on plc1: limit: max_conns cs5Label=sessionId cs5=s80 cn1Label=seq cn1=80 flexString1Label=hash flexString1=h80`},
		{parse(t, lineRejected),
			`CEF:0|Interlock|interlock|v|request.rejected|request.rejected quantity_out_of_range|6|rt=1795669260000 dvchost=site-a-gw1 cat=request.rejected externalId=c70 src=10.0.6.9 spt=40001 dhost=plc1 dst=10.0.0.20 dpt=502 destinationServiceName=modbus act=rejected outcome=failure reason=quantity_out_of_range msg=unknown user from 10.0.6.9 sent a request that was rejected on plc1 unit 1: quantity_out_of_range (quantity 0 not in 1..125) cs5Label=sessionId cs5=s69 cs6Label=registers cs6=0 cn1Label=seq cn1=70 flexNumber1Label=unitId flexNumber1=1 flexString1Label=hash flexString1=h70 flexString2Label=access flexString2=read`},
		{parse(t, lineRejectedCount),
			`CEF:0|Interlock|interlock|v|request.rejected_suppressed|request.rejected_suppressed|6|rt=1795669321000 dvchost=site-a-gw1 cat=request.rejected_suppressed src=10.0.6.9 dhost=plc1 dst=10.0.0.20 dpt=502 destinationServiceName=modbus act=rejected outcome=failure reason=bad_protocol_id,quantity_out_of_range cnt=495 msg=495 rejected requests not recorded one by one from 10.0.6.9 on plc1: bad_protocol_id 195, quantity_out_of_range 300 cs2Label=reasons cs2=bad_protocol_id,quantity_out_of_range cn1Label=seq cn1=72 flexString1Label=hash flexString1=h72`},
		{parse(t, lineGatewayStart),
			`CEF:0|Interlock|interlock|v|gateway.start|gateway.start|1|rt=1795667097511 dvchost=site-a-gw1 cat=gateway.start msg=gateway site-a-gw1 started, version 1.4.0 cn1Label=seq cn1=2 flexString1Label=hash flexString1=h2`},
	} {
		if got := CEF(tc.rec, "v"); got != tc.want {
			t.Errorf("got\n%s\nwant\n%s", got, tc.want)
		}
	}
	line, err := CEFLine([]byte(lineGatewayStop), "v")
	if err != nil || !strings.HasPrefix(line, "CEF:0|Interlock|interlock|v|gateway.stop|gateway.stop|1|rt=1795672800000 ") {
		t.Errorf("CEFLine: %q, %v", line, err)
	}
	if _, err := CEFLine([]byte(`{"seq":1,`), "v"); err == nil {
		t.Error("CEFLine of a cut line: no error")
	}
}

// Header fields escape pipes and backslashes; extension values escape
// backslashes, equals signs and line breaks, and leave pipes alone.
func TestCEFEscaping(t *testing.T) {
	rec := parse(t, `{"seq":7,"time":"2026-11-26T05:00:00.000000000Z","event":"weird|event\\x","gateway":"gw=1","error":"a=b\\c\nd\re|f","by":"o'brien \"ob\"","prev":"p","hash":"h"}`)
	got := CEF(rec, `1.0|beta\2`)
	want := `CEF:0|Interlock|interlock|1.0\|beta\\2|weird\|event\\x|weird\|event\\x error|6|` +
		`rt=1795669200000 dvchost=gw\=1 cat=weird|event\\x suser=o'brien "ob" outcome=failure ` +
		`msg=weird|event\\x by o'brien "ob": a\=b\\c\nd\re|f cn1Label=seq cn1=7 flexString1Label=hash flexString1=h`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.ContainsAny(got, "\n\r") {
		t.Error("a CEF event spans lines")
	}
	// A line break in a header field would end the event.
	if h := string(appendCEFHeader(nil, "a\nb\rc|d\\")); h != `a b c\|d\\` {
		t.Errorf("header escaping: %q", h)
	}
	for _, tc := range []struct{ in, want string }{
		{`=`, `k=\=`}, {`\`, `k=\\`}, {"\n", `k=\n`}, {"\r\n", `k=\r\n`}, {`|`, `k=|`}, {`a b=c`, `k=a b\=c`}, {``, ``},
	} {
		e := cefExt{}
		e.str("k", tc.in)
		if string(e.b) != tc.want {
			t.Errorf("extension %q: got %q, want %q", tc.in, e.b, tc.want)
		}
	}
}

func TestCSV(t *testing.T) {
	var b bytes.Buffer
	enc, err := NewEncoder(&b, "csv", "v")
	if err != nil {
		t.Fatal(err)
	}
	// A detail with a comma, a quote and a line break must survive.
	nasty := parse(t, `{"seq":9,"time":"2026-11-26T05:00:00.000000000Z","event":"request.rejected","gateway":"gw1","call_id":"c9","session_id":"s9","source":{"ip":"10.0.6.9","port":1},"principal":{"auth":"none"},"target":{"name":"plc1","upstream":"u"},"protocol":"modbus","reason":"bad_length","detail":"length 300, want \"<= 254\"\nclosed","response":"close","prev":"p","hash":"h9"}`)
	// A request.rejected_suppressed row: rejected as a request.rejected
	// row, the reasons it counts in reasons, each with its count in detail,
	// and the rejections it stands for in count (the last column).
	recs := []*query.Record{joined(t, lineCallDenied, lineResultDenied), parse(t, lineSessionOpen), nasty, parse(t, lineRejectedCount)}
	for _, r := range recs {
		if err := enc.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	want := strings.Join(CSVHeader, ",") + "\r\n" +
		"2026-11-26T04:24:57.826370077Z,20,call,site-a-gw1,6279bd63,52a52c40,alice,inventory,\"engineer,approver\",10.0.5.7,55480,ews-alice," +
		"plc1,1,modbus,write_single_register,write,6,100,,100,,deny,false,true,outside_maintenance_window,625cc695ee7ff6e5,2a33af42,enforce,," +
		"denied,,outside_maintenance_window,0,2026-11-26T04:24:57.827627289Z,h20,[1600],,,,,,,,,\r\n" +
		"2026-11-26T04:24:57.666301993Z,3,session.open,site-a-gw1,,9a393e4f,alice,inventory,engineer,10.0.5.7,55424,ews-alice," +
		"plc1,,modbus,,,,,,,,allow,true,false,session,625cc695ee7ff6e5,d9f7c30b,enforce,,,,,,,h3,,,,,,,,,,\r\n" +
		"2026-11-26T05:00:00.000000000Z,9,request.rejected,gw1,c9,s9,,none,,10.0.6.9,1,,plc1,,modbus,,,,,,,,,,,,,,,," +
		"rejected,,\"bad_length: length 300, want \"\"<= 254\"\"\r\nclosed\",,,h9,,,,,,,,,,\r\n" +
		"2026-11-26T05:02:01.000000000Z,72,request.rejected_suppressed,site-a-gw1,,,,,,10.0.6.9,,,plc1,,modbus,,,,,,,,,,," +
		"\"bad_protocol_id,quantity_out_of_range\",,,,,rejected,,\"bad_protocol_id 195, quantity_out_of_range 300\",,,h72,,,,,,,,,,495\r\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
	// And it reads back as the same fields.
	rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 || rows[3][32] != "bad_length: length 300, want \"<= 254\"\nclosed" || rows[1][8] != "engineer,approver" ||
		rows[4][25] != "bad_protocol_id,quantity_out_of_range" || rows[4][45] != "495" || rows[0][45] != "count" {
		t.Errorf("read back: %q", rows)
	}
	for _, row := range rows {
		if len(row) != len(CSVHeader) {
			t.Errorf("row of %d columns, header of %d", len(row), len(CSVHeader))
		}
	}
}

// A carriage return in a field, alone or before a line feed, reads back as
// it was (encoding/csv's writer drops one when it writes CRLF line ends).
func TestCSVCarriageReturnRoundTrips(t *testing.T) {
	for _, detail := range []string{"before\rafter", "line\r\nnext", "ends\r", "\r", "a\n\rb", "x\r\r\ny"} {
		d, _ := json.Marshal(detail)
		line := `{"seq":9,"time":"2026-11-26T05:00:00.000000000Z","event":"request.rejected","gateway":"gw1","call_id":"c9","session_id":"s9","source":{"ip":"10.0.6.9","port":1},"principal":{"user":"al\rice","auth":"none"},"target":{"name":"plc1","upstream":"u"},"protocol":"modbus","reason":"bad","detail":` + string(d) + `,"response":"close","prev":"p","hash":"h9"}`
		var b bytes.Buffer
		enc, _ := NewEncoder(&b, "csv", "v")
		if err := enc.Write(parse(t, line)); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
		if err != nil {
			t.Fatalf("detail %q: %v\n%q", detail, err, b.String())
		}
		if len(rows) != 2 {
			t.Fatalf("detail %q: %d rows, want 2\n%q", detail, len(rows), b.String())
		}
		col := func(name string) string { return rows[1][slices.Index(CSVHeader, name)] }
		if got, want := col("detail"), "bad: "+detail; got != want {
			t.Errorf("detail %q: read back %q, want %q", detail, got, want)
		}
		if got := col("user"); got != "al\rice" {
			t.Errorf("user: read back %q, want %q", got, "al\rice")
		}
	}
}

func TestCSVEmptyExportHasTheHeader(t *testing.T) {
	var b bytes.Buffer
	enc, _ := NewEncoder(&b, "csv", "v")
	if err := enc.Close(); err != nil || b.String() != strings.Join(CSVHeader, ",")+"\r\n" {
		t.Errorf("%q, %v", b.String(), err)
	}
}

func TestJSONLWritesTheRecordsAsTheyAre(t *testing.T) {
	var b bytes.Buffer
	enc, _ := NewEncoder(&b, "jsonl", "v")
	enc.Write(joined(t, lineCallDenied, lineResultDenied))
	enc.Write(parse(t, lineSessionOpen))
	enc.Close()
	if want := lineCallDenied + "\n" + lineResultDenied + "\n" + lineSessionOpen + "\n"; b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// The product version is the gateway's own, from its gateway.start, once
// the log has named it; the exporter's before that.
func TestEncoderVersionFromGatewayStart(t *testing.T) {
	var b bytes.Buffer
	enc, _ := NewEncoder(&b, "cef", "exporter-9")
	call := joined(t, lineCallRead, lineResultOK)
	enc.Write(call)
	start := parse(t, lineGatewayStart)
	enc.Observe(start)
	start.Version = "overwritten" // the record is reused by the reader: the encoder keeps a copy
	enc.Write(call)
	enc.Close()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "CEF:0|Interlock|interlock|exporter-9|") ||
		!strings.HasPrefix(lines[1], "CEF:0|Interlock|interlock|1.4.0|") {
		t.Errorf("versions: %q", lines)
	}
	if _, err := NewEncoder(&b, "xml", "v"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestSeverity(t *testing.T) {
	kinds := eventKinds(t)
	for name, want := range map[string]Severity{
		"call denied":                      SeverityMedium,
		"call allowed read":                SeverityInformational,
		"call allowed, exception":          SeverityMedium, // alert
		"call monitor-denied, error, IPv6": SeverityMedium,
		"result alone":                     SeverityLow,
		"request.rejected":                 SeverityMedium,
		"request.rejected_suppressed":      SeverityMedium,
		"session.open":                     SeverityInformational,
		"session.open refused":             SeverityMedium,
		"session.close with error":         SeverityLow,
		"gateway.start":                    SeverityInformational,
		"policy.load_failed":               SeverityMedium,
		"tls.load":                         SeverityInformational,
		"tls.load_failed":                  SeverityMedium,
		"pki.load":                         SeverityInformational,
		"pki.load_failed":                  SeverityMedium,
		"upstream_tls.load":                SeverityInformational,
		"upstream_tls.load_failed":         SeverityMedium,
		"audit.checkpoint":                 SeverityInformational,
		"audit.recovered":                  SeverityHigh,
		"unknown event":                    SeverityInformational,
	} {
		if got := SeverityOf(kinds[name]); got != want {
			t.Errorf("%s: severity %v, want %v", name, got, want)
		}
	}
	// An allowed write without an alert is Low; with an exception too.
	w := joined(t, lineCallWrite, lineResultExc)
	w.Decision.Alert = false
	if got := SeverityOf(w); got != SeverityLow {
		t.Errorf("allowed write with an exception: %v", got)
	}
}

// appendJSONString agrees with encoding/json on every string, invalid
// UTF-8 and control characters included.
func TestJSONStringEscaping(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "\"", "\\", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "é", "€", "𝄞", "\xff", "\xe2\x82", "<", "&", "\u2028", "/"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); utf8.ValidString(s) && back != s || !utf8.ValidString(s) && back != wantReplaced(s) {
			t.Fatalf("%q: round trip %q (want %q)", s, back, want)
		}
	}
}

// wantReplaced is s with each invalid byte replaced, as encoding/json does.
func wantReplaced(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\ufffd")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// A cell that a spreadsheet would run as a formula goes out with a leading
// single quote; a plain number stays a number. The user name is anyone's
// to choose: an OPC UA login attempt without an account is logged with it.
func TestCSVNeutralisesFormulas(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{`=cmd|' /C calc'!A0`, `'=cmd|' /C calc'!A0`},
		{`=HYPERLINK("http://evil/","x")`, `'=HYPERLINK("http://evil/","x")`},
		{`@SUM(1+1)`, `'@SUM(1+1)`},
		{`+1+1`, `'+1+1`},
		{`-2+3`, `'-2+3`},
		{"\t=1", "'\t=1"},
		{"\r=1", "'\r=1"},
		{`-5`, `-5`},
		{`+2.5e-3`, `+2.5e-3`},
		{`-`, `'-`},
		{`-.`, `'-.`},
		{`-1e`, `'-1e`},
		{`alice=bob`, `alice=bob`},
	} {
		name, _ := json.Marshal(tc.user)
		call := strings.Replace(lineCallDenied, `"user":"alice"`, `"user":`+string(name), 1)
		res := strings.Replace(lineResultDenied, `"latency_us":0`, `"code":-5,"latency_us":-7`, 1)
		var b bytes.Buffer
		enc, _ := NewEncoder(&b, "csv", "v")
		if err := enc.Write(joined(t, call, res)); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(strings.NewReader(b.String())).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		col := func(name string) string { return rows[1][slices.Index(CSVHeader, name)] }
		if got := col("user"); got != tc.want {
			t.Errorf("user %q: cell %q, want %q", tc.user, got, tc.want)
		}
		if got := csvCell(tc.user); got != tc.want {
			t.Errorf("user %q: cell %q, want %q", tc.user, got, tc.want)
		}
		if col("status_code") != "-5" || col("latency_us") != "-7" {
			t.Errorf("user %q: negative numbers changed: status_code %q, latency_us %q", tc.user, col("status_code"), col("latency_us"))
		}
	}
}
