package channel

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// dialTest opens a client channel to endpoint with the test client
// certificate and serverCertDER as the server's.
func dialTest(t testing.TB, endpoint string, o Offer, serverCertDER []byte, set func(*ClientConfig)) (*ClientChannel, error) {
	t.Helper()
	loadCerts(t)
	conn, err := net.Dial("tcp", endpoint[len("opc.tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ClientConfig{EndpointURL: endpoint, PolicyURI: o.PolicyURI, Mode: o.Mode}
	if o.PolicyURI != ua.SecurityPolicyURINone {
		cfg.Certificate, cfg.PrivateKey, cfg.ServerCertificate = clientCert.der, clientCert.key, serverCertDER
	}
	if set != nil {
		set(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, conn, cfg)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// shortToken is the token lifetime of dialShortTokens. The client renews
// at 75 % of it and the server takes a token until 125 %: a renewal has
// half of it (250 ms) to go through, RSA operations under the race
// detector on a loaded machine included (150 ms at 300 ms was too little).
const shortToken = 500 * time.Millisecond

// dialShortTokens opens a client channel at o to a test server that grants
// the shortToken tokens the client asks for.
func dialShortTokens(t *testing.T, o Offer) (*testServer, *ClientChannel) {
	t.Helper()
	cfg := baseConfig(t)
	cfg.MinTokenLifetime = shortToken
	srv := startServer(t, cfg)
	c, err := dialTest(t, srv.endpoint, o, serverCert.der, func(cc *ClientConfig) { cc.Lifetime = shortToken })
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func readTest(handle uint32, nodes ...*ua.NodeID) *ua.ReadRequest {
	r := readRequest(nodes...)
	r.RequestHeader = requestHeader(handle)
	return r
}

// TestClientRenewsUnderLoad: for every policy and mode, four goroutines
// call through a client channel for four token lifetimes while its token
// is renewed; every call is answered with its own result.
func TestClientRenewsUnderLoad(t *testing.T) {
	for _, o := range allOffers {
		t.Run(policyName(o.PolicyURI)+"/"+o.Mode.String(), func(t *testing.T) {
			_, c := dialShortTokens(t, o)
			end := time.Now().Add(4 * shortToken)
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			var mu sync.Mutex
			calls := 0
			for g := range 4 {
				wg.Go(func() {
					for i := uint32(1); time.Now().Before(end); i++ {
						h := uint32(g)<<24 | i
						v, err := c.Call(context.Background(), readTest(h, ua.NewNumericNodeID(1, 1)))
						if err != nil {
							errs <- err
							return
						}
						r, ok := v.(*ua.ReadResponse)
						if !ok || len(r.Results) != 1 || r.Results[0].Value.Value() != int32(h) {
							errs <- fmt.Errorf("call %d answered with %#v", h, v)
							return
						}
						mu.Lock()
						calls++
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			tokenID := c.TokenID()
			t.Logf("%d calls, token %d", calls, tokenID)
			if tokenID < 4 {
				t.Errorf("token %d after %v with a %v lifetime: want at least 3 renewals", tokenID, 4*shortToken, shortToken)
			}
			if err := c.Err(); err != nil {
				t.Errorf("channel failed: %v", err)
			}
		})
	}
}

func policyName(uri string) string { return uri[len("http://opcfoundation.org/UA/SecurityPolicy#"):] }

// TestClientChunkedResponse: a 100 kB value comes in 8 kB chunks and is
// put together; with a MaxMessageSize below it in the Hello, the server
// answers Bad_ResponseTooLarge and the channel stays open.
func TestClientChunkedResponse(t *testing.T) {
	cfg := baseConfig(t)
	srv := startServer(t, cfg)
	srv.big = bytes.Repeat([]byte("0123456789"), 10_000)
	o := Offer{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}
	c, err := dialTest(t, srv.endpoint, o, serverCert.der, func(cc *ClientConfig) { cc.ReceiveBufferSize = 8192 })
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Call(context.Background(), readTest(1, ua.NewStringNodeID(1, "big")))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := v.(*ua.ReadResponse); !ok || !bytes.Equal(r.Results[0].Value.Value().([]byte), srv.big) {
		t.Fatalf("big value not read back whole: %T", v)
	}

	small, err := dialTest(t, srv.endpoint, o, serverCert.der, func(cc *ClientConfig) {
		cc.ReceiveBufferSize, cc.MaxMessageSize = 8192, 50_000
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err = small.Call(context.Background(), readTest(2, ua.NewStringNodeID(1, "big")))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := v.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadResponseTooLarge {
		t.Fatalf("response over the MaxMessageSize of the Hello: %#v, want a Bad_ResponseTooLarge fault", v)
	}
	// Send tells its caller the client got the fault, not the response (it
	// records the error after the fault is on its way)
	if sendErrs := srv.waitSendErrs(); len(sendErrs) != 1 || StatusOf(sendErrs[0]) != ua.StatusBadResponseTooLarge {
		t.Fatalf("Send returned %v, want one Bad_ResponseTooLarge", sendErrs)
	}
	if _, err := small.Call(context.Background(), readTest(3, ua.NewNumericNodeID(1, 1))); err != nil {
		t.Fatalf("the channel after a refused response: %v", err)
	}
}

// serveOne accepts one connection on l, opens the server side of a
// channel on it and passes each request to handle, until the channel ends.
func serveOne(l net.Listener, cfg *Config, handle func(*Channel, *Request)) {
	conn, err := l.Accept()
	if err != nil {
		return
	}
	ch, err := Accept(context.Background(), conn, cfg)
	if err != nil {
		return
	}
	defer ch.Close()
	for {
		req, err := ch.Next()
		if err != nil {
			return
		}
		handle(ch, req)
	}
}

// TestClientServerGone: a call in flight when the server goes away
// returns an error at once, and so does every later call.
func TestClientServerGone(t *testing.T) {
	l := listen(t)
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://" + l.Addr().String()
	got := make(chan *Request, 1)
	srvCh := make(chan *Channel, 1)
	go serveOne(l, cfg, func(ch *Channel, req *Request) {
		srvCh <- ch
		got <- req // never answered
	})
	c, err := dialTest(t, cfg.EndpointURL, Offer{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), readTest(7))
		errc <- err
	}()
	<-got
	ch := <-srvCh
	ch.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("call answered by a closed server")
		}
		t.Logf("call in flight: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("call in flight still waiting 5 s after the server closed")
	}
	if _, err := c.Call(context.Background(), readTest(8)); err == nil || c.Err() == nil {
		t.Fatalf("call on a failed channel: %v (channel error %v)", err, c.Err())
	}
}

// TestClientCallCancelled: a call whose context ends returns ctx.Err()
// while the server sits on the request; its late answer is dropped and the
// channel serves the next call.
func TestClientCallCancelled(t *testing.T) {
	l := listen(t)
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://" + l.Addr().String()
	release := make(chan struct{})
	go serveOne(l, cfg, func(ch *Channel, req *Request) {
		if req.Handle == 1 {
			<-release // answered only after the caller gave up
		}
		ch.Send(req.ID, &ua.ReadResponse{ResponseHeader: okHeader(req.Handle)})
	})
	c, err := dialTest(t, cfg.EndpointURL, Offer{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Call(ctx, readTest(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled call: %v, want context.DeadlineExceeded", err)
	}
	close(release)
	v, err := c.Call(context.Background(), readTest(2))
	if err != nil {
		t.Fatal(err)
	}
	if h := v.(*ua.ReadResponse).ResponseHeader.RequestHandle; h != 2 {
		t.Fatalf("next call got the answer for handle %d", h)
	}
}

// TestClientDialRefusals: a server that answers the Hello with an ERR, with
// garbage, or not at all, fails Dial with a clear error, in time.
func TestClientDialRefusals(t *testing.T) {
	cases := []struct {
		name   string
		answer []byte
		want   ua.StatusCode
	}{
		{"ERR", encodeERR(ua.StatusBadTCPServerTooBusy, "busy"), ua.StatusBadTCPServerTooBusy},
		{"garbage", []byte("XYZF\x10\x00\x00\x00garbage!"), ua.StatusBadTCPMessageTypeInvalid},
		{"silence", nil, ua.StatusBadTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t)
			go func() {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				var h [8]byte
				conn.Read(h[:])
				if tc.answer != nil {
					conn.Write(tc.answer)
				}
				time.Sleep(2 * time.Second)
			}()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err = Dial(ctx, conn, &ClientConfig{EndpointURL: "opc.tcp://" + l.Addr().String(), PolicyURI: ua.SecurityPolicyURINone})
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Dial took %v with a 300 ms context", d)
			}
			if got := StatusOf(err); got != tc.want {
				t.Errorf("Dial: %v (status %v), want %v", err, got, tc.want)
			}
		})
	}
}

// TestClientNodeOPCUARenewal: the client channel against node-opcua's
// server at Basic256Sha256 SignAndEncrypt with a 2 s token: calls keep
// being answered for 7 s across the renewals.
func TestClientNodeOPCUARenewal(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{
		SecurityPolicies:          []string{"Basic256Sha256"},
		SecurityModes:             []string{"SignAndEncrypt"},
		AcceptUnknownCertificates: true,
	})
	pemBytes, err := os.ReadFile(filepath.Join(srv.PKI, "server", "own", "certs", "certificate.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no PEM block in the node-opcua server certificate")
	}
	o := Offer{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}
	c, err := dialTest(t, srv.Endpoint, o, blk.Bytes, func(cc *ClientConfig) { cc.Lifetime = 2 * time.Second })
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	first, lifetime := c.current.id, c.current.lifetime
	c.mu.Unlock()
	calls := 0
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); calls++ {
		v, err := c.Call(context.Background(), &ua.GetEndpointsRequest{RequestHeader: requestHeader(uint32(calls + 1)), EndpointURL: srv.Endpoint})
		if err != nil {
			t.Fatalf("call %d: %v", calls, err)
		}
		if r, ok := v.(*ua.GetEndpointsResponse); !ok || len(r.Endpoints) == 0 {
			t.Fatalf("call %d: %#v", calls, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.mu.Lock()
	last := c.current.id
	c.mu.Unlock()
	t.Logf("%d calls; token lifetime %v; tokens %d..%d", calls, lifetime, first, last)
	if lifetime <= 3*time.Second && last-first < 2 {
		t.Errorf("tokens %d..%d in 7 s with a %v lifetime: want at least 2 renewals", first, last, lifetime)
	}
	if lifetime > 3*time.Second {
		t.Errorf("node-opcua granted %v for a 2 s request; the test needs short tokens", lifetime)
	}
}

// TestClientHelloSizes: the Hello offers the configured buffers and the
// chunk size we send is the server's receive buffer.
func TestClientHelloSizes(t *testing.T) {
	l := listen(t)
	hello := make(chan *uacp.Hello, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		f, err := readFrame(conn, 8192)
		if err != nil {
			return
		}
		var h uacp.Hello
		h.Decode(f.b[tcpHeaderLen:])
		hello <- &h
		conn.Write(encodeERR(ua.StatusBadTCPInternalError, "enough"))
	}()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	Dial(context.Background(), conn, &ClientConfig{EndpointURL: "opc.tcp://x:4840", PolicyURI: ua.SecurityPolicyURINone, ReceiveBufferSize: 16384, MaxMessageSize: 1 << 20, MaxChunkCount: 77})
	h := <-hello
	if h.ReceiveBufSize != 16384 || h.SendBufSize != 16384 || h.MaxMessageSize != 1<<20 || h.MaxChunkCount != 77 || h.EndpointURL != "opc.tcp://x:4840" {
		t.Fatalf("Hello %+v", h)
	}
}

// TestClientIdle: a channel nobody calls on still renews its short token
// (the renewal reads its own answer), answers calls after being idle (the
// watcher gives up the turn), and notices within a second that the server
// closed it.
func TestClientIdle(t *testing.T) {
	for _, o := range []Offer{{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}, {ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}} {
		t.Run(policyName(o.PolicyURI), func(t *testing.T) {
			srv, c := dialShortTokens(t, o)
			for i := uint32(1); i <= 4; i++ {
				time.Sleep(shortToken)
				v, err := c.Call(context.Background(), readTest(i, ua.NewNumericNodeID(1, 1)))
				if err != nil {
					t.Fatalf("call %d after %v idle: %v", i, shortToken, err)
				}
				if r, ok := v.(*ua.ReadResponse); !ok || r.Results[0].Value.Value() != int32(i) {
					t.Fatalf("call %d answered with %#v", i, v)
				}
			}
			tokenID := c.TokenID()
			if tokenID < 4 {
				t.Errorf("token %d after %v with a %v lifetime: want at least 3 renewals", tokenID, 4*shortToken, shortToken)
			}
			time.Sleep(100 * time.Millisecond) // the watcher reads again
			srv.lastChannel().Close()
			deadline := time.Now().Add(time.Second)
			for c.Err() == nil && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if c.Err() == nil {
				t.Fatal("an idle channel the server closed still open after 1 s")
			}
			t.Logf("token %d; closed: %v", tokenID, c.Err())
		})
	}
}

// TestClientOversizeResponse: a server that sends a response over the
// MaxMessageSize or MaxChunkCount the client holds to (here lowered after
// the Hello, so the server does not know) fails that call with
// Bad_ResponseTooLarge; its other chunks are dropped and the channel serves
// the next call.
func TestClientOversizeResponse(t *testing.T) {
	cfg := baseConfig(t)
	srv := startServer(t, cfg)
	srv.big = bytes.Repeat([]byte("0123456789"), 10_000)
	o := Offer{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}
	for _, lower := range []struct {
		name string
		set  func(*ClientConfig)
	}{
		{"MaxMessageSize", func(cc *ClientConfig) { cc.MaxMessageSize = 50_000 }},
		{"MaxChunkCount", func(cc *ClientConfig) { cc.MaxChunkCount = 3 }},
		{"one chunk", func(cc *ClientConfig) { cc.MaxMessageSize = 20 }},
	} {
		t.Run(lower.name, func(t *testing.T) {
			c, err := dialTest(t, srv.endpoint, o, serverCert.der, func(cc *ClientConfig) { cc.ReceiveBufferSize = 8192 })
			if err != nil {
				t.Fatal(err)
			}
			node := ua.NewStringNodeID(1, "big")
			if lower.name == "one chunk" {
				node = ua.NewNumericNodeID(1, 1)
			}
			lower.set(&c.cfg)
			for i := uint32(1); i <= 2; i++ {
				v, err := c.Call(context.Background(), readTest(i, node))
				if StatusOf(err) != ua.StatusBadResponseTooLarge {
					t.Fatalf("call %d: %#v, %v; want Bad_ResponseTooLarge", i, v, err)
				}
			}
			c.cfg.MaxMessageSize, c.cfg.MaxChunkCount = defaultMaxMessageSize, defaultMaxChunkCount
			v, err := c.Call(context.Background(), readTest(3, ua.NewNumericNodeID(1, 1)))
			if err != nil || c.Err() != nil {
				t.Fatalf("the channel after a dropped response: %v (channel %v)", err, c.Err())
			}
			if r, ok := v.(*ua.ReadResponse); !ok || r.Results[0].Value.Value() != int32(3) {
				t.Fatalf("call 3 answered with %#v", v)
			}
		})
	}
}

// TestClientTurnsUnderCancellation: eight goroutines call for four token
// lifetimes over SignAndEncrypt with a shortToken token, against a server that answers each
// request after 0-3 ms, out of order; many calls give up after 1 or 2 ms,
// often while they hold the turn to read and in the middle of a chunk.
// Every call that returns an answer gets its own, every other returns
// context.DeadlineExceeded, and the channel stays open through the
// renewals.
func TestClientTurnsUnderCancellation(t *testing.T) {
	l := listen(t)
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://" + l.Addr().String()
	cfg.MinTokenLifetime = shortToken
	go serveOne(l, cfg, func(ch *Channel, req *Request) {
		go func() {
			time.Sleep(time.Duration(req.Handle%4) * time.Millisecond)
			ch.Send(req.ID, &ua.ReadResponse{ResponseHeader: okHeader(req.Handle),
				Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(req.Handle))}}})
		}()
	})
	o := Offer{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}
	c, err := dialTest(t, cfg.EndpointURL, o, serverCert.der, func(cc *ClientConfig) { cc.Lifetime = shortToken })
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(4 * shortToken)
	var answered, cancelled atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := uint32(1); time.Now().Before(end); i++ {
				h := uint32(g)<<24 | i
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if i%3 != 0 {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(i%3)*time.Millisecond)
				}
				v, err := c.Call(ctx, readTest(h, ua.NewNumericNodeID(1, 1)))
				cancel()
				switch {
				case errors.Is(err, context.DeadlineExceeded):
					cancelled.Add(1)
				case err != nil:
					t.Errorf("call %#x: %v", h, err)
					return
				default:
					r, ok := v.(*ua.ReadResponse)
					if !ok || r.ResponseHeader.RequestHandle != h || r.Results[0].Value.Value() != int32(h) {
						t.Errorf("call %#x answered with %#v", h, v)
						return
					}
					answered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d answered, %d gave up; token %d", answered.Load(), cancelled.Load(), c.TokenID())
	if answered.Load() < 100 || cancelled.Load() < 100 {
		t.Errorf("%d answered and %d cancelled calls: the test did not exercise both", answered.Load(), cancelled.Load())
	}
	if id := c.TokenID(); id < 4 {
		t.Errorf("token %d after %v with a %v lifetime: want at least 3 renewals", id, 4*shortToken, shortToken)
	}
	if err := c.Err(); err != nil {
		t.Errorf("channel failed: %v", err)
	}
}

// TestClientResponseOverDecodeLimits: a response the decoder must not see
// (a DataValue nested 150 deep) fails its call with
// Bad_EncodingLimitsExceeded, and the channel serves the next call.
func TestClientResponseOverDecodeLimits(t *testing.T) {
	l := listen(t)
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://" + l.Addr().String()
	go serveOne(l, cfg, func(ch *Channel, req *Request) {
		v := ua.MustVariant(int32(req.Handle))
		if req.Handle == 1 {
			for range 150 {
				v = ua.MustVariant(&ua.DataValue{EncodingMask: ua.DataValueValue, Value: v})
			}
		}
		ch.Send(req.ID, &ua.ReadResponse{ResponseHeader: okHeader(req.Handle),
			Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: v}}})
	})
	c, err := dialTest(t, cfg.EndpointURL, Offer{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := c.Call(context.Background(), readTest(1)); StatusOf(err) != ua.StatusBadEncodingLimitsExceeded {
		t.Fatalf("a response nested 150 deep: %#v, %v; want Bad_EncodingLimitsExceeded", v, err)
	}
	v, err := c.Call(context.Background(), readTest(2))
	if err != nil {
		t.Fatalf("the call after: %v", err)
	}
	if r, ok := v.(*ua.ReadResponse); !ok || r.Results[0].Value.Value() != int32(2) {
		t.Fatalf("the call after answered with %#v", v)
	}
}

// TestMaxDecodedSize: the decoded-size bound is the channel's own setting
// on both sides. A server channel at the least bound (1 MiB) refuses a Read
// of 20,000 nodes with Bad_EncodingLimitsExceeded and goes on serving; a
// client channel at that bound refuses a response of 20,000 values the
// same way, while one at the default decodes it.
func TestMaxDecodedSize(t *testing.T) {
	const many = 20_000
	l := listen(t)
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://" + l.Addr().String()
	cfg.MaxDecodedSize = MinMaxDecodedSize
	answer := func(ch *Channel, req *Request) {
		n := len(req.Body.(*ua.ReadRequest).NodesToRead)
		if req.Handle == 3 {
			n = many
		}
		res := make([]*ua.DataValue, n)
		for i := range res {
			res[i] = &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(i))}
		}
		ch.Send(req.ID, &ua.ReadResponse{ResponseHeader: okHeader(req.Handle), Results: res})
	}
	go serveOne(l, cfg, answer)
	go serveOne(l, cfg, answer)
	none := Offer{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}
	wide, err := dialTest(t, cfg.EndpointURL, none, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := dialTest(t, cfg.EndpointURL, none, nil, func(cc *ClientConfig) { cc.MaxDecodedSize = MinMaxDecodedSize })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	nodes := make([]*ua.NodeID, many)
	for i := range nodes {
		nodes[i] = ua.NewNumericNodeID(1, uint32(i))
	}
	v, err := wide.Call(ctx, readTest(1, nodes...))
	if f, ok := v.(*ua.ServiceFault); err != nil || !ok || f.ResponseHeader.ServiceResult != ua.StatusBadEncodingLimitsExceeded {
		t.Fatalf("a Read of %d nodes to a server channel bound at 1 MiB: %#v, %v; want a ServiceFault with Bad_EncodingLimitsExceeded", many, v, err)
	}
	if v, err := wide.Call(ctx, readTest(2, nodes[:100]...)); err != nil || len(results(v)) != 100 {
		t.Fatalf("a Read of 100 nodes after it: %T, %v", v, err)
	}

	if v, err := narrow.Call(ctx, readTest(3, nodes[0])); StatusOf(err) != ua.StatusBadEncodingLimitsExceeded {
		t.Fatalf("a response of %d values to a client channel bound at 1 MiB: %T, %v; want Bad_EncodingLimitsExceeded", many, v, err)
	} else if !strings.Contains(err.Error(), "1 MiB") {
		t.Errorf("the refusal does not name the bound: %v", err)
	}
	if v, err := narrow.Call(ctx, readTest(2, nodes[0])); err != nil || len(results(v)) != 1 {
		t.Fatalf("the call after it: %T, %v", v, err)
	}
	v, err = wide.Call(ctx, readTest(3, nodes[0]))
	if err != nil {
		t.Fatalf("the same response to a client channel at the default bound: %v", err)
	}
	if r := results(v); len(r) != many || r[many-1].Value.Value() != int32(many-1) {
		t.Fatalf("the response decoded to %d results", len(r))
	}

	for _, c := range []struct {
		name string
		err  error
	}{
		{"server", (&Config{Offers: []Offer{none}, MaxDecodedSize: MinMaxDecodedSize - 1}).checkAndSetDefaults()},
		{"client", (&ClientConfig{PolicyURI: ua.SecurityPolicyURINone, MaxDecodedSize: 1000}).setDefaults()},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), "below 1 MiB") {
			t.Errorf("%s config with a bound below 1 MiB: %v", c.name, c.err)
		}
	}
}

// results are a ReadResponse's results; none for any other answer.
func results(v any) []*ua.DataValue {
	if r, ok := v.(*ua.ReadResponse); ok {
		return r.Results
	}
	return nil
}
