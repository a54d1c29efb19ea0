package export

import (
	"bytes"
	"encoding/csv"
	"slices"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit/query"
)

// Records as the gateway writes them: ticket events (policy/tickets.go,
// cmd/interlock/run.go), a Modbus write and mask write, an OPC UA Write and
// Call (gateway/opcua/services.go).
const (
	lineTicketOpenFull = `{"seq":3,"time":"2026-11-27T23:44:52.169111265Z","event":"ticket.open","gateway":"repro","ticket_id":"T-DUP","by":"root","ticket":{"id":"T-DUP","user":"alice","targets":["plc1","plc2"],"access":["write","execute"],"reason":"first","opened_by":"root","opened":"2026-11-27T23:44:52.16910837Z","expires":"2026-11-28T00:44:52.16910837Z","approvals":[]},"prev":"h2","hash":"h3"}`
	lineTicketClose    = `{"seq":4,"time":"2026-11-27T23:44:52.187040069Z","event":"ticket.close","gateway":"repro","ticket_id":"T-DUP","by":"root","ticket":{"id":"T-DUP","user":"alice","targets":["plc1","plc2"],"access":["write","execute"],"reason":"first","opened_by":"root","opened":"2026-11-27T23:44:52.16910837Z","expires":"2026-11-28T00:44:52.16910837Z","approvals":[]},"prev":"h3","hash":"h4"}`
	lineTicketRefused  = `{"seq":5,"time":"2026-11-27T23:45:00.000000000Z","event":"ticket.load_refused","gateway":"repro","reason":"tickets.json: entry 2 (id \"T-OLD\"): a field is missing","prev":"h4","hash":"h5"}`
	lineModbusWrite    = `{"seq":5,"time":"2026-11-27T23:50:02.438933603Z","event":"call","gateway":"repro","call_id":"c5","session_id":"s5","listener":"plc1","source":{"ip":"127.0.0.1","port":60698,"name":"ews-alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},"target":{"name":"plc1","upstream":"tcp://127.0.0.1:22610","unit_id":1},"protocol":"modbus","operation":{"function":"write_single_register","access":"write","code":6,"address":100,"values":[4242]},"decision":{"allow":true,"alert":false,"reasons":["ticket:T-1"],"policy_revision":"r","decision_id":"d5","mode":"enforce","ticket":"T-1"},"prev":"h4","hash":"h5"}`
	lineMaskWrite      = `{"seq":6,"time":"2026-11-27T23:50:03.000000000Z","event":"call","gateway":"repro","call_id":"c6","session_id":"s5","listener":"plc1","source":{"ip":"127.0.0.1","port":60698},"principal":{"auth":"none"},"target":{"name":"plc1","unit_id":1},"protocol":"modbus","operation":{"function":"mask_write_register","access":"write","code":22,"address":4,"and_mask":242,"or_mask":37},"decision":{"allow":true,"alert":false,"reasons":[],"policy_revision":"r","decision_id":"d6","mode":"enforce"},"prev":"h5","hash":"h6"}`
	lineUAWrite        = `{"seq":6,"time":"2026-11-27T23:38:51.615993082Z","event":"call","gateway":"gw","call_id":"c6","session_id":"s6","listener":"line1","source":{"ip":"127.0.0.1","port":57496},"principal":{"user":"bob","auth":"username","roles":["operator"]},"target":{"name":"line1","upstream":"opc.tcp://127.0.0.1:4840"},"protocol":"opcua","operation":{"function":"write","access":"write","node_id":"ns=1;s=Setpoint","browse_path":"/Objects/PLC/Setpoint","attribute":"Value","index_range":"","value":55.5,"data_type":"Double"},"decision":{"allow":true,"alert":false,"reasons":[],"policy_revision":"r","decision_id":"d6","mode":"enforce"},"prev":"h5","hash":"h6"}`
	lineUACall         = `{"seq":12,"time":"2026-11-27T23:38:56.990385567Z","event":"call","gateway":"gw","call_id":"c12","session_id":"s12","listener":"line1","source":{"ip":"127.0.0.1","port":37156},"principal":{"user":"alice","auth":"username","roles":["engineer"]},"target":{"name":"line1","upstream":"opc.tcp://127.0.0.1:4840"},"protocol":"opcua","operation":{"function":"call","access":"execute","object_id":"ns=1;s=PLC","method_id":"ns=1;s=Start","browse_path":"/Objects/PLC/Start","arguments":[700],"argument_types":["Int32"]},"decision":{"allow":false,"alert":true,"reasons":["argument_out_of_range"],"policy_revision":"r","decision_id":"d12","mode":"enforce"},"prev":"h11","hash":"h12"}`
)

// csvRows exports recs as CSV and reads the rows back as header → cell.
func csvRows(t *testing.T, recs ...*query.Record) []map[string]string {
	t.Helper()
	var b bytes.Buffer
	enc, err := NewEncoder(&b, "csv", "v")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := enc.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("header %q", rows[0])
	}
	var out []map[string]string
	for _, row := range rows[1:] {
		m := map[string]string{}
		for i, h := range rows[0] {
			m[h] = row[i]
		}
		out = append(out, m)
	}
	return out
}

func wantCells(t *testing.T, what string, row map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s: column %s = %q, want %q", what, k, row[k], v)
		}
	}
}

func wantCEF(t *testing.T, what, line string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(line+" ", " "+p+" ") {
			t.Errorf("%s: CEF lacks %q:\n%s", what, p, line)
		}
	}
}

// A ticket event names the ticket, its user, targets, access, expiry and
// reason; the operator stays the user of the row.
func TestExportTicketEvents(t *testing.T) {
	open, closed, refused := parse(t, lineTicketOpenFull), parse(t, lineTicketClose), parse(t, lineTicketRefused)
	rows := csvRows(t, open, closed, refused)
	for i, ev := range []string{"ticket.open", "ticket.close"} {
		wantCells(t, ev, rows[i], map[string]string{
			"event": ev, "user": "root", "ticket": "T-DUP", "ticket_user": "alice", "ticket_targets": "plc1,plc2",
			"ticket_access": "write,execute", "ticket_expires": "2026-11-28T00:44:52.16910837Z", "ticket_reason": "first",
		})
	}
	wantCells(t, "ticket.load_refused", rows[2], map[string]string{"detail": `tickets.json: entry 2 (id "T-OLD"): a field is missing`})

	c := CEF(open, "v")
	wantCEF(t, "ticket.open", c, "suser=root", "cs4Label=ticket cs4=T-DUP", "duser=alice", "cs6Label=targets cs6=plc1,plc2",
		"flexString2Label=access flexString2=write,execute", "start=1795823092169", "end=1795826692169", "reason=first")
	if !strings.Contains(c, "msg=ticket.open T-DUP by root: alice may write,execute on plc1,plc2 until 2026-11-28T00:44:52.16910837Z (first) ") {
		t.Errorf("ticket.open summary:\n%s", c)
	}
	wantCEF(t, "ticket.load_refused", CEF(refused, "v"), `reason=tickets.json: entry 2 (id "T-OLD"): a field is missing`)

	// a request refused at the admin socket: what was asked, by whom, why;
	// a failure of medium severity
	adm := parse(t, `{"seq":9,"time":"2026-11-28T00:50:00Z","event":"ticket.refused","gateway":"gw","action":"approve","by":"alice",`+
		`"reason":"ticket: T-1 was opened by alice, who cannot also approve it","ticket_id":"T-1","prev":"x","hash":"y"}`)
	row := csvRows(t, adm)[0]
	wantCells(t, "ticket.refused", row, map[string]string{"user": "alice", "ticket": "T-1",
		"detail": "approve T-1: ticket: T-1 was opened by alice, who cannot also approve it"})
	c = CEF(adm, "v")
	wantCEF(t, "ticket.refused", c, "msg=ticket approve T-1 by alice refused: ticket: T-1 was opened by alice, who cannot also approve it")
	if !strings.Contains(c, "|ticket.refused|6|") && !strings.Contains(c, "|6|") {
		t.Errorf("ticket.refused is not of medium severity (CEF 6):\n%s", c)
	}
}

// What a call wrote is in CSV and CEF; an OPC UA Call names its method,
// object and arguments in their own columns, not as registers.
func TestExportWrittenValuesAndMethodCalls(t *testing.T) {
	recs := []*query.Record{parse(t, lineModbusWrite), parse(t, lineMaskWrite), parse(t, lineUAWrite), parse(t, lineUACall)}
	rows := csvRows(t, recs...)
	wantCells(t, "modbus write", rows[0], map[string]string{"registers": "100", "values": "[4242]", "ticket": "T-1"})
	wantCells(t, "mask write", rows[1], map[string]string{"registers": "4", "values": `{"and_mask":242,"or_mask":37}`})
	wantCells(t, "opc ua write", rows[2], map[string]string{"node_id": "ns=1;s=Setpoint", "values": "55.5", "method_id": "", "arguments": ""})
	wantCells(t, "opc ua call", rows[3], map[string]string{"registers": "", "node_id": "", "values": "",
		"method_id": "ns=1;s=Start", "object_id": "ns=1;s=PLC", "arguments": "[700]"})

	wantCEF(t, "modbus write", CEF(recs[0], "v"), "cs6Label=registers cs6=100", "interlockValues=[4242]")
	wantCEF(t, "mask write", CEF(recs[1], "v"), `interlockValues={"and_mask":242,"or_mask":37}`)
	wantCEF(t, "opc ua write", CEF(recs[2], "v"), `cs6Label=node cs6=ns\=1;s\=Setpoint`, "interlockValues=55.5")
	call := CEF(recs[3], "v")
	wantCEF(t, "opc ua call", call, `cs6Label=method cs6=ns\=1;s\=Start`, `interlockObjectId=ns\=1;s\=PLC`, "interlockArguments=[700]")
	if strings.Contains(call, "cs6Label=registers") || strings.Contains(call, "interlockValues") {
		t.Errorf("opc ua call: the method is named as registers, or its arguments as written values:\n%s", call)
	}
	if !strings.Contains(call, `called call on line1 method ns\=1;s\=Start: denied`) {
		t.Errorf("opc ua call summary:\n%s", call)
	}
}
