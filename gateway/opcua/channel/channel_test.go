package channel

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
)

func shortPolicy(uri string) string { return uri[strings.LastIndex(uri, "#")+1:] }

// Every offered (policy, mode) pair opens with gopcua's client secure
// channel and carries Reads; the channel reports what was negotiated.
func TestGopcuaSecureChannelAllPolicies(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	for _, o := range allOffers {
		t.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(t *testing.T) {
			sc, _, err := dialUASC(t, srv.endpoint, o.PolicyURI, o.Mode, clientCert, time.Hour)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			for i := 0; i < 3; i++ {
				resp, err := readOnce(sc, ua.NewNumericNodeID(0, 2258))
				if err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if len(resp.Results) != 1 || resp.Results[0].Value == nil {
					t.Fatalf("read %d: results %+v", i, resp.Results)
				}
			}
			ch := srv.lastChannel()
			if ch.SecurityPolicyURI() != o.PolicyURI || ch.SecurityMode() != o.Mode {
				t.Fatalf("channel has %s/%s, want %s/%s", ch.SecurityPolicyURI(), ch.SecurityMode(), o.PolicyURI, o.Mode)
			}
			if o.PolicyURI == ua.SecurityPolicyURINone {
				if ch.RemoteCertificate() != nil || ch.LocalCertificate() != nil {
					t.Fatal("certificates reported under None")
				}
			} else {
				if !bytes.Equal(ch.RemoteCertificate(), clientCert.der) || !bytes.Equal(ch.LocalCertificate(), serverCert.der) {
					t.Fatal("certificates not reported")
				}
			}
			if ch.ID() == 0 {
				t.Fatal("secure channel id 0")
			}
		})
	}
}

// The full gopcua client (CreateSession, ActivateSession, Read of the
// namespace array, Read, CloseSession) works at None and SignAndEncrypt.
func TestGopcuaClientSession(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	for _, o := range []Offer{
		{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSign},
	} {
		t.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(t *testing.T) {
			var ep *ua.EndpointDescription
			for _, e := range srv.endpoints() {
				if e.SecurityPolicyURI == o.PolicyURI && e.SecurityMode == o.Mode {
					ep = e
				}
			}
			opts := []opcua.Option{
				opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous),
				opcua.AutoReconnect(false),
				opcua.RequestTimeout(5 * time.Second),
			}
			if o.PolicyURI != ua.SecurityPolicyURINone {
				opts = append(opts, opcua.Certificate(clientCert.der), opcua.PrivateKey(clientCert.key))
			}
			c, err := opcua.NewClient(srv.endpoint, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer c.Close(context.Background())
			if ns := c.Namespaces(); len(ns) != 2 || ns[1] != "urn:interlock:test" {
				t.Fatalf("namespaces %v", ns)
			}
			resp, err := c.Read(ctx, readRequest(ua.NewNumericNodeID(0, 2258)))
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(resp.Results) != 1 || resp.Results[0].Value == nil {
				t.Fatalf("results %+v", resp.Results)
			}
		})
	}
}

// Responses larger than one chunk are split to the client's buffer size;
// requests larger than one chunk are reassembled; many Sends run at once.
func TestChunkingAndConcurrentSend(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	srv.big = bytes.Repeat([]byte("0123456789abcdef"), 12000) // 192 kB, 3 to 4 chunks
	for _, o := range []Offer{
		{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSign},
	} {
		t.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(t *testing.T) {
			sc, _, err := dialUASC(t, srv.endpoint, o.PolicyURI, o.Mode, clientCert, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for i := 0; i < 10; i++ {
				wg.Add(2)
				go func() {
					defer wg.Done()
					resp, err := readOnce(sc, ua.NewStringNodeID(1, "big"))
					if err != nil {
						errs <- err
						return
					}
					if got, _ := resp.Results[0].Value.Value().([]byte); !bytes.Equal(got, srv.big) {
						errs <- errorf(ua.StatusBadUnexpectedError, "big value of %d bytes, want %d", len(got), len(srv.big))
					}
				}()
				go func() {
					defer wg.Done()
					w := &ua.WriteRequest{RequestHeader: requestHeader(0), NodesToWrite: []*ua.WriteValue{{
						NodeID: ua.NewStringNodeID(1, "big"), AttributeID: ua.AttributeIDValue,
						Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(srv.big)},
					}}}
					err := sc.SendRequest(context.Background(), w, nil, func(v ua.Response) error {
						r, ok := v.(*ua.WriteResponse)
						if !ok || len(r.Results) != 1 || r.Results[0] != ua.StatusOK {
							return errorf(ua.StatusBadUnexpectedError, "write response %+v", v)
						}
						return nil
					})
					if err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// A response larger than the client's MaxMessageSize becomes a ServiceFault
// with Bad_ResponseTooLarge for that request, and the channel goes on.
func TestResponseTooLarge(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	srv.big = bytes.Repeat([]byte{'x'}, 200000)
	c, ctx := noneClient(t, srv, clientLimits(t, 100000, 0))
	_, err := c.Read(ctx, readRequest(ua.NewStringNodeID(1, "big")))
	if StatusOf(err) != ua.StatusBadResponseTooLarge {
		t.Fatalf("read of a too large value: %v, want Bad_ResponseTooLarge", err)
	}
	if _, err := c.Read(ctx, readRequest(ua.NewNumericNodeID(0, 2258))); err != nil {
		t.Fatalf("read after the fault: %v", err)
	}
}

// The client's MaxChunkCount is honoured the same way.
func TestResponseTooManyChunks(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	srv.big = bytes.Repeat([]byte{'x'}, 200000) // 4 chunks of 64 kB
	c, ctx := noneClient(t, srv, clientLimits(t, 0, 2))
	if _, err := c.Read(ctx, readRequest(ua.NewStringNodeID(1, "big"))); StatusOf(err) != ua.StatusBadResponseTooLarge {
		t.Fatalf("read of a value in 4 chunks with MaxChunkCount 2: %v, want Bad_ResponseTooLarge", err)
	}
}

// noneClient connects a gopcua client to srv over SecurityPolicy None with
// the extra options opts; the client and the context it has 20 s in end
// with the test.
func noneClient(t *testing.T, srv *testServer, opts ...opcua.Option) (*opcua.Client, context.Context) {
	t.Helper()
	opts = append([]opcua.Option{opcua.SecurityPolicy(ua.SecurityPolicyURINone), opcua.AutoReconnect(false), opcua.RequestTimeout(5 * time.Second)}, opts...)
	c, err := opcua.NewClient(srv.endpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, ctx
}

// clientLimits gives a gopcua client a dialer of its own whose Hello
// announces maxMessageSize and maxChunkCount (0: none). gopcua's
// MaxMessageSize and MaxChunkCount options would write them into the
// package variable uacp.DefaultClientACK, the ClientACK of every client's
// default dialer: one test's limits would then hold for every gopcua client
// dialled after it in the test binary (seen with -count=2: the 192 kB Reads
// of TestChunkingAndConcurrentSend failed Bad_ResponseTooLarge; and
// TestResponseTooManyChunks ran with TestResponseTooLarge's message size
// still in force). The test fails if the package variable changed.
func clientLimits(t *testing.T, maxMessageSize, maxChunkCount uint32) opcua.Option {
	before := *uacp.DefaultClientACK
	t.Cleanup(func() {
		if after := *uacp.DefaultClientACK; after != before {
			t.Errorf("uacp.DefaultClientACK changed by the test: %+v, was %+v", after, before)
		}
	})
	return opcua.Dialer(&uacp.Dialer{
		Dialer: &net.Dialer{Timeout: opcua.DefaultDialTimeout},
		ClientACK: &uacp.Acknowledge{
			ReceiveBufSize: uacp.DefaultReceiveBufSize,
			SendBufSize:    uacp.DefaultSendBufSize,
			MaxMessageSize: maxMessageSize,
			MaxChunkCount:  maxChunkCount,
		},
	})
}

// Accept ends when its context does, even with a long HelloTimeout.
func TestAcceptCancelled(t *testing.T) {
	cfg := baseConfig(t)
	cfg.HelloTimeout = time.Hour
	l := listen(t)
	client, server := connect(t, l)
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	acceptEnds(t, ctx, cancel, server, cfg, 30*time.Second, "Accept")
	// the socket is closed
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, client); err != nil {
		t.Fatalf("client socket: %v", err)
	}
}

// Accept with a context that has already ended returns at once, whichever
// runs first: the cancellation's deadline on the socket or the handshake's
// own (which must not undo it).
func TestAcceptAlreadyCancelled(t *testing.T) {
	cfg := baseConfig(t)
	cfg.HelloTimeout = time.Hour
	l := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 50 {
		client, server := connect(t, l)
		acceptEnds(t, ctx, nil, server, cfg, 10*time.Second, fmt.Sprintf("accept %d", i))
		client.Close()
	}
}

// listen listens on a free loopback port until the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// connect dials l and returns both ends of the connection.
func connect(t *testing.T, l net.Listener) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if server, err = l.Accept(); err != nil {
		t.Fatal(err)
	}
	return client, server
}

// acceptEnds runs Accept on server under ctx, then cancel (when given),
// and fails unless Accept returns Bad_Timeout within d.
func acceptEnds(t *testing.T, ctx context.Context, cancel func(), server net.Conn, cfg *Config, d time.Duration, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Accept(ctx, server, cfg)
		done <- err
	}()
	if cancel != nil {
		cancel()
	}
	select {
	case err := <-done:
		if StatusOf(err) != ua.StatusBadTimeout {
			t.Fatalf("%s returned %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s did not end with its context", what)
	}
}

// TestUnknownStructure: gopcua decodes an ExtensionObject of a type it does
// not know without its body; the channel keeps the body (Opaque) so that
// what it decodes encodes to the same bytes, wherever such structures sit:
// a Write's value, a Call's arguments in an array, inside a known structure
// (a LiteralOperand of an EventFilter), with an empty body, in a data
// change notification, and in a Read's results (the Read codec). A server's answer carrying one goes out.
func TestUnknownStructure(t *testing.T) {
	vendor := func(i uint16, body []byte) *ua.ExtensionObject {
		return &ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(7, i), EncodingMask: ua.ExtensionObjectBinary, Value: &Opaque{Body: body}}
	}
	argument := &ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(0, id.Argument_Encoding_DefaultBinary), EncodingMask: ua.ExtensionObjectBinary,
		Value: &ua.Argument{Name: "x", DataType: ua.NewNumericNodeID(0, 6), ArrayDimensions: []uint32{}, Description: &ua.LocalizedText{}}}
	messages := []struct {
		name   string
		typeID uint16
		msg    any
		bodies [][]byte // the Opaque bodies, in order
	}{
		{"write", id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: requestHeader(5), NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.NewStringNodeID(1, "s"), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(vendor(4242, []byte("recipe 7: 120 rpm")))},
		}}}, [][]byte{[]byte("recipe 7: 120 rpm")}},
		{"call", id.CallRequest_Encoding_DefaultBinary, &ua.CallRequest{RequestHeader: requestHeader(6), MethodsToCall: []*ua.CallMethodRequest{{
			ObjectID: ua.NewStringNodeID(1, "PLC"), MethodID: ua.NewStringNodeID(1, "Load"),
			InputArguments: []*ua.Variant{
				ua.MustVariant([]*ua.ExtensionObject{vendor(1, []byte{1, 2}), argument, vendor(2, nil)}),
				ua.MustVariant(int32(3)),
				ua.MustVariant(vendor(3, []byte{0xff})),
			},
		}}}, [][]byte{{1, 2}, {}, {0xff}}},
		{"event filter", id.CreateMonitoredItemsRequest_Encoding_DefaultBinary, &ua.CreateMonitoredItemsRequest{RequestHeader: requestHeader(7), SubscriptionID: 1,
			ItemsToCreate: []*ua.MonitoredItemCreateRequest{{
				ItemToMonitor: &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, 2253), AttributeID: ua.AttributeIDEventNotifier, DataEncoding: &ua.QualifiedName{}},
				RequestedParameters: &ua.MonitoringParameters{Filter: ua.NewExtensionObject(&ua.EventFilter{
					WhereClause: &ua.ContentFilter{Elements: []*ua.ContentFilterElement{{FilterOperator: ua.FilterOperatorEquals, FilterOperands: []*ua.ExtensionObject{
						ua.NewExtensionObject(&ua.LiteralOperand{Value: ua.MustVariant(vendor(9, []byte("inner")))}),
					}}}},
				})},
			}}}, [][]byte{[]byte("inner")}},
		{"publish response", id.PublishResponse_Encoding_DefaultBinary, &ua.PublishResponse{ResponseHeader: responseHeader(9, ua.StatusOK), SubscriptionID: 1,
			AvailableSequenceNumbers: []uint32{1},
			NotificationMessage: &ua.NotificationMessage{SequenceNumber: 1, PublishTime: time.Unix(1, 0), NotificationData: []*ua.ExtensionObject{
				ua.NewExtensionObject(&ua.DataChangeNotification{MonitoredItems: []*ua.MonitoredItemNotification{
					{ClientHandle: 1, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(vendor(4242, []byte("changed")))}},
				}, DiagnosticInfos: []*ua.DiagnosticInfo{}}),
			}},
			Results: []ua.StatusCode{}, DiagnosticInfos: []*ua.DiagnosticInfo{},
		}, [][]byte{[]byte("changed")}},
		{"read response", id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{ResponseHeader: responseHeader(8, ua.StatusOK), Results: []*ua.DataValue{
			{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))},
			{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(vendor(4242, []byte{0, 1, 2, 3}))},
		}}, [][]byte{{0, 1, 2, 3}}},
	}
	for _, m := range messages {
		body, err := encodeService(m.typeID, m.msg)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		// gopcua alone keeps no body
		if _, plain, err := ua.DecodeService(body); err != nil || len(opaqueValues(plain)) != 0 {
			t.Fatalf("%s: gopcua's decoder kept %d bodies (%v)", m.name, len(opaqueValues(plain)), err)
		}
		_, v, err := decodeService(body, DefaultMaxDecodedSize)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		got := opaqueValues(v)
		if len(got) != len(m.bodies) {
			t.Fatalf("%s: %d structures kept their body, want %d", m.name, len(got), len(m.bodies))
		}
		for i, o := range got {
			if !bytes.Equal(o.Body, m.bodies[i]) {
				t.Fatalf("%s: body %d is %q, want %q", m.name, i, o.Body, m.bodies[i])
			}
		}
		again, err := encodeService(m.typeID, v)
		if err != nil || !bytes.Equal(again, body) {
			t.Fatalf("%s: encoded again %x (%v), want %x", m.name, again, err, body)
		}
	}

	// a server's answer carrying one goes out, and a gopcua client takes it
	srv := startServer(t, baseConfig(t))
	c, ctx := noneClient(t, srv)
	resp, err := c.Read(ctx, readRequest(ua.NewStringNodeID(1, "struct")))
	if err != nil {
		t.Fatalf("read of an unknown structure: %v", err)
	}
	eo, ok := resp.Results[0].Value.Value().(*ua.ExtensionObject)
	if !ok || eo.TypeID.NodeID.String() != "ns=7;i=4242" {
		t.Fatalf("read of an unknown structure: %#v", resp.Results[0].Value.Value())
	}
}

// A structure of a known type whose body is longer than its fields is
// refused: gopcua's decoder would drop the rest without a word and the
// gateway forward a structure changed on its way. Requests and answers
// alike (a Read's answer goes through the Read codec).
func TestStructureTrailingBytes(t *testing.T) {
	rng := func() *ua.ExtensionObject { return ua.NewExtensionObject(&ua.Range{Low: 1, High: 300}) }
	high := func(v *ua.Variant) float64 {
		if eo, ok := v.Value().(*ua.ExtensionObject); ok {
			if r, ok := eo.Value.(*ua.Range); ok {
				return r.High
			}
		}
		return 0
	}
	messages := []struct {
		name   string
		typeID uint16
		msg    any
		value  func(any) *ua.Variant // where the Range is
	}{
		{"write", id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: requestHeader(5), NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.NewStringNodeID(1, "s"), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(rng())},
		}}}, func(v any) *ua.Variant { return v.(*ua.WriteRequest).NodesToWrite[0].Value.Value }},
		{"call", id.CallRequest_Encoding_DefaultBinary, &ua.CallRequest{RequestHeader: requestHeader(6), MethodsToCall: []*ua.CallMethodRequest{{
			ObjectID: ua.NewStringNodeID(1, "PLC"), MethodID: ua.NewStringNodeID(1, "Load"),
			InputArguments: []*ua.Variant{ua.MustVariant(int32(3)), ua.MustVariant(rng())},
		}}}, func(v any) *ua.Variant { return v.(*ua.CallRequest).MethodsToCall[0].InputArguments[1] }},
		{"read response", id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{ResponseHeader: responseHeader(8, ua.StatusOK), Results: []*ua.DataValue{
			{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))},
			{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(rng())},
		}}, func(v any) *ua.Variant { return v.(*ua.ReadResponse).Results[1].Value }},
	}
	// the Range's encoding id (i=886), binary, 16 bytes: two Doubles
	head := []byte{0x01, 0x00, 0x76, 0x03, 0x01, 16, 0, 0, 0}
	for _, m := range messages {
		body, err := encodeService(m.typeID, m.msg)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if _, v, err := decodeService(body, DefaultMaxDecodedSize); err != nil || high(m.value(v)) != 300 {
			t.Fatalf("%s as encoded: %+v (%v)", m.name, v, err)
		}
		at := bytes.Index(body, head)
		if at < 0 || bytes.Count(body, head) != 1 {
			t.Fatalf("%s: the Range's header is not once in %x", m.name, body)
		}
		end := at + len(head) + 16
		longer := append(append(append([]byte{}, body[:end]...), 0xde, 0xad, 0xbe), body[end:]...)
		longer[at+5] = 16 + 3
		// gopcua alone takes it and loses the three bytes
		if _, _, err := ua.DecodeService(longer); err != nil {
			t.Fatalf("%s: gopcua's decoder refused it: %v", m.name, err)
		}
		_, v, err := decodeService(longer, DefaultMaxDecodedSize)
		var ce *Error
		if !errors.As(err, &ce) || ce.Code != ua.StatusBadDecodingError || !strings.Contains(ce.Reason, "structure Range has 3 bytes after its fields") {
			t.Errorf("%s with 3 bytes more: %+v (%v), want Bad_DecodingError naming the Range and the 3 bytes", m.name, v, err)
		}
	}
}

// opaqueValues lists the Opaque bodies in a decoded message, in order.
func opaqueValues(v any) []*Opaque {
	var out []*Opaque
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		if !v.IsValid() {
			return
		}
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer:
			if v.IsNil() {
				return
			}
			switch x := v.Interface().(type) {
			case *Opaque:
				out = append(out, x)
				return
			case *ua.Variant:
				walk(reflect.ValueOf(x.Value()))
				return
			}
			walk(v.Elem())
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
	return out
}

// TestUnencodableResponse: a response gopcua's encoder fails on (an
// ExtensionObject left without its value) is answered with a ServiceFault
// Bad_EncodingError, Send says so, and the channel goes on.
func TestUnencodableResponse(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	c, ctx := noneClient(t, srv)
	if _, err := c.Read(ctx, readRequest(ua.NewStringNodeID(1, "unencodable"))); StatusOf(err) != ua.StatusBadEncodingError {
		t.Fatalf("read of an unencodable value: %v, want Bad_EncodingError", err)
	}
	// The server's Send records its error after the fault is on its way,
	// so the client may read the fault first.
	if sendErrs := srv.waitSendErrs(); len(sendErrs) != 1 || StatusOf(sendErrs[0]) != ua.StatusBadEncodingError {
		t.Fatalf("Send returned %v, want one Bad_EncodingError", sendErrs)
	}
	if _, err := c.Read(ctx, readRequest(ua.NewNumericNodeID(0, 2258))); err != nil {
		t.Fatalf("read after the fault: %v", err)
	}
}

// TestFillOpaqueMismatch: bodies that do not match the decoded message's
// structures one to one (count, type) refuse the message.
func TestFillOpaqueMismatch(t *testing.T) {
	msg := func() *ua.WriteRequest {
		return &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{Value: &ua.DataValue{Value: ua.MustVariant(
			&ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(7, 1), EncodingMask: ua.ExtensionObjectBinary})}}}}
	}
	for name, bodies := range map[string][]opaqueBody{
		"another type": {{typeID: "ns=7;i=2"}},
		"one too many": {{typeID: "ns=7;i=1"}, {typeID: "ns=7;i=1"}},
	} {
		if err := fillOpaque(msg(), bodies); StatusOf(err) != ua.StatusBadDecodingError {
			t.Errorf("%s: %v, want Bad_DecodingError", name, err)
		}
	}
	m := msg()
	if err := fillOpaque(m, []opaqueBody{{typeID: "ns=7;i=1", body: []byte{9}}}); err != nil {
		t.Fatal(err)
	}
	if o, ok := m.NodesToWrite[0].Value.Value.Value().(*ua.ExtensionObject).Value.(*Opaque); !ok || !bytes.Equal(o.Body, []byte{9}) {
		t.Fatalf("filled %#v", m.NodesToWrite[0].Value.Value.Value())
	}
}
