package opcua_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// partChunk sends an intermediate MSG chunk ('C') of n zero bytes of
// request reqID; false when the gateway has closed the connection.
func (r *rawChannel) partChunk(reqID uint32, n int) bool {
	b := binary.LittleEndian.AppendUint32(nil, r.chanID)
	b = binary.LittleEndian.AppendUint32(b, r.tokenID)
	b = append(r.seqHeader(b, reqID), make([]byte, n)...)
	msg := binary.LittleEndian.AppendUint32([]byte("MSGC"), uint32(8+len(b)))
	_, err := r.conn.Write(append(msg, b...))
	return err == nil
}

// getEndpoints asks for the endpoints: its answer shows the gateway has
// read everything sent before.
func (r *rawChannel) getEndpoints(reqID uint32) {
	r.t.Helper()
	if !r.tryGetEndpoints(reqID) {
		r.t.Fatal("GetEndpoints not answered with its response")
	}
}

// tryGetEndpoints is getEndpoints that reports a channel closed instead.
func (r *rawChannel) tryGetEndpoints(reqID uint32) bool {
	body, err := ua.Encode(&ua.GetEndpointsRequest{RequestHeader: &ua.RequestHeader{
		AuthenticationToken: ua.NewTwoByteNodeID(0), Timestamp: time.Now(), RequestHandle: reqID,
		AdditionalHeader: ua.NewExtensionObject(nil)}})
	if err != nil {
		r.t.Fatal(err)
	}
	b := binary.LittleEndian.AppendUint32(nil, r.chanID)
	b = binary.LittleEndian.AppendUint32(b, r.tokenID)
	b = r.seqHeader(b, reqID)
	b = binary.LittleEndian.AppendUint16(append(b, 0x01, 0), id.GetEndpointsRequest_Encoding_DefaultBinary)
	b = append(b, body...)
	msg := binary.LittleEndian.AppendUint32([]byte("MSGF"), uint32(8+len(b)))
	if _, err := r.conn.Write(append(msg, b...)); err != nil {
		return false
	}
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [8]byte
	if _, err := io.ReadFull(r.conn, h[:]); err != nil || string(h[:4]) != "MSGF" {
		return false
	}
	resp := make([]byte, binary.LittleEndian.Uint32(h[4:])-8)
	if _, err := io.ReadFull(r.conn, resp); err != nil {
		return false
	}
	_, v, err := ua.DecodeService(resp[16:]) // channel id, token id, sequence header
	_, ok := v.(*ua.GetEndpointsResponse)
	return err == nil && ok
}

// floodUntilERR sends intermediate chunks of 60,000 bytes (at most max of
// them) and returns the code of the ERR message that ends the connection;
// 0 when none came.
func (r *rawChannel) floodUntilERR(reqID uint32, max int) ua.StatusCode {
	for i := 0; i < max && r.partChunk(reqID, 60000); i++ {
	}
	r.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var h [8]byte
		if _, err := io.ReadFull(r.conn, h[:]); err != nil {
			return 0
		}
		body := make([]byte, binary.LittleEndian.Uint32(h[4:])-8)
		if _, err := io.ReadFull(r.conn, body); err != nil {
			return 0
		}
		if string(h[:4]) == "ERRF" {
			var e uacp.Error
			e.Decode(body)
			return ua.StatusCode(e.ErrorCode)
		}
	}
}

// TestPartialRequestsBounded: what clients without a session hold in
// requests whose final chunk never comes is bounded per channel (1 MiB
// before a session) and for the listener (limits.max_partial_bytes). With a
// 2 MiB budget, a channel sending 1.08 MB of chunks is closed with
// Bad_RequestTooLarge; two channels holding 900 kB each stay, a third
// reaching past the budget is closed with Bad_TcpNotEnoughResources; both
// refusals leave request.rejected records with reason channel_error naming
// the limit; a gopcua client is served all along; and once the two
// holders leave, their share is back: two new channels hold 960 kB each;
// and the session's client sends a Read of 1.6 MB.
func TestPartialRequestsBounded(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true,
		Limits: opcua.LimitOptions{MaxMessageSize: 2 << 20, MaxPartialBytes: 2 << 20}}})

	// before a session: 1 MiB per message
	if code := dialRawNone(t, g.endpoint).floodUntilERR(5, 18); code != ua.StatusBadRequestTooLarge {
		t.Fatalf("1.08 MB of chunks before a session: ERR %v, want Bad_RequestTooLarge", code)
	}

	holders := []*rawChannel{dialRawNone(t, g.endpoint), dialRawNone(t, g.endpoint)}
	for _, h := range holders {
		for i := 0; i < 15; i++ {
			if !h.partChunk(5, 60000) {
				t.Fatal("a channel holding 900 kB was closed")
			}
		}
		h.getEndpoints(6)
	}
	if code := dialRawNone(t, g.endpoint).floodUntilERR(5, 15); code != ua.StatusBadTCPNotEnoughResources {
		t.Fatalf("chunks past max_partial_bytes: ERR %v, want Bad_TcpNotEnoughResources", code)
	}

	ctx := context.Background()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := readValue(ctx, t, c, opcuatest.NodePressure); v.Value.Value() != 1.013 {
		t.Errorf("Pressure while the budget is held: %v", v.Value.Value())
	}
	for _, h := range holders {
		h.getEndpoints(7) // still open
	}

	want := map[string]string{"Bad_RequestTooLarge": "before a session", "Bad_TcpNotEnoughResources": "max partial bytes"}
	found := map[string]bool{}
	g.records(t, func(rs []record) bool {
		for _, r := range events(rs, "request.rejected") {
			if w, ok := want[r.str("response")]; ok && r.str("reason") == "channel_error" && strings.Contains(r.str("detail"), w) {
				found[r.str("response")] = true
			}
		}
		return len(found) == len(want)
	})
	if len(found) != len(want) {
		t.Errorf("records of the refusals: found %v of %v\n%v", found, want, events(g.records(t, nil), "request.rejected"))
	}

	for _, h := range holders {
		h.conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		// two channels of 960 kB each fit only when both holders' 1.8 MB are back
		probes := []*rawChannel{dialRawNone(t, g.endpoint), dialRawNone(t, g.endpoint)}
		ok := true
		for _, p := range probes {
			for i := 0; i < 16 && ok; i++ {
				ok = p.partChunk(5, 60000)
			}
		}
		for _, p := range probes {
			ok = ok && p.tryGetEndpoints(6) // the channel is still open
			p.conn.Close()
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the budget the holders took did not come back when they left")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// a session lifts the 1 MiB: a Read of 1.6 MB is answered
	req := &ua.ReadRequest{}
	for i := 0; i < 400; i++ {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{
			NodeID: ua.NewStringNodeID(1, fmt.Sprintf("%04d%s", i, strings.Repeat("x", 3996))), AttributeID: ua.AttributeIDValue})
	}
	if resp, err := c.Read(ctx, req); err != nil || len(resp.Results) != 400 {
		t.Errorf("a Read of 1.6 MB in a session: %v", err)
	}
	if v := readValue(ctx, t, c, opcuatest.NodePressure); v.Value.Value() != 1.013 {
		t.Errorf("Pressure at the end: %v", v.Value.Value())
	}
}
