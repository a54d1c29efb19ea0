package modbus_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// With deny_action close, the requests received behind the denied one (sent
// in the same segment) are not forwarded, and each has its record: the log
// holds every request that reached the gateway. Half a frame is not waited
// for.
func TestDenyCloseRecordsRequestsReceivedBehind(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(100, 1500)
	sim.SetHolding(102, 1502)
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, modbus: modbus.Options{DenyAction: modbus.DenyClose}, decide: denyWrites})
	conn := dial(t, g.addr)
	var frames []byte
	frames = append(frames, adu(1, 1, []byte{0x03, 0, 100, 0, 1})...)     // read, forwarded
	frames = append(frames, adu(2, 1, []byte{0x06, 0, 101, 0, 9})...)     // write, denied: close
	frames = append(frames, adu(3, 1, []byte{0x03, 0, 102, 0, 1})...)     // read, received behind
	frames = append(frames, adu(4, 1, []byte{0x03, 0, 103, 0, 1})[:9]...) // half a frame: not waited for
	if _, err := conn.Write(frames); err != nil {
		t.Fatal(err)
	}
	if tid, pdu := readADU(t, conn); tid != 1 || !slices.Equal(pdu, []byte{0x03, 2, 0x05, 0xDC}) {
		t.Fatalf("first answer: tid %d % x, want tid 1 with register 100", tid, pdu)
	}
	if b, err := readAll(conn); err == nil || len(b) != 0 {
		t.Fatalf("after the denied write: %x, %v; want the connection closed without an answer", b, err)
	}
	if n := sim.Requests(); n != 1 {
		t.Errorf("the PLC got %d requests, want 1 (the first read)", n)
	}
	var got []string
	deadline := time.Now().Add(3 * time.Second)
	for {
		got = got[:0]
		for _, r := range g.audit.Records() {
			e := r.Event
			if r.Call != nil {
				f, _ := r.Call.Operation.Field("address")
				e += " " + r.Call.Operation.Function + " " + strconv.FormatInt(f.Int, 10)
			}
			if r.Event == "request.rejected" {
				e += " " + r.Reason + " " + r.Response
				if !strings.Contains(r.Detail, "closed after a denied request (deny_action: close)") || !strings.Contains(r.Detail, "not forwarded") {
					t.Errorf("detail %q", r.Detail)
				}
			}
			got = append(got, e)
		}
		if slices.Contains(got, "session.close") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := []string{
		"session.open",
		"call read_holding_registers 100", "result read_holding_registers 100",
		"call write_single_register 101", "result write_single_register 101",
		"request.rejected read_holding_registers 102 " + modbus.ReasonClosedAfterDenial + " close",
		"session.close",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := g.audit.Events("result"); r[1].Result.Status != gateway.StatusDenied {
		t.Errorf("the write's result %+v, want denied", r[1].Result)
	}
}
