package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// plcValues returns two random register values and the pymodbus server
// arguments that set them at 100 and 101, so no test passes on a constant.
func plcValues() (int, int, []string) {
	a, b := 1000+rand.IntN(9000), 1+rand.IntN(999)
	return a, b, []string{"100=" + strconv.Itoa(a), "101=" + strconv.Itoa(b)}
}

// mbpoll → interlock → pymodbus server: a read, a write refused outside a
// maintenance window, the same write allowed once the policy data opens a
// window, and the audit trail of all three.
func TestE2EMbpollThroughGatewayToPymodbus(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)

	// The read returns what the PLC holds.
	r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"})
	if r.code != 0 || r.values[100] != v100 || r.values[101] != v101 {
		t.Fatalf("mbpoll read 100..101 through the gateway: exit %d, values %v, want [100]=%d [101]=%d\n%s", r.code, r.values, v100, v101, r.out)
	}

	// A write outside a maintenance window is refused with Illegal
	// function, and the PLC keeps its value.
	newV := v100 + 1 + rand.IntN(100)
	w := mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(newV))
	if w.code == 0 || !strings.Contains(w.out, "Illegal function") {
		t.Fatalf("mbpoll write outside a window: exit %d, want a failure with Illegal function\n%s", w.code, w.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != v100 {
		t.Fatalf("after a denied write the PLC holds %d at 100, want %d unchanged", got, v100)
	}

	// Open a window covering now: the gateway picks the data up by itself.
	windowName := fmt.Sprintf("CHG-E2E-%04d", rand.IntN(10000))
	g.setWindows(t, pastWindow(), openWindow(windowName))
	var last mbpollResult
	eventually(t, 15*time.Second, 250*time.Millisecond, "the write is allowed once the window is open", func() (bool, string) {
		last = mbpoll(t, g.port, []string{"-r", "100"}, strconv.Itoa(newV))
		return last.code == 0, last.out
	})
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != newV {
		t.Fatalf("after an allowed write the PLC holds %d at 100, want %d", got, newV)
	}
	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.values[100] != newV || r.values[101] != v101 {
		t.Errorf("read through the gateway after the write: %v, want [100]=%d [101]=%d", r.values, newV, v101)
	}

	// In the window, a write into the protected range 200..209 goes
	// through with an alert.
	if w := mbpoll(t, g.port, []string{"-r", "205"}, "77"); w.code != 0 {
		t.Errorf("mbpoll write to 205 in the window: exit %d\n%s", w.code, w.out)
	}
	if got := plcRegisters(t, plc.port, 205, 1)[0]; got != 77 {
		t.Errorf("the PLC holds %d at 205, want 77", got)
	}

	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM, want 0", code)
	}
	recs := readAudit(t, g.auditPath)

	if p := callRecords(recs, "write_single_register", 205); len(p) != 1 {
		t.Errorf("%d call records for the write to 205, want 1", len(p))
	} else {
		if res := checkCallRecord(t, recs, p[0], true); res.str("status") != "ok" {
			t.Errorf("protected range write result: %s", res)
		}
		if p[0].get("decision.alert") != true || !slices.Contains(p[0].strs("decision.reasons"), "protected_range:safety_limits") {
			t.Errorf("protected range write decision %v, want allow with alert and protected_range:safety_limits", p[0].get("decision"))
		}
		g.waitLog(t, time.Second, "a call alert line for the protected range write", func(l map[string]any) bool {
			return l["message"] == "call alert" && l["call_id"] == p[0].str("call_id")
		})
	}

	reads := callRecords(recs, "read_holding_registers", 100)
	if len(reads) == 0 {
		t.Fatal("no call record for the read")
	}
	read := reads[0]
	if res := checkCallRecord(t, recs, read, true); res.str("status") != "ok" {
		t.Errorf("read result status %q, want ok\n%s", res.str("status"), res)
	}
	if read.num("operation.quantity") != 2 || read.num("operation.code") != 3 || read.str("operation.access") != "read" {
		t.Errorf("read call record operation: %v", read.get("operation"))
	}

	writes := callRecords(recs, "write_single_register", 100)
	if len(writes) < 2 {
		t.Fatalf("%d call records for write_single_register, want the denied and the allowed write", len(writes))
	}
	denied, allowed := writes[0], writes[len(writes)-1]
	res := checkCallRecord(t, recs, denied, false)
	if res.str("status") != "denied" {
		t.Errorf("denied write result status %q, want denied\n%s", res.str("status"), res)
	}
	if !slices.Contains(denied.strs("decision.reasons"), "outside_maintenance_window") {
		t.Errorf("denied write reasons %v, want outside_maintenance_window", denied.strs("decision.reasons"))
	}
	res = checkCallRecord(t, recs, allowed, true)
	if res.str("status") != "ok" {
		t.Errorf("allowed write result status %q, want ok\n%s", res.str("status"), res)
	}
	if want := "maintenance_window:" + windowName; !slices.Contains(allowed.strs("decision.reasons"), want) {
		t.Errorf("allowed write reasons %v, want %q", allowed.strs("decision.reasons"), want)
	}
	for _, c := range []record{denied, allowed} {
		if c.num("operation.code") != 6 || c.str("operation.access") != "write" || !slices.Equal(c.ints("operation.values"), []int{newV}) {
			t.Errorf("write call record operation: %v, want code 6, access write, values [%d]", c.get("operation"), newV)
		}
	}
	if denied.str("decision.policy_revision") == allowed.str("decision.policy_revision") {
		t.Errorf("the allowed write was decided by policy revision %s, the same as the denied one: the data change did not make a new revision",
			allowed.str("decision.policy_revision"))
	}
	if denied.str("decision.decision_id") == allowed.str("decision.decision_id") {
		t.Errorf("two decisions share the id %s", denied.str("decision.decision_id"))
	}
	if loads := eventsOf(recs, "policy.load"); len(loads) < 2 || loads[len(loads)-1].str("policy_revision") != allowed.str("decision.policy_revision") {
		t.Errorf("want a policy.load record for revision %s (the open window); policy.load records: %v", allowed.str("decision.policy_revision"), loads)
	}
	if last := recs[len(recs)-1]; last.str("event") != "gateway.stop" {
		t.Errorf("the last audit record is %s, want gateway.stop", last.str("event"))
	}
	verifyAudit(t, g.auditPath)
}

// pymodbus client → interlock → pymodbus server: a read, and FC16 and FC15
// writes refused outside a maintenance window with exception 1.
func TestE2EPymodbusClientThroughGateway(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	g.start(t)

	if r := pyclient(t, g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{v100, v101}) {
		t.Fatalf("pymodbus read 100..101 through the gateway: %+v, want [%d %d]", r, v100, v101)
	}
	// The PLC's own exception comes back as it is: pymodbus holds 1000
	// registers, so 998..1002 is an illegal data address (2).
	if r := pyclient(t, g.port, "read", 998, 5); r.Exception == nil || *r.Exception != 2 {
		t.Errorf("pymodbus read 998..1002 through the gateway: %+v, want the PLC's exception 2", r)
	}
	if r := pyclient(t, g.port, "write", 100, 7, 8); r.Exception == nil || *r.Exception != 1 {
		t.Errorf("pymodbus FC16 write outside a window: %+v, want exception 1", r)
	}
	if r := pyclient(t, g.port, "coils", 10, 1, 0, 1); r.Exception == nil || *r.Exception != 1 {
		t.Errorf("pymodbus FC15 write outside a window: %+v, want exception 1", r)
	}
	if got := plcRegisters(t, plc.port, 100, 2); !slices.Equal(got, []int{v100, v101}) {
		t.Errorf("the PLC holds %v at 100..101 after denied writes, want [%d %d]", got, v100, v101)
	}
	if r := pyclient(t, plc.port, "read_coils", 10, 3); !slices.Equal(r.Bits, []int{0, 0, 0}) {
		t.Errorf("the PLC's coils 10..12 after a denied FC15: %+v, want [0 0 0]", r)
	}

	// Another workstation, in no inventory entry: 127.0.0.2. It may read
	// (with an alert), and may not write even inside a window.
	if r := pyclientFrom(t, "127.0.0.2", g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{v100, v101}) {
		t.Errorf("pymodbus read from 127.0.0.2: %+v, want [%d %d]", r, v100, v101)
	}
	g.setWindows(t, pastWindow(), openWindow("CHG-E2E-PY"))
	eventually(t, 15*time.Second, 250*time.Millisecond, "an FC16 write from 127.0.0.1 allowed in the window", func() (bool, string) {
		r := pyclient(t, g.port, "write", 100, 9, 10)
		return r.Exception == nil && r.Error == "", fmt.Sprintf("%+v", r)
	})
	if got := plcRegisters(t, plc.port, 100, 2); !slices.Equal(got, []int{9, 10}) {
		t.Errorf("the PLC holds %v at 100..101 after the allowed FC16, want [9 10]", got)
	}
	if r := pyclientFrom(t, "127.0.0.2", g.port, "write", 100, 11, 12); r.Exception == nil || *r.Exception != 1 {
		t.Errorf("pymodbus FC16 from 127.0.0.2 in the window: %+v, want exception 1", r)
	}
	if got := plcRegisters(t, plc.port, 100, 2); !slices.Equal(got, []int{9, 10}) {
		t.Errorf("the PLC holds %v at 100..101 after a write from an unknown source, want [9 10]", got)
	}

	recs := waitAudit(t, g.auditPath, 3*time.Second, "the last write's call and result records", func(recs []record) bool {
		c := callRecords(recs, "write_multiple_registers", 100)
		return len(c) > 0 && c[len(c)-1].str("source.ip") == "127.0.0.2" && resultOf(recs, c[len(c)-1].str("call_id")) != nil
	})
	var unknown []record
	for _, c := range eventsOf(recs, "call") {
		if c.str("source.ip") == "127.0.0.2" {
			unknown = append(unknown, c)
		}
	}
	if len(unknown) != 2 {
		t.Fatalf("%d call records from 127.0.0.2, want 2 (a read and a write)", len(unknown))
	}
	for _, c := range unknown {
		if c.str("source.name") != "" || c.str("principal.user") != "" || c.str("principal.auth") != "none" || c.get("decision.alert") != true {
			t.Errorf("a call from an unknown source: source %v, principal %v, decision %v; want no name, no user, auth none, an alert",
				c.get("source"), c.get("principal"), c.get("decision"))
		}
	}
	if unknown[0].get("decision.allow") != true || resultOf(recs, unknown[0].str("call_id")).str("status") != "ok" {
		t.Errorf("the read from an unknown source: %s", unknown[0])
	}
	if reasons := unknown[1].strs("decision.reasons"); unknown[1].get("decision.allow") != false ||
		!slices.Contains(reasons, "source_not_approved") || !slices.Contains(reasons, "account_not_approved") ||
		slices.Contains(reasons, "outside_maintenance_window") {
		t.Errorf("the write from an unknown source in the window: decision %v, want deny for source_not_approved and account_not_approved only",
			unknown[1].get("decision"))
	}
	if last := callRecords(recs, "write_multiple_registers", 100); len(last) < 3 ||
		checkCallRecord(t, recs, last[len(last)-2], true).str("status") != "ok" {
		t.Errorf("no allowed FC16 from ews-alice in the window: %v", last)
	}
	var read []record
	for _, c := range callRecords(recs, "read_holding_registers", 100) {
		if c.str("source.ip") == "127.0.0.1" {
			read = append(read, c)
		}
	}
	if len(read) != 1 {
		t.Fatalf("%d read call records from 127.0.0.1, want 1", len(read))
	}
	if res := checkCallRecord(t, recs, read[0], true); res.str("status") != "ok" {
		t.Errorf("read result: %s", res)
	}
	if ex := callRecords(recs, "read_holding_registers", 998); len(ex) != 1 {
		t.Errorf("%d call records for the read at 998, want 1", len(ex))
	} else if res := checkCallRecord(t, recs, ex[0], true); res.str("status") != "exception" || res.num("code") != 2 {
		t.Errorf("the read the PLC refused: result %s, want status exception, code 2", res)
	}
	for _, tc := range []struct {
		function string
		code     int
		values   []int
	}{
		{"write_multiple_registers", 16, []int{7, 8}},
		{"write_multiple_coils", 15, []int{1, 0, 1}},
	} {
		calls := callRecords(recs, tc.function, -1)
		if len(calls) == 0 {
			t.Errorf("no %s call records", tc.function)
			continue
		}
		c := calls[0] // the write outside the window
		res := checkCallRecord(t, recs, c, false)
		if res.str("status") != "denied" {
			t.Errorf("%s result status %q, want denied", tc.function, res.str("status"))
		}
		if int(c.num("operation.code")) != tc.code || int(c.num("operation.quantity")) != len(tc.values) ||
			!slices.Equal(c.ints("operation.values"), tc.values) || c.str("operation.access") != "write" {
			t.Errorf("%s call record operation %v, want code %d, values %v", tc.function, c.get("operation"), tc.code, tc.values)
		}
		if !slices.Contains(c.strs("decision.reasons"), "outside_maintenance_window") {
			t.Errorf("%s reasons %v, want outside_maintenance_window", tc.function, c.strs("decision.reasons"))
		}
	}
}

// Malformed frames from a raw TCP client are refused cleanly and audited,
// while mbpoll on another connection keeps reading.
func TestE2EBadInputWhileOthersKeepWorking(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, frameTimeout: "500ms"})
	g.start(t)

	poller := startPoller(t, g.port, "-r", "100", "-c", "2")
	good := func(p string) bool {
		v := parseMbpollValues(p)
		return v[100] == v100 && v[101] == v101
	}
	first := poller.waitPoll(t, 0, 10*time.Second, "a first good poll", good)

	dial := func() net.Conn {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(g.port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// expectClosed reads until the gateway closes the connection; it must
	// send nothing.
	expectClosed := func(c net.Conn, what string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the gateway kept the connection open for 5 s", what)
		}
		if len(b) != 0 {
			t.Errorf("%s: the gateway answered % x, want the connection closed without an answer", what, b)
		}
	}
	// roundTrip sends an ADU and reads one answer frame.
	roundTrip := func(c net.Conn, adu []byte) []byte {
		t.Helper()
		if len(adu) > 0 {
			if _, err := c.Write(adu); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 7)
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("reading the answer to % x: %v", adu, err)
		}
		body := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatalf("reading the answer to % x: %v", adu, err)
		}
		return append(hdr, body...)
	}
	adu := func(tid, proto uint16, unit byte, pdu ...byte) []byte {
		b := binary.BigEndian.AppendUint16(nil, tid)
		b = binary.BigEndian.AppendUint16(b, proto)
		b = binary.BigEndian.AppendUint16(b, uint16(1+len(pdu)))
		return append(append(b, unit), pdu...)
	}
	readHR := []byte{0x03, 0x00, 100, 0x00, 0x02}

	// 1. MBAP protocol id 1: no answer, the connection closed.
	c1 := dial()
	if _, err := c1.Write(adu(0x0101, 1, 1, readHR...)); err != nil {
		t.Fatal(err)
	}
	expectClosed(c1, "MBAP protocol id 1")

	// 2. MBAP length 0xFFFF: no answer, the connection closed.
	c2 := dial()
	bad := adu(0x0102, 0, 1, readHR...)
	binary.BigEndian.PutUint16(bad[4:], 0xFFFF)
	if _, err := c2.Write(bad); err != nil {
		t.Fatal(err)
	}
	expectClosed(c2, "MBAP length 0xFFFF")

	// 3. Half a frame, then silence past modbus.frame_timeout (500ms): the
	// connection closed without an answer.
	cHalf := dial()
	if _, err := cHalf.Write(adu(0x0106, 0, 1, readHR...)[:5]); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	expectClosed(cHalf, "half a frame")
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("half a frame: closed after %s, before frame_timeout (500ms)", d)
	}

	// 4. FC16, quantity 2 with byte count 3 (CVE-2019-14462/14463 shape):
	// exception 3, and the session goes on.
	c3 := dial()
	fc16 := []byte{0x10, 0x00, 100, 0x00, 0x02, 0x03, 0x12, 0x34, 0x56}
	got := roundTrip(c3, adu(0x0103, 0, 1, fc16...))
	if want := adu(0x0103, 0, 1, 0x90, 0x03); !slices.Equal(got, want) {
		t.Errorf("FC16 with byte count 3 for 2 registers: answer % x, want % x (exception 3)", got, want)
	}
	// 5. FC16 with no data at all (MBAP + function code only): exception 3.
	got = roundTrip(c3, adu(0x0104, 0, 1, 0x10))
	if want := adu(0x0104, 0, 1, 0x90, 0x03); !slices.Equal(got, want) {
		t.Errorf("FC16 without data: answer % x, want % x (exception 3)", got, want)
	}
	// The same connection still reads; two requests in one segment are
	// answered in order, and a request split over two segments is whole.
	readAnswer := func(tid uint16) []byte {
		return adu(tid, 0, 1, 0x03, 4, byte(v100>>8), byte(v100), byte(v101>>8), byte(v101))
	}
	if got := roundTrip(c3, adu(0x0105, 0, 1, readHR...)); !slices.Equal(got, readAnswer(0x0105)) {
		t.Errorf("a read after the refusals on the same connection: % x, want % x", got, readAnswer(0x0105))
	}
	two := append(adu(0x0107, 0, 1, readHR...), adu(0x0108, 0, 1, readHR...)...)
	if got := roundTrip(c3, two); !slices.Equal(got, readAnswer(0x0107)) {
		t.Errorf("the first of two requests in one segment: % x, want % x", got, readAnswer(0x0107))
	}
	if got := roundTrip(c3, nil); !slices.Equal(got, readAnswer(0x0108)) {
		t.Errorf("the second of two requests in one segment: % x, want % x", got, readAnswer(0x0108))
	}
	split := adu(0x0109, 0, 1, readHR...)
	if _, err := c3.Write(split[:4]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := roundTrip(c3, split[4:]); !slices.Equal(got, readAnswer(0x0109)) {
		t.Errorf("a request split over two segments: % x, want % x", got, readAnswer(0x0109))
	}

	// mbpoll kept reading all along, and still does.
	after := len(poller.polls())
	poller.waitPoll(t, after+2, 10*time.Second, "good polls after the bad input", good)
	for i, p := range poller.polls()[first : after+2] {
		if !good(p) {
			t.Errorf("mbpoll poll %d while bad input came in: %q, want [100]=%d [101]=%d", first+i, strings.TrimSpace(p), v100, v101)
		}
	}
	if got := plcRegisters(t, plc.port, 100, 2); !slices.Equal(got, []int{v100, v101}) {
		t.Errorf("the PLC holds %v at 100..101, want [%d %d]: a malformed write got through", got, v100, v101)
	}

	recs := waitAudit(t, g.auditPath, 3*time.Second, "five request.rejected records", func(recs []record) bool {
		return len(eventsOf(recs, "request.rejected")) >= 5
	})
	rejected := eventsOf(recs, "request.rejected")
	find := func(reason, response string, code int) record {
		for _, r := range rejected {
			if r.str("reason") == reason && r.str("response") == response && (code < 0 || int(r.num("operation.code")) == code) {
				return r
			}
		}
		t.Errorf("no request.rejected record with reason %s, response %q, code %d; rejected: %v", reason, response, code, rejected)
		return nil
	}
	for _, r := range []record{
		find("bad_protocol_id", "close", -1),
		find("bad_length", "close", -1),
		find("stalled_frame", "close", -1),
		find("byte_count_mismatch", "exception 0x03", 16),
		find("bad_length", "exception 0x03", 16),
	} {
		if r == nil {
			continue
		}
		if r.str("source.ip") != "127.0.0.1" || r.str("source.name") != "ews-alice" || r.str("target.name") != "plc1" ||
			r.str("detail") == "" || r.str("call_id") == "" || r.str("session_id") == "" {
			t.Errorf("request.rejected record lacks source, target, detail or ids: %s", r)
		}
	}
	if c := callRecords(recs, "write_multiple_registers", -1); len(c) != 0 {
		t.Errorf("malformed writes reached the policy: call records %v", c)
	}
}

// Monitor mode forwards what the policy would deny, with an alert, and
// the record keeps the policy's verdict.
func TestE2EMonitorModeForwardsWithAlert(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, mode: "monitor"})
	g.start(t)
	if w := mbpoll(t, g.port, []string{"-r", "100"}, "4321"); w.code != 0 {
		t.Fatalf("mbpoll write outside a window in monitor mode: exit %d\n%s", w.code, w.out)
	}
	if got := plcRegisters(t, plc.port, 100, 1)[0]; got != 4321 {
		t.Errorf("the PLC holds %d at 100, want 4321", got)
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "the write's result", func(recs []record) bool {
		c := callRecords(recs, "write_single_register", 100)
		return len(c) == 1 && resultOf(recs, c[0].str("call_id")) != nil
	})
	c := callRecords(recs, "write_single_register", 100)[0]
	if res := checkCallRecord(t, recs, c, false); res.str("status") != "ok" {
		t.Errorf("monitor mode write result %s, want ok", res)
	}
	if r := c.strs("decision.reasons"); c.get("decision.alert") != true || c.str("decision.mode") != "monitor" ||
		!slices.Contains(r, "outside_maintenance_window") || !slices.Contains(r, "monitor_would_deny") {
		t.Errorf("monitor mode decision %v, want allow false, alert, mode monitor, reasons with outside_maintenance_window and monitor_would_deny", c.get("decision"))
	}
	g.waitLog(t, time.Second, "a call alert line", func(l map[string]any) bool {
		return l["message"] == "call alert" && l["call_id"] == c.str("call_id")
	})
}

// One client more than limits.max_conns is refused at once, told so with
// exception 0x0A (gateway path unavailable), and audited; the client inside
// the limit keeps reading, and the slot frees when it leaves.
func TestE2EMaxConnsRefusesOneMore(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, maxConns: 1})
	g.start(t)

	poller := startPoller(t, g.port, "-r", "100", "-c", "2")
	good := func(p string) bool {
		v := parseMbpollValues(p)
		return v[100] == v100 && v[101] == v101
	}
	first := poller.waitPoll(t, 0, 10*time.Second, "a first good poll", good)

	start := time.Now()
	r := mbpoll(t, g.port, []string{"-r", "100"})
	if r.code == 0 || len(r.values) != 0 || !strings.Contains(r.out, "Gateway path unavailable") {
		t.Errorf("a second client with max_conns 1: exit %d, values %v, want exception 0x0A (Gateway path unavailable)\n%s", r.code, r.values, r.out)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %s, want at once", d)
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "a refused session.open", func(recs []record) bool {
		for _, o := range eventsOf(recs, "session.open") {
			if o.get("success") == false {
				return true
			}
		}
		return false
	})
	for _, o := range eventsOf(recs, "session.open") {
		if o.get("success") == false && (!strings.Contains(o.str("reason"), "max_conns") || o.str("source.ip") != "127.0.0.1") {
			t.Errorf("refused session.open: %s, want reason naming max_conns and the source", o)
		}
	}

	after := len(poller.polls())
	poller.waitPoll(t, after+1, 5*time.Second, "good polls after the refusal", good)
	for i, p := range poller.polls()[first : after+1] {
		if !good(p) {
			t.Errorf("poll %d of the client inside the limit: %q", first+i, strings.TrimSpace(p))
		}
	}

	poller.proc.kill()
	eventually(t, 5*time.Second, 100*time.Millisecond, "a new client gets in once the first has left", func() (bool, string) {
		r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"})
		return r.code == 0 && r.values[100] == v100, r.out
	})
}
