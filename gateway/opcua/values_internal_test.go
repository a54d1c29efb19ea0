package opcua

import (
	"encoding/base64"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/channel"
)

// TestPlainValue: what the policy input and the audit record get for each
// built-in type a client may write or pass as a method argument, after the
// value went through the binary codec as it does on the wire.
func TestPlainValue(t *testing.T) {
	when := time.Date(2026, 11, 27, 3, 4, 5, 600_000_000, time.UTC)
	guid := ua.NewGUID("72962B91-FA75-4AE6-8D28-B404DC7DAF63")
	big := make([]int32, maxPlainElems+5)
	for i := range big {
		big[i] = int32(i)
	}
	for _, tc := range []struct {
		name string
		v    any
		want any
	}{
		{"Boolean", true, true},
		{"SByte", int8(-5), int64(-5)},
		{"Byte", uint8(200), int64(200)},
		{"Int16", int16(-300), int64(-300)},
		{"UInt16", uint16(65535), int64(65535)},
		{"Int32", int32(-70000), int64(-70000)},
		{"UInt32", uint32(4294967295), int64(4294967295)},
		{"Int64", int64(math.MinInt64), int64(math.MinInt64)},
		{"UInt64 within int64", uint64(math.MaxInt64), int64(math.MaxInt64)},
		{"UInt64 over int64", uint64(math.MaxUint64), float64(math.MaxUint64)},
		{"Float", float32(1.5), 1.5},
		{"Double", 1200.25, 1200.25},
		{"Double NaN", math.NaN(), "NaN"},
		{"Double +Inf", math.Inf(1), "+Inf"},
		{"String", "recipe 7", "recipe 7"},
		{"DateTime", when, "2026-11-27T03:04:05.6Z"},
		{"Guid", guid, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"},
		{"ByteString", []byte{0xde, 0xad, 0xbe, 0xef}, "3q2+7w=="},
		{"XmlElement", ua.XMLElement("<a/>"), "<a/>"},
		{"NodeId", ua.NewStringNodeID(1, "Setpoint"), "ns=1;s=Setpoint"},
		{"StatusCode", ua.StatusBadUserAccessDenied, int64(uint32(ua.StatusBadUserAccessDenied))},
		{"QualifiedName", &ua.QualifiedName{NamespaceIndex: 1, Name: "Speed"}, "Speed"},
		{"LocalizedText", ua.NewLocalizedText("open"), "open"},
		{"array of Double", []float64{1, 2.5}, []any{1.0, 2.5}},
		{"array of String", []string{"a", "b"}, []any{"a", "b"}},
		{"array of Boolean", []bool{true, false}, []any{true, false}},
		{"array of Variant", []*ua.Variant{ua.MustVariant(int32(1)), ua.MustVariant("x")}, []any{int64(1), "x"}},
		{"matrix of Int32", [][]int32{{1, 2}, {3, 4}}, []any{[]any{int64(1), int64(2)}, []any{int64(3), int64(4)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ua.MustVariant(tc.v)
			got := plainValue(wireVariant(t, v), newPlainBudget())
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plain %s: %#v (%T), want %#v (%T)", typeName(v), got, got, tc.want, tc.want)
			}
		})
	}

	// an array longer than maxPlainElems is cut, and ends with a string
	// that says so: a rule over every element (a number limit) cannot pass
	// it, and neither can one looking for any element over a limit (Rego
	// orders every string after every number)
	got := plainValue(wireVariant(t, ua.MustVariant(big)), newPlainBudget()).([]any)
	if len(got) != maxPlainElems+1 || got[maxPlainElems-1] != int64(maxPlainElems-1) || got[maxPlainElems] != "… 5 more" {
		t.Errorf("a %d-element array: %d elements, last two %v", len(big), len(got), got[len(got)-2:])
	}
	if plainValue(nil, newPlainBudget()) != nil {
		t.Error("a missing Variant is not null")
	}
	// a structure of a type the codec does not know, as the channel keeps
	// it: its type id and its bytes
	vendor := ua.MustVariant(&ua.ExtensionObject{TypeID: ua.NewFourByteExpandedNodeID(7, 4242), EncodingMask: ua.ExtensionObjectBinary,
		Value: &channel.Opaque{Body: []byte{0xde, 0xad, 0xbe, 0xef}}})
	if got := plainValue(vendor, newPlainBudget()); !reflect.DeepEqual(got, map[string]any{"type_id": "ns=7;i=4242", "body": "3q2+7w=="}) {
		t.Errorf("an opaque structure: %#v", got)
	}
	nested := any(int32(7))
	for range 12 {
		nested = ua.MustVariant(nested)
	}
	if s := plainValue(wireVariant(t, nested.(*ua.Variant)), newPlainBudget()); !strings.Contains(fmtAny(s), "…") {
		t.Errorf("Variants nested 12 deep: %v, want the nesting cut", s)
	}
}

// TestPlainValueBounds: a call's values reach the policy and the audit
// record cut to maxPlainString bytes a string and maxPlainTotal bytes in
// all, and what was cut says how much.
func TestPlainValueBounds(t *testing.T) {
	plainOf := func(x any) any { return plainValue(wireVariant(t, ua.MustVariant(x)), newPlainBudget()) }

	long := strings.Repeat("a", 10_000)
	if got := plainOf(long); got != long[:maxPlainString]+"… 5904 more bytes" {
		t.Errorf("a 10,000 byte String: %d bytes, ends %q", len(fmtAny(got)), tail(fmtAny(got)))
	}
	// the cut falls before a character, never inside one
	wide := strings.Repeat("a", maxPlainString-1) + "é" + "tail"
	if got := plainOf(wide); got != wide[:maxPlainString-1]+"… 6 more bytes" {
		t.Errorf("a String with é across the bound: ends %q", tail(fmtAny(got)))
	}
	if got := plainOf(ua.XMLElement(long)); !strings.HasSuffix(fmtAny(got), "… 5904 more bytes") {
		t.Errorf("a 10,000 byte XmlElement: ends %q", tail(fmtAny(got)))
	}
	raw := make([]byte, 10_000)
	want := base64.StdEncoding.EncodeToString(raw[:3072]) + "… 6928 more bytes"
	if got := plainOf(raw); got != want {
		t.Errorf("a 10,000 byte ByteString: ends %q, want %d bytes ending %q", tail(fmtAny(got)), len(want), tail(want))
	}
	if got := plainOf(long[:maxPlainString]); got != long[:maxPlainString] {
		t.Error("a String of exactly maxPlainString bytes was cut")
	}

	// 100 strings of 1,000 bytes: about 64 of them fit in the total
	many := make([]string, 100)
	for i := range many {
		many[i] = strings.Repeat(string(rune('a'+i%26)), 1000)
	}
	got := plainOf(many).([]any)
	last, _ := got[len(got)-1].(string)
	kept := len(got) - 1
	if kept < 60 || kept > 66 || last != fmt.Sprintf("… %d more", 100-kept) || got[0] != many[0] {
		t.Errorf("100 Strings of 1,000 bytes: %d kept, then %q", kept, last)
	}
	size := 0
	for _, e := range got {
		size += len(e.(string))
	}
	if size > maxPlainTotal+maxPlainString {
		t.Errorf("100 Strings of 1,000 bytes: %d bytes kept, over the total of %d", size, maxPlainTotal)
	}

	// the arguments of one Call share one budget
	b := newPlainBudget()
	var args []any
	for range 40 {
		args = append(args, plainValue(wireVariant(t, ua.MustVariant(long)), b))
	}
	if args[0] != long[:maxPlainString]+"… 5904 more bytes" || args[39] != "… 10000 more bytes" {
		t.Errorf("40 arguments of 10,000 bytes: the first ends %q, the last is %q", tail(fmtAny(args[0])), args[39])
	}
}

func TestBoundedString(t *testing.T) {
	if got := boundedString("0:3,1"); got != "0:3,1" {
		t.Errorf("a short IndexRange: %q", got)
	}
	long := strings.Repeat("1", 5000)
	if got := boundedString(long); got != long[:maxPlainString]+"… 904 more bytes" {
		t.Errorf("an IndexRange of 5,000 bytes: %d bytes ending %q", len(got), tail(got))
	}
}

func tail(s string) string { return s[max(0, len(s)-24):] }

// wireVariant encodes v and decodes it again, as the gateway receives it.
func wireVariant(t *testing.T, v *ua.Variant) *ua.Variant {
	t.Helper()
	b, err := v.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var out ua.Variant
	if _, err := out.Decode(b); err != nil {
		t.Fatal(err)
	}
	return &out
}

func fmtAny(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var b strings.Builder
		for _, e := range v {
			b.WriteString(fmtAny(e))
		}
		return b.String()
	}
	return ""
}

// An ExpandedNodeId keeps the namespace URI and server index the client
// gave: without them nsu=urn:x;s=PLC would read as s=PLC, a node of
// namespace 0.
func TestExpandedString(t *testing.T) {
	for _, tc := range []struct {
		in   *ua.ExpandedNodeID
		want string
	}{
		{nil, ""},
		{&ua.ExpandedNodeID{NodeID: ua.NewStringNodeID(1, "PLC")}, "ns=1;s=PLC"},
		{&ua.ExpandedNodeID{NodeID: ua.NewStringNodeID(0, "PLC"), NamespaceURI: "urn:NodeOPCUA-Server-default"}, "nsu=urn:NodeOPCUA-Server-default;s=PLC"},
		{&ua.ExpandedNodeID{NodeID: ua.NewNumericNodeID(3, 7), NamespaceURI: "urn:a;b%c"}, "nsu=urn:a%3Bb%25c;i=7"},
		{&ua.ExpandedNodeID{NodeID: ua.NewNumericNodeID(0, 85), ServerIndex: 2}, "svr=2;i=85"},
		{&ua.ExpandedNodeID{NodeID: ua.NewStringNodeID(0, "X"), NamespaceURI: "urn:y", ServerIndex: 1}, "svr=1;nsu=urn:y;s=X"},
	} {
		if got := expandedString(tc.in); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.in, got, tc.want)
		}
	}
}
