package channel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

func mustEncode(t *testing.T, typeID uint16, v any) []byte {
	t.Helper()
	b, err := encodeService(typeID, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Valid requests of every shape the gateway forwards pass the pre-scan and
// decode: the scan refuses nothing the decoder accepts.
func TestLimitsAcceptValidRequests(t *testing.T) {
	nid := ua.NewStringNodeID(1, "Setpoint")
	matrix, err := ua.NewVariant([][]int32{{1, 2, 3}, {4, 5, 6}})
	if err != nil {
		t.Fatal(err)
	}
	variants := []*ua.Variant{
		ua.MustVariant(true), ua.MustVariant(int8(-1)), ua.MustVariant(uint16(7)), ua.MustVariant(int64(-9)),
		ua.MustVariant(3.5), ua.MustVariant(float32(1.5)), ua.MustVariant("text"), ua.MustVariant(time.Now()),
		ua.MustVariant([]byte{1, 2, 3}), ua.MustVariant([]string{"a", "", "c"}), ua.MustVariant([]float64{1, 2}),
		ua.MustVariant(nid), ua.MustVariant(ua.NewExpandedNodeID(nid, "urn:x", 2)), ua.MustVariant(ua.StatusBadTimeout),
		ua.MustVariant(&ua.QualifiedName{NamespaceIndex: 1, Name: "q"}), ua.MustVariant(ua.NewLocalizedText("t")),
		ua.MustVariant(&ua.DataValue{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp, Value: ua.MustVariant(int32(5)), SourceTimestamp: time.Now()}),
		ua.MustVariant(ua.NewExtensionObject(&ua.Range{Low: 1, High: 2})), ua.MustVariant(ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")),
		matrix, ua.MustVariant([]*ua.Variant{ua.MustVariant(int32(1)), ua.MustVariant("x")}), &ua.Variant{},
	}
	var writes []*ua.WriteValue
	var args []*ua.Variant
	for _, v := range variants {
		writes = append(writes, &ua.WriteValue{NodeID: nid, AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: v}})
		args = append(args, v)
	}
	reqs := map[string][]byte{
		"read":  mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, readRequest(nid, ua.NewNumericNodeID(0, 2258))),
		"write": mustEncode(t, id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: requestHeader(1), NodesToWrite: writes}),
		"call": mustEncode(t, id.CallRequest_Encoding_DefaultBinary, &ua.CallRequest{RequestHeader: requestHeader(2), MethodsToCall: []*ua.CallMethodRequest{
			{ObjectID: ua.NewNumericNodeID(0, 85), MethodID: ua.NewStringNodeID(1, "Start"), InputArguments: args},
		}}),
		"browse": mustEncode(t, id.BrowseRequest_Encoding_DefaultBinary, &ua.BrowseRequest{RequestHeader: requestHeader(3), View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
			NodesToBrowse: []*ua.BrowseDescription{{NodeID: ua.NewNumericNodeID(0, 85), ReferenceTypeID: ua.NewNumericNodeID(0, 33), IncludeSubtypes: true, ResultMask: 63}}}),
		"activate": mustEncode(t, id.ActivateSessionRequest_Encoding_DefaultBinary, &ua.ActivateSessionRequest{RequestHeader: requestHeader(4),
			ClientSignature:    &ua.SignatureData{Algorithm: "a", Signature: []byte{1}},
			UserIdentityToken:  ua.NewExtensionObject(&ua.UserNameIdentityToken{PolicyID: "u", UserName: "op", Password: []byte("secret"), EncryptionAlgorithm: ""}),
			UserTokenSignature: &ua.SignatureData{}}),
		"monitored items": mustEncode(t, id.CreateMonitoredItemsRequest_Encoding_DefaultBinary, &ua.CreateMonitoredItemsRequest{RequestHeader: requestHeader(5), SubscriptionID: 1,
			ItemsToCreate: []*ua.MonitoredItemCreateRequest{{
				ItemToMonitor:       &ua.ReadValueID{NodeID: nid, AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
				RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1, Filter: ua.NewExtensionObject(&ua.DataChangeFilter{Trigger: ua.DataChangeTriggerStatusValue})},
			}}}),
		"history": mustEncode(t, id.HistoryReadRequest_Encoding_DefaultBinary, &ua.HistoryReadRequest{RequestHeader: requestHeader(6),
			HistoryReadDetails: ua.NewExtensionObject(&ua.ReadRawModifiedDetails{StartTime: time.Now(), EndTime: time.Now(), NumValuesPerNode: 10}),
			NodesToRead:        []*ua.HistoryReadValueID{{NodeID: nid, DataEncoding: &ua.QualifiedName{}}}}),
	}
	for name, b := range reqs {
		if err := checkLimits(b, DefaultMaxDecodedSize); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, _, err := decodeService(b, DefaultMaxDecodedSize); err != nil {
			t.Errorf("%s does not decode: %v", name, err)
		}
	}
}

// writeWithValue is a Write of one node whose Variant is given as raw bytes.
func writeWithValue(t *testing.T, variant []byte) []byte {
	b := mustEncode(t, id.WriteRequest_Encoding_DefaultBinary, &ua.WriteRequest{RequestHeader: requestHeader(42), NodesToWrite: []*ua.WriteValue{
		{NodeID: ua.NewStringNodeID(1, "x"), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}},
	}})
	// the encoding ends with the Variant: type 6 (Int32) and 4 bytes
	return append(b[:len(b)-5], variant...)
}

func nestedVariant(depth int) []byte {
	return append(bytes.Repeat([]byte{24}, depth), 6, 1, 0, 0, 0)
}

func le32(v int32) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

// Bodies that would make gopcua's decoder allocate gigabytes, recurse
// without end or panic are refused before it runs.
func TestLimitsRefuseHostileBodies(t *testing.T) {
	read := mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, readRequest(ua.NewNumericNodeID(0, 2258)))
	// readRequest: ... TimestampsToReturn (4) then NodesToRead count (4) then the item
	hdrEnd := len(read) - (4 + 1 + 3 + 4 + 4 + 6)
	hugeCount := append(append([]byte{}, read[:hdrEnd]...), le32(0x7fffffff)...)

	tests := []struct {
		name string
		body []byte
		want ua.StatusCode
	}{
		{"nesting 101", writeWithValue(t, nestedVariant(101)), ua.StatusBadEncodingLimitsExceeded},
		{"nesting 100000", writeWithValue(t, nestedVariant(100000)), ua.StatusBadEncodingLimitsExceeded},
		{"array count 2^31-1", hugeCount, ua.StatusBadDecodingError},
		{"variant array length -5", writeWithValue(t, append([]byte{0x80 | 6}, le32(-5)...)), ua.StatusBadEncodingLimitsExceeded},
		{"variant array longer than the body", writeWithValue(t, append([]byte{0x80 | 6}, le32(1<<30)...)), ua.StatusBadEncodingLimitsExceeded},
		{"dimensions overflowing to 0", writeWithValue(t, append(append(append([]byte{0xC0 | 6}, le32(0)...), le32(2)...), append(le32(65536), le32(65536)...)...)), ua.StatusBadEncodingLimitsExceeded},
		{"zero dimension", writeWithValue(t, append(append(append([]byte{0xC0 | 6}, le32(0)...), le32(1)...), le32(0)...)), ua.StatusBadEncodingLimitsExceeded},
		{"rank 100000", writeWithValue(t, append(append(append([]byte{0xC0 | 6}, le32(1)...), le32(1)...), append(le32(100000), bytes.Repeat(le32(1), 1000)...)...)), ua.StatusBadEncodingLimitsExceeded},
		{"string length near 2^31", writeWithValue(t, append([]byte{12}, le32(0x7ffffff0)...)), ua.StatusBadDecodingError},
		{"nested DataValue 200", writeWithValue(t, append(bytes.Repeat([]byte{23, 0x01}, 200), 6, 1, 0, 0, 0)), ua.StatusBadEncodingLimitsExceeded},
		// gopcua reads the dimensions of a null array too: 820 million of
		// them made it allocate 3.3 GB (found by FuzzDecodeService)
		{"null array with 820 million dimensions", writeWithValue(t, append(append([]byte{0xC0 | 6}, le32(-1)...), le32(0x30e6e6e6)...)), ua.StatusBadEncodingLimitsExceeded},
		{"null array with one dimension", writeWithValue(t, append(append(append([]byte{0xC0 | 6}, le32(-1)...), le32(1)...), le32(2)...)), ua.StatusBadEncodingLimitsExceeded},
	}
	// an ExtensionObject body (HistoryRead details) claiming 2^31-1 times
	details := ua.NewExtensionObject(&ua.ReadAtTimeDetails{ReqTimes: []time.Time{time.Now()}})
	eo, err := ua.Encode(details)
	if err != nil {
		t.Fatal(err)
	}
	hist := mustEncode(t, id.HistoryReadRequest_Encoding_DefaultBinary, &ua.HistoryReadRequest{RequestHeader: requestHeader(6), HistoryReadDetails: details,
		NodesToRead: []*ua.HistoryReadValueID{{NodeID: ua.NewNumericNodeID(1, 1), DataEncoding: &ua.QualifiedName{}}}})
	at := bytes.Index(hist, eo)
	if at < 0 {
		t.Fatal("ExtensionObject not found in its request")
	}
	at += len(eo) - 13 // body: count, one DateTime, UseSimpleBounds
	binary.LittleEndian.PutUint32(hist[at:], 0x7fffffff)
	tests = append(tests, struct {
		name string
		body []byte
		want ua.StatusCode
	}{"count 2^31-1 inside an ExtensionObject", hist, ua.StatusBadDecodingError})

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkLimits(tc.body, DefaultMaxDecodedSize); err == nil {
				t.Fatal("the pre-scan lets it through to gopcua's decoder")
			}
			_, _, err := decodeService(tc.body, DefaultMaxDecodedSize)
			if got := StatusOf(err); got != tc.want {
				t.Fatalf("got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
	// a null array without dimensions, and with none, still decodes
	for _, v := range [][]byte{append([]byte{0x80 | 6}, le32(-1)...), append(append([]byte{0xC0 | 6}, le32(-1)...), le32(0)...)} {
		if _, _, err := decodeService(writeWithValue(t, v), DefaultMaxDecodedSize); err != nil {
			t.Errorf("null array % x: %v", v, err)
		}
	}
	// a nesting of exactly the limit still decodes
	if _, _, err := decodeService(writeWithValue(t, nestedVariant(90)), DefaultMaxDecodedSize); err != nil {
		t.Fatalf("nesting 90: %v", err)
	}
}

// TestHostileHeaderFaultedWithItsHandle: a request whose header's
// ExtensionObject claims 2^31-1 elements is refused by the pre-scan, and the
// fault that answers it carries its RequestHandle, read without decoding
// the rest of the header (gopcua's decoder would allocate 48 GB for it).
func TestHostileHeaderFaultedWithItsHandle(t *testing.T) {
	for _, name := range []string{"Read", "Browse"} {
		t.Run(name, func(t *testing.T) {
			body := hostileHeader(t, name == "Read")
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			_, _, err := decodeService(body, DefaultMaxDecodedSize)
			handle := requestHandle(body)
			runtime.ReadMemStats(&m1)
			if StatusOf(err) != ua.StatusBadDecodingError || handle != 42 {
				t.Fatalf("decodeService %v, handle %d; want Bad_DecodingError and 42", err, handle)
			}
			if n := m1.TotalAlloc - m0.TotalAlloc; n > 1<<20 {
				t.Fatalf("refusing it allocated %d bytes", n)
			}
		})
	}
	for _, b := range [][]byte{nil, {0x01, 0, 0x77}, mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, &ua.ReadRequest{RequestHeader: requestHeader(7)})[:14]} {
		if h := requestHandle(b); h != 0 {
			t.Errorf("requestHandle(% x) = %d, want 0", b, h)
		}
	}
}

// repeated is the encoding of a request whose last array holds n copies of
// its one element: build makes the request with an empty array (false) or
// with one element (true).
func repeated(t *testing.T, typeID uint16, build func(one bool) any, n int) []byte {
	empty := mustEncode(t, typeID, build(false))
	one := mustEncode(t, typeID, build(true))
	item := one[len(empty):]
	body := append(append([]byte{}, empty[:len(empty)-4]...), le32(int32(n))...)
	return append(body, bytes.Repeat(item, n)...)
}

// TestLimitsDecodedSize: the scan's sum of what the decoder will allocate
// is within a factor of two of what it does allocate for a large Browse,
// and a message that would take more than 64 MiB decoded is refused before
// anything is allocated for it: a Browse of a million minimal descriptions
// (17 MB, which gopcua decodes into about 600 MB) and a Read of a million
// nodes (16 MB).
func TestLimitsDecodedSize(t *testing.T) {
	browse := func(n int) []byte {
		return repeated(t, id.BrowseRequest_Encoding_DefaultBinary, func(one bool) any {
			r := &ua.BrowseRequest{RequestHeader: requestHeader(9), View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, NodesToBrowse: []*ua.BrowseDescription{}}
			if one {
				r.NodesToBrowse = []*ua.BrowseDescription{{NodeID: ua.NewTwoByteNodeID(0), ReferenceTypeID: ua.NewTwoByteNodeID(0)}}
			}
			return r
		}, n)
	}
	read := func(n int) []byte {
		return repeated(t, id.ReadRequest_Encoding_DefaultBinary, func(one bool) any {
			r := &ua.ReadRequest{RequestHeader: requestHeader(9), NodesToRead: []*ua.ReadValueID{}}
			if one {
				r.NodesToRead = []*ua.ReadValueID{{NodeID: ua.NewTwoByteNodeID(0), AttributeID: 13, DataEncoding: &ua.QualifiedName{}}}
			}
			return r
		}, n)
	}
	allocated := func(f func()) uint64 {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		f()
		runtime.ReadMemStats(&m1)
		return m1.TotalAlloc - m0.TotalAlloc
	}

	body := browse(100_000)
	s := &scanner{b: body, max: DefaultMaxDecodedSize}
	s.expandedNodeID()
	s.scan(serviceType(body[:s.pos]), 0)
	var err error
	got := allocated(func() { _, _, err = ua.DecodeService(body) })
	if s.err != nil || err != nil {
		t.Fatalf("a Browse of 100,000 nodes: scan %v, decode %v", s.err, err)
	}
	t.Logf("a Browse of 100,000 nodes, %d bytes: the scan counts %d bytes, the decoder allocates %d", len(body), s.alloc, got)
	if s.alloc < int64(got)/2 || s.alloc > 2*int64(got) {
		t.Errorf("the scan counts %d bytes, the decoder allocates %d: not within a factor of two", s.alloc, got)
	}
	if _, _, err := decodeService(read(10_000), DefaultMaxDecodedSize); err != nil {
		t.Errorf("a Read of 10,000 nodes: %v", err)
	}

	for name, body := range map[string][]byte{"Browse of 1,000,000": browse(1_000_000), "Read of 1,000,000": read(1_000_000)} {
		var err error
		n := allocated(func() { _, _, err = decodeService(body, DefaultMaxDecodedSize) })
		if StatusOf(err) != ua.StatusBadEncodingLimitsExceeded {
			t.Errorf("%s: %v, want Bad_EncodingLimitsExceeded", name, err)
		}
		if n > 1<<20 {
			t.Errorf("%s: refusing it allocated %d bytes", name, n)
		}
	}
}

// hostileHeader is a Read (or a Browse) with handle 42 whose header's
// AdditionalHeader is an ExtensionObject (ReadAtTimeDetails) claiming
// 2^31-1 elements.
func hostileHeader(t *testing.T, read bool) []byte {
	details := ua.NewExtensionObject(&ua.ReadAtTimeDetails{ReqTimes: []time.Time{time.Now()}})
	eo, err := ua.Encode(details)
	if err != nil {
		t.Fatal(err)
	}
	h := requestHeader(42)
	h.AdditionalHeader = details
	body := mustEncode(t, id.BrowseRequest_Encoding_DefaultBinary, &ua.BrowseRequest{RequestHeader: h, View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}})
	if read {
		body = mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, &ua.ReadRequest{RequestHeader: h})
	}
	at := bytes.Index(body, eo)
	if at < 0 {
		t.Fatal("ExtensionObject not found in its request")
	}
	binary.LittleEndian.PutUint32(body[at+len(eo)-13:], 0x7fffffff) // body: count, one DateTime, UseSimpleBounds
	return body
}

// Through the channel: a hostile Write is answered with a ServiceFault
// carrying its handle, and the channel goes on.
func TestRawHostileBodyFault(t *testing.T) {
	srv := noneServer(t)
	r := dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	body := writeWithValue(t, nestedVariant(5000))
	for len(body) > 0 { // in chunks of 1000 bytes
		n := min(len(body), 1000)
		ct := byte('C')
		if n == len(body) {
			ct = 'F'
		}
		r.mustWrite(symChunk("MSG", ct, r.chanID, r.tokenID, r.seq, 11, body[:n]))
		r.seq++
		body = body[n:]
	}
	resp, _ := r.response()
	if f, ok := resp.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadEncodingLimitsExceeded || f.ResponseHeader.RequestHandle != 42 {
		t.Fatalf("answered with %#v", resp)
	}
	if resp, _ := r.read(r.tokenID, 12); resp.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("read after the fault: %v", resp.Header().ServiceResult)
	}
	// a header that gopcua's decoder would take 48 GB for: the fault still
	// carries the request's handle
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 13, hostileHeader(t, false)))
	r.seq++
	resp, _ = r.response()
	if f, ok := resp.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadDecodingError || f.ResponseHeader.RequestHandle != 42 {
		t.Fatalf("hostile header answered with %#v", resp)
	}
	if resp, _ := r.read(r.tokenID, 14); resp.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("read after the second fault: %v", resp.Header().ServiceResult)
	}
}

// FuzzDecodeService feeds mutated request bodies to the pre-scan and the
// decoder: whatever the bytes, the result is a request or an error, never a
// crash of the process.
func FuzzDecodeService(f *testing.F) {
	t := &testing.T{}
	nid := ua.NewStringNodeID(1, "Setpoint")
	f.Add(mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, readRequest(nid)))
	f.Add(writeWithValue(t, nestedVariant(3)))
	f.Add(writeWithValue(t, append(append(append([]byte{0xC0 | 6}, le32(4)...), le32(2)...), append(append(le32(2), le32(2)...), bytes.Repeat(le32(7), 4)...)...)))
	f.Add(mustEncode(t, id.CallRequest_Encoding_DefaultBinary, &ua.CallRequest{RequestHeader: requestHeader(2), MethodsToCall: []*ua.CallMethodRequest{
		{ObjectID: ua.NewNumericNodeID(0, 85), MethodID: ua.NewStringNodeID(1, "Start"), InputArguments: []*ua.Variant{ua.MustVariant(ua.NewExtensionObject(&ua.Range{Low: 1, High: 2})), ua.MustVariant([]string{"a"})}},
	}}))
	f.Add(mustEncode(t, id.ActivateSessionRequest_Encoding_DefaultBinary, &ua.ActivateSessionRequest{RequestHeader: requestHeader(4),
		ClientSignature: &ua.SignatureData{}, UserIdentityToken: ua.NewExtensionObject(&ua.UserNameIdentityToken{PolicyID: "u", UserName: "op", Password: []byte("pw")}),
		UserTokenSignature: &ua.SignatureData{}}))
	f.Add(hostileHeader(t, false))
	f.Add(writeWithValue(t, append(append([]byte{0xC0 | 6}, le32(-1)...), le32(0x30e6e6e6)...)))
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := allocated()
		typeID, svc, err := decodeService(body, DefaultMaxDecodedSize)
		if err == nil && (typeID == nil || svc == nil) {
			t.Fatal("no error and no request")
		}
		if err != nil {
			requestHandle(body) // as the fault that answers it does
		}
		// gopcua decodes a valid body into at most about 35 times its size;
		// far more means a count the scan let through (the fuzzer's own
		// goroutines allocate a little meanwhile)
		if n := allocated() - before; n > 1<<20+200*uint64(len(body)) {
			t.Fatalf("decoding %d bytes allocated %d", len(body), n)
		}
	})
}

// TestNodeIDIdentifierBound: a NodeId's identifier may have 4096 characters
// (a String) or 4096 bytes (an Opaque one), OPC 10000-3 §8.2.4; one more
// refuses the message with Bad_NodeIdInvalid, in a Read (the Read codec)
// and in every other service (the scan before gopcua's decoder) alike.
func TestNodeIDIdentifierBound(t *testing.T) {
	browse := func(n *ua.NodeID) []byte {
		return mustEncode(t, id.BrowseRequest_Encoding_DefaultBinary, &ua.BrowseRequest{RequestHeader: requestHeader(3),
			View:          &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
			NodesToBrowse: []*ua.BrowseDescription{{NodeID: n, ReferenceTypeID: ua.NewNumericNodeID(0, 33), IncludeSubtypes: true, ResultMask: 63}}})
	}
	read := func(n *ua.NodeID) []byte {
		return mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, readRequest(n))
	}
	for _, tc := range []struct {
		name string
		node *ua.NodeID
		ok   bool
	}{
		{"String of 4096 characters", ua.NewStringNodeID(1, strings.Repeat("a", 4096)), true},
		{"String of 4096 two-byte characters", ua.NewStringNodeID(1, strings.Repeat("é", 4096)), true},
		{"String of 4097 characters", ua.NewStringNodeID(1, strings.Repeat("a", 4097)), false},
		{"String of 4097 two-byte characters", ua.NewStringNodeID(1, strings.Repeat("é", 4097)), false},
		{"String of 1 MB", ua.NewStringNodeID(1, strings.Repeat("a", 1<<20)), false},
		{"Opaque of 4096 bytes", ua.NewByteStringNodeID(1, make([]byte, 4096)), true},
		{"Opaque of 4097 bytes", ua.NewByteStringNodeID(1, make([]byte, 4097)), false},
	} {
		for service, body := range map[string][]byte{"Read": read(tc.node), "Browse": browse(tc.node)} {
			_, _, err := decodeService(body, DefaultMaxDecodedSize)
			var e *Error
			switch {
			case tc.ok && err != nil:
				t.Errorf("%s in a %s: %v", tc.name, service, err)
			case !tc.ok && (!errors.As(err, &e) || e.Code != ua.StatusBadNodeIDInvalid):
				t.Errorf("%s in a %s: %v, want Bad_NodeIdInvalid", tc.name, service, err)
			}
		}
	}
}

// TestDecodeRequest: the exported decoder keeps the channel's limits and
// takes requests only.
func TestDecodeRequest(t *testing.T) {
	read := readBody(9)
	req, err := DecodeRequest(read, 0)
	if r, ok := req.(*ua.ReadRequest); err != nil || !ok || r.RequestHeader.RequestHandle != 9 {
		t.Fatalf("a Read: %T %v", req, err)
	}
	// a BrowseNext claiming 0x59595959 continuation points in a 45-byte body
	// (FuzzEngine's harness ran out of memory decoding it with gopcua alone)
	huge := []byte("\x01\x00\x15\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00YYYYYYYY\x01\x00\x00\x00\x03\x00\x00\x00\x01\x02\x03")
	if _, err := DecodeRequest(huge, 0); err == nil {
		t.Fatal("a body claiming 2^30 elements decoded")
	}
	resp, err := encodeService(id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{ResponseHeader: responseHeader(1, ua.StatusOK)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRequest(resp, 0); err == nil {
		t.Fatal("a response decoded as a request")
	}
}
