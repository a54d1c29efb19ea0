package opcua

import (
	"context"
	"io"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/gopcua/opcua/ua"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// scriptChannel hands out its requests in order, then ends (io.EOF), and
// keeps what was sent back.
type scriptChannel struct {
	fakeChannel
	mu    sync.Mutex
	reqs  []*request
	sent  map[uint32]ua.Response
	reads int
}

func (s *scriptChannel) Next() (*request, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reads == len(s.reqs) {
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
