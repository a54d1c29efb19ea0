package modbus_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// auditedGateway runs a Modbus listener in front of the simulator with a
// real audit log; stop shuts the listener down (drain, summaries) and
// closes the log, once.
type auditedGateway struct {
	addr, auditPath string
	stop            func()
}

func startAuditedGateway(t *testing.T, limits gateway.Limits, log zerolog.Logger) *auditedGateway {
	t.Helper()
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(0, 77)
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	aw, err := audit.Open(audit.Options{Path: auditPath, Gateway: "gw", SyncInterval: 10 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	p := &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: aw}
	limits.RequestTimeout = time.Second
	limits.IdleTimeout = time.Minute
	up := "tcp://" + simAddr
	target := gateway.Target{Name: "plc1", Upstream: up, UnitID: -1}
	eng, err := modbus.New(gateway.EngineSpec{Listener: "plc1", Upstream: up, Target: target, Limits: limits, Pipeline: p,
		Options: func(into any) error { into.(*modbus.Options).FrameTimeout = 300 * time.Millisecond; return nil },
		Log:     zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &gateway.Listener{Name: "plc1", Protocol: "modbus", Gateway: "gw", Target: target,
		Engine: eng, Pipeline: p, Limits: limits, Log: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Serve(ctx, ln); close(done) }()
	stop := sync.OnceFunc(func() {
		cancel()
		<-done
		eng.Close()
		if err := aw.Close(); err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(stop)
	return &auditedGateway{addr: ln.Addr().String(), auditPath: auditPath, stop: stop}
}

// auditRecord is an audit record, loosely decoded.
type auditRecord map[string]any

func (r auditRecord) str(path ...string) string {
	var v any = map[string]any(r)
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func (r auditRecord) num(key string) int {
	f, _ := r[key].(float64)
	return int(f)
}

func readAuditLog(t *testing.T, path string) []auditRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []auditRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r auditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// exchange writes one frame and reads one answer frame.
func exchangeFrame(c net.Conn, frame []byte) ([]byte, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame); err != nil {
		return nil, err
	}
	h := make([]byte, 7)
	if _, err := io.ReadFull(c, h); err != nil {
		return nil, err
	}
	pdu := make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
	_, err := io.ReadFull(c, pdu)
	return pdu, err
}

// A host flooding the gateway with malformed Modbus frames — many
// requests on a few connections, and many sockets each sending a
// malformed 200-byte packet (SECURITY.md, bad input 6) — leaves at most
// limits.rejected_records_per_source request.rejected records in the
// window; the rest are counted, and the request.rejected_suppressed
// records written at shutdown account for every one of them, by reason.
// Another host is served all along, and every record of it is there;
// so are the flooding host's session records. The chain verifies.
func TestRejectedFloodIsCappedAndCounted(t *testing.T) {
	const (
		limit          = 5
		persistent     = 4  // connections sending bad requests answered with an exception
		perConn        = 60 // bad requests on each
		packetSockets  = 80 // sockets each sending one malformed 200-byte packet
		packetParallel = 8
	)
	var logs gatewaytest.LogBuffer
	g := startAuditedGateway(t, gateway.Limits{MaxConns: 100, MaxConnsPerSource: 100,
		RejectedPerSource: limit, RejectedWindow: time.Hour}, zerolog.New(&logs))

	// A well-behaved host reads throughout the flood.
	good := gatewaytest.DialFrom(t, "127.0.0.2", g.addr)
	floodDone := make(chan struct{})
	goodReads := make(chan int, 1)
	goodErr := make(chan error, 1)
	go func() {
		n := 0
		defer func() { goodReads <- n }()
		for tid := uint16(1); ; tid++ {
			pdu, err := exchangeFrame(good, adu(tid, 1, []byte{3, 0, 0, 0, 1}))
			if err != nil || len(pdu) != 4 || binary.BigEndian.Uint16(pdu[2:]) != 77 {
				goodErr <- fmt.Errorf("read %d of the well-behaved host: % x, %v", tid, pdu, err)
				return
			}
			n++
			select {
			case <-floodDone:
				return
			default:
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, persistent+packetSockets)
	for range persistent {
		wg.Go(func() {
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for i := range perConn {
				// 126 registers: over the limit of 125, answered 0x03.
				pdu, err := exchangeFrame(c, adu(uint16(i), 1, []byte{3, 0, 0, 0, 126}))
				if err != nil || len(pdu) != 2 || pdu[1] != modbus.ExIllegalDataValue {
					errs <- fmt.Errorf("bad request %d: answer % x, %v", i, pdu, err)
					return
				}
			}
		})
	}
	packet := append(header(1, 1, 194, 1), make([]byte, 193)...) // protocol id 1, 200 bytes
	if len(packet) != 200 {
		t.Fatalf("packet of %d bytes", len(packet))
	}
	sockets := make(chan struct{}, packetParallel)
	for range packetSockets {
		sockets <- struct{}{}
		wg.Go(func() {
			defer func() { <-sockets }()
			c, err := net.Dial("tcp", g.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.Write(packet)
			// The gateway records the rejection before it closes.
			if b, err := readAll(c); err == nil || len(b) != 0 {
				errs <- fmt.Errorf("malformed packet: got % x, %v; want the connection closed", b, err)
			}
		})
	}
	wg.Wait()
	close(floodDone)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	reads := <-goodReads
	select {
	case err := <-goodErr:
		t.Fatal(err)
	default:
	}
	if reads == 0 {
		t.Fatal("the well-behaved host made no read")
	}
	t.Logf("the well-behaved host read %d times during the flood", reads)

	// Nothing summed up before the window ends: the summary comes at stop.
	before := readAuditLog(t, g.auditPath)
	if n := len(eventsIn(before, audit.EventRequestRejectedSuppressed)); n != 0 {
		t.Fatalf("%d summaries before the window ended or the gateway stopped", n)
	}
	g.stop()
	recs := readAuditLog(t, g.auditPath)

	sent := map[string]int{"quantity_out_of_range": persistent * perConn, "bad_protocol_id": packetSockets}
	got := map[string]int{}
	full := 0
	for _, r := range eventsIn(recs, audit.EventRequestRejected) {
		if r.str("source", "ip") != "127.0.0.1" {
			t.Fatalf("a rejection of another source: %v", r)
		}
		full++
		got[r.str("reason")]++
	}
	if full != limit {
		t.Fatalf("%d request.rejected records of the flooding host, want %d (the limit)", full, limit)
	}
	sums := eventsIn(recs, audit.EventRequestRejectedSuppressed)
	if len(sums) != 1 {
		t.Fatalf("%d request.rejected_suppressed records, want one (one window, written at stop): %v", len(sums), sums)
	}
	s := sums[0]
	if s.str("source", "ip") != "127.0.0.1" || s.str("cause") != gateway.SummaryShutdown || s.str("listener") != "plc1" ||
		s.str("protocol") != "modbus" || s.num("recorded") != limit || s.num("limit") != limit || s.num("window_ms") != 3600000 ||
		s.str("first_time") == "" || s.str("last_time") < s.str("first_time") {
		t.Fatalf("summary: %v", s)
	}
	reasons, _ := s["reasons"].(map[string]any)
	counted := 0
	for reason, n := range reasons {
		got[reason] += int(n.(float64))
		counted += int(n.(float64))
	}
	if counted != s.num("count") {
		t.Fatalf("summary reasons %v add up to %d, count %d", reasons, counted, s.num("count"))
	}
	total := persistent*perConn + packetSockets
	if full+s.num("count") != total || fmt.Sprint(got) != fmt.Sprint(sent) {
		t.Fatalf("%d full records and %d counted, by reason %v; want %d frames, by reason %v", full, s.num("count"), got, total, sent)
	}

	// Session records are never capped: one open and one close for each
	// connection of the flooding host.
	if n := countFrom(recs, gateway.FunctionSessionOpen, "127.0.0.1"); n != persistent+packetSockets {
		t.Fatalf("%d session.open records of the flooding host, want %d", n, persistent+packetSockets)
	}
	if n := countFrom(recs, audit.EventSessionClose, "127.0.0.1"); n != persistent+packetSockets {
		t.Fatalf("%d session.close records of the flooding host, want %d", n, persistent+packetSockets)
	}
	// Every read of the well-behaved host has its call and ok result.
	calls := map[string]bool{}
	for _, r := range eventsIn(recs, audit.EventCall) {
		if r.str("source", "ip") == "127.0.0.2" && r.str("decision", "allow") == "true" {
			calls[r.str("call_id")] = true
		}
	}
	ok := 0
	for _, r := range eventsIn(recs, audit.EventResult) {
		if calls[r.str("call_id")] && r.str("status") == "ok" {
			ok++
		}
	}
	if len(calls) != reads || ok != reads {
		t.Fatalf("the well-behaved host read %d times: %d call records, %d ok results", reads, len(calls), ok)
	}

	// Visible in the operational log too: once when counting began, once
	// for the summary.
	if out := logs.String(); !strings.Contains(out, "are counted, not recorded one by one") || !strings.Contains(out, "request.rejected_suppressed written") {
		t.Fatalf("operational log lacks the suppression lines:\n%s", out)
	}

	rep, err := audit.VerifyLog([]string{g.auditPath}, audit.VerifyOptions{})
	if err != nil || rep.Break != nil {
		t.Fatalf("verify: %v, %+v", err, rep.Break)
	}
}

// The summary of a window comes when the window ends, while the gateway
// runs, and the source's next rejections are recorded in full again.
func TestRejectedSummaryAtWindowEnd(t *testing.T) {
	const limit, window = 2, 300 * time.Millisecond
	g := startAuditedGateway(t, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10,
		RejectedPerSource: limit, RejectedWindow: window}, zerolog.Nop())
	c := dial(t, g.addr)
	for i := range 7 {
		if pdu, err := exchangeFrame(c, adu(uint16(i), 1, []byte{1, 0, 0, 0x07, 0xD1})); err != nil || len(pdu) != 2 {
			t.Fatalf("bad request %d: % x, %v", i, pdu, err)
		}
	}
	var sums []auditRecord
	for deadline := time.Now().Add(10 * time.Second); len(sums) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no request.rejected_suppressed record while the gateway runs")
		}
		sums = eventsIn(readAuditLog(t, g.auditPath), audit.EventRequestRejectedSuppressed)
	}
	if s := sums[0]; len(sums) != 1 || s.num("count") != 5 || s.str("cause") != gateway.SummaryWindowEnd || s.str("reasons", "quantity_out_of_range") != "5" {
		t.Fatalf("summaries at the window's end: %v; want one counting 5 quantity_out_of_range", sums)
	}
	// A new window: recorded in full again.
	if _, err := exchangeFrame(c, adu(9, 1, []byte{1, 0, 0, 0x07, 0xD1})); err != nil {
		t.Fatal(err)
	}
	g.stop()
	recs := readAuditLog(t, g.auditPath)
	if n := len(eventsIn(recs, audit.EventRequestRejected)); n != limit+1 {
		t.Fatalf("%d request.rejected records, want %d", n, limit+1)
	}
	if n := len(eventsIn(recs, audit.EventRequestRejectedSuppressed)); n != 1 {
		t.Fatalf("%d summaries, want 1 (nothing was counted in the second window)", n)
	}
	if rep, err := audit.VerifyLog([]string{g.auditPath}, audit.VerifyOptions{}); err != nil || rep.Break != nil {
		t.Fatalf("verify: %v, %+v", err, rep.Break)
	}
}

func eventsIn(recs []auditRecord, event string) []auditRecord {
	var out []auditRecord
	for _, r := range recs {
		if r.str("event") == event {
			out = append(out, r)
		}
	}
	return out
}

func countFrom(recs []auditRecord, event, ip string) int {
	n := 0
	for _, r := range eventsIn(recs, event) {
		if r.str("source", "ip") == ip {
			n++
		}
	}
	return n
}
