package modbus_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// crc16 is the Modbus RTU frame check (polynomial 0xA001, initial 0xFFFF).
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// rtuDevice is a device speaking RTU framing over TCP that answers reads of
// holding registers (FC 3) for unit 1 with 1000 + address and keeps every
// frame it sees.
type rtuDevice struct {
	addr   string
	mu     sync.Mutex
	frames [][]byte
}

func (d *rtuDevice) seen() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.frames)
}

func startRTUDevice(t *testing.T) *rtuDevice {
	t.Helper()
	d := &rtuDevice{}
	d.addr = serveConns(t, func(conn net.Conn) {
		for {
			// unit, FC, and the fixed part of FCs 1..6 and 15, 16
			f := make([]byte, 8)
			if _, err := io.ReadFull(conn, f); err != nil {
				return
			}
			if f[1] == 15 || f[1] == 16 {
				// f ends with the byte count and the first data byte
				more := make([]byte, int(f[6])-1+2)
				if _, err := io.ReadFull(conn, more); err != nil {
					return
				}
				f = append(f, more...)
			}
			d.mu.Lock()
			d.frames = append(d.frames, f)
			d.mu.Unlock()
			if f[0] != 1 || f[1] != 3 {
				continue // no answer, as a broadcast gets none
			}
			addr, n := binary.BigEndian.Uint16(f[2:]), binary.BigEndian.Uint16(f[4:])
			out := []byte{1, 3, byte(2 * n)}
			for i := range n {
				out = binary.BigEndian.AppendUint16(out, 1000+addr+i)
			}
			out = binary.LittleEndian.AppendUint16(out, crc16(out))
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	})
	return d
}

// Unit id 0 on a serial line is a broadcast: every device acts on a write
// and none answers. The gateway refuses it at once with 0x0A, before the
// policy and the line, so that it neither waits request_timeout for an
// answer that never comes nor holds the line other clients poll through.
func TestSerialBroadcastIsRefused(t *testing.T) {
	dev := startRTUDevice(t)
	var decided atomic.Int32
	allow := func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
		if c.Target.UnitID == 0 {
			decided.Add(1)
		}
		return gateway.Decision{Allow: true}, nil
	}
	upstream := "rtuovertcp://" + dev.addr
	g := startGateway(t, gwOpts{upstream: upstream, decide: allow, limits: gateway.Limits{RequestTimeout: 2 * time.Second}})

	// Another client polls unit 1 all along.
	stop := make(chan struct{})
	var polls, slow atomic.Int32
	var pollErr atomic.Value
	var wg sync.WaitGroup
	wg.Go(func() {
		c := client(t, g.addr, 1)
		for {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			got, err := c.ReadHoldingRegisters(context.Background(), 10, 2)
			if err != nil || !slices.Equal(regs(got), []uint16{1010, 1011}) {
				pollErr.Store(err)
				return
			}
			if time.Since(start) > 500*time.Millisecond {
				slow.Add(1)
			}
			polls.Add(1)
		}
	})
	for polls.Load() == 0 && pollErr.Load() == nil {
		time.Sleep(time.Millisecond)
	}
	bc := client(t, g.addr, 0)
	for i := range 5 {
		start := time.Now()
		if _, err := bc.WriteSingleRegister(context.Background(), 10, uint16(i)); exceptionCode(err) != modbus.ExGatewayPathUnavailable {
			t.Fatalf("broadcast write: %v, want exception 0x0A", err)
		}
		if _, err := bc.ReadHoldingRegisters(context.Background(), 10, 1); exceptionCode(err) != modbus.ExGatewayPathUnavailable {
			t.Fatalf("broadcast read: %v, want exception 0x0A", err)
		}
		if el := time.Since(start); el > 500*time.Millisecond {
			t.Errorf("a broadcast write and read refused after %v; want at once (request_timeout is 2s)", el)
		}
	}
	for polls.Load() < 20 && pollErr.Load() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if err := pollErr.Load(); err != nil {
		t.Fatalf("the poll of unit 1 failed: %v", err)
	}
	if n := slow.Load(); n > 0 {
		t.Errorf("%d polls of unit 1 took over 500ms", n)
	}
	for _, f := range dev.seen() {
		if f[0] != 1 {
			t.Errorf("the device saw frame % x: want none but unit 1's", f)
		}
	}
	if n := decided.Load(); n != 0 {
		t.Errorf("the policy decided %d unit-0 calls; want none", n)
	}
	var rejected int
	for _, r := range g.audit.Events("request.rejected") {
		rejected++
		if r.Reason != modbus.ReasonBroadcast || r.Response != "exception 0x0a" || r.Call.Target.UnitID != 0 {
			t.Errorf("rejected %s (%s), unit %d; want %s (exception 0x0a), unit 0", r.Reason, r.Response, r.Call.Target.UnitID, modbus.ReasonBroadcast)
		}
		if !strings.Contains(r.Detail, "broadcast on the serial line behind "+upstream) || !strings.Contains(r.Detail, "does not forward broadcasts") {
			t.Errorf("detail %q", r.Detail)
		}
	}
	if rejected != 10 {
		t.Errorf("%d request.rejected records, want 10 (5 writes, 5 reads)", rejected)
	}
	for _, c := range g.audit.Events("call") {
		if c.Call.Target.UnitID == 0 {
			t.Errorf("a call record for unit 0: %+v", c.Call)
		}
	}
}

// On Modbus TCP unit id 0 addresses the device itself: it is forwarded.
func TestUnitZeroOverTCPIsForwarded(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr})
	if _, err := client(t, g.addr, 0).WriteSingleRegister(context.Background(), 10, 77); err != nil {
		t.Fatal(err)
	}
	if v := sim.Holding(10); v != 77 {
		t.Fatalf("register 10 = %d, want 77", v)
	}
	if n := len(g.audit.Events("request.rejected")); n != 0 {
		t.Fatalf("%d request.rejected records, want none", n)
	}
}

// mbpoll, a client nobody here wrote, asks unit 0 behind an RTU-over-TCP
// pymodbus device: it is told 0x0A (gateway path unavailable) at once, and
// unit 1 is read as before.
func TestSerialBroadcastMbpoll(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerPymodbus)
	gatewaytest.RequirePeer(t, gatewaytest.PeerMbpoll)
	addr := freeTCPAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := startProcess(t, gatewaytest.SystemPython, "testdata/pymodbus_rtu_server.py", "tcp", port)
	portNum, _ := strconv.Atoi(port)
	waitListening(t, cmd.Process.Pid, portNum)
	g := startGateway(t, gwOpts{upstream: "rtuovertcp://" + addr, limits: gateway.Limits{RequestTimeout: 2 * time.Second}})
	if got := readThrough(t, g); !slices.Equal(got, []uint16{1010, 1011, 1012}) {
		t.Fatalf("read %v, want [1010 1011 1012]", got)
	}
	_, gwPort, _ := net.SplitHostPort(g.addr)
	for _, write := range [][]string{nil, {"7"}} {
		args := append([]string{"-m", "tcp", "-a", "0", "-0", "-1", "-o", "5", "-p", gwPort, "-r", "10", "127.0.0.1"}, write...)
		start := time.Now()
		out, err := exec.Command("mbpoll", args...).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "gateway path unavailable") {
			t.Errorf("mbpoll %s: %v\n%s\nwant gateway path unavailable", strings.Join(args, " "), err, out)
		}
		if el := time.Since(start); el > time.Second {
			t.Errorf("mbpoll %s: answered after %v; want at once (request_timeout is 2s)", strings.Join(args, " "), el)
		}
	}
	if got := readThrough(t, g); !slices.Equal(got, []uint16{1010, 1011, 1012}) {
		t.Fatalf("after the broadcasts: %v, want [1010 1011 1012] (the write reached the device)", got)
	}
	if r := g.audit.Events("request.rejected"); len(r) != 2 || r[0].Reason != modbus.ReasonBroadcast || r[1].Reason != modbus.ReasonBroadcast {
		t.Fatalf("request.rejected records %+v, want two broadcast", r)
	}
}
