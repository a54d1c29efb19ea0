package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// lineEngine answers each line with the line; "panic" panics, "quit" ends.
type lineEngine struct{}

func (lineEngine) Name() string { return "line" }
func (lineEngine) Close() error { return nil }
func (lineEngine) Serve(_ context.Context, conn net.Conn, _ *gateway.Session) error {
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil
		}
		switch strings.TrimSpace(line) {
		case "panic":
			var m map[string]int
			m["boom"]++ // a nil map write: a real runtime panic
		case "quit":
			return nil
		}
		if _, err := conn.Write([]byte(line)); err != nil {
			return err
		}
	}
}

// startListener runs a listener of lineEngine with maxConns, every one of
// which one source may hold.
func startListener(t *testing.T, maxConns int) (string, *gatewaytest.Auditor) {
	t.Helper()
	return startListenerLimits(t, gateway.Limits{MaxConns: maxConns, MaxConnsPerSource: maxConns})
}

func startListenerLimits(t *testing.T, limits gateway.Limits) (string, *gatewaytest.Auditor) {
	t.Helper()
	return startListenerRefusing(t, limits, 200*time.Millisecond)
}

// startListenerRefusing runs a listener of lineEngine that records a refused
// connection per source and reason every refusalInterval.
func startListenerRefusing(t *testing.T, limits gateway.Limits, refusalInterval time.Duration) (string, *gatewaytest.Auditor) {
	t.Helper()
	a := &gatewaytest.Auditor{}
	l := &gateway.Listener{
		Name: "l1", Protocol: "line", Gateway: "gw", Target: gateway.Target{Name: "l1", UnitID: -1},
		Engine: lineEngine{}, Pipeline: &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a},
		Limits: limits, Log: zerolog.Nop(), RefusalInterval: refusalInterval,
	}
	return serve(t, l), a
}

// serve runs l on a free loopback port until the test ends, and returns
// its address; l must stop within 5 s of the end, without an error.
func serve(t *testing.T, l *gateway.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("listener did not stop within 5 s")
		}
	})
	return ln.Addr().String()
}

func echo(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || got != msg+"\n" {
		t.Fatalf("echo %q: got %q, %v", msg, got, err)
	}
}

// closedByPeer reports whether a read error says the other side closed the
// connection (a read deadline passing says it is still open).
func closedByPeer(err error) bool {
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestListenerPanicEndsOnlyThatSession(t *testing.T) {
	addr, a := startListener(t, 10)
	other, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	echo(t, other, "before")

	bad, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write([]byte("panic\n"))
	bad.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := bad.Read(make([]byte, 1)); !closedByPeer(err) {
		t.Fatalf("panicking session still open (read %d bytes, %v)", n, err)
	}
	echo(t, other, "after")

	var found bool
	for _, r := range a.Events("session.close") {
		if r.Err != nil && strings.Contains(r.Err.Error(), "panic") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no session.close record carries the panic: %+v", a.Events("session.close"))
	}
}

func TestListenerConnectionLimit(t *testing.T) {
	const limit = 5
	addr, a := startListener(t, limit)
	var held []net.Conn
	for range limit {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echo(t, c, "hold")
		held = append(held, c)
	}
	var wg sync.WaitGroup
	refusedSeen := make(chan bool, 20)
	for range 20 {
		wg.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				refusedSeen <- true
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			refusedSeen <- closedByPeer(err) // a timeout: still open, served
		})
	}
	wg.Wait()
	close(refusedSeen)
	for r := range refusedSeen {
		if !r {
			t.Fatal("a connection over the limit was served")
		}
	}
	if _, refused := waitRefusals(a, gateway.RefusedConnLimit, "127.0.0.1", 20); refused != 20 {
		t.Fatalf("%d refusals recorded or counted, want 20", refused)
	}
	for _, c := range held {
		echo(t, c, "still served")
	}
	held[0].Write([]byte("quit\n"))
	// A slot frees up: a new connection is served again.
	waitServedAgain(t, "127.0.0.1", addr, "no slot freed after a session ended")
}

// waitServedAgain waits up to 5 s for a connection from local to addr to
// be served (echoed), failing with msg.
func waitServedAgain(t *testing.T, local, addr, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := gatewaytest.DialFrom(t, local, addr)
		c.SetDeadline(time.Now().Add(time.Second))
		c.Write([]byte("again\n"))
		got, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got == "again\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// refusedAtOnce reports whether c is closed by the listener without a word.
func refusedAtOnce(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return closedByPeer(err)
}

// Idle sockets of one host take at most max_conns_per_source slots: more
// from it are refused and recorded as such, while another host still gets
// a session and those held keep being served.
func TestListenerPerSourceLimit(t *testing.T) {
	const perSource = 3
	addr, a := startListenerLimits(t, gateway.Limits{MaxConns: 10, MaxConnsPerSource: perSource})
	var held []net.Conn
	for range perSource {
		c := gatewaytest.DialFrom(t, "127.0.0.1", addr)
		echo(t, c, "hold")
		held = append(held, c)
	}
	for i := range 2 * perSource {
		if c := gatewaytest.DialFrom(t, "127.0.0.1", addr); !refusedAtOnce(c) {
			t.Fatalf("connection %d from 127.0.0.1 beyond max_conns_per_source %d was served", perSource+i+1, perSource)
		}
	}
	other := gatewaytest.DialFrom(t, "127.0.0.2", addr)
	echo(t, other, "another host")
	for _, c := range held {
		echo(t, c, "still served")
	}
	if _, refused := waitRefusals(a, gateway.RefusedSourceLimit, "127.0.0.1", 2*perSource); refused != 2*perSource {
		t.Fatalf("%d refusals with reason %q recorded or counted, want %d", refused, gateway.RefusedSourceLimit, 2*perSource)
	}
	if _, refused := refusals(a, gateway.RefusedSourceLimit, ""); refused != 2*perSource {
		t.Fatalf("%d refusals with reason %q, want %d, all of 127.0.0.1", refused, gateway.RefusedSourceLimit, 2*perSource)
	}

	// A connection of that host ends: it may open one again.
	held[0].Write([]byte("quit\n"))
	waitServedAgain(t, "127.0.0.1", addr, "no per-source slot freed after a session of that source ended")
}

// refusals counts the session.open records of connections refused for
// reason from source ip ("": any), and the refusals they stand for (each
// itself and its repeats_not_recorded).
func refusals(a *gatewaytest.Auditor, reason, ip string) (records, refused int) {
	for _, r := range a.Events("session.open") {
		if r.Reason == reason && (ip == "" || r.Session.Source.IP.String() == ip) {
			records++
			refused += 1 + r.Repeats
		}
	}
	return records, refused
}

// waitRefusals is refusals once they stand for want, or after 5 s: the
// count of the last ones comes once the refusal interval has passed.
func waitRefusals(a *gatewaytest.Auditor, reason, ip string, want int) (records, refused int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		records, refused = refusals(a, reason, ip)
		if refused >= want || time.Now().After(deadline) {
			return records, refused
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// QA on 1cda0a0: connection churn at a full listener wrote one audit record
// and one log line per connection. A burst of refusals from one source is
// now a bounded number of records whose counts add up, and another
// source's refusal still gets its own record.
func TestListenerRefusalRecordsAreBounded(t *testing.T) {
	const interval, burst = time.Second, 300
	addr, a := startListenerRefusing(t, gateway.Limits{MaxConns: 2, MaxConnsPerSource: 2}, interval)
	for range 2 {
		echo(t, gatewaytest.DialFrom(t, "127.0.0.1", addr), "hold")
	}
	start := time.Now()
	for i := range burst {
		if c := gatewaytest.DialFrom(t, "127.0.0.1", addr); !refusedAtOnce(c) {
			t.Fatalf("connection %d over max_conns was served", i)
		} else {
			c.Close()
		}
	}
	took := time.Since(start)
	if c := gatewaytest.DialFrom(t, "127.0.0.2", addr); !refusedAtOnce(c) {
		t.Fatal("a connection from 127.0.0.2 over max_conns was served")
	}
	if records, _ := refusals(a, gateway.RefusedConnLimit, "127.0.0.2"); records != 1 {
		t.Fatalf("127.0.0.2's refusal: %d records, want its own at once", records)
	}
	records, refused := waitRefusals(a, gateway.RefusedConnLimit, "127.0.0.1", burst)
	if refused != burst {
		t.Fatalf("%d records of 127.0.0.1 stand for %d refusals, want %d", records, refused, burst)
	}
	// One at the first refusal, one per interval while they go on, one with
	// the count of the last ones.
	if most := 2 + int(took/interval); records > most {
		t.Fatalf("%d refusals in %v gave %d records, want at most %d", burst, took, records, most)
	}
	t.Logf("%d refusals in %v: %d records", burst, took, records)
}

// served counts the sessions of source ip that were opened (not refused).
func served(a *gatewaytest.Auditor, ip string) int {
	n := 0
	for _, r := range a.Events("session.open") {
		if r.Reason == "" && r.Session.Source.IP.String() == ip {
			n++
		}
	}
	return n
}

// A host that connects and closes over and over is served for the burst of
// limits.conn_rate_per_source, then refused (one record at the first
// refusal, the rest counted in the next), while another host is served.
func TestListenerConnRatePerSource(t *testing.T) {
	const burst, over = 5, 30
	addr, a := startListenerRefusing(t, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10,
		ConnRatePerSource: 0.1, ConnBurstPerSource: burst}, time.Second) // one token every 10 s
	for i := range burst {
		c := gatewaytest.DialFrom(t, "127.0.0.1", addr)
		echo(t, c, "churn")
		c.Write([]byte("quit\n"))
		if !refusedAtOnce(c) { // the session ends on quit
			t.Fatalf("connection %d: session did not end", i)
		}
		c.Close()
	}
	for i := range over {
		if c := gatewaytest.DialFrom(t, "127.0.0.1", addr); !refusedAtOnce(c) {
			t.Fatalf("connection %d from 127.0.0.1 past its burst of %d was served", burst+i+1, burst)
		} else {
			c.Close()
		}
	}
	echo(t, gatewaytest.DialFrom(t, "127.0.0.2", addr), "another host")

	records, refused := waitRefusals(a, gateway.RefusedSourceRate, "127.0.0.1", over)
	if refused != over || records != 2 {
		t.Fatalf("%d records of 127.0.0.1 stand for %d refusals; want 2 records (the first, then the count of the rest) for %d",
			records, refused, over)
	}
	var repeats int
	for _, r := range a.Events("session.open") {
		if r.Reason == gateway.RefusedSourceRate {
			repeats = max(repeats, r.Repeats)
		}
	}
	if repeats != over-2 {
		t.Errorf("repeats_not_recorded %d, want %d", repeats, over-2)
	}
	if n := served(a, "127.0.0.1"); n != burst {
		t.Errorf("%d sessions of 127.0.0.1 opened, want its burst of %d", n, burst)
	}
	if n := served(a, "127.0.0.2"); n != 1 {
		t.Errorf("%d sessions of 127.0.0.2 opened, want 1", n)
	}
	if _, refused := refusals(a, gateway.RefusedSourceRate, "127.0.0.2"); refused != 0 {
		t.Errorf("127.0.0.2 refused %d times", refused)
	}
}

// With limits.conn_rate_per_source 0, a host may connect as often as it
// likes: nothing is refused.
func TestListenerConnRateOff(t *testing.T) {
	const conns = 100
	addr, a := startListenerLimits(t, gateway.Limits{MaxConns: conns, MaxConnsPerSource: conns, ConnBurstPerSource: 1})
	for i := range conns {
		c := gatewaytest.DialFrom(t, "127.0.0.1", addr)
		echo(t, c, "churn")
		c.Write([]byte("quit\n"))
		if !refusedAtOnce(c) {
			t.Fatalf("connection %d: session did not end", i)
		}
		c.Close()
	}
	for _, r := range a.Events("session.open") {
		if r.Reason != "" {
			t.Fatalf("a connection refused with no rate limit: %+v", r)
		}
	}
	if n := served(a, "127.0.0.1"); n != conns {
		t.Fatalf("%d sessions opened, want %d", n, conns)
	}
}
