package opcua_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// hangingProxy forwards connections to a server until hang is called;
// from then on it closes the connections it forwarded (the gateway's
// session is lost) and accepts new ones without answering, as a server
// process that is stopped (SIGSTOP) does: the kernel completes the
// handshake, the Hello waits for an Acknowledge that never comes.
type hangingProxy struct {
	endpoint string
	mu       sync.Mutex
	hung     bool
	conns    []net.Conn
	held     atomic.Int32 // connections accepted while hung
}

func startHangingProxy(t *testing.T, target string) *hangingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangingProxy{endpoint: "opc.tcp://" + l.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hung := p.hung
			p.mu.Unlock()
			if hung {
				p.held.Add(1)
				continue
			}
			go p.forward(c, u.Host)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		p.closeAll()
	})
	return p
}

func (p *hangingProxy) forward(c net.Conn, addr string) {
	s, err := net.Dial("tcp", addr)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, s)
	p.mu.Unlock()
	go io.Copy(s, c)
	io.Copy(c, s)
	c.Close()
	s.Close()
}

func (p *hangingProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// hang cuts the connections forwarded so far and answers no new one.
func (p *hangingProxy) hang() {
	p.mu.Lock()
	p.hung = true
	p.mu.Unlock()
	p.closeAll()
}

// A server that accepts and does not answer costs a request that needs a
// connect no more than the listener's request_timeout, even when the
// client's TimeoutHint is far longer, and the answer is
// Bad_ServerNotConnected. Right after that failed attempt the next request
// is answered at once, without another connect; once the attempt's time has
// passed again, a request tries again.
func TestHungUpstreamConnectIsBoundedAndBacksOff(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	proxy := startHangingProxy(t, srv.Endpoint)
	const requestTimeout = time.Second
	g := startGateway(t, gwOpts{upstream: proxy.endpoint, limits: gateway.Limits{RequestTimeout: requestTimeout},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// a client that waits 30 s for an answer (TimeoutHint 30000); its
	// connect reads the namespaces through the gateway, which asks the
	// server its endpoints (kept) and opens the upstream session
	c := clientWithTimeout(ctx, t, g.endpoint, 30*time.Second)
	proxy.hang()
	read := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		_, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
		took := time.Since(start)
		t.Logf("%s: %v after %v", what, err, took)
		if !errors.Is(err, ua.StatusBadServerNotConnected) {
			t.Fatalf("%s: %v after %v, want Bad_ServerNotConnected", what, err, took)
		}
		return took
	}

	// the connect before the old fix took request_timeout + 5 s
	if took := read("the first read"); took > requestTimeout+2*time.Second {
		t.Errorf("the first read was answered after %v; want within request_timeout (%v) and a margin", took, requestTimeout)
	}
	if n := proxy.held.Load(); n != 1 {
		t.Errorf("%d connections to the hung server after the first read, want 1", n)
	}
	if took := read("the read right after"); took > requestTimeout/2 {
		t.Errorf("the read right after the failed connect was answered after %v; want at once", took)
	}
	if n := proxy.held.Load(); n != 1 {
		t.Errorf("%d connections to the hung server after the read right after, want still 1 (no new attempt)", n)
	}
	time.Sleep(requestTimeout + 200*time.Millisecond)
	read("a read after the back-off")
	if n := proxy.held.Load(); n != 2 {
		t.Errorf("%d connections to the hung server after the back-off, want 2 (one more attempt)", n)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 4 })
	results := events(rs, "result")[1:] // the first is the client's namespace read
	if len(results) != 3 {
		t.Fatalf("%d result records, want 3", len(results))
	}
	for i, r := range results {
		if r.str("status") != "error" || r["code"] != float64(uint32(ua.StatusBadServerNotConnected)) ||
			!strings.Contains(r.str("detail"), "upstream connect") {
			t.Errorf("result record %d: %v; want status error, code Bad_ServerNotConnected, an upstream connect detail", i, r)
		}
		if lat, _ := r["latency_us"].(float64); time.Duration(lat)*time.Microsecond > requestTimeout+2*time.Second {
			t.Errorf("result record %d: latency %v µs, over request_timeout and a margin", i, lat)
		}
	}
}

// clientWithTimeout connects an anonymous client over None whose requests
// carry a TimeoutHint of timeout (and which waits as long, and gopcua's
// 250 ms more, for each answer).
func clientWithTimeout(ctx context.Context, t *testing.T, endpoint string, timeout time.Duration) *gopcua.Client {
	t.Helper()
	c, err := gopcuaClient(ctx, t, endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil, gopcua.RequestTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A request whose TimeoutHint sets its budget (longer than the listener's
// request_timeout), or a Publish, is answered Bad_Timeout before the hint
// when the server holds it longer: the client hears the timeout while it
// still waits, not at the instant it gives up.
func TestTimeoutAnsweredBeforeHint(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, limits: gateway.Limits{RequestTimeout: time.Second},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const hint = 4 * time.Second
	c := clientWithTimeout(ctx, t, g.endpoint, hint)
	send := func(req ua.Request) (time.Duration, error) {
		start := time.Now()
		err := c.Send(ctx, req, func(r ua.Response) error {
			if sc := r.Header().ServiceResult; sc != ua.StatusOK {
				return sc
			}
			return nil
		})
		return time.Since(start), err
	}
	cs := &ua.CreateSubscriptionResponse{}
	if err := c.Send(ctx, &ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 600,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}, func(r ua.Response) error {
		cs, _ = r.(*ua.CreateSubscriptionResponse)
		return nil
	}); err != nil || cs == nil || cs.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("create subscription: %v %+v", err, cs)
	}
	srv.HangPublish(time.Minute)

	for _, tc := range []struct {
		function string
		req      ua.Request
	}{
		{"call", &ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
			MethodID: ua.MustParseNodeID(opcuatest.NodeWait), InputArguments: []*ua.Variant{ua.MustVariant(uint32(3 * hint / time.Millisecond))}}}}},
		{"publish", &ua.PublishRequest{}},
	} {
		took, err := send(tc.req)
		// gopcua waits the hint and 250 ms: at the hint, the gateway's answer
		// would have been in time for it, but not for a client that gives up
		// at its hint
		if !errors.Is(err, ua.StatusBadTimeout) || took >= hint {
			t.Errorf("%s held upstream, TimeoutHint %v: %v after %v; want Bad_Timeout before the hint", tc.function, hint, err, took)
		}
		rs := g.records(t, func(rs []record) bool {
			return slices.ContainsFunc(events(rs, "result"), func(r record) bool { return r.str("function") == tc.function })
		})
		found := false
		for _, r := range events(rs, "result") {
			if r.str("function") != tc.function {
				continue
			}
			found = true
			lat, _ := r["latency_us"].(float64)
			if r.str("status") != "error" || r["code"] != float64(uint32(ua.StatusBadTimeout)) || time.Duration(lat)*time.Microsecond >= hint {
				t.Errorf("the %s's result record: %v; want status error, code Bad_Timeout, latency under the hint", tc.function, r)
			}
		}
		if !found {
			t.Errorf("no result record of the %s", tc.function)
		}
	}
}
