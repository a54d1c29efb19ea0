package modbus_test

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// FuzzEngine writes a client's byte stream to a gateway in front of the
// simulator, closes its side and reads every answer until the gateway
// closes. Whatever the bytes: the gateway closes within 5 s, every answer
// is a well-formed MBAP frame that answers a request the client framed
// (its transaction id, unit and function code, or the function code with
// 0x80 for an exception), and no session ends in a recovered panic.
func FuzzEngine(f *testing.F) {
	_, simAddr := startSim(f, "", modbussim.Options{})
	g := startGateway(f, gwOpts{upstream: "tcp://" + simAddr})
	for _, seed := range [][][]byte{
		{adu(1, 1, []byte{3, 0, 0, 0, 10})},
		{adu(2, 1, []byte{16, 0, 100, 0, 2, 4, 0, 1, 0, 2})},
		{adu(3, 1, []byte{6, 0, 100, 0x12, 0x34}), adu(4, 1, []byte{1, 0, 0, 0, 16}), adu(5, 1, []byte{15, 0, 0, 0, 9, 2, 0xff, 1})},
		{adu(6, 1, []byte{0x17, 0, 0, 0, 2, 0, 10, 0, 1, 2, 0, 7})},
		{adu(7, 1, []byte{8, 0, 0, 0xab, 0xcd}), adu(8, 1, []byte{0x2b, 0x0e, 1, 0})},
		{adu(9, 1, []byte{3, 0, 0, 0, 126}), adu(10, 1, []byte{0x5a, 1, 2}), adu(11, 1, []byte{3})},
		{adu(12, 1, []byte{4, 0, 0, 0, 1})[:9]},
	} {
		var b []byte
		for _, a := range seed {
			b = append(b, a...)
		}
		f.Add(b)
	}
	// the seeds reach the simulator: a read of 10 registers is answered
	if got := exchange(f, g.addr, adu(1, 1, []byte{3, 0, 0, 0, 10})); len(got) != 9+20 || got[7] != 3 || got[8] != 20 {
		f.Fatalf("a read of 10 registers answered % X", got)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		requests := framed(data)
		got := exchange(t, g.addr, data)
		for len(got) > 0 {
			if len(got) < 8 {
				t.Fatalf("a cut answer % X", got)
			}
			tid, proto, n, unit, fc := binary.BigEndian.Uint16(got), binary.BigEndian.Uint16(got[2:]), int(binary.BigEndian.Uint16(got[4:])), got[6], got[7]
			if proto != 0 || n < 2 || n > 254 || len(got) < 6+n {
				t.Fatalf("a malformed answer % X", got)
			}
			if !requests[request{tid, unit, fc &^ 0x80}] {
				t.Fatalf("an answer to a request never framed: tid %d unit %d function 0x%02X (% X)", tid, unit, fc, got[:6+n])
			}
			got = got[6+n:]
		}
		for _, r := range g.audit.Events("session.close") {
			if r.Err != nil && strings.HasPrefix(r.Err.Error(), "panic") {
				t.Fatalf("a session ended in a panic: %v", r.Err)
			}
		}
	})
}

// exchange writes data to the gateway at addr, closes its side and returns
// all the gateway answers until it closes the connection.
func exchange(t testing.TB, addr string, data []byte) []byte {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the gateway no longer accepts: %v", err)
	}
	defer conn.Close()
	conn.Write(data)
	conn.(*net.TCPConn).CloseWrite()
	got, err := readAll(conn)
	if err == nil {
		t.Fatalf("the gateway kept the connection 5 s after the client closed its side (answers % X)", got)
	}
	return got
}

// request is what an answer must match of the request it answers.
type request struct {
	tid  uint16
	unit byte
	fc   byte
}

// framed returns the requests a stream frames by its MBAP headers, up to
// the first header no request can have.
func framed(b []byte) map[request]bool {
	out := map[request]bool{}
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint16(b[4:]))
		if binary.BigEndian.Uint16(b[2:]) != 0 || n < 2 {
			break
		}
		out[request{binary.BigEndian.Uint16(b), b[6], b[7] &^ 0x80}] = true
		if len(b) < 6+n {
			break
		}
		b = b[6+n:]
	}
	return out
}
