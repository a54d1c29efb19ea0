package opcua_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// rawChannel is a client secure channel at SecurityPolicy None written out
// byte by byte, to send request bodies no OPC UA stack would encode.
type rawChannel struct {
	t       *testing.T
	conn    net.Conn
	chanID  uint32
	tokenID uint32
	seq     uint32
}

func dialRawNone(t *testing.T, endpoint string) *rawChannel {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "opc.tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := &rawChannel{t: t, conn: conn, seq: 1}
	hel, err := (&uacp.Hello{ReceiveBufSize: 65535, SendBufSize: 65535, MaxMessageSize: 1 << 24, EndpointURL: endpoint}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.send("HELF", hel)
	if typ, _ := r.recv(); typ != "ACKF" {
		t.Fatalf("answered the Hello with %s", typ)
	}
	opn, err := ua.Encode(&ua.OpenSecureChannelRequest{
		RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), Timestamp: time.Now(), AdditionalHeader: ua.NewExtensionObject(nil)},
		RequestType:   ua.SecurityTokenRequestTypeIssue, SecurityMode: ua.MessageSecurityModeNone, ClientNonce: []byte{}, RequestedLifetime: 600000})
	if err != nil {
		t.Fatal(err)
	}
	b := binary.LittleEndian.AppendUint32(nil, 0) // channel id
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ua.SecurityPolicyURINone)))
	b = append(b, ua.SecurityPolicyURINone...)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) // no certificate, no thumbprint
	b = r.seqHeader(b, 1)
	b = binary.LittleEndian.AppendUint16(append(b, 0x01, 0), id.OpenSecureChannelRequest_Encoding_DefaultBinary)
	r.send("OPNF", append(b, opn...))
	typ, body := r.recv()
	if typ != "OPNF" {
		t.Fatalf("answered the OpenSecureChannel with %s", typ)
	}
	// channel id, the asymmetric header (policy URI, two null byte strings), the sequence header
	r.chanID = binary.LittleEndian.Uint32(body)
	at := 4 + 4 + int(binary.LittleEndian.Uint32(body[4:])) + 8 + 8
	_, v, err := ua.DecodeService(body[at:])
	if err != nil {
		t.Fatal(err)
	}
	r.tokenID = v.(*ua.OpenSecureChannelResponse).SecurityToken.TokenID
	return r
}

func (r *rawChannel) seqHeader(b []byte, reqID uint32) []byte {
	b = binary.LittleEndian.AppendUint32(b, r.seq)
	r.seq++
	return binary.LittleEndian.AppendUint32(b, reqID)
}

func (r *rawChannel) send(typ string, body []byte) {
	b := binary.LittleEndian.AppendUint32([]byte(typ), uint32(8+len(body)))
	if _, err := r.conn.Write(append(b, body...)); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads one message: its type and chunk (e.g. MSGF) and what follows
// its size.
func (r *rawChannel) recv() (string, []byte) {
	var h [8]byte
	if _, err := io.ReadFull(r.conn, h[:]); err != nil {
		r.t.Fatal(err)
	}
	body := make([]byte, binary.LittleEndian.Uint32(h[4:])-8)
	if _, err := io.ReadFull(r.conn, body); err != nil {
		r.t.Fatal(err)
	}
	return string(h[:4]), body
}

// call sends a service request body (type id first) and returns the
// decoded response.
func (r *rawChannel) call(reqID uint32, body []byte) any {
	b := binary.LittleEndian.AppendUint32(nil, r.chanID)
	b = binary.LittleEndian.AppendUint32(b, r.tokenID)
	r.send("MSGF", append(r.seqHeader(b, reqID), body...))
	typ, resp := r.recv()
	if typ != "MSGF" {
		r.t.Fatalf("answered with %s % x", typ, resp)
	}
	_, v, err := ua.DecodeService(resp[16:]) // channel id, token id, sequence header
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// Request bodies that must not reach gopcua's decoder are answered with a
// ServiceFault carrying their handle, each leaves a request.rejected
// record, and the channel and the gateway go on.
func TestBadRequestBodiesAudited(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	get := func(handle uint32) []byte {
		b, err := ua.Encode(&ua.GetEndpointsRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0),
			RequestHandle: handle, AdditionalHeader: ua.NewExtensionObject(nil)}, EndpointURL: g.endpoint})
		if err != nil {
			t.Fatal(err)
		}
		return append(binary.LittleEndian.AppendUint16([]byte{0x01, 0}, id.GetEndpointsRequest_Encoding_DefaultBinary), b...)
	}
	write := func(handle uint32, variant []byte) []byte {
		b, err := ua.Encode(&ua.WriteRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0),
			RequestHandle: handle, AdditionalHeader: ua.NewExtensionObject(nil)}, NodesToWrite: []*ua.WriteValue{
			{NodeID: ua.NewStringNodeID(1, "Setpoint"), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		b = append(b[:len(b)-5], variant...) // the Int32 Variant ends the body
		return append(binary.LittleEndian.AppendUint16([]byte{0x01, 0}, id.WriteRequest_Encoding_DefaultBinary), b...)
	}
	le := func(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }
	cases := []struct {
		name string
		body []byte
		want ua.StatusCode
	}{
		{"nesting 150", write(11, append(bytes.Repeat([]byte{24}, 150), 6, 1, 0, 0, 0)), ua.StatusBadEncodingLimitsExceeded},
		{"zero dimension", write(12, append(append(append([]byte{0xC0 | 6}, le(0)...), le(1)...), le(0)...)), ua.StatusBadEncodingLimitsExceeded},
		{"null array with 820 million dimensions", write(13, append(append([]byte{0xC0 | 6}, le(-1)...), le(0x30e6e6e6)...)), ua.StatusBadEncodingLimitsExceeded},
		{"string length near 2^31", write(14, append([]byte{12}, le(0x7ffffff0)...)), ua.StatusBadDecodingError},
		// a Range (encoding i=886, two Doubles) with 3 bytes its fields do not cover
		{"structure longer than its fields", write(15, append(append([]byte{22, 0x01, 0x00, 0x76, 0x03, 0x01}, le(19)...), make([]byte, 19)...)), ua.StatusBadDecodingError},
	}
	r := dialRawNone(t, g.endpoint)
	if v := r.call(1, get(1)); v.(*ua.GetEndpointsResponse).ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("GetEndpoints: %#v", v)
	}
	for i, c := range cases {
		v := r.call(uint32(2+i), c.body)
		f, ok := v.(*ua.ServiceFault)
		if !ok || f.ResponseHeader.ServiceResult != c.want || f.ResponseHeader.RequestHandle != uint32(11+i) {
			t.Errorf("%s: answered with %#v, want a %v fault with handle %d", c.name, v, c.want, 11+i)
		}
	}
	if v := r.call(9, get(2)); v.(*ua.GetEndpointsResponse).ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("GetEndpoints after the faults: %#v", v)
	}
	// A well-formed Read with a token no session has.
	fb, err := ua.Encode(&ua.WriteRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewByteStringNodeID(1, bytes.Repeat([]byte{0x5A}, 32)),
		RequestHandle: 16, AdditionalHeader: ua.NewExtensionObject(nil)}, NodesToWrite: []*ua.WriteValue{
		{NodeID: ua.NewStringNodeID(1, "Setpoint"), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	forged := append(binary.LittleEndian.AppendUint16([]byte{0x01, 0}, id.WriteRequest_Encoding_DefaultBinary), fb...)
	if f, ok := r.call(10, forged).(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Errorf("a write with a forged token: %#v, want a Bad_SessionIdInvalid fault", f)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= len(cases)+1 })
	rejected := events(rs, "request.rejected")
	if last := rejected[len(rejected)-1]; last.str("reason") != "session_invalid" || last.str("response") != "Bad_SessionIdInvalid" ||
		last.str("operation", "function") != "write" {
		t.Errorf("the forged token's record: %v", last)
	}
	for i, c := range cases {
		found := false
		for _, rec := range rejected {
			if rec.str("operation", "request_handle") == strconv.Itoa(11+i) &&
				rec.str("response") == certs.StatusName(c.want) && rec.str("reason") == "undecodable" &&
				rec.str("operation", "type_id") == "673" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no request.rejected record with its handle, reason undecodable and %s among %v", c.name, certs.StatusName(c.want), rejected)
		}
	}
}

// Refusals of what a channel cannot read whole, on a channel with an
// activated session, name that session and its principal as the session's
// other records do: a body that does not decode (whether its
// authentication token can be read or not) and a message over
// max_message_size, which ends the channel (recorded before its
// session.close).
func TestRejectedRecordsNameTheChannelSession(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	const maxMessage = 16384
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true,
		Limits: opcua.LimitOptions{MaxMessageSize: maxMessage}}})
	body := func(typeID uint16, req ua.Request) []byte {
		b, err := ua.Encode(req)
		if err != nil {
			t.Fatal(err)
		}
		return append(binary.LittleEndian.AppendUint16([]byte{0x01, 0}, typeID), b...)
	}
	r := dialRawNone(t, g.endpoint)
	cs, ok := r.call(1, body(id.CreateSessionRequest_Encoding_DefaultBinary, withHeader(createRequest(g.endpoint)))).(*ua.CreateSessionResponse)
	if !ok || cs.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("CreateSession: %#v", cs)
	}
	act := activateRequest(anonymousPolicy(cs))
	act.RequestHeader = &ua.RequestHeader{AuthenticationToken: cs.AuthenticationToken, AdditionalHeader: ua.NewExtensionObject(nil)}
	if as, ok := r.call(2, body(id.ActivateSessionRequest_Encoding_DefaultBinary, act)).(*ua.ActivateSessionResponse); !ok || as.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Fatalf("ActivateSession: %#v", as)
	}

	// a Write whose value nests 150 deep, with the session's token
	wb := body(id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: cs.AuthenticationToken,
		RequestHandle: 21, AdditionalHeader: ua.NewExtensionObject(nil)}, NodesToWrite: []*ua.WriteValue{
		{NodeID: ua.NewStringNodeID(1, "Setpoint"), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}},
	}})
	wb = append(wb[:len(wb)-5], append(bytes.Repeat([]byte{24}, 150), 6, 1, 0, 0, 0)...)
	if f, ok := r.call(3, wb).(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadEncodingLimitsExceeded {
		t.Errorf("the nested Write: %#v, want a Bad_EncodingLimitsExceeded fault", f)
	}
	// a Read whose token does not decode (a String NodeId longer than the body)
	rb := binary.LittleEndian.AppendUint16([]byte{0x01, 0}, id.ReadRequest_Encoding_DefaultBinary)
	rb = append(rb, 0x03, 0x01, 0x00, 0xff, 0xff, 0xff, 0x7f, 'x')
	if f, ok := r.call(4, rb).(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadDecodingError {
		t.Errorf("the Read with an undecodable token: %#v, want a Bad_DecodingError fault", f)
	}
	// a message over max_message_size ends the channel
	big := body(id.ReadRequest_Encoding_DefaultBinary, &ua.ReadRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: cs.AuthenticationToken,
		RequestHandle: 23, AdditionalHeader: ua.NewExtensionObject(nil)}, NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.NewStringNodeID(1, strings.Repeat("n", 2*maxMessage)), AttributeID: ua.AttributeIDValue}}})
	hdr := binary.LittleEndian.AppendUint32(nil, r.chanID)
	hdr = binary.LittleEndian.AppendUint32(hdr, r.tokenID)
	r.send("MSGF", append(r.seqHeader(hdr, 5), big...))
	if typ, _ := r.recv(); typ != "ERRF" {
		t.Errorf("a message over max_message_size answered with %s, want an ERR message", typ)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	open := events(rs, "session.open")
	if len(open) != 1 {
		t.Fatalf("%d session.open records, want 1", len(open))
	}
	sid := open[0].str("session_id")
	var got []string
	for _, rec := range rs {
		switch rec.str("event") {
		case "request.rejected":
			got = append(got, rec.str("reason"))
			if rec.str("session_id") != sid || rec.str("principal", "auth") != "anonymous" {
				t.Errorf("request.rejected (%s, %s) names session %q, principal %v; want the channel's session %s, principal anonymous",
					rec.str("reason"), rec.str("detail"), rec.str("session_id"), rec["principal"], sid)
			}
		case "session.close":
			got = append(got, "session.close")
		}
	}
	if want := []string{"undecodable", "undecodable", "channel_error", "session.close"}; !slices.Equal(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
}

// withHeader gives a request a header with no session.
func withHeader(req ua.Request) ua.Request {
	req.SetHeader(&ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)})
	return req
}
