package opcua

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
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
			got := plainValue(wireVariant(t, v))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("plain %s: %#v (%T), want %#v (%T)", typeName(v), got, got, tc.want, tc.want)
			}
		})
	}

	// an array longer than maxPlainElems is cut, and ends with a string
	// that says so: a rule over every element (a number limit) cannot pass
	// it, and neither can one looking for any element over a limit (Rego
	// orders every string after every number)
	got := plainValue(wireVariant(t, ua.MustVariant(big))).([]any)
	if len(got) != maxPlainElems+1 || got[maxPlainElems-1] != int64(maxPlainElems-1) || got[maxPlainElems] != "… 5 more" {
		t.Errorf("a %d-element array: %d elements, last two %v", len(big), len(got), got[len(got)-2:])
	}
	if plainValue(nil) != nil {
		t.Error("a missing Variant is not null")
	}
	nested := any(int32(7))
	for range 12 {
		nested = ua.MustVariant(nested)
	}
	if s := plainValue(wireVariant(t, nested.(*ua.Variant))); !strings.Contains(fmtAny(s), "…") {
		t.Errorf("Variants nested 12 deep: %v, want the nesting cut", s)
	}
}

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
