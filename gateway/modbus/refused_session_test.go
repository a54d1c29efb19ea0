package modbus_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// A connection whose session.open the policy refuses is told so as one
// over max_conns is: its first request is answered with exception 0x0A
// (gateway path unavailable), then it is closed; nothing reaches the PLC,
// and the session.open record says why.
func TestRefusedSessionIsAnswered0x0A(t *testing.T) {
	for _, tc := range []struct {
		name   string
		decide gatewaytest.Decider
		reason string
	}{
		{"denied", func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
			if c.Operation.Function == gateway.FunctionSessionOpen {
				return gateway.Decision{Reasons: []string{"unknown_source"}}, nil
			}
			return gateway.Decision{Allow: true}, nil
		}, "policy: unknown_source"},
		{"policy error", func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
			if c.Operation.Function == gateway.FunctionSessionOpen {
				return gateway.Decision{}, errors.New("evaluation failed")
			}
			return gateway.Decision{Allow: true}, nil
		}, "policy: " + gateway.ReasonPolicyError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, simAddr := startSim(t, "", modbussim.Options{})
			g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: tc.decide})

			// A real client: told, at once.
			start := time.Now()
			if _, err := client(t, g.addr, 1).ReadHoldingRegisters(context.Background(), 0, 1); exceptionCode(err) != modbus.ExGatewayPathUnavailable {
				t.Fatalf("read on a refused session: %v, want exception 0x0A", err)
			}
			if el := time.Since(start); el > 500*time.Millisecond {
				t.Errorf("the 0x0A answer took %v", el)
			}

			// The frames: the answer carries the request's transaction id
			// and unit, then the connection is closed.
			conn := dial(t, g.addr)
			conn.Write(adu(41, 1, []byte{0x06, 0, 100, 0, 7}))
			if tid, pdu := readADU(t, conn); tid != 41 || !bytes.Equal(pdu, []byte{0x86, modbus.ExGatewayPathUnavailable}) {
				t.Fatalf("answered tid %d % x, want tid 41 86 0a", tid, pdu)
			}
			if b, err := readAll(conn); err == nil || len(b) != 0 {
				t.Fatalf("after the answer: %x, %v; want the connection closed", b, err)
			}
			if n := sim.Requests(); n != 0 {
				t.Errorf("the PLC got %d requests from refused sessions", n)
			}
			opens := g.audit.Events("session.open")
			if len(opens) != 2 {
				t.Fatalf("%d session.open records, want 2", len(opens))
			}
			for _, r := range opens {
				if !strings.HasPrefix(r.Reason, tc.reason) {
					t.Errorf("session.open reason %q, want %q", r.Reason, tc.reason)
				}
			}
			for _, ev := range []string{"call", "result", "request.rejected"} {
				if n := len(g.audit.Events(ev)); n != 0 {
					t.Errorf("%d %s records, want none (as for a connection over max_conns)", n, ev)
				}
			}
		})
	}
}

// mbpoll on a session the policy refuses: "Gateway path unavailable".
func TestRefusedSessionMbpoll(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerMbpoll)
	deny := func(_ context.Context, _ *gateway.Session, c *gateway.Call) (gateway.Decision, error) {
		return gateway.Decision{Allow: c.Operation.Function != gateway.FunctionSessionOpen, Reasons: []string{"unknown_source"}}, nil
	}
	_, simAddr := startSim(t, "", modbussim.Options{})
	g := startGateway(t, gwOpts{upstream: "tcp://" + simAddr, decide: deny})
	_, port, _ := net.SplitHostPort(g.addr)
	args := []string{"-m", "tcp", "-a", "1", "-0", "-1", "-o", "3", "-p", port, "-r", "0", "127.0.0.1"}
	out, err := exec.Command("mbpoll", args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Gateway path unavailable") {
		t.Fatalf("mbpoll %s: %v\n%s\nwant Gateway path unavailable", strings.Join(args, " "), err, out)
	}
}
