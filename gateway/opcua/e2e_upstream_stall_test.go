package opcua_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
)

// stallProxy forwards connections to a server. While stalled it holds what
// the server sends (the connections stay open, the server still gets the
// requests): a server that hangs mid-session. resume lets the held bytes
// through, as a server that comes back answers what it was sent.
type stallProxy struct {
	endpoint string
	accepted atomic.Int32 // connections accepted
	requests atomic.Int32 // service requests (MSG messages) forwarded to the server

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool
	closed  bool
	conns   []net.Conn
}

// startStalledSim runs the in-repo simulator behind a stallProxy until the
// test ends; the simulator answers to the proxy's endpoint.
func startStalledSim(t *testing.T) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := opcuasim.Start(opcuasim.Options{Endpoint: "opc.tcp://127.0.0.1:0", Aliases: []string{"opc.tcp://" + l.Addr().String()}})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return startStallProxy(t, l, sim.Endpoint())
}

// stalledGateway starts the simulator behind a stallProxy and a gateway in
// front of it (o.upstream set here; SecurityPolicy None and anonymous
// logins when o.opts names no policy), and opens sessions client
// sessions, each of which has read warm (connecting its upstream session
// and keeping warm's browse path) before the test stalls anything. The
// context ends with the test, at the latest after a minute.
func stalledGateway(t *testing.T, o gwOpts, warm string, sessions int) (*stallProxy, *gw, context.Context, []*hintClient) {
	t.Helper()
	proxy := startStalledSim(t)
	o.upstream = proxy.endpoint
	if len(o.opts.SecurityPolicies) == 0 {
		o.opts.SecurityPolicies, o.opts.Anonymous = []string{"None"}, true
	}
	g := startGateway(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	cs := make([]*hintClient, sessions)
	for i := range cs {
		cs[i] = dialHintClient(ctx, t, g.endpoint)
		if sc, _ := cs[i].read(ctx, t, warm, 0); sc != ua.StatusOK {
			t.Fatalf("read of %s before the stall: %v", warm, sc)
		}
	}
	return proxy, g, ctx, cs
}

// readUntilGood reads node until it is answered Good, failing the test at
// deadline: the server answers again, and the session must get there.
func readUntilGood(ctx context.Context, t *testing.T, c *hintClient, node string, deadline time.Time) {
	t.Helper()
	for {
		sc, took := c.read(ctx, t, node, 0)
		if sc == ua.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server answers again, but a read is still answered %v (after %v)", sc, took)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readAsServerAnswers reads node while the stalled server answers again
// after 300 ms.
func readAsServerAnswers(ctx context.Context, t *testing.T, proxy *stallProxy, c *hintClient, node string) (ua.StatusCode, time.Duration) {
	t.Helper()
	resumed := time.AfterFunc(300*time.Millisecond, proxy.resume)
	defer resumed.Stop()
	defer proxy.resume()
	return c.read(ctx, t, node, 0)
}

func startStallProxy(t *testing.T, l net.Listener, target string) *stallProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{endpoint: "opc.tcp://" + l.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.accepted.Add(1)
			s, err := net.Dial("tcp", u.Host)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			wg.Go(func() { p.pipe(s, c, false, &frameCounter{n: &p.requests}) })
			wg.Go(func() { p.pipe(c, s, true, nil) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		p.closed = true
		p.cond.Broadcast()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

// pipe copies src to dst; from the server (held) it waits while stalled.
// count, when set, sees the bytes.
func (p *stallProxy) pipe(dst, src net.Conn, held bool, count *frameCounter) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if count != nil {
				count.feed(buf[:n])
			}
			if held && !p.wait() {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// frameCounter counts the final chunks of MSG messages in a byte stream
// of OPC UA TCP messages.
type frameCounter struct {
	hdr  []byte
	left int
	n    *atomic.Int32
}

func (f *frameCounter) feed(b []byte) {
	for len(b) > 0 {
		if f.left > 0 {
			k := min(f.left, len(b))
			f.left, b = f.left-k, b[k:]
			continue
		}
		k := min(8-len(f.hdr), len(b))
		f.hdr, b = append(f.hdr, b[:k]...), b[k:]
		if len(f.hdr) == 8 {
			if string(f.hdr[:4]) == "MSGF" {
				f.n.Add(1)
			}
			f.left = int(binary.LittleEndian.Uint32(f.hdr[4:])) - 8
			f.hdr = f.hdr[:0]
		}
	}
}

func (p *stallProxy) wait() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.stalled && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *stallProxy) stall() {
	p.mu.Lock()
	p.stalled = true
	p.mu.Unlock()
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	p.stalled = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// hintClient is an anonymous session on the gateway over a None channel
// whose requests carry the TimeoutHint each call is given, and wait for the
// answer as long as the test's context allows.
type hintClient struct {
	ch     *channel.ClientChannel
	token  *ua.NodeID
	handle atomic.Uint32 // requests may be sent from several goroutines
}

func dialHintClient(ctx context.Context, t *testing.T, endpoint string) *hintClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "opc.tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := channel.Dial(ctx, conn, &channel.ClientConfig{EndpointURL: endpoint, PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	c := &hintClient{ch: ch, token: ua.NewTwoByteNodeID(0)}
	v, err := c.call(ctx, &ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:interlock:test:hint", ApplicationType: ua.ApplicationTypeClient,
			ApplicationName: ua.NewLocalizedText("hint")},
		EndpointURL: endpoint, SessionName: "hint", ClientNonce: make([]byte, 32), RequestedSessionTimeout: 60000,
	}, 0)
	cs, ok := v.(*ua.CreateSessionResponse)
	if err != nil || !ok || cs.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("CreateSession: %v %#v", err, v)
	}
	c.token = cs.AuthenticationToken
	v, err = c.call(ctx, &ua.ActivateSessionRequest{ClientSignature: &ua.SignatureData{}, UserTokenSignature: &ua.SignatureData{},
		UserIdentityToken: ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: "anonymous"})}, 0)
	if as, ok := v.(*ua.ActivateSessionResponse); err != nil || !ok || as.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("ActivateSession: %v %#v", err, v)
	}
	return c
}

// call sends req with a TimeoutHint of hint and returns the answer.
func (c *hintClient) call(ctx context.Context, req ua.Request, hint time.Duration) (any, error) {
	req.SetHeader(&ua.RequestHeader{AuthenticationToken: c.token, Timestamp: time.Now(), RequestHandle: c.handle.Add(1),
		TimeoutHint: uint32(hint / time.Millisecond), AdditionalHeader: channel.EmptyExtensionObject()})
	return c.ch.Call(ctx, req)
}

// read reads node with a TimeoutHint of hint and returns the ServiceResult
// (a ServiceFault's too) or, when Good, the node's status, and how long the
// answer took.
func (c *hintClient) read(ctx context.Context, t *testing.T, node string, hint time.Duration) (ua.StatusCode, time.Duration) {
	t.Helper()
	start := time.Now()
	v, err := c.call(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}, hint)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("read %s: no answer after %v: %v", node, took, err)
	}
	sc := v.(ua.Response).Header().ServiceResult
	if r, ok := v.(*ua.ReadResponse); ok && sc == ua.StatusOK && len(r.Results) == 1 {
		sc = r.Results[0].Status
	}
	return sc, took
}

// resultsOf are the result records of function with the given code.
func resultsOf(rs []record, function string, code ua.StatusCode) []record {
	var out []record
	for _, r := range events(rs, "result") {
		if r.str("function") == function && r["code"] == float64(uint32(code)) {
			out = append(out, r)
		}
	}
	return out
}

func latency(r record) time.Duration {
	us, _ := r["latency_us"].(float64)
	return time.Duration(us) * time.Microsecond
}

// A client's TimeoutHint shorter than the listener's request_timeout
// shortens the request's budget: a server that holds the request gets it
// answered Bad_Timeout before the hint, while the client still waits. A hint
// of a millisecond still gets minHintBudget (100 ms) of a real attempt.
func TestShortTimeoutHintShortensBudget(t *testing.T) {
	proxy := startStalledSim(t)
	const requestTimeout = 5 * time.Second
	g := startGateway(t, gwOpts{upstream: proxy.endpoint, policy: allowAllPolicy, limits: gateway.Limits{RequestTimeout: requestTimeout},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := dialHintClient(ctx, t, g.endpoint)
	if sc, _ := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusOK {
		t.Fatalf("read before the stall: %v %v", sc, g.records(t, func(rs []record) bool { return len(events(rs, "result")) > 0 }))
	}
	other := dialHintClient(ctx, t, g.endpoint)
	if sc, _ := other.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusOK {
		t.Fatalf("read before the stall: %v", sc)
	}
	proxy.stall()
	defer proxy.resume()

	const hint = 2 * time.Second // budget 1.8 s: 200 ms for the answer to arrive before the hint
	if sc, took := c.read(ctx, t, opcuasim.NodePressure, hint); sc != ua.StatusBadTimeout || took >= hint {
		t.Errorf("read held upstream, TimeoutHint %v, request_timeout %v: %v after %v; want Bad_Timeout before the hint", hint, requestTimeout, sc, took)
	}
	sc, took := other.read(ctx, t, opcuasim.NodePressure, time.Millisecond)
	if sc != ua.StatusBadTimeout || took < 100*time.Millisecond || took >= requestTimeout {
		t.Errorf("read held upstream, TimeoutHint 1 ms: %v after %v; want Bad_Timeout after the 100 ms floor, before request_timeout", sc, took)
	}

	rs := g.records(t, func(rs []record) bool { return len(resultsOf(rs, "read", ua.StatusBadTimeout)) >= 2 })
	timeouts := resultsOf(rs, "read", ua.StatusBadTimeout)
	if len(timeouts) != 2 {
		t.Fatalf("%d read result records with Bad_Timeout, want 2: %v", len(timeouts), events(rs, "result"))
	}
	for _, r := range timeouts {
		if r.str("status") != "error" || latency(r) >= hint {
			t.Errorf("result record %v: want status error, latency under %v", r, hint)
		}
	}
}

// pathPolicy allows a read only of a node whose browse path is under
// /Objects/PLC: a read of a node whose path cannot be resolved is denied.
const pathPolicy = `package interlock

default allow := false

allow if input.operation.access in {"session", "browse", "subscribe"}

allow if {
	input.operation.access == "read"
	startswith(input.operation.browse_path, "/Objects/PLC/")
}

decision := {"allow": allow}
`

// The browse path lookups of a request take their time from the request's
// budget, not 2 s on top of it; a lookup that waited in vain is remembered
// for a while, so that the next request for the node, of any session, does
// not send it again. The decision is still made, on an empty browse_path
// (here: denied), and recorded.
func TestBrowsePathLookupWithinBudget(t *testing.T) {
	const requestTimeout = time.Second
	// the path of PLC is kept
	proxy, g, ctx, cs := stalledGateway(t, gwOpts{policy: pathPolicy, limits: gateway.Limits{RequestTimeout: requestTimeout}}, opcuasim.NodeSetpoint, 2)
	a, b := cs[0], cs[1]
	proxy.stall()
	defer proxy.resume()

	// before: 2 s of lookups, then the request's own request_timeout
	sc, took := a.read(ctx, t, opcuasim.NodePressure, 0)
	t.Logf("read of Pressure, its path not known, upstream stalled: %v after %v", sc, took)
	if sc != ua.StatusBadUserAccessDenied || took > requestTimeout+requestTimeout/2 {
		t.Errorf("read of Pressure, upstream stalled: %v after %v; want Bad_UserAccessDenied (no path) within request_timeout %v and a margin", sc, took, requestTimeout)
	}
	before := proxy.requests.Load()
	sc, took = b.read(ctx, t, opcuasim.NodePressure, 0)
	t.Logf("the same read on another session: %v after %v", sc, took)
	if sc != ua.StatusBadUserAccessDenied {
		t.Errorf("the same read on another session: %v, want Bad_UserAccessDenied", sc)
	}
	if n := proxy.requests.Load() - before; n != 0 {
		t.Errorf("the second read of Pressure sent %d requests upstream, want none (the failed lookup remembered)", n)
	}

	rs := g.records(t, func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "node_id") == opcuasim.NodePressure {
				n++
			}
		}
		return n >= 2
	})
	n := 0
	for _, r := range events(rs, "call") {
		if r.str("operation", "node_id") != opcuasim.NodePressure {
			continue
		}
		n++
		if r.str("operation", "browse_path") != "" || r.str("decision", "allow") != "false" {
			t.Errorf("call record %v: want an empty browse_path and allow false", r)
		}
	}
	if n != 2 {
		t.Errorf("%d call records of the reads of Pressure, want 2", n)
	}
}

// A server that stops answering mid-session (the connection open) costs a
// session one request's time: the request after the one that timed out is
// answered Bad_ServerNotConnected at once (it is not sent) and recorded.
// When the server answers again, the same connection is used again.
func TestSilentUpstreamAnsweredAtOnce(t *testing.T) {
	const requestTimeout = time.Second
	// Pressure's path is kept
	proxy, g, ctx, cs := stalledGateway(t, gwOpts{policy: allowAllPolicy, limits: gateway.Limits{RequestTimeout: requestTimeout}}, opcuasim.NodePressure, 1)
	c := cs[0]
	proxy.stall()

	if sc, took := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusBadTimeout {
		t.Errorf("the first read, server silent: %v after %v, want Bad_Timeout", sc, took)
	}
	for i := range 3 {
		if sc, took := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusBadServerNotConnected || took > requestTimeout/2 {
			t.Errorf("read %d after the one that timed out: %v after %v; want Bad_ServerNotConnected at once", i, sc, took)
		}
	}
	accepted := proxy.accepted.Load()
	proxy.resume()
	readUntilGood(ctx, t, c, opcuasim.NodePressure, time.Now().Add(5*requestTimeout))
	if n := proxy.accepted.Load(); n != accepted {
		t.Errorf("%d connections to the server after it answered again, want %d: the same one used again", n, accepted)
	}

	rs := g.records(t, func(rs []record) bool { return len(resultsOf(rs, "read", ua.StatusBadServerNotConnected)) >= 3 })
	fast := resultsOf(rs, "read", ua.StatusBadServerNotConnected)
	if len(fast) != 3 || len(resultsOf(rs, "read", ua.StatusBadTimeout)) != 1 {
		t.Fatalf("result records: %v; want 1 Bad_Timeout and 3 Bad_ServerNotConnected", events(rs, "result"))
	}
	for _, r := range fast {
		if r.str("status") != "error" || !strings.Contains(r.str("detail"), "upstream not answering") {
			t.Errorf("result record %v: want status error, an upstream not answering detail", r)
		}
	}
}

// After a connect that failed, the other sessions of the listener do not
// try again either until the back-off has passed, and then one of them
// tries while the others are answered at once: a server that accepts and
// does not answer costs one wait per back-off, not one per session. Once it
// answers, the next attempt after the back-off connects.
func TestConnectBackOffSharedBySessions(t *testing.T) {
	proxy := startStalledSim(t)
	const requestTimeout = time.Second
	g := startGateway(t, gwOpts{upstream: proxy.endpoint, policy: allowAllPolicy, limits: gateway.Limits{RequestTimeout: requestTimeout},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clients := make([]*hintClient, 5)
	for i := range clients {
		clients[i] = dialHintClient(ctx, t, g.endpoint) // no upstream session yet
	}
	proxy.stall()

	if sc, took := clients[0].read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusBadServerNotConnected {
		t.Fatalf("the first read, server silent: %v after %v, want Bad_ServerNotConnected", sc, took)
	}
	// the attempt ends with its connectTimeout (request_timeout) after it began
	time.Sleep(requestTimeout / 4)
	attempts := proxy.accepted.Load()
	for i, c := range clients[1:] {
		if sc, took := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusBadServerNotConnected || took > requestTimeout/2 {
			t.Errorf("session %d, during the back-off: %v after %v; want Bad_ServerNotConnected at once", i+1, sc, took)
		}
	}
	if n := proxy.accepted.Load(); n != attempts {
		t.Errorf("%d connect attempts after the other sessions' reads, want still %d", n, attempts)
	}

	time.Sleep(requestTimeout + requestTimeout/4)
	var wg sync.WaitGroup
	for _, c := range clients[1:] {
		wg.Go(func() { c.read(ctx, t, opcuasim.NodePressure, 0) })
	}
	wg.Wait()
	if n := proxy.accepted.Load() - attempts; n != 1 {
		t.Errorf("%d connect attempts of 4 sessions after the back-off, want 1", n)
	}

	proxy.resume()
	deadline := time.Now().Add(10 * requestTimeout)
	for _, c := range clients {
		readUntilGood(ctx, t, c, opcuasim.NodePressure, deadline)
	}
}

// A server that pauses for several request timeouts (an online change, a
// project reload) and then answers keeps its upstream session: the
// connection marked silent is probed, not dropped, so a request with a
// long TimeoutHint in flight on it gets its answer, no new connection is
// made (the session's subscriptions stay on the server), and the next
// request is served on it again.
func TestPausedServerKeepsConnection(t *testing.T) {
	const requestTimeout = time.Second
	proxy, _, ctx, cs := stalledGateway(t, gwOpts{policy: allowAllPolicy, limits: gateway.Limits{RequestTimeout: requestTimeout},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true, Limits: opcua.LimitOptions{MaxPublishTimeout: time.Minute}}},
		opcuasim.NodePressure, 1)
	c := cs[0]
	accepted := proxy.accepted.Load()
	proxy.stall()
	type answer struct {
		sc   ua.StatusCode
		took time.Duration
	}
	long := make(chan answer, 1)
	go func() {
		start := time.Now()
		v, err := c.call(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuasim.NodePressure),
			AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}, 30*time.Second)
		a := answer{ua.StatusBadNoCommunication, time.Since(start)}
		if r, ok := v.(ua.Response); err == nil && ok {
			a.sc = r.Header().ServiceResult
		}
		long <- a
	}()
	time.Sleep(100 * time.Millisecond)
	if sc, took := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusBadTimeout {
		t.Errorf("read without a hint during the pause: %v after %v, want Bad_Timeout", sc, took)
	}
	time.Sleep(4 * requestTimeout) // four probes' time
	proxy.resume()
	if a := <-long; a.sc != ua.StatusOK {
		t.Errorf("the read with a 30 s TimeoutHint, server back after about 5 s: %v after %v, want Good", a.sc, a.took)
	}
	if sc, took := c.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusOK {
		t.Errorf("read after the pause: %v after %v, want Good", sc, took)
	}
	if n := proxy.accepted.Load(); n != accepted {
		t.Errorf("%d connections to the server after the pause, want %d: the same one (and its session) kept", n, accepted)
	}
}

// What says only that the server is slower than a request allowed leaves
// the connection in use, and the session's next request is sent, not
// answered Bad_ServerNotConnected at once: a browse path lookup that
// waits in vain (here its full 2 s share of a request whose client waits
// 10 s), and a request cut short by its client's short TimeoutHint.
func TestSlowServerLeavesConnectionInUse(t *testing.T) {
	for _, tc := range []struct {
		name, policy, warm, node string
		requestTimeout, hint     time.Duration
		want                     ua.StatusCode // of the first read, server slow
	}{
		{"lookup", pathPolicy, opcuasim.NodeSetpoint, opcuasim.NodePressure, 2 * time.Second, 10 * time.Second, ua.StatusBadUserAccessDenied}, // no path
		{"short hint", allowAllPolicy, opcuasim.NodePressure, opcuasim.NodePressure, 5 * time.Second, 200 * time.Millisecond, ua.StatusBadTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy, _, ctx, cs := stalledGateway(t, gwOpts{policy: tc.policy, limits: gateway.Limits{RequestTimeout: tc.requestTimeout}}, tc.warm, 1)
			c := cs[0]
			proxy.stall()
			if sc, took := c.read(ctx, t, tc.node, tc.hint); sc != tc.want {
				t.Fatalf("read of %s, TimeoutHint %v, server slow: %v after %v; want %v", tc.node, tc.hint, sc, took, tc.want)
			}
			if sc, took := readAsServerAnswers(ctx, t, proxy, c, tc.warm); sc != ua.StatusOK {
				t.Errorf("the next read, no hint, the server answering after 300 ms: %v after %v, want Good (sent and answered)", sc, took)
			}
		})
	}
}

// A browse path lookup cut short by one client's short TimeoutHint is not
// remembered: another session's request for the node looks the path up
// again, with its own time, and is decided on the path.
func TestShortHintLookupNotRemembered(t *testing.T) {
	proxy, _, ctx, cs := stalledGateway(t, gwOpts{policy: pathPolicy, limits: gateway.Limits{RequestTimeout: 5 * time.Second}}, opcuasim.NodeSetpoint, 2)
	a, b := cs[0], cs[1]
	proxy.stall()
	// 1 ms: the 100 ms floor, 50 ms of it for the lookups
	if sc, took := a.read(ctx, t, opcuasim.NodePressure, time.Millisecond); sc != ua.StatusBadUserAccessDenied {
		t.Errorf("read of Pressure, TimeoutHint 1 ms, its path not known, server slow: %v after %v; want Bad_UserAccessDenied (no path)", sc, took)
	}
	proxy.resume()
	if sc, took := b.read(ctx, t, opcuasim.NodePressure, 0); sc != ua.StatusOK {
		t.Errorf("read of Pressure on another session, no hint, the server answering: %v after %v; want Good (its path looked up again)", sc, took)
	}
}

// A gateway that stops while its server has gone silent ends its sessions
// together, not one after another: each one's CloseSession upstream waits
// up to 2 s for an answer, and with a session after another a stop behind a
// silent server would take 2 s a session (minutes for max_sessions; a
// service manager kills the process first, and the session.close records
// of the sessions not ended yet are lost).
func TestStopBehindSilentServerEndsSessionsTogether(t *testing.T) {
	const sessions = 4
	proxy, g, _, cs := stalledGateway(t, gwOpts{policy: allowAllPolicy}, opcuasim.NodePressure, sessions)
	for _, c := range cs {
		c.ch.Close() // the sessions wait for a new secure channel
	}
	proxy.stall()
	start := time.Now()
	g.engine.Close()
	if took := time.Since(start); took > sessions*time.Second {
		t.Errorf("stopping with %d sessions behind a silent server took %v, want them ended together (at most 2 s each)", sessions, took)
	}
	// written when Close returns: on the file within the sync interval
	closes := 0
	for end := time.Now().Add(time.Second); closes < sessions && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		closes = len(events(g.records(t, nil), "session.close"))
	}
	if closes != sessions {
		t.Errorf("%d session.close records a second after the stop, want %d", closes, sessions)
	}
}

// Sessions that time out together behind a silent server end together:
// each one's CloseSession upstream waits up to 2 s for an answer, and
// ended one after another the last would hold its slot, and the checks of
// the other sessions' certificate expiries wait, 2 s for each before it.
func TestSessionsTimingOutBehindSilentServerEndTogether(t *testing.T) {
	const sessions = 4
	proxy, g, _, cs := stalledGateway(t, gwOpts{policy: allowAllPolicy,
		opts: opcua.Options{Limits: opcua.LimitOptions{SessionTimeout: opcua.MinSessionTimeout}}}, opcuasim.NodePressure, sessions)
	for _, c := range cs {
		c.ch.Close() // the sessions wait for a new secure channel, until their timeout
	}
	proxy.stall()
	rs := g.waitRecords(t, opcua.MinSessionTimeout+3*sessions*time.Second, "a session.close of every session",
		func(rs []record) bool { return len(events(rs, "session.close")) >= sessions })
	var first, last time.Time
	for _, r := range events(rs, "session.close") {
		at, err := time.Parse(time.RFC3339Nano, r.str("time"))
		if err != nil {
			t.Fatalf("session.close time %q: %v", r.str("time"), err)
		}
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	if spread := last.Sub(first); spread > 3*time.Second {
		t.Errorf("the %d sessions that timed out behind a silent server ended over %v, want together", sessions, spread)
	}
}
