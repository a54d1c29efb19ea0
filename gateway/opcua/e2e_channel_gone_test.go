package opcua_test

import (
	"context"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A client that goes away (its TCP connection dropped, or a
// CloseSecureChannel) while its Publish requests wait upstream leaves
// nothing of its channel behind at the gateway: the Publishes are abandoned
// at once (their result records say Bad_SecureChannelClosed), the gateway's
// socket and the goroutines of the channel are released within seconds,
// not when the server answers the Publishes (a minute here, up to
// max_publish_timeout in general). The session itself stays for the client
// to activate on a new channel, and ends at its timeout.
func TestChannelGoneReleasesParkedPublishes(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	srv.HangPublish(time.Minute)
	for _, tc := range []struct {
		name string
		// drop ends the client's channel without CloseSession
		drop func(c *gopcua.Client, r *cutRelay)
	}{
		{"tcp_close", func(_ *gopcua.Client, r *cutRelay) { r.cut() }},
		{"close_secure_channel", func(c *gopcua.Client, _ *cutRelay) { c.SecureChannel().Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy,
				opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true,
					Limits: opcua.LimitOptions{SessionTimeout: opcua.MinSessionTimeout}}})
			port := portOf(t, g.endpoint)
			r := newCutRelay(t, strings.TrimPrefix(g.endpoint, "opc.tcp://"))
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// Its Publishes ask to be held a minute (TimeoutHint), and the
			// server holds them that long: only the channel's end can end
			// them early.
			c, err := gopcuaClient(ctx, t, "opc.tcp://"+r.addr, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil,
				gopcua.RequestTimeout(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			notes := make(chan *gopcua.PublishNotificationData, 16)
			if _, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: time.Second, MaxKeepAliveCount: 60}, notes); err != nil {
				t.Fatal(err)
			}
			publishes := func(rs []record) int {
				n := 0
				for _, r := range events(rs, "call") {
					if r.str("operation", "function") == "publish" {
						n++
					}
				}
				return n
			}
			if n := publishes(g.records(t, func(rs []record) bool { return publishes(rs) > 0 })); n == 0 {
				t.Fatal("no Publish went upstream")
			}
			// Once the goroutines of the channel that had nothing to do
			// have ended (2 s idle), two more Publishes: whichever
			// goroutine reads the first passes the turn to read to the
			// channel's first goroutine, which then answers the second
			// itself (the one that ends only with the channel).
			time.Sleep(2500 * time.Millisecond)
			var wg sync.WaitGroup
			defer wg.Wait()
			for range 2 {
				wg.Go(func() { c.Send(ctx, &ua.PublishRequest{}, func(ua.Response) error { return nil }) })
			}
			if n := publishes(g.records(t, func(rs []record) bool { return publishes(rs) >= 3 })); n < 3 {
				t.Fatalf("%d Publish requests went upstream, want 3", n)
			}
			time.Sleep(200 * time.Millisecond) // the Publishes are upstream, held there
			if s, gr := openSockets(t, port), channelGoroutines(); s == 0 || gr == 0 {
				t.Fatalf("with a Publish parked: %d gateway sockets, %d channel goroutines; the test measures nothing", s, gr)
			}

			tc.drop(c, r)
			deadline := time.Now().Add(5 * time.Second)
			for {
				s, gr := openSockets(t, port), channelGoroutines()
				if s == 0 && gr == 0 {
					break
				}
				if time.Now().After(deadline) {
					buf := make([]byte, 1<<20)
					t.Fatalf("5 s after the client's channel ended: %d gateway sockets open, %d goroutines of the channel\n%s",
						s, gr, buf[:runtime.Stack(buf, true)])
				}
				time.Sleep(50 * time.Millisecond)
			}
			dropped := time.Now()
			rs := g.waitRecords(t, 30*time.Second, "the session's end at its timeout", func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
			closes := events(rs, "session.close")
			if len(closes) != 1 || !strings.Contains(closes[0].str("error"), "session timed out") {
				t.Errorf("session.close records %v, want one at the session's timeout", closes)
			}
			if waited := time.Since(dropped); waited < opcua.MinSessionTimeout-2*time.Second {
				t.Errorf("the session ended %v after its channel, before its timeout (%v)", waited, opcua.MinSessionTimeout)
			}
			checkPublishResults(t, rs, ua.StatusBadSecureChannelClosed, "secure channel closed")
		})
	}
}

// cutRelay is a TCP relay whose connections cut drops at once, as a
// client that vanishes does, and freeze leaves half-open: nothing more
// passes either way and neither side learns the other is gone, as after a
// network break.
type cutRelay struct {
	addr   string
	mu     sync.Mutex
	conns  []net.Conn
	frozen []*atomic.Bool
}

func newCutRelay(t *testing.T, target string) *cutRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &cutRelay{addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); r.cut() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			frozen := new(atomic.Bool)
			r.mu.Lock()
			r.conns = append(r.conns, down, up)
			r.frozen = append(r.frozen, frozen)
			r.mu.Unlock()
			go relayCopy(up, down, frozen)
			go relayCopy(down, up, frozen)
		}
	}()
	return r
}

// relayCopy copies src to dst and closes dst at src's end, until frozen:
// from then on what src sends is dropped and its end not passed on.
func relayCopy(dst, src net.Conn, frozen *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if !frozen.Load() {
				dst.Close()
			}
			return
		}
	}
}

// freeze leaves the connections open so far half-open; new ones pass.
func (r *cutRelay) freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frozen {
		f.Store(true)
	}
	r.frozen = nil
}

func (r *cutRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	r.conns = nil
}

func portOf(t *testing.T, endpoint string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "opc.tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// openSockets counts the TCP sockets on local port that the gateway still
// holds: ESTABLISHED, or CLOSE-WAIT (the client closed, the gateway not).
func openSockets(t *testing.T, port int) int {
	t.Helper()
	n, read := 0, false
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		read = true
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 {
				continue
			}
			local := fields[1]
			p, err := strconv.ParseInt(local[strings.LastIndex(local, ":")+1:], 16, 32)
			if err == nil && int(p) == port && (fields[3] == "01" || fields[3] == "08") {
				n++
			}
		}
	}
	if !read {
		t.Fatal("counting sockets needs /proc/net/tcp")
	}
	return n
}

// channelGoroutines counts the goroutines serving a secure channel of the
// engine (reading it, answering its requests).
func channelGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "gateway/opcua.(*readers)") || strings.Contains(g, "gateway/opcua.(*conn).serve") ||
			strings.Contains(g, "gateway/opcua.(*Engine).Serve") {
			n++
		}
	}
	return n
}
