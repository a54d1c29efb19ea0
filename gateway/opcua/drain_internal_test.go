package opcua

import (
	"context"
	"io"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// scriptChannel hands out its requests in order, then ends (io.EOF), and
// keeps what was sent back.
type scriptChannel struct {
	fakeChannel
	mu    sync.Mutex
	reqs  []*request
	sent  map[uint32]ua.Response
	reads int
	eof   chan struct{} // closed at the first io.EOF, when set
	end   error         // what ends the script; nil: io.EOF
}

func (s *scriptChannel) Next() (*request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == len(s.reqs) {
		if s.eof != nil {
			close(s.eof)
			s.eof = nil
		}
		if s.end != nil {
			return nil, s.end
		}
		return nil, io.EOF
	}
	s.reads++
	return s.reqs[s.reads-1], nil
}

func (s *scriptChannel) Send(id uint32, resp ua.Response) error {
	s.mu.Lock()
	s.sent[id] = resp
	s.mu.Unlock()
	return nil
}

// serveScript serves reqs on one connection of h, draining or not, until
// the script ends, and returns the answers by request id.
func serveScript(t *testing.T, h *harness, draining bool, reqs ...ua.Request) map[uint32]ua.Response {
	t.Helper()
	ch := &scriptChannel{fakeChannel: fakeChannel{id: 9, policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone},
		sent: map[uint32]ua.Response{}}
	for i, b := range reqs {
		ch.reqs = append(ch.reqs, &request{ID: uint32(i + 1), Body: b})
	}
	base := &gateway.Session{ID: gateway.NewID(), Protocol: Protocol, Listener: "l",
		Source: gateway.Source{IP: netip.MustParseAddr("192.0.2.7"), Port: 4000}, Log: zerolog.Nop()}
	ctx := context.Background()
	if draining {
		d := make(chan struct{})
		close(d)
		ctx = gateway.WithDraining(ctx, d)
	}
	if err := newConn(h.e, ch, base).serve(ctx); err != nil {
		t.Fatalf("serve: %v", err)
	}
	return ch.sent
}

// Requests read after the gateway began to stop (a client's pipelined
// requests) are answered Bad_ServerHalted and recorded, never started: no
// session is created and nothing goes upstream.
func TestDrainingStartsNoRequest(t *testing.T) {
	createReq := func() ua.Request {
		return &ua.CreateSessionRequest{RequestHeader: hdr(nil),
			ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:client"}, ClientNonce: make([]byte, 32),
			RequestedSessionTimeout: 60000}
	}
	readReq := &ua.ReadRequest{RequestHeader: hdr(ua.NewNumericNodeID(0, 77)),
		NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewStringNodeID(1, "Pressure"), AttributeID: ua.AttributeIDValue}}}

	// not draining, the same script creates a session: the refusal below is the drain's
	h := newHarness(t, Options{Anonymous: true})
	sent := serveScript(t, h, false, createReq())
	if _, ok := sent[1].(*ua.CreateSessionResponse); !ok {
		t.Fatalf("not draining: CreateSession answered %T, want a CreateSessionResponse", sent[1])
	}

	h = newHarness(t, Options{Anonymous: true})
	sent = serveScript(t, h, true, createReq(), readReq)
	for id := uint32(1); id <= 2; id++ {
		f, ok := sent[id].(*ua.ServiceFault)
		if !ok || f.ResponseHeader.ServiceResult != ua.StatusBadServerHalted {
			t.Errorf("request %d answered %#v, want a ServiceFault Bad_ServerHalted", id, sent[id])
		}
	}
	if n := len(h.audit.Events("session.open")); n != 0 {
		t.Errorf("%d session.open records while draining, want 0", n)
	}
	var fns []string
	for _, r := range h.audit.Events("request.rejected") {
		if r.Reason != gateway.ReasonShuttingDown || r.Response != "Bad_ServerHalted" {
			t.Errorf("rejected %s (%s), want %s (Bad_ServerHalted)", r.Reason, r.Response, gateway.ReasonShuttingDown)
		}
		fns = append(fns, r.Call.Operation.Function)
	}
	if !slices.Equal(fns, []string{"create_session", "read"}) {
		t.Errorf("rejected functions %v, want [create_session read]", fns)
	}
}

// A client whose channel drops while a request of it is in flight (a Write
// behind the Publish an HMI always has out) does not cancel that request:
// it is decided and forwarded as if the client still waited, and its
// result record tells what the server did, not a cancellation.
func TestChannelEndDoesNotCancelRequestsInFlight(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	ch := &scriptChannel{fakeChannel: fakeChannel{id: 9, policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone},
		sent: map[uint32]ua.Response{}, eof: make(chan struct{})}
	ended := ch.eof
	c, cs := activatedOn(t, h, ch)
	h.e.pipeline.DecisionTimeout = 5 * time.Second // the wait below is not the policy's
	h.e.pipeline.Decider = gatewaytest.Decider(func(ctx context.Context, _ *gateway.Session, k *gateway.Call) (gateway.Decision, error) {
		if k.Operation.Function == "write" {
			<-ended                            // the client is gone
			time.Sleep(200 * time.Millisecond) // and its channel has ended
			if err := ctx.Err(); err != nil {
				return gateway.Decision{}, err // as the policy engine does
			}
		}
		return gateway.Decision{Allow: true}, nil
	})
	// the Publish is answered by the channel's first goroutine, the Write by another
	ch.reqs = []*request{
		{ID: 1, Body: &ua.PublishRequest{RequestHeader: hdr(cs.AuthenticationToken)}},
		{ID: 2, Body: &ua.WriteRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.NewStringNodeID(1, "Setpoint"), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(1.5)}}}}},
	}
	if err := c.serve(context.Background()); err != nil {
		t.Fatalf("serve: %v", err)
	}
	var writes int
	for _, r := range h.audit.Events("call") {
		if r.Call.Operation.Function != "write" {
			continue
		}
		writes++
		if !r.Decision.Allow {
			t.Errorf("the Write in flight when its channel ended was denied: %s %v", r.Decision.Error, r.Decision.Reasons)
		}
	}
	if writes != 1 {
		t.Errorf("%d call records of the Write, want 1", writes)
	}
}

// The sessions of a lost channel are free for a new channel at once, while
// a request the client left in flight there still runs: a client that
// reconnects at None takes its session back before that request ends.
func TestLostChannelFreesItsSessionsBeforeItsRequestsEnd(t *testing.T) {
	h := newHarness(t, Options{Anonymous: true})
	ch := &scriptChannel{fakeChannel: fakeChannel{id: 9, policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone},
		sent: map[uint32]ua.Response{}}
	c, cs := activatedOn(t, h, ch)
	// The Write is held after its decision (the session's decisions are
	// free), where a request waits for the server.
	inFlight, release := make(chan struct{}), make(chan struct{})
	h.e.pipeline.Auditor = heldResults{h.audit, "write", inFlight, release}
	ch.reqs = []*request{{ID: 1, Body: &ua.WriteRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.NewStringNodeID(1, "Setpoint"), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(1.5)}}}}}}
	served := make(chan error, 1)
	go func() { served <- c.serve(context.Background()) }()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // on a failure below: the channel's goroutines end
	<-inFlight
	s := h.e.sessions.get(cs.AuthenticationToken)
	deadline := time.Now().Add(10 * time.Second)
	for s.conn.Load() == c {
		if time.Now().After(deadline) {
			t.Fatal("the session stays on its lost channel while a request of it is in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c2 := h.conn(2)
	if r := activate(c2, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate on a new channel while the old one's Write is in flight: %v", r.Header().ServiceResult)
	}
	free()
	if err := <-served; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if s.conn.Load() != c2 || h.e.sessions.get(cs.AuthenticationToken) == nil {
		t.Error("the old channel's end took the session from its new channel")
	}
	var writes int
	for _, r := range h.audit.Events("call") {
		if r.Call.Operation.Function == "write" && r.Decision.Allow {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("%d allowed call records of the Write, want 1", writes)
	}
}

// heldResults holds the result record of calls of one function until
// release is closed, after telling held.
type heldResults struct {
	*gatewaytest.Auditor
	function      string
	held, release chan struct{}
}

func (a heldResults) Result(ctx context.Context, s *gateway.Session, c *gateway.Call, r *gateway.Result) {
	if c.Operation.Function == a.function {
		close(a.held)
		<-a.release
	}
	a.Auditor.Result(ctx, s, c, r)
}

// A channel that went silent until its security token expired (a network
// break the TCP stack did not notice) is lost, not closed for a violation:
// its activated session waits for a new channel, as after a dropped
// connection. A violation still ends it.
func TestSilentChannelLeavesItsSessions(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  error
		kept bool
	}{
		{"token expired", channel.ErrTokenExpired, true},
		{"connection dropped", io.EOF, true},
		{"violation", &channel.Error{Code: ua.StatusBadSecurityChecksFailed, Reason: "bad signature"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{Anonymous: true})
			ch := &scriptChannel{fakeChannel: fakeChannel{id: 9, policy: ua.SecurityPolicyURINone, mode: ua.MessageSecurityModeNone},
				sent: map[uint32]ua.Response{}, end: tc.end}
			c, cs := activatedOn(t, h, ch)
			c.serve(context.Background())
			s := h.e.sessions.get(cs.AuthenticationToken)
			if kept := s != nil && s.conn.Load() == nil; kept != tc.kept {
				t.Fatalf("session kept for a new channel: %v, want %v", kept, tc.kept)
			}
			if closes := len(h.audit.Events("session.close")); closes != map[bool]int{true: 0, false: 1}[tc.kept] {
				t.Errorf("%d session.close records", closes)
			}
			if tc.kept {
				if r := activate(h.conn(2), cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
					t.Errorf("activate on a new channel: %v", r.Header().ServiceResult)
				}
			}
		})
	}
}

// activatedOn is a connection of h over ch with an anonymous session
// created and activated on it.
func activatedOn(t *testing.T, h *harness, ch secureChannel) (*conn, *ua.CreateSessionResponse) {
	t.Helper()
	base := &gateway.Session{ID: gateway.NewID(), Protocol: Protocol, Listener: "l",
		Source: gateway.Source{IP: netip.MustParseAddr("192.0.2.7"), Port: 4000}, Log: zerolog.Nop()}
	c := newConn(h.e, ch, base)
	cs := create(t, c)
	if r := activate(c, cs.AuthenticationToken, anonymousToken()); r.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("activate: %v", r.Header().ServiceResult)
	}
	return c, cs
}
