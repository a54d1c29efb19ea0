package opcua_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// The upstream server stops in the middle of a session: the client hears
// Bad_ServerNotConnected (or Bad_CommunicationError for a request already on
// the wire) instead of waiting, and once the server is back the same client
// session reads again.
func TestUpstreamRestart(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	if dv := readValue(ctx, t, c, opcuatest.NodePressure); dv.Status != ua.StatusOK {
		t.Fatalf("read: %v", dv.Status)
	}
	srv.Stop()
	for i := range 3 {
		_, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
		if !errors.Is(err, ua.StatusBadServerNotConnected) && !errors.Is(err, ua.StatusBadCommunicationError) {
			t.Errorf("read %d with the server stopped: %v, want BadServerNotConnected or BadCommunicationError", i, err)
		}
	}
	srv.Restart()
	if dv := readValue(ctx, t, c, opcuatest.NodePressure); dv.Status != ua.StatusOK || dv.Value.Value() != 1.013 {
		t.Errorf("read after the restart: %+v", dv)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 5 })
	errs := 0
	for _, r := range events(rs, "result") {
		if r.str("status") == "error" {
			errs++
		}
	}
	if errs != 3 {
		t.Errorf("error results: %d, want 3", errs)
	}
}

// A Publish hanging upstream holds neither the Reads of its own session nor
// those of another session.
func TestHangingPublishDoesNotBlockReads(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := anonymousClient(ctx, t, g.endpoint)
	b := anonymousClient(ctx, t, g.endpoint)
	srv.HangPublish(time.Minute)
	notes := make(chan *gopcua.PublishNotificationData, 16)
	sub, err := a.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, notes)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel(context.Background())
	time.Sleep(300 * time.Millisecond) // Publish requests are out and held upstream
	var wg sync.WaitGroup
	for _, c := range []*gopcua.Client{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				// Each read is bounded by the client's 5 s request timeout.
				resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
				if err != nil || resp.Results[0].Status != ua.StatusOK {
					t.Errorf("read while Publish hangs: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case n := <-notes:
		if n.Error == nil {
			t.Errorf("a notification arrived while Publish hangs: %+v", n.Value)
		}
	default:
	}
}

// A request that takes long upstream (a method call of 3 s) holds up
// neither the Reads sent after it on the same secure channel nor, once it
// is answered, the channel: the goroutine that answers a request keeps the
// turn to read only for a quick one.
func TestSlowCallDoesNotBlockReadsBehindIt(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	read := func() error {
		resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
		if err == nil && resp.Results[0].Status != ua.StatusOK {
			err = resp.Results[0].Status
		}
		return err
	}
	if err := read(); err != nil {
		t.Fatal(err)
	}
	called := make(chan error, 1)
	var took time.Duration // when the Call's answer came
	start := time.Now()
	go func() {
		resp, err := c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
			MethodID: ua.MustParseNodeID(opcuatest.NodeWait), InputArguments: []*ua.Variant{ua.MustVariant(uint32(3000))}})
		took = time.Since(start)
		if err == nil && resp.StatusCode != ua.StatusOK {
			err = resp.StatusCode
		}
		called <- err
	}()
	time.Sleep(200 * time.Millisecond) // the Call is out and waits upstream
	for i := range 20 {
		if err := read(); err != nil {
			t.Fatalf("read %d while the Call waits: %v", i, err)
		}
	}
	readsDone := time.Since(start)
	if err := <-called; err != nil {
		t.Fatalf("Wait(3000): %v", err)
	}
	t.Logf("20 reads done %v after the Call went out; the Call answered after %v", readsDone, took)
	if readsDone >= took || took < 3*time.Second {
		t.Errorf("the reads were answered only with the Call (%v, Call %v)", readsDone, took)
	}
	if err := read(); err != nil {
		t.Fatalf("read after the Call: %v", err)
	}
}

// Fifty clients connect, read and leave: no session and no socket is left.
func TestClientsLeaveNothingBehind(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fds := func() int { return openFiles(t) }
	// One client first, so that lazily opened files (the audit log …) count
	// in the baseline.
	c := anonymousClient(ctx, t, g.endpoint)
	readValue(ctx, t, c, opcuatest.NodePressure)
	c.Close(ctx)
	time.Sleep(200 * time.Millisecond)
	before := fds()
	// Five at a time: each client session has its own upstream session, and
	// node-opcua serves ten connections per endpoint by default.
	var wg sync.WaitGroup
	slots := make(chan struct{}, 5)
	for range 50 {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			c, err := gopcua.NewClient(g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone))
			if err != nil {
				t.Error(err)
				return
			}
			if err := c.Connect(ctx); err != nil {
				t.Errorf("connect: %v", err)
				return
			}
			if _, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}}); err != nil {
				t.Errorf("read: %v", err)
			}
			c.Close(ctx)
		}()
	}
	wg.Wait()
	var after int
	for range 100 { // sockets close asynchronously
		if after = fds(); after <= before+2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after > before+2 {
		t.Errorf("open files: %d before, %d after 50 clients", before, after)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) >= 51 })
	if o, c := len(events(rs, "session.open")), len(events(rs, "session.close")); o != 51 || c != 51 {
		t.Errorf("session.open %d, session.close %d, want 51 each", o, c)
	}
}

// A connection that opens a secure channel and then says nothing is closed
// after the listener's idle timeout.
func TestIdleChannelClosed(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, limits: gateway.Limits{IdleTimeout: 500 * time.Millisecond},
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := gopcua.NewClient(g.endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Dial(ctx); err != nil { // secure channel only, no session
		t.Fatal(err)
	}
	defer c.Close(ctx)
	time.Sleep(2 * time.Second)
	_, err = c.GetEndpoints(ctx)
	if err == nil {
		t.Error("the idle channel still answers")
	}
}

// max_requests_per_session: with that many requests of a connection
// waiting upstream, one more is answered at once, a Read
// Bad_TooManyOperations and a Publish Bad_TooManyPublishRequests (OPC
// 10000-4 §5.13.5), and each leaves a request.rejected record; once they
// are answered, the connection is served again.
func TestRequestsInFlightLimit(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true,
		Limits: opcua.LimitOptions{MaxRequestsPerSession: 3}}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	send := sender(ctx, t, c)
	sub := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 600,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	if sub.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("create subscription: %v", sub.ResponseHeader.ServiceResult)
	}
	read := func() ua.StatusCode {
		resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue}}})
		var code ua.StatusCode
		switch {
		case errors.As(err, &code):
			return code
		case err != nil:
			t.Fatalf("read: %v", err)
		}
		return resp.ResponseHeader.ServiceResult
	}
	if sc := read(); sc != ua.StatusOK {
		t.Fatalf("read before the limit: %v", sc)
	}

	// The gateway frees a request's slot just after it has written the
	// answer: the client can see the answer a moment before its slot is
	// free, and on a loaded machine the first Publish could find the Read's
	// slot still taken. Give the gateway that moment.
	time.Sleep(200 * time.Millisecond)
	srv.HangPublish(4 * time.Second)
	var wg sync.WaitGroup
	var answered atomic.Int32
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Send(ctx, &ua.PublishRequest{}, func(ua.Response) error { return nil })
			answered.Add(1)
		}()
	}
	// Once the three Publish requests are decided (and so wait upstream), a
	// Read is one too many.
	publishes := func(rs []record) int {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "function") == "publish" {
				n++
			}
		}
		return n
	}
	if n := publishes(g.records(t, func(rs []record) bool { return publishes(rs) >= 3 })); n != 3 {
		t.Fatalf("%d Publish requests decided, want 3", n)
	}
	if sc := read(); sc != ua.StatusBadTooManyOperations {
		t.Fatalf("a fourth request in flight: %v, want Bad_TooManyOperations", sc)
	}
	var pub ua.StatusCode
	if err := c.Send(ctx, &ua.PublishRequest{}, func(r ua.Response) error { pub = r.Header().ServiceResult; return nil }); err != nil {
		if !errors.As(err, &pub) {
			t.Fatalf("a fourth Publish in flight: %v", err)
		}
	}
	if pub != ua.StatusBadTooManyPublishRequests {
		t.Errorf("a fourth Publish in flight: %v, want Bad_TooManyPublishRequests", pub)
	}
	if n := answered.Load(); n != 0 {
		t.Errorf("the refusals came after %d Publish answers: they waited for a slot", n)
	}
	wg.Wait()
	if sc := read(); sc != ua.StatusOK {
		t.Errorf("read after the Publish requests were answered: %v", sc)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 2 })
	for fn, code := range map[string]string{"read": "Bad_TooManyOperations", "publish": "Bad_TooManyPublishRequests"} {
		if !slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool {
			return r.str("reason") == "limit" && r.str("operation", "function") == fn && r.str("response") == code
		}) {
			t.Errorf("no request.rejected record of the refused %s (%s): %v", fn, code, events(rs, "request.rejected"))
		}
	}
}

// One connection over the listener's max_conns is told so in OPC UA's
// words, an ERR message with Bad_TcpNotEnoughResources, and recorded as
// refused; the connections being served keep working.
func TestConnectionLimitRefusal(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true},
		limits: gateway.Limits{MaxConns: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := directClient(ctx, t, g.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	readValue(ctx, t, a, opcuatest.NodePressure)

	_, err = directClient(ctx, t, g.endpoint)
	if err == nil {
		t.Fatal("a second connection was served with max_conns 1")
	}
	var uerr *uacp.Error
	if !errors.As(err, &uerr) || ua.StatusCode(uerr.ErrorCode) != ua.StatusBadTCPNotEnoughResources {
		t.Fatalf("second connection: %v, want an ERR message with Bad_TcpNotEnoughResources", err)
	}
	readValue(ctx, t, a, opcuatest.NodePressure)
	rs := g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "session.open"), func(r record) bool { return r.str("reason") == gateway.RefusedConnLimit })
	})
	if !slices.ContainsFunc(events(rs, "session.open"), func(r record) bool { return r.str("reason") == gateway.RefusedConnLimit }) {
		t.Errorf("no session.open record of the refused connection")
	}
}

// SECURITY.md bad input 6: many sockets sending malformed 200-byte
// packets. Each is answered (an ERR message, or closed at once when it is
// beyond max_conns and eight refusals are already being answered), none
// is left hanging, each leaves one audit record (a refusal: or is counted
// in one), a client connected before keeps being served, and no socket is
// left behind.
func TestMalformedPacketFlood(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fds := func() int { return openFiles(t) }
	c, err := directClient(ctx, t, g.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	readValue(ctx, t, c, opcuatest.NodePressure)
	before := fds()
	base := len(g.records(t, nil))

	// Four kinds of 200 bytes: random, a Hello of random bytes, a message
	// before the Hello, a Hello claiming 4 GiB.
	packet := func(i int) []byte {
		rnd := rand.New(rand.NewPCG(uint64(i), 7))
		b := make([]byte, 200)
		for j := range b {
			b[j] = byte(rnd.Uint32())
		}
		switch i % 4 {
		case 1:
			copy(b, "HELF\xc8\x00\x00\x00")
		case 2:
			copy(b, "MSGF\xc8\x00\x00\x00")
		case 3:
			copy(b, "HELF\xff\xff\xff\xff")
		}
		return b
	}
	const flood = 300
	var wg sync.WaitGroup
	var errs, closed, hanging atomic.Int32
	for i := range flood {
		wg.Go(func() {
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(g.endpoint, "opc.tcp://"), 10*time.Second)
			if err != nil {
				t.Errorf("dial %d: %v", i, err)
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			conn.Write(packet(i))
			got, err := io.ReadAll(conn)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				hanging.Add(1)
			case len(got) >= 8 && string(got[:4]) == "ERRF":
				errs.Add(1)
			case len(got) == 0:
				closed.Add(1)
			default:
				t.Errorf("packet %d answered with %q", i, got)
			}
		})
	}
	reads, slowest := 0, time.Duration(0)
	for done := waitGroupDone(&wg); ; {
		start := time.Now()
		readValue(ctx, t, c, opcuatest.NodePressure) // served all along
		slowest = max(slowest, time.Since(start))
		reads++
		select {
		case <-done:
		default:
			continue
		}
		break
	}
	if hanging.Load() != 0 {
		t.Errorf("%d connections left hanging for 30 s", hanging.Load())
	}
	t.Logf("%d malformed connections: %d answered with an ERR message, %d closed without a word; %d reads meanwhile, the slowest %v",
		flood, errs.Load(), closed.Load(), reads, slowest)
	// At least every connection served (max_conns, less the one of the
	// client above) and the refusals answered at once get an ERR message.
	if min := int32(gateway.DefaultMaxConns - 1 + 8); errs.Load() < min {
		t.Errorf("only %d of %d malformed connections got an ERR message, want %d or more", errs.Load(), flood, min)
	}
	readValue(ctx, t, c, opcuatest.NodePressure)
	eventually := time.Now().Add(10 * time.Second)
	for fds() > before && time.Now().Before(eventually) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := fds(); n > before {
		t.Errorf("%d open files after the flood, %d before", n, before)
	}

	// One source's rejections beyond limits.rejected_records_per_source
	// are counted, and summed up at the latest at stop.
	g.stop()
	var rejected, full, refused int
	count := func(rs []record) bool {
		rejected, full, refused = 0, 0, 0
		for _, r := range rs[base:] {
			switch {
			case r.str("event") == "request.rejected" && r.str("reason") == "channel_error":
				rejected++
				full++
			case r.str("event") == "request.rejected_suppressed":
				n, _ := r["reasons"].(map[string]any)["channel_error"].(float64)
				rejected += int(n)
			case r.str("event") == "session.open" && r.str("reason") == gateway.RefusedConnLimit:
				// At most one record per source every RefusalInterval; it
				// counts the refusals not recorded.
				n, _ := r["repeats_not_recorded"].(float64)
				refused += 1 + int(n)
			}
		}
		return rejected+refused >= flood
	}
	count(g.records(t, count))
	if int(closed.Load()) > refused {
		t.Errorf("%d connections closed without a word, but only %d refused", closed.Load(), refused)
	}
	if rejected+refused != flood {
		t.Errorf("records of the malformed connections: %d channel errors + %d refusals, want %d", rejected, refused, flood)
	}
	t.Logf("%d channel errors: %d recorded one by one, the rest counted in request.rejected_suppressed", rejected, full)
	if full > gateway.DefaultRejectedPerSource {
		t.Errorf("%d request.rejected records of one source, want at most %d (the rest counted)", full, gateway.DefaultRejectedPerSource)
	}
	if rep, err := audit.VerifyLog([]string{g.auditPath}, audit.VerifyOptions{}); err != nil || rep.Break != nil {
		t.Errorf("verify: %v, %+v", err, rep.Break)
	}
}

// waitGroupDone is closed when wg's count is zero.
func waitGroupDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}

// directClient connects an anonymous None gopcua client without asking for
// the endpoints first (that takes a connection of its own for a moment),
// closed when the test ends.
func directClient(ctx context.Context, t *testing.T, endpoint string) (*gopcua.Client, error) {
	t.Helper()
	return connectClient(ctx, t, endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone))
}

// openFiles counts the test process's open files (the gateway's sockets
// among them).
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files needs /proc/self/fd: %v", err)
	}
	return len(ents)
}

// A shutdown answers the requests in flight before it closes the channel:
// a method call under way gets its result, not a reset, and its result
// record says ok.
func TestShutdownAnswersCallInFlight(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	called := make(chan error, 1)
	go func() {
		resp, err := c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
			MethodID: ua.MustParseNodeID(opcuatest.NodeWait), InputArguments: []*ua.Variant{ua.MustVariant(uint32(1000))}})
		if err == nil && resp.StatusCode != ua.StatusOK {
			err = resp.StatusCode
		}
		called <- err
	}()
	time.Sleep(300 * time.Millisecond) // the Call is out and waits upstream
	g.stop()
	if err := <-called; err != nil {
		t.Fatalf("the Call in flight at the shutdown: %v; want its result", err)
	}
	rs := g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "result"), func(r record) bool { return r.str("function") == "call" })
	})
	for _, r := range events(rs, "result") {
		if r.str("function") == "call" && r.str("status") != "ok" {
			t.Errorf("the Call's result record: %v", r)
		}
	}
}

// A shutdown does not wait for a Publish parked upstream (a server holds
// one until it has notifications or a keep-alive is due, minutes on a quiet
// subscription): the stop answers it Bad_Shutdown at once, and its result
// record says so, instead of the listener cutting it off after
// request_timeout and a second.
func TestShutdownAnswersParkedPublish(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	const requestTimeout = 20 * time.Second // the cut would come after 21 s
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}, limits: gateway.Limits{RequestTimeout: requestTimeout}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	srv.HangPublish(time.Minute)
	notes := make(chan *gopcua.PublishNotificationData, 16)
	if _, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, notes); err != nil {
		t.Fatal(err)
	}
	parked := func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "call"), func(r record) bool { return r.str("operation", "function") == "publish" })
	}
	if !parked(g.records(t, parked)) {
		t.Fatal("no Publish went upstream")
	}
	time.Sleep(200 * time.Millisecond) // the Publish is upstream, held there
	start := time.Now()
	g.stop()
	if took := time.Since(start); took > requestTimeout/2 {
		t.Errorf("the stop took %v with a Publish parked upstream; want it answered at once, not cut after request_timeout (%v)", took, requestTimeout)
	}
	checkPublishResults(t, g.records(t, nil), ua.StatusBadShutdown, "stopping")
}

// checkPublishResults checks that rs has a result record of a Publish and
// that every one says status error, the code, and a detail holding detail.
func checkPublishResults(t *testing.T, rs []record, code ua.StatusCode, detail string) {
	t.Helper()
	var found bool
	for _, r := range events(rs, "result") {
		if r.str("function") != "publish" {
			continue
		}
		found = true
		if r.str("status") != "error" || r["code"] != float64(uint32(code)) || !strings.Contains(r.str("detail"), detail) {
			t.Errorf("a Publish's result record: %v; want status error, code %v, a detail with %q", r, code, detail)
		}
	}
	if !found {
		t.Errorf("no result record of a Publish in %d records", len(rs))
	}
}
