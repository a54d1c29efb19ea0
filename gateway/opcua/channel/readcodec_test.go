package channel

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// readMessages are Read requests and responses in the forms the codec must
// keep apart: nil and empty arrays, null strings, every NodeID form, NaN,
// zero and sub-100 ns times, nil and filled DataValue parts, nested
// diagnostics, extension objects with a body.
func readMessages() []any {
	at := time.Date(2026, 11, 26, 17, 30, 1, 123456789, time.UTC) // the 89 ns are not encoded
	header := &ua.RequestHeader{
		AuthenticationToken: ua.NewByteStringNodeID(0, []byte{1, 2, 3, 4}),
		Timestamp:           at,
		RequestHandle:       42,
		ReturnDiagnostics:   0x3ff,
		AuditEntryID:        "audit-1",
		TimeoutHint:         10000,
		AdditionalHeader:    ua.NewExtensionObject(nil),
	}
	nodes := []*ua.ReadValueID{
		{NodeID: ua.NewTwoByteNodeID(85), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.NewFourByteNodeID(2, 1001), AttributeID: ua.AttributeIDDisplayName, IndexRange: "1:3", DataEncoding: &ua.QualifiedName{NamespaceIndex: 0, Name: "Default Binary"}},
		{NodeID: ua.NewNumericNodeID(300, 70000), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.NewStringNodeID(2, "Line1.Setpoints.Temperature"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.NewGUIDNodeID(3, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
	}
	dv := func(v any, mask byte, status ua.StatusCode) *ua.DataValue {
		d := &ua.DataValue{EncodingMask: mask, Value: ua.MustVariant(v), Status: status, SourceTimestamp: at, SourcePicoseconds: 7, ServerTimestamp: at.Add(time.Second), ServerPicoseconds: 9}
		return d
	}
	all := byte(ua.DataValueValue | ua.DataValueStatusCode | ua.DataValueSourceTimestamp | ua.DataValueSourcePicoseconds | ua.DataValueServerTimestamp | ua.DataValueServerPicoseconds)
	diag := &ua.DiagnosticInfo{EncodingMask: 0x7f, SymbolicID: 1, NamespaceURI: 2, Locale: 3, LocalizedText: 4, AdditionalInfo: "more",
		InnerStatusCode: ua.StatusBadNodeIDUnknown, InnerDiagnosticInfo: &ua.DiagnosticInfo{EncodingMask: 0x01, SymbolicID: 5}}
	return []any{
		&ua.ReadRequest{RequestHeader: header, MaxAge: 0, TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: nodes},
		&ua.ReadRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)}, MaxAge: math.NaN()},
		&ua.ReadRequest{RequestHeader: header, MaxAge: 2500.5, NodesToRead: []*ua.ReadValueID{}},
		&ua.ReadRequest{RequestHeader: header, MaxAge: math.Inf(-1), NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewTwoByteNodeID(1), DataEncoding: nil}}},
		&ua.ReadRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0),
			AdditionalHeader: ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: "anonymous"})}},
		&ua.ReadResponse{
			ResponseHeader: &ua.ResponseHeader{Timestamp: at, RequestHandle: 42, ServiceResult: ua.StatusOK, ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)},
			Results: []*ua.DataValue{
				dv(int32(-7), all, ua.StatusOK),
				dv(21.5, byte(ua.DataValueValue|ua.DataValueSourceTimestamp), ua.StatusOK),
				dv("text", byte(ua.DataValueValue), ua.StatusOK),
				dv([]float64{1, 2, math.NaN()}, byte(ua.DataValueValue|ua.DataValueStatusCode), ua.StatusUncertain),
				dv(nil, byte(ua.DataValueStatusCode), ua.StatusBadNodeIDUnknown),
				dv(ua.NewLocalizedText("Temperature"), byte(ua.DataValueValue), ua.StatusOK),
				dv(at, byte(ua.DataValueValue), ua.StatusOK),
				{EncodingMask: 0, Value: nil},
			},
		},
		&ua.ReadResponse{
			ResponseHeader:  &ua.ResponseHeader{ServiceResult: ua.StatusBadTooManyOperations, ServiceDiagnostics: diag, StringTable: []string{"a", "", "ß"}, AdditionalHeader: ua.NewExtensionObject(nil)},
			Results:         []*ua.DataValue{},
			DiagnosticInfos: []*ua.DiagnosticInfo{diag, {}},
		},
		&ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{ServiceDiagnostics: &ua.DiagnosticInfo{}, StringTable: []string{}, AdditionalHeader: ua.NewExtensionObject(nil)}},
	}
}

func typeIDOf(v any) uint16 {
	if _, ok := v.(*ua.ReadRequest); ok {
		return id.ReadRequest_Encoding_DefaultBinary
	}
	return id.ReadResponse_Encoding_DefaultBinary
}

// genericEncode is what encodeService gave before the Read codec.
func genericEncode(t *testing.T, typeID uint16, v any) []byte {
	t.Helper()
	tid, err := ua.NewFourByteExpandedNodeID(0, typeID).Encode()
	if err != nil {
		t.Fatal(err)
	}
	b, err := ua.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return append(tid, b...)
}

func TestReadCodecMatchesGeneric(t *testing.T) {
	for i, m := range readMessages() {
		want := genericEncode(t, typeIDOf(m), m)
		got, err := encodeService(typeIDOf(m), m)
		if err != nil {
			t.Fatalf("message %d (%T): %v", i, m, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d (%T): encoding differs from ua.Encode\n got %x\nwant %x", i, m, got, want)
		}
		if msg := compareDecoders(want); msg != "" {
			t.Fatalf("message %d (%T): %s", i, m, msg)
		}
	}
}

// A message cut short anywhere fails (or not) as it does under ua.Decode.
func TestReadCodecTruncated(t *testing.T) {
	for i, m := range readMessages() {
		b := genericEncode(t, typeIDOf(m), m)
		for n := 4; n < len(b); n++ {
			if msg := compareDecoders(b[:n]); msg != "" {
				t.Fatalf("message %d cut at %d of %d bytes: %s", i, n, len(b), msg)
			}
		}
	}
}

// A count larger than the bytes left is refused before anything is made of
// it (ua.Decode would allocate the whole array first).
func TestReadCodecHugeCount(t *testing.T) {
	m := &ua.ReadRequest{RequestHeader: &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)}}
	b, err := encodeService(id.ReadRequest_Encoding_DefaultBinary, m)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b[:len(b)-4], 0xff, 0xff, 0xff, 0x7f) // 2^31-1 nodes, no bytes
	if _, svc, ok, err := decodeRead(b, DefaultMaxDecodedSize); !ok || err == nil || svc != nil {
		t.Fatalf("decodeRead = %v, %v, %v; want an error", svc, ok, err)
	}
}

// TestReadCodecRefusesHostileParts: the parts of a Read that gopcua's
// codec decodes and that nest are scanned first, as checkLimits scans other
// services whole: a DataValue nested 200 deep in a response, a
// DiagnosticInfo nested 200 deep, and a request header whose
// ExtensionObject claims 2^31-1 elements are refused through
// decodeService without gopcua's decoder seeing them.
func TestReadCodecRefusesHostileParts(t *testing.T) {
	resp := &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)},
		Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(int32(1))}}}
	b, err := encodeService(id.ReadResponse_Encoding_DefaultBinary, resp)
	if err != nil {
		t.Fatal(err)
	}
	// the body ends with the DataValue (mask, Int32 Variant: 6 bytes) and a
	// null DiagnosticInfos (4 bytes)
	tail := len(b) - 10
	nestedValue := append(append(append([]byte{}, b[:tail]...), 0x01), bytes.Repeat([]byte{23, 0x01}, 200)...)
	nestedValue = append(nestedValue, 6, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)
	// ServiceDiagnostics is the byte after the type id, Timestamp,
	// RequestHandle and ServiceResult
	const diag = 4 + 8 + 4 + 4
	if b[diag] != 0 {
		t.Fatalf("ServiceDiagnostics mask %#x, want 0", b[diag])
	}
	nestedDiag := append(append(append([]byte{}, b[:diag]...), bytes.Repeat([]byte{0x40}, 200)...), b[diag:]...)

	for _, tc := range []struct {
		name string
		body []byte
		want ua.StatusCode
	}{
		{"DataValue nested 200 deep", nestedValue, ua.StatusBadEncodingLimitsExceeded},
		{"DiagnosticInfo nested 200 deep", nestedDiag, ua.StatusBadEncodingLimitsExceeded},
		{"header ExtensionObject with 2^31-1 elements", hostileHeader(t, true), ua.StatusBadDecodingError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := checkLimits(tc.body, DefaultMaxDecodedSize); StatusOf(err) != tc.want {
				t.Fatalf("checkLimits: %v, want %v (the test's body is not what it means to be)", err, tc.want)
			}
			_, svc, err := decodeService(tc.body, DefaultMaxDecodedSize)
			if got := StatusOf(err); got != tc.want || svc != nil {
				t.Fatalf("decodeService: %v (%v), %T; want %v", got, err, svc, tc.want)
			}
		})
	}
}

// compareDecoders decodes body with decodeRead and with ua.DecodeService and
// describes any difference: one fails and the other does not, or the values
// differ.
func compareDecoders(body []byte) string {
	tid1, got, ok, err1 := decodeRead(body, DefaultMaxDecodedSize)
	if !ok {
		return "decodeRead does not take the body"
	}
	tid2, want, err2 := genericDecode(body)
	switch {
	case (err1 == nil) != (err2 == nil):
		return fmt.Sprintf("decodeRead error %v, ua.DecodeService error %v", err1, err2)
	case err1 != nil:
		return ""
	case !reflect.DeepEqual(tid1, tid2):
		return fmt.Sprintf("type id %v, ua.DecodeService %v", tid1, tid2)
	case !equalNaN(reflect.ValueOf(got), reflect.ValueOf(want)):
		return fmt.Sprintf("decoded values differ:\n got %#v\nwant %#v", got, want)
	}
	return ""
}

// equalNaN is reflect.DeepEqual for decoded messages (no maps, no cycles),
// except that NaN equals NaN.
func equalNaN(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Float32, reflect.Float64:
		x, y := a.Float(), b.Float()
		return x == y || math.IsNaN(x) && math.IsNaN(y)
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalNaN(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalNaN(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Array:
		for i := range a.Len() {
			if !equalNaN(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if a.Type() == reflect.TypeOf(time.Time{}) && a.CanInterface() {
			return a.Interface().(time.Time).Equal(b.Interface().(time.Time)) &&
				a.Interface().(time.Time).Location() == b.Interface().(time.Time).Location()
		}
		for i := range a.NumField() {
			if !equalNaN(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	}
	panic(fmt.Sprintf("equalNaN: %s not compared", a.Type()))
}

func genericDecode(body []byte) (tid *ua.ExpandedNodeID, v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	opaque, err := scanMessage(body, DefaultMaxDecodedSize)
	if err != nil {
		return nil, nil, err
	}
	if tid, v, err = ua.DecodeService(body); err == nil {
		err = fillOpaque(v, opaque)
	}
	return tid, v, err
}

// FuzzReadCodec: on any body within the channel's limits, decodeRead and
// ua.DecodeService agree, and what decodes encodes as ua.Encode encodes it.
// Run longer with: go test -run '^$' -fuzz FuzzReadCodec ./gateway/opcua/channel/
func FuzzReadCodec(f *testing.F) {
	for _, m := range readMessages() {
		b, err := encodeService(typeIDOf(m), m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[4:], typeIDOf(m) == id.ReadResponse_Encoding_DefaultBinary)
	}
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	f.Fuzz(func(t *testing.T, rest []byte, response bool) {
		typeID := uint16(id.ReadRequest_Encoding_DefaultBinary)
		if response {
			typeID = id.ReadResponse_Encoding_DefaultBinary
		}
		body := append([]byte{0x01, 0, byte(typeID), byte(typeID >> 8)}, rest...)
		before := allocated()
		decodeRead(body, DefaultMaxDecodedSize)
		if n := allocated() - before; n > 1<<20+200*uint64(len(body)) {
			t.Fatalf("decoding %d bytes allocated %d", len(body), n)
		}
		if err := checkLimits(body, DefaultMaxDecodedSize); err != nil {
			// decodeService does not scan a Read whole: its parts are
			// scanned as they are decoded, and must refuse it as well
			if _, _, _, rerr := decodeRead(body, DefaultMaxDecodedSize); rerr == nil {
				t.Fatalf("checkLimits refuses the body (%v), decodeRead takes it", err)
			}
			return
		}
		if msg := compareDecoders(body); msg != "" {
			t.Fatal(msg)
		}
		_, v, _, err := decodeRead(body, DefaultMaxDecodedSize)
		if err != nil {
			return
		}
		want, werr := encodeGeneric(v)
		got, gerr := encodeOwn(v)
		if (werr == nil) != (gerr == nil) || werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("encoding differs: %x (%v), ua.Encode %x (%v)", got, gerr, want, werr)
		}
	})
}

// encodeOwn is encodeRead without the type id, a panic (which gopcua's
// codecs of the parts may raise on what they decoded) turned into an error
// as for ua.Encode.
func encodeOwn(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	b, _, err = encodeRead(typeIDOf(v), v)
	if err != nil {
		return nil, err
	}
	return b[4:], nil
}

func encodeGeneric(v any) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return ua.Encode(v)
}

// TestServiceTypeID checks the remembered type ids against gopcua's registry
// for every service the gateway forwards, asked twice (the second answer
// comes from the cache), and 0 for what is not a service.
func TestServiceTypeID(t *testing.T) {
	services := []any{
		&ua.ReadRequest{}, &ua.ReadResponse{}, &ua.WriteRequest{}, &ua.WriteResponse{},
		&ua.CallRequest{}, &ua.CallResponse{}, &ua.BrowseRequest{}, &ua.BrowseResponse{},
		&ua.PublishRequest{}, &ua.PublishResponse{}, &ua.ServiceFault{},
		&ua.CreateSessionRequest{}, &ua.ActivateSessionResponse{}, &ua.GetEndpointsRequest{},
		&ua.CloseSecureChannelRequest{}, &ua.HistoryReadRequest{}, &ua.TransferSubscriptionsResponse{},
	}
	for _, v := range services {
		want := ua.ServiceTypeID(v)
		if want == 0 {
			t.Fatalf("%T: gopcua has no type id", v)
		}
		for range 2 {
			if got := serviceTypeID(v); got != want {
				t.Errorf("%T: serviceTypeID %d, gopcua %d", v, got, want)
			}
		}
	}
	for _, v := range []any{&ua.DataValue{}, ua.ReadRequest{}, nil} {
		for range 2 {
			if got := serviceTypeID(v); got != 0 {
				t.Errorf("%T: serviceTypeID %d, want 0", v, got)
			}
		}
	}
}

// TestEmptyExtensionObject checks that the AdditionalHeader built without
// the registry is gopcua's, in value and in bytes.
func TestEmptyExtensionObject(t *testing.T) {
	got, want := EmptyExtensionObject(), ua.NewExtensionObject(nil)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("EmptyExtensionObject() = %#v, want %#v", got, want)
	}
	gb, err := got.Encode()
	if err != nil {
		t.Fatal(err)
	}
	wb, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gb, wb) {
		t.Fatalf("encoded % x, want % x", gb, wb)
	}
}
