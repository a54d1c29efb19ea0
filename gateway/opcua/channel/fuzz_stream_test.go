package channel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uasc"
)

// streamConn is a connection whose client side is a fixed byte stream,
// handed out one message at a time (as the message sizes in it say) until
// io.EOF; deadlines do nothing. Since a client cannot know the channel and
// token ids before the server's OpenSecureChannel response, the stream
// says "CHID" and "TKID" for them: once the server's first OPN message is
// written, every such placeholder still unread is replaced by its id. Other
// writes are dropped.
type streamConn struct {
	data  []byte
	pos   int
	known bool
}

func (c *streamConn) Read(b []byte) (int, error) {
	rest := c.data[c.pos:]
	if len(rest) == 0 {
		return 0, io.EOF
	}
	if len(rest) >= 8 {
		if n := binary.LittleEndian.Uint32(rest[4:]); n >= 8 && uint64(n) < uint64(len(rest)) {
			rest = rest[:n]
		}
	}
	n := copy(b, rest)
	c.pos += n
	return n, nil
}

func (c *streamConn) Write(b []byte) (int, error) {
	if c.known || len(b) < 12 || string(b[:3]) != "OPN" {
		return len(b), nil
	}
	c.known = true
	var hdr uasc.AsymmetricSecurityHeader
	n, err := hdr.Decode(b[12:])
	if err != nil || len(b) < 12+n+8 {
		return len(b), nil
	}
	_, svc, err := ua.DecodeService(b[12+n+8:])
	resp, ok := svc.(*ua.OpenSecureChannelResponse)
	if err != nil || !ok || resp.SecurityToken == nil {
		return len(b), nil
	}
	rest := c.data[c.pos:]
	for _, r := range []struct {
		placeholder string
		id          uint32
	}{{"CHID", resp.SecurityToken.ChannelID}, {"TKID", resp.SecurityToken.TokenID}} {
		for off := 0; ; off += 4 {
			i := bytes.Index(rest[off:], []byte(r.placeholder))
			if i < 0 {
				break
			}
			off += i
			binary.LittleEndian.PutUint32(rest[off:], r.id)
		}
	}
	return len(b), nil
}

func (c *streamConn) Close() error { return nil }
func (c *streamConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4840}
}
func (c *streamConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// placeholders are the channel and token ids as a stream says them.
var placeholders = [2]uint32{binary.LittleEndian.Uint32([]byte("CHID")), binary.LittleEndian.Uint32([]byte("TKID"))}

// fuzzPrefix is what a client sends first, chosen by the fuzz input's
// second byte: nothing, a Hello, or a Hello and an OpenSecureChannel
// request without security (channel 0, sequence number 1), so that the
// fuzzed bytes reach each stage of the channel.
func fuzzPrefix(stage byte) []byte {
	var b []byte
	if stage%3 >= 1 {
		hel, _ := (&uacp.Hello{ReceiveBufSize: 65535, SendBufSize: 65535, EndpointURL: "opc.tcp://test"}).Encode()
		b = append(b, tcpMessage("HELF", hel)...)
	}
	if stage%3 == 2 {
		b = append(b, opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, 1, 1, opnRequest(ua.SecurityTokenRequestTypeIssue, 60000))...)
	}
	return b
}

// discoveryServices are the requests a discovery-only channel may pass on.
var discoveryServices = []uint16{
	id.GetEndpointsRequest_Encoding_DefaultBinary,
	id.FindServersRequest_Encoding_DefaultBinary,
	id.FindServersOnNetworkRequest_Encoding_DefaultBinary,
}

// FuzzAccept feeds a client's byte stream to the server side of a channel,
// from before the Hello on, and reads requests until the stream ends. The
// first input byte picks the offers: None alone, or Basic256Sha256
// SignAndEncrypt alone with discovery over None. Whatever the bytes, the
// channel must not panic nor hang, must open only with a policy and mode
// it offers (or None for discovery), and a discovery-only channel must pass
// on nothing but the discovery services.
func FuzzAccept(f *testing.F) {
	loadCerts(f)
	read := symChunk("MSG", 'F', placeholders[0], placeholders[1], 2, 2, readBody(7))
	getEndpoints, err := encodeService(id.GetEndpointsRequest_Encoding_DefaultBinary, &ua.GetEndpointsRequest{RequestHeader: requestHeader(3), EndpointURL: "opc.tcp://test"})
	if err != nil {
		f.Fatal(err)
	}
	vendorWrite, err := encodeService(id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: requestHeader(4), NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.NewStringNodeID(1, "Recipe"), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(&ua.ExtensionObject{
			TypeID: ua.NewFourByteExpandedNodeID(1, 5001), EncodingMask: ua.ExtensionObjectBinary, Value: &Opaque{Body: []byte("recipe 7")}})},
	}}})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{
		{0, 0},
		{0, 1},
		{0, 2},
		append([]byte{0, 2}, read...),
		append([]byte{1, 2}, read...),
		append([]byte{1, 2}, symChunk("MSG", 'F', placeholders[0], placeholders[1], 2, 2, getEndpoints)...),
		append([]byte{0, 2}, append(symChunk("MSG", 'C', placeholders[0], placeholders[1], 2, 2, readBody(7)[:10]), symChunk("MSG", 'A', placeholders[0], placeholders[1], 3, 2, nil)...)...),
		append([]byte{0, 2}, symChunk("CLO", 'F', placeholders[0], placeholders[1], 2, 2, nil)...),
		append([]byte{0, 2}, symChunk("MSG", 'F', placeholders[0], placeholders[1], 2, 2, vendorWrite)...),
		append([]byte{0, 1}, opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURIBasic256Sha256, SenderCertificate: clientCert.der}, 1, 1, []byte("not encrypted"))...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { acceptStream(t, data) })
}

// acceptStream runs one input of FuzzAccept and returns the requests the
// channel passed on.
func acceptStream(t *testing.T, data []byte) []*Request {
	if len(data) < 2 {
		return nil
	}
	cfg := baseConfig(t)
	cfg.EndpointURL = "opc.tcp://test"
	cfg.MaxChunkCount = 8
	cfg.Offers = []Offer{{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}}
	if data[0]%2 == 1 {
		cfg.Offers = []Offer{{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}}
		cfg.DiscoveryOverNone = true
	}
	stream := append(fuzzPrefix(data[1]), data[2:]...)
	ch, err := Accept(context.Background(), &streamConn{data: stream}, cfg)
	if err != nil {
		return nil
	}
	defer func() {
		// Close waits for the reading to end: read to the stream's end first
		for {
			if _, err := ch.Next(); err != nil {
				break
			}
		}
		ch.Close()
	}()
	offer := Offer{ch.SecurityPolicyURI(), ch.SecurityMode()}
	switch {
	case ch.DiscoveryOnly():
		if offer.PolicyURI != ua.SecurityPolicyURINone || !cfg.DiscoveryOverNone {
			t.Fatalf("discovery-only channel with %v, DiscoveryOverNone %v", offer, cfg.DiscoveryOverNone)
		}
	case !slices.Contains(cfg.Offers, offer):
		t.Fatalf("channel opened with %v, offers %v", offer, cfg.Offers)
	}
	var reqs []*Request
	// every request needs at least a chunk header of 24 bytes
	for range len(stream)/24 + 2 {
		req, err := ch.Next()
		if err != nil {
			return reqs
		}
		if ch.DiscoveryOnly() && !slices.Contains(discoveryServices, uint16(req.TypeID.NodeID.IntID())) {
			t.Fatalf("discovery-only channel passed on %T", req.Body)
		}
		// what the channel passes on, the gateway can forward
		if _, err := encodeService(uint16(req.TypeID.NodeID.IntID()), req.Body); err != nil {
			t.Fatalf("%T passed on cannot be encoded again: %v", req.Body, err)
		}
		reqs = append(reqs, req)
	}
	t.Fatalf("Next returned more requests than a stream of %d bytes can hold", len(stream))
	return nil
}

// TestAcceptStream checks that FuzzAccept's streams reach the requests: a
// Read on a None channel is passed on, on a discovery-only channel it is
// not, and a GetEndpoints is.
func TestAcceptStream(t *testing.T) {
	read := symChunk("MSG", 'F', placeholders[0], placeholders[1], 2, 2, readBody(7))
	getEndpoints, err := encodeService(id.GetEndpointsRequest_Encoding_DefaultBinary, &ua.GetEndpointsRequest{RequestHeader: requestHeader(3), EndpointURL: "opc.tcp://test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
	}{
		{"read over None", append([]byte{0, 2}, read...), []string{"*ua.ReadRequest"}},
		{"read on discovery", append([]byte{1, 2}, read...), nil},
		{"endpoints on discovery", append([]byte{1, 2}, symChunk("MSG", 'F', placeholders[0], placeholders[1], 2, 2, getEndpoints)...), []string{"*ua.GetEndpointsRequest"}},
		{"no Hello", append([]byte{0, 0}, read...), nil},
	} {
		var got []string
		for _, r := range acceptStream(t, tc.data) {
			got = append(got, fmt.Sprintf("%T", r.Body))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: passed on %v, want %v", tc.name, got, tc.want)
		}
	}
}

// serverStream is what a server sends a client channel without security:
// the Acknowledge, the OpenSecureChannel response to request 1 (channel 5,
// token 7) and then msgs.
func serverStream(msgs ...[]byte) []byte {
	ack, _ := (&uacp.Acknowledge{ReceiveBufSize: 65535, SendBufSize: 65535}).Encode()
	opn, err := encodeService(id.OpenSecureChannelResponse_Encoding_DefaultBinary, &ua.OpenSecureChannelResponse{
		ResponseHeader: responseHeader(0, ua.StatusOK),
		SecurityToken:  &ua.ChannelSecurityToken{ChannelID: 5, TokenID: 7, CreatedAt: time.Now(), RevisedLifetime: 60000},
		ServerNonce:    []byte{},
	})
	if err != nil {
		panic(err)
	}
	b := append(tcpMessage("ACKF", ack), opnChunk(5, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, 1, 1, opn)...)
	for _, m := range msgs {
		b = append(b, m...)
	}
	return b
}

// lockedStream is a streamConn for the client side, whose reader and
// watcher may take turns on different goroutines.
type lockedStream struct {
	mu sync.Mutex
	streamConn
}

func (c *lockedStream) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamConn.Read(b)
}

// FuzzDial feeds a server's byte stream to the gateway's client channel:
// the upstream leg must survive any server. The client dials, sends one
// Read and waits for its answer. Whatever the bytes, it must not panic
// nor hang, and a Read answered must be a ReadResponse or a ServiceFault.
func FuzzDial(f *testing.F) {
	resp, err := encodeService(id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{
		ResponseHeader: responseHeader(1, ua.StatusOK),
		Results:        []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(42))}},
	})
	if err != nil {
		f.Fatal(err)
	}
	fault, err := encodeService(id.ServiceFault_Encoding_DefaultBinary, &ua.ServiceFault{ResponseHeader: responseHeader(1, ua.StatusBadSessionIDInvalid)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(serverStream())
	f.Add(serverStream(symChunk("MSG", 'F', 5, 7, 2, 2, resp)))
	f.Add(serverStream(symChunk("MSG", 'F', 5, 7, 2, 2, fault)))
	f.Add(serverStream(symChunk("MSG", 'C', 5, 7, 2, 2, resp[:20]), symChunk("MSG", 'F', 5, 7, 3, 2, resp[20:])))
	f.Add(serverStream(symChunk("MSG", 'C', 5, 7, 2, 2, resp[:20]), symChunk("MSG", 'A', 5, 7, 3, 2, nil)))
	vendor, err := encodeService(id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{
		ResponseHeader: responseHeader(1, ua.StatusOK),
		Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(&ua.ExtensionObject{
			TypeID: ua.NewFourByteExpandedNodeID(1, 5001), EncodingMask: ua.ExtensionObjectBinary, Value: &Opaque{Body: []byte("recipe 7")}})}},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(serverStream(symChunk("MSG", 'F', 5, 7, 2, 2, vendor)))
	f.Fuzz(func(t *testing.T, data []byte) { dialStream(t, data) })
}

// dialStream runs one input of FuzzDial and returns the Read's answer.
func dialStream(t *testing.T, data []byte) (ua.Response, error) {
	conn := &lockedStream{streamConn: streamConn{data: data, known: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := Dial(ctx, conn, &ClientConfig{EndpointURL: "opc.tcp://test", PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone})
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	v, err := ch.Call(ctx, readRequest(ua.NewNumericNodeID(0, 2258)))
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the Read was not answered within 5 s of a stream that had ended")
	}
	if err != nil {
		return nil, err
	}
	switch v.(type) {
	case *ua.ReadResponse, *ua.ServiceFault:
		// what the client channel decodes, the gateway can answer with
		if _, err := encodeService(serviceTypeID(v), v); err != nil {
			t.Fatalf("%T received cannot be encoded again: %v", v, err)
		}
		return v.(ua.Response), nil
	}
	t.Fatalf("a Read answered with %T", v)
	return nil, nil
}

// TestDialStream checks that FuzzDial's streams reach the answer.
func TestDialStream(t *testing.T) {
	resp, err := encodeService(id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{
		ResponseHeader: responseHeader(1, ua.StatusOK),
		Results:        []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(42))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := dialStream(t, serverStream(symChunk("MSG", 'C', 5, 7, 2, 2, resp[:20]), symChunk("MSG", 'F', 5, 7, 3, 2, resp[20:])))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := got.(*ua.ReadResponse); !ok || len(r.Results) != 1 || r.Results[0].Value.Value() != int32(42) {
		t.Fatalf("answer %#v", got)
	}
	if _, err := dialStream(t, serverStream()); err == nil {
		t.Fatal("a Read answered by a stream that ends after the OpenSecureChannel response")
	}
	fault, err := encodeService(id.ServiceFault_Encoding_DefaultBinary, &ua.ServiceFault{ResponseHeader: responseHeader(1, ua.StatusBadSessionIDInvalid)})
	if err != nil {
		t.Fatal(err)
	}
	got, err = dialStream(t, serverStream(symChunk("MSG", 'F', 5, 7, 2, 2, fault)))
	if f, ok := got.(*ua.ServiceFault); err != nil || !ok || f.ResponseHeader.ServiceResult != ua.StatusBadSessionIDInvalid {
		t.Fatalf("a Read answered with a ServiceFault: %#v, %v", got, err)
	}
	// a response of another service is refused, not passed on
	for _, other := range []any{
		&ua.UnregisterNodesResponse{ResponseHeader: responseHeader(1, ua.StatusOK)},
		&ua.WriteResponse{ResponseHeader: responseHeader(1, ua.StatusOK), Results: []ua.StatusCode{ua.StatusOK}},
	} {
		b, err := encodeService(ua.ServiceTypeID(other), other)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dialStream(t, serverStream(symChunk("MSG", 'F', 5, 7, 2, 2, b)))
		if StatusOf(err) != ua.StatusBadUnknownResponse {
			t.Errorf("a Read answered with %T: %#v, %v; want Bad_UnknownResponse", other, got, err)
		}
	}
}
