package channel

import (
	"reflect"

	"github.com/gopcua/opcua/ua"
)

// Opaque is the body of an ExtensionObject whose type gopcua's codec does
// not know (a vendor's or a companion specification's structure), kept as
// its bytes so that the gateway forwards it unchanged. gopcua decodes such
// an ExtensionObject without its body (Value nil) and its encoder then
// fails on it; the channel sets Value to an *Opaque after decoding, from
// the bytes the limits scan (limits.go) copied on its way through the
// message, and gopcua's encoder writes them back through Encode.
//
// An empty body (length 0 or -1 on the wire) is an Opaque with no bytes,
// written back with length 0.
type Opaque struct {
	Body []byte
}

// Encode returns the body as it came: ua.ExtensionObject.Encode writes its
// length before it.
func (o *Opaque) Encode() ([]byte, error) { return o.Body, nil }

var opaqueSize = int64(reflect.TypeOf(Opaque{}).Size())

// opaqueBody is an ExtensionObject the decoder keeps without a value, as
// the scan found it: the text of its type's NodeId and a copy of its body.
type opaqueBody struct {
	typeID string
	body   []byte
}

// fillOpaque gives each ExtensionObject in v that the decoder left without
// a value its body from bodies, which the scan of the same bytes found in
// the same order. A value whose ExtensionObjects do not match bodies one to
// one (count and type ids) is an error: the message is refused rather than
// forwarded with a body in the wrong place.
func fillOpaque(v any, bodies []opaqueBody) error {
	if len(bodies) == 0 {
		return nil
	}
	f := opaqueFiller{bodies: bodies}
	f.walk(reflect.ValueOf(v))
	if f.err == nil && f.next != len(bodies) {
		f.fail()
	}
	return f.err
}

type opaqueFiller struct {
	bodies []opaqueBody
	next   int
	err    error
}

func (f *opaqueFiller) fail() {
	if f.err == nil {
		f.err = errorf(ua.StatusBadDecodingError, "the ExtensionObjects of unknown types in the message do not match its scan")
	}
}

// walk visits v in the order gopcua's decoder reads the fields: struct
// fields in order, slice elements in order, a DataValue's Variant, a
// Variant's value, a decoded ExtensionObject's value.
func (f *opaqueFiller) walk(v reflect.Value) {
	if f.err != nil || !v.IsValid() {
		return
	}
	switch v.Kind() {
	case reflect.Interface:
		if !v.IsNil() {
			f.walk(v.Elem())
		}
	case reflect.Pointer:
		if v.IsNil() {
			return
		}
		switch x := v.Interface().(type) {
		case *ua.ExtensionObject:
			f.extensionObject(x)
		case *ua.Variant:
			f.walk(reflect.ValueOf(x.Value()))
		case *ua.DataValue:
			f.walk(reflect.ValueOf(x.Value))
		case *ua.NodeID, *ua.ExpandedNodeID, *ua.DiagnosticInfo, *ua.LocalizedText, *ua.QualifiedName, *ua.GUID, *Opaque:
			// hold no ExtensionObject
		default:
			f.walk(v.Elem())
		}
	case reflect.Struct:
		if v.Type() == timeType {
			return
		}
		t := v.Type()
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				f.walk(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := range v.Len() {
			f.walk(v.Index(i))
		}
	}
}

func (f *opaqueFiller) extensionObject(e *ua.ExtensionObject) {
	if e.Value != nil {
		f.walk(reflect.ValueOf(e.Value))
		return
	}
	if e.EncodingMask == ua.ExtensionObjectEmpty {
		return
	}
	if f.next == len(f.bodies) || e.TypeID == nil || e.TypeID.NodeID == nil || e.TypeID.NodeID.String() != f.bodies[f.next].typeID {
		f.fail()
		return
	}
	e.Value = &Opaque{Body: f.bodies[f.next].body}
	f.next++
}
