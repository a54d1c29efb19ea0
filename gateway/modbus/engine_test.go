package modbus_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mb "github.com/grid-x/modbus"
	"github.com/rs/zerolog"
	"go.yaml.in/yaml/v3"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// startSim runs a simulator on addr ("" for a free port).
func startSim(t testing.TB, addr string, o modbussim.Options) (*modbussim.Server, string) {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // a restarted PLC may find its port in TIME_WAIT for a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := modbussim.New(o)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return s, ln.Addr().String()
}

// reserveAddr holds a free port on 127.0.0.1 with a socket that is bound
// but does not listen: a connection to it is refused, and no other socket,
// in this process or another test binary's, can take the port until
// release. (Closing a listener to get a "free" port leaves it to whoever
// binds next.)
func reserveAddr(t *testing.T) (string, func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { syscall.Close(fd) }) }
	t.Cleanup(release)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)), release
}

type gw struct {
	addr  string
	audit *gatewaytest.Auditor
	stop  func() // shuts the listener down and waits for it
	eng   *modbus.Engine
}

type gwOpts struct {
	upstream string
	modbus   modbus.Options
	decide   gatewaytest.Decider
	limits   gateway.Limits
	log      io.Writer // the operational log; nil: none
}

func startGateway(t testing.TB, o gwOpts) *gw {
	t.Helper()
	a := &gatewaytest.Auditor{}
	p := &gateway.Pipeline{Decider: o.decide, Auditor: a}
	if o.limits.RequestTimeout == 0 {
		o.limits.RequestTimeout = time.Second
	}
	if o.limits.IdleTimeout == 0 {
		o.limits.IdleTimeout = time.Minute
	}
	if o.limits.MaxConnsPerSource == 0 {
		// Every test client comes from 127.0.0.1: the per-source cap is
		// max_conns unless a test sets it.
		o.limits.MaxConnsPerSource = cmp.Or(o.limits.MaxConns, gateway.DefaultMaxConns)
	}
	if o.modbus.FrameTimeout == 0 {
		o.modbus.FrameTimeout = 300 * time.Millisecond
	}
	target := gateway.Target{Name: "plc1", Upstream: o.upstream, UnitID: -1}
	log := zerolog.Nop()
	if o.log != nil {
		log = zerolog.New(o.log)
	}
	eng, err := modbus.New(gateway.EngineSpec{
		Listener: "plc1", Upstream: o.upstream, Target: target, Limits: o.limits, Pipeline: p,
		Options: func(into any) error { *into.(*modbus.Options) = o.modbus; return nil },
		Log:     log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &gateway.Listener{Name: "plc1", Protocol: "modbus", Gateway: "gw", Target: target,
		Engine: eng, Pipeline: p, Limits: o.limits, Log: log, RefusalInterval: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Serve(ctx, ln); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(func() {
		stop()
		eng.Close()
	})
	return &gw{addr: ln.Addr().String(), audit: a, stop: stop, eng: eng.(*modbus.Engine)}
}

// A shutdown answers the request in flight: the PLC acted on it, and a
// client told "connection reset" would send it again.
func TestShutdownAnswersRequestInFlight(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{Delay: 400 * time.Millisecond})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: gatewaytest.AllowAll})
	c := client(t, g.addr, 1)
	idle := client(t, g.addr, 1)
	if _, err := idle.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() {
		_, err := c.WriteSingleRegister(context.Background(), 100, 4242)
		answered <- err
	}()
	for sim.Requests() < 2 {
		time.Sleep(5 * time.Millisecond) // the PLC has the write; it acts and answers 400 ms later
	}
	stopped := make(chan struct{})
	go func() { g.stop(); close(stopped) }()
	if err := <-answered; err != nil {
		t.Fatalf("the write in flight at shutdown: %v", err)
	}
	<-stopped
	if v := sim.Holding(100); v != 4242 {
		t.Errorf("the PLC register is %d", v)
	}
	if _, err := net.DialTimeout("tcp", g.addr, time.Second); err == nil {
		t.Error("the listener still accepts after shutdown")
	}
	if r := g.audit.Events("result"); len(r) != 2 || r[1].Result.Status != gateway.StatusOK {
		t.Errorf("result records %+v", r)
	}
}

func client(t *testing.T, addr string, unit byte) mb.Client {
	t.Helper()
	h := mb.NewTCPClientHandler(addr)
	h.Timeout = 5 * time.Second
	h.SetSlave(unit)
	t.Cleanup(func() { h.Close() })
	return mb.NewClient(h)
}

func regs(b []byte) []uint16 {
	var out []uint16
	for i := 0; i+1 < len(b); i += 2 {
		out = append(out, binary.BigEndian.Uint16(b[i:]))
	}
	return out
}

func exceptionCode(err error) byte {
	var me *mb.Error
	if errors.As(err, &me) {
		return me.ExceptionCode
	}
	return 0
}

func denyWrites(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
	if c.Operation.Access == gateway.AccessWrite {
		return gateway.Decision{Allow: false, Reasons: []string{"outside_maintenance_window"}}, nil
	}
	return gateway.Decision{Allow: true}, nil
}

func TestReadThroughGatewayIsAudited(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(100, 1500)
	sim.SetHolding(101, 42)
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr})
	got, err := client(t, g.addr, 1).ReadHoldingRegisters(context.Background(), 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(regs(got), []uint16{1500, 42}) {
		t.Fatalf("read %v, want [1500 42]", regs(got))
	}
	calls, results := g.audit.Events("call"), g.audit.Events("result")
	if len(calls) != 1 || len(results) != 1 {
		t.Fatalf("%d call and %d result records, want 1 and 1", len(calls), len(results))
	}
	c := calls[0].Call
	if c.Operation.Function != "read_holding_registers" || c.Target.UnitID != 1 || c.Target.Name != "plc1" {
		t.Fatalf("call %+v", c)
	}
	if f, _ := c.Operation.Field("address"); f.Int != 100 {
		t.Fatalf("address field %+v", f)
	}
	if r := results[0].Result; r.Status != gateway.StatusOK || r.Latency <= 0 {
		t.Fatalf("result %+v", r)
	}
}

// A deny_exception of 0 is refused, not taken for the default: 0 is no
// exception code, and a client would get Illegal Function where the file
// seems to ask for something else.
func TestDenyExceptionCodes(t *testing.T) {
	for _, tc := range []struct {
		section string
		wantErr string
	}{
		{"deny_exception: 0", "deny_exception: 0 is not an exception code (1..255)"},
		{"deny_exception: 256", "deny_exception: 256 is not an exception code (1..255)"},
		{"deny_exception: 4", ""},
		{"deny_action: exception", ""},
	} {
		spec := gateway.EngineSpec{
			Listener: "plc1", Upstream: "tcp://127.0.0.1:1",
			Options: func(into any) error { return yaml.Unmarshal([]byte(tc.section), into) },
		}
		_, err := modbus.New(spec)
		if got := fmt.Sprint(err); (tc.wantErr == "" && err != nil) || (tc.wantErr != "" && got != tc.wantErr) {
			t.Errorf("%s: got %v, want %q", tc.section, err, tc.wantErr)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDeniedWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts modbus.Options
		want byte
	}{
		{"default exception", modbus.Options{}, modbus.ExIllegalFunction},
		{"configured exception", modbus.Options{DenyException: ptr(int(modbus.ExIllegalDataAddress))}, modbus.ExIllegalDataAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, simAddr := startSim(t, "", modbussim.Options{})
			sim.SetHolding(100, 1500)
			g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, modbus: tc.opts, decide: denyWrites})
			_, err := client(t, g.addr, 1).WriteSingleRegister(context.Background(), 100, 9999)
			if exceptionCode(err) != tc.want {
				t.Fatalf("got %v, want exception %d", err, tc.want)
			}
			if v := sim.Holding(100); v != 1500 {
				t.Fatalf("PLC register changed to %d by a denied write", v)
			}
			if r := g.audit.Events("result"); len(r) != 1 || r[0].Result.Status != gateway.StatusDenied {
				t.Fatalf("result records %+v", r)
			}
		})
	}
	t.Run("close", func(t *testing.T) {
		sim, simAddr := startSim(t, "", modbussim.Options{})
		sim.SetHolding(100, 1500)
		g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, modbus: modbus.Options{DenyAction: modbus.DenyClose}, decide: denyWrites})
		conn := dial(t, g.addr)
		conn.Write(adu(7, 1, []byte{6, 0, 100, 0, 1}))
		if b, err := readAll(conn); err == nil || len(b) != 0 {
			t.Fatalf("got %x, %v; want the connection closed without an answer", b, err)
		}
		if v := sim.Holding(100); v != 1500 {
			t.Fatalf("PLC register changed to %d by a denied write", v)
		}
		if r := g.audit.Events("result"); len(r) != 1 || r[0].Result.Status != gateway.StatusDenied {
			t.Fatalf("result records %+v, want one denied", r)
		}
	})
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func adu(tid uint16, unit byte, pdu []byte) []byte {
	return modbus.AppendADU(nil, tid, unit, pdu)
}

// readADU reads one answer frame.
func readADU(t *testing.T, c net.Conn) (uint16, []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h := make([]byte, 7)
	if _, err := io.ReadFull(c, h); err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	pdu := make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
	if _, err := io.ReadFull(c, pdu); err != nil {
		t.Fatalf("reading an answer: %v", err)
	}
	return binary.BigEndian.Uint16(h), pdu
}

// readAll reads until the gateway closes the connection (or 5 s pass).
func readAll(c net.Conn) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err == nil {
		err = io.EOF // closed by the gateway
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, nil // still open: not closed
	}
	return b, err
}

func TestTransactionIDsPipeliningAndSplitSegments(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	for i := range uint16(3) {
		sim.SetHolding(10+i, 100+i)
	}
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr})
	c := dial(t, g.addr)
	var burst []byte
	for i, tid := range []uint16{0xBEEF, 7, 0xFFFF} {
		burst = append(burst, adu(tid, 1, []byte{3, 0, byte(10 + i), 0, 1})...)
	}
	c.Write(burst)
	for i, want := range []uint16{0xBEEF, 7, 0xFFFF} {
		tid, pdu := readADU(t, c)
		if tid != want || !slices.Equal(pdu, []byte{3, 2, 0, byte(100 + i)}) {
			t.Fatalf("answer %d: tid %#x pdu % x; want tid %#x and register %d", i, tid, pdu, want, 100+i)
		}
	}
	// One request, one byte per segment.
	for _, b := range adu(0x1234, 1, []byte{3, 0, 11, 0, 1}) {
		c.Write([]byte{b})
		time.Sleep(2 * time.Millisecond)
	}
	if tid, pdu := readADU(t, c); tid != 0x1234 || !slices.Equal(pdu, []byte{3, 2, 0, 101}) {
		t.Fatalf("split request: tid %#x pdu % x", tid, pdu)
	}
}

func header(tid, proto, length uint16, unit byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, proto)
	b = binary.BigEndian.AppendUint16(b, length)
	return append(b, unit)
}

func TestBadInputIsRefusedAndOthersKeepWorking(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(0, 77)
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr})
	bystander := client(t, g.addr, 1)

	long := make([]byte, 300)
	long[0] = 0x10
	for _, tc := range []struct {
		name      string
		send      []byte
		exception byte // 0: the connection is closed without an answer
		reason    string
	}{
		{"protocol id not 0", append(header(1, 1, 6, 1), 3, 0, 0, 0, 1), 0, "bad_protocol_id"},
		{"length 0", header(1, 0, 0, 1), 0, "bad_length"},
		{"length 1", append(header(1, 0, 1, 1), 3), 0, "bad_length"},
		{"length 0xFFFF", append(header(1, 0, 0xFFFF, 1), long...), 0, "bad_length"},
		{"length 255: a PDU of 254 bytes", append(header(1, 0, 255, 1), long[:254]...), 0, "bad_length"},
		{"length longer than the bytes sent", append(header(1, 0, 12, 1), 3, 0, 0, 0, 1), 0, "stalled_frame"},
		{"MBAP and function code only", append(header(1, 0, 2, 1), 3), modbus.ExIllegalDataValue, "bad_length"},
		{"length shorter than the request", append(header(1, 0, 3, 1), 3, 0, 0, 0, 1), modbus.ExIllegalDataValue, "bad_length"},
		{"126 registers", adu(1, 1, []byte{3, 0, 0, 0, 126}), modbus.ExIllegalDataValue, "quantity_out_of_range"},
		{"2001 coils", adu(1, 1, []byte{1, 0, 0, 0x07, 0xD1}), modbus.ExIllegalDataValue, "quantity_out_of_range"},
		{"FC16 byte count disagrees", adu(1, 1, []byte{0x10, 0, 0, 0, 2, 6, 0, 1, 0, 2, 0, 3}), modbus.ExIllegalDataValue, "byte_count_mismatch"},
		{"FC15 byte count disagrees", adu(1, 1, []byte{0x0F, 0, 0, 0, 9, 1, 0xFF}), modbus.ExIllegalDataValue, "byte_count_mismatch"},
		{"FC23 truncated", adu(1, 1, []byte{0x17, 0, 0, 0, 1, 0, 0}), modbus.ExIllegalDataValue, "bad_length"},
		{"exception code in a request", adu(1, 1, []byte{0x83, 2}), modbus.ExIllegalFunction, "exception_in_request"},
		{"half a frame then silence", header(1, 0, 6, 1)[:4], 0, "stalled_frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(g.audit.Events("request.rejected"))
			c := dial(t, g.addr)
			c.Write(tc.send)
			if tc.exception != 0 {
				_, pdu := readADU(t, c)
				if len(pdu) != 2 || pdu[0]&0x80 == 0 || pdu[1] != tc.exception {
					t.Fatalf("answer % x, want exception %#x", pdu, tc.exception)
				}
			} else if b, err := readAll(c); err == nil || len(b) != 0 {
				t.Fatalf("got % x, %v; want the connection closed without an answer", b, err)
			}
			// The rejection of this connection (matched by its port: an
			// earlier case's connection may still be recording its end).
			port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			var reasons []string
			deadline := time.Now().Add(2 * time.Second)
			for found := false; !found; {
				reasons = reasons[:0]
				for _, r := range g.audit.Events("request.rejected")[before:] {
					if r.Session.Source.Port == port {
						reasons = append(reasons, r.Reason)
						found = found || r.Reason == tc.reason
					}
				}
				if !found && time.Now().After(deadline) {
					t.Fatalf("rejections of this connection %v; want one with reason %s", reasons, tc.reason)
				}
				time.Sleep(5 * time.Millisecond)
			}
			got, err := bystander.ReadHoldingRegisters(context.Background(), 0, 1)
			if err != nil || !slices.Equal(regs(got), []uint16{77}) {
				t.Fatalf("another client after the bad input: %v, %v", regs(got), err)
			}
		})
	}
	if n := len(g.audit.Events("call")); n == 0 {
		t.Fatal("the bystander's reads were not audited")
	}
}

func TestConnectionFlood(t *testing.T) {
	_, simAddr := startSim(t, "", modbussim.Options{})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, limits: gateway.Limits{MaxConns: 100}})
	early := client(t, g.addr, 1)
	if _, err := early.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	for range 1000 {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", g.addr, 10*time.Second)
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Every connection beyond the limit is refused and recorded.
	deadline := time.Now().Add(10 * time.Second)
	var refused int
	for time.Now().Before(deadline) {
		refused = 0
		for _, r := range g.audit.Events("session.open") {
			if r.Reason == gateway.RefusedConnLimit {
				refused += 1 + r.Repeats // at most one record every RefusalInterval
			}
		}
		if refused >= 901 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if refused != 901 { // 1000 + the early client, against 100 slots
		t.Fatalf("%d refusals recorded, want 901", refused)
	}
	if _, err := early.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
		t.Fatalf("a client inside the limit is no longer served: %v", err)
	}
}

func TestUpstreamFaults(t *testing.T) {
	t.Run("PLC down at start, then back", func(t *testing.T) {
		addr, release := reserveAddr(t)
		g := startGateway(t, gwOpts{upstream: "tcp://" + addr, limits: gateway.Limits{RequestTimeout: 500 * time.Millisecond}})
		c := client(t, g.addr, 1)
		start := time.Now()
		_, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if exceptionCode(err) != modbus.ExGatewayPathUnavailable {
			t.Fatalf("got %v, want exception 0x0A", err)
		}
		if el := time.Since(start); el > 500*time.Millisecond+time.Second {
			t.Fatalf("0x0A after %v; the request timeout is 500ms", el)
		}
		release()
		sim, _ := startSim(t, addr, modbussim.Options{})
		sim.SetHolding(0, 5)
		got, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if err != nil || regs(got)[0] != 5 {
			t.Fatalf("after the PLC came up: %v, %v", got, err)
		}
	})
	t.Run("PLC killed mid-session, then back", func(t *testing.T) {
		sim, simAddr := startSim(t, "", modbussim.Options{})
		sim.SetHolding(0, 5)
		g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, limits: gateway.Limits{RequestTimeout: 500 * time.Millisecond}})
		c := client(t, g.addr, 1)
		if _, err := c.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
			t.Fatal(err)
		}
		sim.Close()
		_, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if code := exceptionCode(err); code != modbus.ExGatewayPathUnavailable {
			t.Fatalf("got %v, want exception 0x0A", err)
		}
		sim2, _ := startSim(t, simAddr, modbussim.Options{})
		sim2.SetHolding(0, 6)
		got, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if err != nil || regs(got)[0] != 6 {
			t.Fatalf("after the PLC came back: %v, %v", got, err)
		}
	})
	t.Run("PLC slower than the timeout, then answering again", func(t *testing.T) {
		sim, simAddr := startSim(t, "", modbussim.Options{})
		sim.SetHolding(0, 5)
		g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, limits: gateway.Limits{RequestTimeout: 300 * time.Millisecond}})
		c := client(t, g.addr, 1)
		sim.SetPaused(true)
		start := time.Now()
		_, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if exceptionCode(err) != modbus.ExGatewayTargetNoResponse {
			t.Fatalf("got %v, want exception 0x0B", err)
		}
		if el := time.Since(start); el > 300*time.Millisecond+time.Second {
			t.Fatalf("0x0B after %v; the request timeout is 300ms", el)
		}
		sim.SetPaused(false)
		got, err := c.ReadHoldingRegisters(context.Background(), 0, 1)
		if err != nil || regs(got)[0] != 5 {
			t.Fatalf("after the PLC answered again: %v, %v", got, err)
		}
		r := g.audit.Events("result")
		if r[0].Result.Status != gateway.StatusError || r[0].Result.Code != modbus.ExGatewayTargetNoResponse {
			t.Fatalf("result record of the timed-out call: %+v", r[0].Result)
		}
	})
	t.Run("late answer is not taken for the next request's", func(t *testing.T) {
		// A PLC slow on the first answer only: the second request, sent once
		// the late answer is on the gateway's upstream connection, is answered
		// at once and must come back with its own value.
		plc := startSlowFirstPLC(t, 400*time.Millisecond)
		g := startGateway(t, gwOpts{upstream: "tcp://" + plc.addr, limits: gateway.Limits{RequestTimeout: 250 * time.Millisecond}})
		c := client(t, g.addr, 1)
		if _, err := c.ReadHoldingRegisters(context.Background(), 0, 1); exceptionCode(err) != modbus.ExGatewayTargetNoResponse {
			t.Fatalf("got %v, want 0x0B", err)
		}
		select {
		case <-plc.lateSent: // the late answer to register 0 is now waiting
		case <-time.After(5 * time.Second):
			t.Fatal("the PLC never sent its late answer")
		}
		got, err := c.ReadHoldingRegisters(context.Background(), 1, 1)
		if err != nil {
			t.Fatalf("read register 1 after the late answer: %v, want its value 2", err)
		}
		if r := regs(got); len(r) != 1 || r[0] != 2 {
			t.Fatalf("read register 1, got %v, want [2]: the late answer to register 0 (1) was taken", r)
		}
	})
}

// slowFirstPLC answers FC3 reads with register value address+1, the first
// answer of all after a delay and every other at once; lateSent is closed
// when the delayed answer has been written.
type slowFirstPLC struct {
	addr     string
	lateSent chan struct{}
}

func startSlowFirstPLC(t *testing.T, delay time.Duration) *slowFirstPLC {
	t.Helper()
	p := &slowFirstPLC{lateSent: make(chan struct{})}
	var (
		mu    sync.Mutex
		first = true
	)
	p.addr = fakePLC(t, func(conn net.Conn, h, pdu []byte) bool {
		if len(pdu) != 5 || pdu[0] != 3 {
			return false
		}
		start, n := binary.BigEndian.Uint16(pdu[1:]), binary.BigEndian.Uint16(pdu[3:])
		resp := []byte{3, byte(2 * n)}
		for i := range n {
			resp = binary.BigEndian.AppendUint16(resp, start+i+1)
		}
		mu.Lock()
		late := first
		first = false
		mu.Unlock()
		if late {
			time.Sleep(delay)
		}
		if _, err := conn.Write(modbus.AppendADU(nil, binary.BigEndian.Uint16(h), h[6], resp)); err != nil {
			return false
		}
		if late {
			close(p.lateSent)
		}
		return true
	})
	return p
}

// fakePLC serves the Modbus TCP connections to a listener on 127.0.0.1
// until the test ends: serve gets each request's MBAP header and PDU in
// turn, answers on conn, and returns false to close the connection.
func fakePLC(t *testing.T, serve func(conn net.Conn, h, pdu []byte) bool) string {
	t.Helper()
	return serveConns(t, func(conn net.Conn) {
		for {
			h := make([]byte, 7)
			if _, err := io.ReadFull(conn, h); err != nil {
				return
			}
			pdu := make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
			if _, err := io.ReadFull(conn, pdu); err != nil || !serve(conn, h, pdu) {
				return
			}
		}
	})
}

// serveConns runs handle, on a goroutine of its own, for each connection to
// a listener on 127.0.0.1 until the test ends, when the listener and every
// connection are closed and the handlers waited for. It returns the address.
func serveConns(t *testing.T, handle func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() { handle(conn) })
		}
	})
	return ln.Addr().String()
}

func TestUnitRouting(t *testing.T) {
	a, aAddr := startSim(t, "", modbussim.Options{})
	b, bAddr := startSim(t, "", modbussim.Options{})
	a.SetHolding(0, 111)
	b.SetHolding(0, 222)
	g := startGateway(t, gwOpts{upstream: "tcp://" + aAddr, modbus: modbus.Options{
		Routes: []modbus.Route{{UnitIDs: []int{2, 3}, Upstream: "tcp://" + bAddr, Target: "plc2"}},
	}})
	for _, tc := range []struct {
		unit   byte
		want   uint16
		target string
	}{{1, 111, "plc1"}, {2, 222, "plc2"}, {3, 222, "plc2"}, {9, 111, "plc1"}} {
		got, err := client(t, g.addr, tc.unit).ReadHoldingRegisters(context.Background(), 0, 1)
		if err != nil || regs(got)[0] != tc.want {
			t.Fatalf("unit %d: %v, %v; want %d", tc.unit, got, err, tc.want)
		}
		calls := g.audit.Events("call")
		if tgt := calls[len(calls)-1].Call.Target; tgt.Name != tc.target || tgt.UnitID != int(tc.unit) {
			t.Fatalf("unit %d: target %+v, want %s", tc.unit, tgt, tc.target)
		}
	}
}

func TestManyClientsShareOneUpstreamConnection(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	for i := range uint16(2000) {
		sim.SetHolding(i, i*3)
	}
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, modbus: modbus.Options{UpstreamConns: 1}})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() {
			c := client(t, g.addr, 1)
			for j := range 50 {
				addr := uint16(i*100 + j)
				got, err := c.ReadHoldingRegisters(context.Background(), addr, 2)
				if err != nil {
					errs <- err
					return
				}
				if r := regs(got); r[0] != addr*3 || r[1] != (addr+1)*3 {
					errs <- fmt.Errorf("client %d read %d: got %v", i, addr, r)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPanicInOneSessionLeavesOthers(t *testing.T) {
	_, simAddr := startSim(t, "", modbussim.Options{})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
		if c.Operation.Function == "read_coils" {
			panic("decider bug")
		}
		return gateway.Decision{Allow: true}, nil
	}})
	other := client(t, g.addr, 1)
	if _, err := other.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	bad := dial(t, g.addr)
	bad.Write(adu(1, 1, []byte{1, 0, 0, 0, 1}))
	if b, err := readAll(bad); err == nil || len(b) != 0 {
		t.Fatalf("got % x, %v; want the panicking session closed", b, err)
	}
	if _, err := other.ReadHoldingRegisters(context.Background(), 0, 1); err != nil {
		t.Fatalf("other session after the panic: %v", err)
	}
	port := uint16(bad.LocalAddr().(*net.TCPAddr).Port)
	var closes []gatewaytest.Record
	for _, r := range g.audit.Events("session.close") {
		if r.Session.Source.Port == port {
			closes = append(closes, r)
		}
	}
	if len(closes) != 1 || closes[0].Err == nil || !strings.Contains(closes[0].Err.Error(), "decider bug") {
		t.Fatalf("session.close records of the panicking session %+v, want one carrying the panic", closes)
	}
}

// A PLC whose answer does not fit the request (another transaction, unit
// or protocol id) gets the client 0x0B at once, and the request reaches
// the PLC once: grid-x would send it again for an answer whose transaction
// id it cannot place. The next request is served on a new connection.
func TestUpstreamAnswerThatDoesNotFit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		garble func(adu []byte)
	}{
		{"another transaction id", func(adu []byte) { adu[0] ^= 0x5A }},
		{"another unit id", func(adu []byte) { adu[6]++ }},
		{"another protocol id", func(adu []byte) { adu[3] = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plc := startGarblingPLC(t, tc.garble)
			g := startGateway(t, gwOpts{upstream: "tcp://" + plc.addr, limits: gateway.Limits{RequestTimeout: 2 * time.Second}})
			c := client(t, g.addr, 1)
			start := time.Now()
			_, err := c.WriteSingleRegister(context.Background(), 7, 42)
			if code := exceptionCode(err); code != modbus.ExGatewayTargetNoResponse {
				t.Fatalf("got %v, want exception 0x0B", err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("0x0B after %v, want it at once (the request timeout is 2s)", el)
			}
			if n := plc.requests.Load(); n != 1 {
				t.Errorf("the PLC got the write %d times, want once", n)
			}
			plc.garble.Store(false)
			if _, err := c.WriteSingleRegister(context.Background(), 7, 43); err != nil {
				t.Fatalf("the next write, answered right: %v", err)
			}
			if n := plc.requests.Load(); n != 2 {
				t.Errorf("the PLC got %d requests in all, want 2", n)
			}
		})
	}
}

// garblingPLC echoes FC 6 writes, garbling its answers' MBAP header while
// garble is set, and counts the requests it reads.
type garblingPLC struct {
	addr     string
	requests atomic.Int64
	garble   atomic.Bool
}

func startGarblingPLC(t *testing.T, garble func(adu []byte)) *garblingPLC {
	t.Helper()
	p := &garblingPLC{}
	p.garble.Store(true)
	p.addr = fakePLC(t, func(conn net.Conn, h, pdu []byte) bool {
		p.requests.Add(1)
		adu := modbus.AppendADU(nil, binary.BigEndian.Uint16(h), h[6], pdu) // FC 6 answers with its request
		if p.garble.Load() {
			garble(adu)
		}
		_, err := conn.Write(adu)
		return err == nil
	})
	return p
}

// Requests a client sent ahead (pipelined on one connection) are not
// begun once the stop has: the one in flight is answered, the others are
// never forwarded, and the client sees the connection end.
func TestShutdownStartsNoPipelinedRequest(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{Delay: 400 * time.Millisecond})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: gatewaytest.AllowAll})
	conn, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var frames []byte
	for i := range 4 {
		// MBAP: tid, protocol 0, length 6, unit 1; FC 6 register 200+i = 4321
		frames = append(frames, 0, byte(i+1), 0, 0, 0, 6, 1, 6, 0, byte(200+i), 0x10, 0xE1)
	}
	if _, err := conn.Write(frames); err != nil {
		t.Fatal(err)
	}
	for sim.Requests() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	g.stop()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if len(got) != 12 || got[1] != 1 || got[7] != 6 {
		t.Errorf("answers % x: want the first write's answer alone", got)
	}
	for i := range 4 {
		want := uint16(0)
		if i == 0 {
			want = 4321
		}
		if v := sim.Holding(uint16(200 + i)); v != want {
			t.Errorf("register %d = %d, want %d", 200+i, v, want)
		}
	}
	if n := sim.Requests(); n != 1 {
		t.Errorf("the PLC got %d requests, want 1", n)
	}
	// each request read after the stop began has its record
	var regs []int
	for _, r := range g.audit.Events("request.rejected") {
		if r.Reason != gateway.ReasonShuttingDown || r.Response != "close" {
			t.Errorf("rejected %s (%s), want %s (close)", r.Reason, r.Response, gateway.ReasonShuttingDown)
		}
		f, _ := r.Call.Operation.Field("address")
		regs = append(regs, int(f.Int))
	}
	if !slices.Equal(regs, []int{201, 202, 203}) {
		t.Errorf("shutting_down records for registers %v, want [201 202 203]", regs)
	}
}

// A PLC that closes a connection idle for a while (many do, after a few
// seconds) costs the client nothing: the gateway sees the close before its
// next request and dials again, instead of answering 0x0A every other poll.
func TestPLCClosingIdleConnections(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{IdleClose: 150 * time.Millisecond})
	sim.SetHolding(100, 1500)
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: gatewaytest.AllowAll})
	c := client(t, g.addr, 1)
	for i := range 4 {
		if i > 0 {
			time.Sleep(400 * time.Millisecond) // the PLC has closed the gateway's connection
		}
		b, err := c.ReadHoldingRegisters(context.Background(), 100, 1)
		if err != nil || regs(b)[0] != 1500 {
			t.Errorf("poll %d after the PLC closed the idle connection: %v %v", i, regs(b), err)
		}
	}
	for _, r := range g.audit.Events("result") {
		if r.Result.Status != gateway.StatusOK {
			t.Errorf("result %s %d: %s", r.Result.Status, r.Result.Code, r.Result.Detail)
		}
	}
}

// QA on 1cda0a0: silent sockets from one host held every slot until the
// idle timeout. Now one host holds at most max_conns_per_source, more are
// refused with exception 0x0A, another host and the clients already
// connected are served, and a socket that sends nothing is closed after
// first_request_timeout and recorded like a stalled frame.
func TestSilentSocketsDoNotLockClientsOut(t *testing.T) {
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(0, 77)
	const perSource = 4
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, limits: gateway.Limits{
		MaxConns: 10, MaxConnsPerSource: perSource, FirstRequestTimeout: 700 * time.Millisecond}})
	early := client(t, g.addr, 1) // from 127.0.0.1, holding one of its slots
	read := func(who string) {
		t.Helper()
		got, err := early.ReadHoldingRegisters(context.Background(), 0, 1)
		if err != nil || !slices.Equal(regs(got), []uint16{77}) {
			t.Fatalf("%s: the connected client got %v, %v", who, regs(got), err)
		}
	}
	read("before")

	var silent []net.Conn
	for range perSource - 1 {
		silent = append(silent, gatewaytest.DialFrom(t, "127.0.0.1", g.addr))
	}
	time.Sleep(100 * time.Millisecond) // accepted, in the order dialed
	for i := range 5 {
		c := gatewaytest.DialFrom(t, "127.0.0.1", g.addr)
		c.Write(adu(uint16(i), 1, []byte{0x03, 0, 0, 0, 1}))
		if _, pdu := readADU(t, c); !bytes.Equal(pdu, []byte{0x83, modbus.ExGatewayPathUnavailable}) {
			t.Fatalf("connection %d from 127.0.0.1 over max_conns_per_source: answered % x, want exception 0x0A", perSource+i+1, pdu)
		}
	}
	other := gatewaytest.DialFrom(t, "127.0.0.2", g.addr)
	other.Write(adu(9, 1, []byte{0x03, 0, 0, 0, 1}))
	if _, pdu := readADU(t, other); !bytes.Equal(pdu, []byte{0x03, 2, 0, 77}) {
		t.Fatalf("a client from 127.0.0.2: answered % x, want the register", pdu)
	}
	read("during")

	// The silent sockets are closed after first_request_timeout, long
	// before the idle timeout (a minute here).
	start := time.Now()
	for i, c := range silent {
		c.SetReadDeadline(start.Add(3 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent socket %d: %v after %v, want closed by the gateway", i, err, time.Since(start))
		}
	}
	read("after")
	var timedOut int
	for _, r := range g.audit.Events("request.rejected") {
		if r.Reason == "first_request_timeout" && r.Response == "close" && r.Session.Source.IP.String() == "127.0.0.1" {
			timedOut++
		}
	}
	if timedOut != len(silent) {
		t.Errorf("%d request.rejected records with reason first_request_timeout, want %d", timedOut, len(silent))
	}
	// The host's slots are free again.
	c := gatewaytest.DialFrom(t, "127.0.0.1", g.addr)
	c.Write(adu(10, 1, []byte{0x03, 0, 0, 0, 1}))
	if _, pdu := readADU(t, c); !bytes.Equal(pdu, []byte{0x03, 2, 0, 77}) {
		t.Fatalf("127.0.0.1 after its silent sockets were closed: answered % x, want the register", pdu)
	}
}
