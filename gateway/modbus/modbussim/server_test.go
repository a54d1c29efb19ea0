package modbussim_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grid-x/modbus"

	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// start serves a new simulator on a loopback port until the test ends.
func start(t testing.TB, o modbussim.Options) (*modbussim.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := modbussim.New(o)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func client(t *testing.T, addr string) modbus.Client {
	t.Helper()
	hd := modbus.NewTCPClientHandler(addr)
	hd.SlaveID = 1
	hd.Timeout = 2 * time.Second
	if err := hd.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hd.Close() })
	return modbus.NewClient(hd)
}

func TestClientFunctions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(s *modbussim.Server)
		call  func(c modbus.Client) ([]byte, error)
		want  []byte
		check func(t *testing.T, s *modbussim.Server)
	}{
		{
			name: "read coils",
			setup: func(s *modbussim.Server) {
				for i, on := range []bool{true, false, true, true, false, false, true, true, true} {
					s.SetCoil(uint16(20+i), on)
				}
			},
			call: func(c modbus.Client) ([]byte, error) { return c.ReadCoils(ctx, 20, 10) },
			want: h("CD 01"),
		},
		{
			name:  "read discrete inputs",
			setup: func(s *modbussim.Server) { s.SetDiscreteInput(65535, true) },
			call:  func(c modbus.Client) ([]byte, error) { return c.ReadDiscreteInputs(ctx, 65534, 2) },
			want:  h("02"),
		},
		{
			name:  "read holding registers",
			setup: func(s *modbussim.Server) { s.SetHolding(100, 0x1234); s.SetHolding(101, 0xBEEF) },
			call:  func(c modbus.Client) ([]byte, error) { return c.ReadHoldingRegisters(ctx, 100, 2) },
			want:  h("1234 BEEF"),
		},
		{
			name:  "read 125 holding registers",
			setup: func(s *modbussim.Server) { s.SetHolding(65535, 7) },
			call:  func(c modbus.Client) ([]byte, error) { return c.ReadHoldingRegisters(ctx, 65411, 125) },
			want:  append(make([]byte, 248), 0x00, 0x07),
		},
		{
			name:  "read input registers",
			setup: func(s *modbussim.Server) { s.SetInput(30, 0x0102) },
			call:  func(c modbus.Client) ([]byte, error) { return c.ReadInputRegisters(ctx, 30, 1) },
			want:  h("0102"),
		},
		{
			name:  "write single coil",
			call:  func(c modbus.Client) ([]byte, error) { return c.WriteSingleCoil(ctx, 5, 0xFF00) },
			want:  h("FF00"),
			check: func(t *testing.T, s *modbussim.Server) { wantCoil(t, s, 5, true) },
		},
		{
			name:  "write single register",
			call:  func(c modbus.Client) ([]byte, error) { return c.WriteSingleRegister(ctx, 10, 0xBEEF) },
			want:  h("BEEF"),
			check: func(t *testing.T, s *modbussim.Server) { wantHolding(t, s, 10, 0xBEEF) },
		},
		{
			name: "write multiple coils",
			call: func(c modbus.Client) ([]byte, error) { return c.WriteMultipleCoils(ctx, 19, 10, h("CD 01")) },
			want: h("000A"),
			check: func(t *testing.T, s *modbussim.Server) {
				for i, on := range []bool{true, false, true, true, false, false, true, true, true, false} {
					wantCoil(t, s, uint16(19+i), on)
				}
			},
		},
		{
			name: "write multiple registers",
			call: func(c modbus.Client) ([]byte, error) {
				return c.WriteMultipleRegisters(ctx, 1, 2, h("000A 0102"))
			},
			want:  h("0002"),
			check: func(t *testing.T, s *modbussim.Server) { wantHolding(t, s, 1, 10); wantHolding(t, s, 2, 0x0102) },
		},
		{
			name:  "mask write register",
			setup: func(s *modbussim.Server) { s.SetHolding(4, 0x12) },
			call:  func(c modbus.Client) ([]byte, error) { return c.MaskWriteRegister(ctx, 4, 0xF2, 0x25) },
			want:  h("00F2 0025"),
			check: func(t *testing.T, s *modbussim.Server) { wantHolding(t, s, 4, 0x17) },
		},
		{
			name:  "read write multiple registers writes first",
			setup: func(s *modbussim.Server) { s.SetHolding(40, 0x1111); s.SetHolding(43, 0x4444) },
			call: func(c modbus.Client) ([]byte, error) {
				return c.ReadWriteMultipleRegisters(ctx, 40, 4, 41, 2, h("2222 3333"))
			},
			want: h("1111 2222 3333 4444"),
		},
		{
			name: "exception for an address past 65535",
			call: func(c modbus.Client) ([]byte, error) { return c.ReadHoldingRegisters(ctx, 65535, 2) },
			want: []byte{0x83, 0x02},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := start(t, modbussim.Options{})
			if tc.setup != nil {
				tc.setup(s)
			}
			got, err := tc.call(client(t, addr))
			if mbErr := (*modbus.Error)(nil); errors.As(err, &mbErr) {
				got, err = []byte{mbErr.FunctionCode, mbErr.ExceptionCode}, nil
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % X, want % X", got, tc.want)
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

func TestReadDeviceIdentification(t *testing.T) {
	_, addr := start(t, modbussim.Options{})
	c := client(t, addr)
	want := map[byte]string{0: "Interlock", 1: "SIM", 2: "1.0"}
	for _, code := range []modbus.ReadDeviceIDCode{modbus.ReadDeviceIDCodeBasic, modbus.ReadDeviceIDCodeRegular} {
		got, err := c.ReadDeviceIdentification(context.Background(), code)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("code %d: %d objects, want %d", code, len(got), len(want))
		}
		for id, v := range want {
			if string(got[id]) != v {
				t.Errorf("code %d object %d = %q, want %q", code, id, got[id], v)
			}
		}
	}
	got, err := c.ReadDeviceIdentificationSpecificObject(context.Background(), 1)
	if err != nil || string(got[1]) != "SIM" || len(got) != 1 {
		t.Fatalf("specific object 1 = %q, %v", got, err)
	}
}

// raw sends PDUs over one connection and returns the response PDUs.
type raw struct {
	t    *testing.T
	conn net.Conn
	tid  uint16
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &raw{t: t, conn: c}
}

func adu(tid uint16, unit byte, pdu []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tid)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(1+len(pdu)))
	return append(append(b, unit), pdu...)
}

func (r *raw) send(unit byte, pdu []byte) {
	r.t.Helper()
	r.tid++
	if _, err := r.conn.Write(adu(r.tid, unit, pdu)); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next response's transaction id, unit and PDU, or an
// error when none comes within wait.
func (r *raw) read(wait time.Duration) (uint16, byte, []byte, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(wait))
	var hdr [7]byte
	if _, err := io.ReadFull(r.conn, hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	pdu := make([]byte, int(binary.BigEndian.Uint16(hdr[4:]))-1)
	if _, err := io.ReadFull(r.conn, pdu); err != nil {
		return 0, 0, nil, err
	}
	return binary.BigEndian.Uint16(hdr[:]), hdr[6], pdu, nil
}

func (r *raw) roundTrip(pdu []byte) []byte {
	r.t.Helper()
	r.send(1, pdu)
	tid, unit, resp, err := r.read(2 * time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	if tid != r.tid || unit != 1 {
		r.t.Fatalf("answer for transaction %d unit %d, want %d unit 1", tid, unit, r.tid)
	}
	return resp
}

func TestRawFunctions(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(s *modbussim.Server)
		req, out string
	}{
		{"diagnostics loopback", nil, "08 0000 A537", "08 0000 A537"},
		{"diagnostics other sub-function", nil, "08 000A 0000", "88 01"},
		{"diagnostics odd data", nil, "08 0000 01", "88 03"},
		{"report server id", nil, "11", "11 0E 496E7465726C6F636B2053494D FF"},
		{"read fifo queue", func(s *modbussim.Server) {
			s.SetHolding(0x04DE, 2)
			s.SetHolding(0x04DF, 0x01B8)
			s.SetHolding(0x04E0, 0x1284)
		}, "18 04DE", "18 0006 0002 01B8 1284"},
		{"read fifo queue empty", nil, "18 0010", "18 0002 0000"},
		{"read fifo queue over 31", func(s *modbussim.Server) { s.SetHolding(7, 32) }, "18 0007", "98 03"},
		{"read fifo queue past 65535", func(s *modbussim.Server) { s.SetHolding(65535, 1) }, "18 FFFF", "98 02"},
		{"unknown function", nil, "41 0102", "C1 01"},
		{"read exception status unsupported", nil, "07", "87 01"},
		{"read file record unsupported", nil, "14 07 06 0001 0000 0001", "94 01"},
		{"read coils quantity 0", nil, "01 0000 0000", "81 03"},
		{"read coils 2001", nil, "01 0000 07D1", "81 03"},
		{"read coils past 65535", nil, "01 FFFF 0002", "81 02"},
		{"read holding registers 126", nil, "03 0000 007E", "83 03"},
		{"read holding registers short", nil, "03 0000", "83 03"},
		{"write single coil bad value", nil, "05 0000 1234", "85 03"},
		{"write multiple coils byte count", nil, "0F 0000 000A 01 CD", "8F 03"},
		{"write multiple registers byte count", nil, "10 0000 0002 05 0001 0002 00", "90 03"},
		{"write multiple registers fewer bytes", nil, "10 0000 0002 04 0001", "90 03"},
		{"write multiple registers 124", nil, "10 0000 007C F8 0000", "90 03"},
		{"write multiple registers past 65535", nil, "10 FFFF 0002 04 0001 0002", "90 02"},
		{"read write truncated", nil, "17 0000 0001 0000", "97 03"},
		{"read write byte count", nil, "17 0000 0001 0000 0001 04 0001", "97 03"},
		{"read device identification code 5", nil, "2B 0E 05 00", "AB 03"},
		{"read device identification missing object", nil, "2B 0E 04 03", "AB 02"},
		{"other MEI type", nil, "2B 0D 00", "AB 01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := start(t, modbussim.Options{})
			if tc.setup != nil {
				tc.setup(s)
			}
			got := dialRaw(t, addr).roundTrip(h(tc.req))
			if want := h(tc.out); !bytes.Equal(got, want) {
				t.Fatalf("got % X, want % X", got, want)
			}
		})
	}
}

// TestPipelining: three requests in one segment are answered in order.
func TestPipelining(t *testing.T) {
	s, addr := start(t, modbussim.Options{})
	r := dialRaw(t, addr)
	var batch []byte
	batch = append(batch, adu(7, 1, h("06 0001 00AA"))...)
	batch = append(batch, adu(8, 1, h("03 0001 0001"))...)
	batch = append(batch, adu(9, 1, h("06 0001 00BB"))...)
	if _, err := r.conn.Write(batch); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		tid uint16
		pdu []byte
	}{{7, h("06 0001 00AA")}, {8, h("03 02 00AA")}, {9, h("06 0001 00BB")}}
	for _, w := range want {
		tid, _, pdu, err := r.read(2 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if tid != w.tid || !bytes.Equal(pdu, w.pdu) {
			t.Fatalf("got transaction %d % X, want %d % X", tid, pdu, w.tid, w.pdu)
		}
	}
	wantHolding(t, s, 1, 0xBB)
	if n := s.Requests(); n != 3 {
		t.Errorf("Requests() = %d, want 3", n)
	}
}

// TestSplitRequest: a request arriving in pieces is answered once whole.
func TestSplitRequest(t *testing.T) {
	_, addr := start(t, modbussim.Options{})
	r := dialRaw(t, addr)
	frame := adu(1, 1, h("03 0000 0001"))
	for _, part := range [][]byte{frame[:3], frame[3:9], frame[9:]} {
		if _, err := r.conn.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, pdu, err := r.read(2 * time.Second); err != nil || !bytes.Equal(pdu, h("03 02 0000")) {
		t.Fatalf("got % X, %v", pdu, err)
	}
}

func TestUnits(t *testing.T) {
	_, addr := start(t, modbussim.Options{Units: []byte{1}})
	r := dialRaw(t, addr)
	r.send(2, h("03 0000 0001"))
	if _, _, pdu, err := r.read(100 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("unit 2 answered % X, %v", pdu, err)
	}
	if got := r.roundTrip(h("03 0000 0001")); !bytes.Equal(got, h("03 02 0000")) {
		t.Fatalf("unit 1: % X", got)
	}
}

func TestPaused(t *testing.T) {
	s, addr := start(t, modbussim.Options{})
	r := dialRaw(t, addr)
	s.SetPaused(true)
	r.send(1, h("03 0000 0001"))
	if _, _, pdu, err := r.read(100 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("paused server answered % X, %v", pdu, err)
	}
	// The server reads the request while paused, but on a loaded machine
	// perhaps not within the 100 ms above: wait for it to be read before
	// resuming, or it would be read after and answered.
	for deadline := time.Now().Add(5 * time.Second); s.Requests() < 1 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if s.Requests() != 1 {
		t.Fatalf("Requests() = %d, want 1", s.Requests())
	}
	if _, _, pdu, err := r.read(10 * time.Millisecond); !isTimeout(err) {
		t.Fatalf("paused server answered % X, %v", pdu, err)
	}
	s.SetPaused(false)
	if got := r.roundTrip(h("03 0000 0001")); !bytes.Equal(got, h("03 02 0000")) {
		t.Fatalf("after pause: % X", got)
	}
}

func TestDelay(t *testing.T) {
	const delay = 50 * time.Millisecond
	_, addr := start(t, modbussim.Options{Delay: delay})
	r := dialRaw(t, addr)
	began := time.Now()
	r.roundTrip(h("03 0000 0001"))
	if d := time.Since(began); d < delay {
		t.Fatalf("answered after %v, want at least %v", d, delay)
	}
}

// TestBadHeaderCloses: a header that cannot be trusted ends the connection.
func TestBadHeaderCloses(t *testing.T) {
	for name, frame := range map[string][]byte{
		"protocol id 1": h("0001 0001 0006 01 03 0000 0001"),
		"length 1":      h("0001 0000 0001 01"),
		"length 255":    h("0001 0000 00FF 01"),
	} {
		t.Run(name, func(t *testing.T) {
			_, addr := start(t, modbussim.Options{})
			r := dialRaw(t, addr)
			if _, err := r.conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := r.read(2 * time.Second); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
				t.Fatalf("read after a bad header: %v, want the connection closed", err)
			}
		})
	}
}

func TestCloseEndsConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := modbussim.New(modbussim.Options{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	r := dialRaw(t, ln.Addr().String())
	r.roundTrip(h("03 0000 0001"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if _, _, _, err := r.read(2 * time.Second); err == nil || isTimeout(err) {
		t.Fatalf("connection still open after Close: %v", err)
	}
}

// TestConcurrentClients exercises the shared tables under -race.
func TestConcurrentClients(t *testing.T) {
	s, addr := start(t, modbussim.Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		r := dialRaw(t, addr)
		wg.Go(func() {
			reg := uint16(200 + i)
			for v := range 50 {
				pdu := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16([]byte{0x06}, reg), uint16(v))
				if _, err := r.conn.Write(adu(uint16(v), 1, pdu)); err != nil {
					t.Error(err)
					return
				}
				tid, _, got, err := r.read(2 * time.Second)
				if err != nil || tid != uint16(v) || !bytes.Equal(got, pdu) {
					t.Errorf("write echo % X, %v; want % X", got, err, pdu)
					return
				}
				_ = s.Holding(reg)
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		wantHolding(t, s, uint16(200+i), 49)
	}
	if n := s.Requests(); n != 8*50 {
		t.Errorf("Requests() = %d, want %d", n, 8*50)
	}
}

func BenchmarkReadHoldingRegisters(b *testing.B) {
	_, addr := start(b, modbussim.Options{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := adu(1, 1, h("03 0000 007D"))
	resp := make([]byte, 9+250)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
	}
}

func wantHolding(t *testing.T, s *modbussim.Server, addr, want uint16) {
	t.Helper()
	if got := s.Holding(addr); got != want {
		t.Errorf("Holding(%d) = 0x%04X, want 0x%04X", addr, got, want)
	}
}

func wantCoil(t *testing.T, s *modbussim.Server, addr uint16, want bool) {
	t.Helper()
	if got := s.Coil(addr); got != want {
		t.Errorf("Coil(%d) = %v, want %v", addr, got, want)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
