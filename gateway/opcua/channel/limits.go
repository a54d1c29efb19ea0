package channel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gopcua/opcua/ua"
)

// Limits a request body is held to before gopcua's reflection decoder sees
// it. That decoder allocates a slice for whatever element count the bytes
// claim (up to 2^31 elements), recurses into nested Variants,
// DiagnosticInfos and ExtensionObjects without a depth limit, and builds
// multi-dimensional Variant arrays from dimensions whose product may
// overflow: each can end the process (out of memory, stack overflow) where
// no recover helps. Within those limits a message still decodes to many
// times its size (a Browse of minimal descriptions to 35 times: 570 MB for
// a 16 MiB message), so the scan also adds up what the decoder will
// allocate and refuses a message that would take more than the channel's
// MaxDecodedSize.
const (
	maxNesting   = 100 // Part 6 §5.2.2: nesting of Variant, DiagnosticInfo, ExtensionObject
	maxArrayRank = 32
)

// DefaultMaxDecodedSize is the default of Config.MaxDecodedSize and
// ClientConfig.MaxDecodedSize; MinMaxDecodedSize the least either accepts.
const (
	DefaultMaxDecodedSize = 64 << 20
	MinMaxDecodedSize     = 1 << 20
)

// defaultDecodedSize gives a MaxDecodedSize of 0 its default and refuses
// one below MinMaxDecodedSize.
func defaultDecodedSize(n *int64) error {
	if *n == 0 {
		*n = DefaultMaxDecodedSize
	}
	if *n < MinMaxDecodedSize {
		return fmt.Errorf("opcua channel: max decoded size %d is below %s", *n, sizeText(MinMaxDecodedSize))
	}
	return nil
}

// overDecodedSize is the error of a message that would decode to more than
// max bytes.
func overDecodedSize(max int64) error {
	return errorf(ua.StatusBadEncodingLimitsExceeded, "the decoded message would take more than %s (max decoded size)", sizeText(max))
}

// sizeText writes a byte count in MiB when it is a whole number of them.
func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

var errScanGiveUp = errors.New("type not scanned")

// checkLimits walks body the way ua.DecodeService will, checking every
// count against the bytes left and the nesting depth and adding up what it
// will allocate (at most maxDecoded bytes), without allocating. Types it
// does not know are left to the decoder.
func checkLimits(body []byte, maxDecoded int64) error {
	_, err := scanMessage(body, maxDecoded)
	return err
}

// scanMessage is checkLimits that also returns the bodies of the
// ExtensionObjects the decoder will keep without a value (opaque.go), in
// the order the decoder meets them; nil when there are none or when the
// scan could not follow the whole message.
func scanMessage(body []byte, maxDecoded int64) ([]opaqueBody, error) {
	s := &scanner{b: body, max: maxDecoded}
	s.expandedNodeID()
	if s.err != nil {
		return nil, nil // the decoder reports it
	}
	t := serviceType(body[:s.pos])
	if t == nil {
		return nil, nil // unknown service: the decoder refuses it
	}
	s.scan(t, 0)
	if s.err == errScanGiveUp {
		return nil, nil
	}
	return s.opaque, s.err
}

var (
	binaryDecoderType = reflect.TypeOf((*ua.BinaryDecoder)(nil)).Elem()
	timeType          = reflect.TypeOf(time.Time{})
	nodeIDType        = reflect.TypeOf(&ua.NodeID{})
	expandedType      = reflect.TypeOf(&ua.ExpandedNodeID{})
	variantType       = reflect.TypeOf(&ua.Variant{})
	dataValueType     = reflect.TypeOf(&ua.DataValue{})
	diagnosticType    = reflect.TypeOf(&ua.DiagnosticInfo{})
	extObjType        = reflect.TypeOf(&ua.ExtensionObject{})
	localizedType     = reflect.TypeOf(&ua.LocalizedText{})
	guidType          = reflect.TypeOf(&ua.GUID{})

	typeCache sync.Map // kind + NodeId -> reflect.Type of a registered type
)

// serviceType is the Go type ua.DecodeService creates for an encoded
// service type id.
func serviceType(tid []byte) reflect.Type {
	return lookupType("s", tid, func() any {
		// decoding the type id alone yields an empty value of the type
		_, v, _ := ua.DecodeService(tid)
		return v
	})
}

// extensionType is the Go type ua.ExtensionObject decodes a body with
// binary type id tid into; nil when none is registered.
func extensionType(tid []byte) reflect.Type {
	return lookupType("e", tid, func() any {
		var e ua.ExtensionObject
		e.Decode(append(append([]byte{}, tid...), 0x01, 1, 0, 0, 0, 0))
		return e.Value
	})
}

// typeKey names the NodeId of a type id in typeCache.
type typeKey struct {
	kind string
	ns   uint16
	id   uint32
	s    string // text form of a non-numeric id
}

// lookupType runs probe for the type behind an encoded type id. Only
// registered types are cached, keyed by the NodeId the registries use (not
// the bytes, which a client can vary without end).
func lookupType(kind string, tid []byte, probe func() any) (t reflect.Type) {
	var eid ua.ExpandedNodeID
	if _, err := eid.Decode(tid); err != nil || eid.NodeID == nil {
		return nil
	}
	key := typeKey{kind: kind, ns: eid.NodeID.Namespace(), id: eid.NodeID.IntID()}
	if eid.NodeID.Type() > ua.NodeIDTypeNumeric { // registries hold numeric ids only
		key.s = eid.NodeID.String()
	}
	if t, ok := typeCache.Load(key); ok {
		return t.(reflect.Type)
	}
	defer func() {
		if recover() != nil {
			t = nil
		}
	}()
	if v := probe(); v != nil {
		t = reflect.TypeOf(v)
		typeCache.Store(key, t)
	}
	return t
}

type scanner struct {
	b      []byte
	pos    int
	err    error
	alloc  int64        // bytes the decoder will allocate for what was scanned, about
	max    int64        // the most alloc may reach
	opaque []opaqueBody // ExtensionObjects the decoder keeps without a value, in order
}

// Sizes of what the decoder allocates for the types the scan handles by
// hand (a value behind a pointer or in an interface).
var (
	nodeIDSize     = int64(reflect.TypeOf(ua.NodeID{}).Size())
	expandedSize   = int64(reflect.TypeOf(ua.ExpandedNodeID{}).Size()) + nodeIDSize
	variantSize    = int64(reflect.TypeOf(ua.Variant{}).Size())
	dataValueSize  = int64(reflect.TypeOf(ua.DataValue{}).Size())
	diagnosticSize = int64(reflect.TypeOf(ua.DiagnosticInfo{}).Size())
	extObjSize     = int64(reflect.TypeOf(ua.ExtensionObject{}).Size()) + expandedSize
	localizedSize  = int64(reflect.TypeOf(ua.LocalizedText{}).Size())
)

// decodeOverhead is what gopcua's reflection decoder allocates besides
// the value itself for each value it decodes (a Buffer, reflect values):
// with it the scan's sum comes within a factor of two of what the decoder
// allocates (limits_test.go measures it).
const decodeOverhead = 96

// charge adds a value of n bytes the decoder will allocate.
func (s *scanner) charge(n int64) {
	if s.err != nil {
		return
	}
	if s.alloc += n + decodeOverhead; s.alloc > s.max {
		s.err = overDecodedSize(s.max)
	}
}

func (s *scanner) fail(code ua.StatusCode, reason string) {
	if s.err == nil {
		s.err = &Error{Code: code, Reason: reason}
	}
}

func (s *scanner) need(n int) bool {
	if s.err != nil {
		return false
	}
	if n < 0 || n > len(s.b)-s.pos {
		s.fail(ua.StatusBadDecodingError, "truncated request")
		return false
	}
	return true
}

func (s *scanner) skip(n int) {
	if s.need(n) {
		s.pos += n
	}
}

func (s *scanner) u8() byte {
	if !s.need(1) {
		return 0
	}
	s.pos++
	return s.b[s.pos-1]
}

func (s *scanner) i32() int32 {
	if !s.need(4) {
		return 0
	}
	s.pos += 4
	return int32(binary.LittleEndian.Uint32(s.b[s.pos-4:]))
}

// bytes skips a String or ByteString.
func (s *scanner) bytes() {
	n := s.i32()
	if n > 0 {
		s.skip(int(n))
		s.charge(int64(n))
	}
}

// count reads an array length and checks that that many elements of at
// least one byte each fit in what is left; -1 (null) is 0.
func (s *scanner) count() int {
	n := s.i32()
	if s.err != nil || n == -1 {
		return 0
	}
	if n < -1 || int(n) > len(s.b)-s.pos {
		s.fail(ua.StatusBadDecodingError, "array length exceeds the message")
		return 0
	}
	return int(n)
}

func (s *scanner) nodeID() byte {
	mask := s.u8()
	switch mask & 0x0f {
	case 0:
		s.skip(1)
	case 1:
		s.skip(3)
	case 2:
		s.skip(6)
	case 4:
		s.skip(2 + 16)
	case 3, 5:
		s.skip(2)
		s.identifier(mask&0x0f == 3)
	default:
		s.fail(ua.StatusBadDecodingError, "invalid NodeId encoding")
	}
	return mask
}

// maxIdentifier bounds a NodeId's identifier (OPC 10000-3 §8.2.4): 4096
// characters of a String, 4096 bytes of an Opaque one. A longer one names
// no node, and would carry up to the message size into the policy input
// and the audit record.
const maxIdentifier = 4096

// isNodeIDInvalid reports whether err, a scanner's, is identifier's
// refusal (a type assertion: errors.As would cost the Read path an
// allocation per NodeId).
func isNodeIDInvalid(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Code == ua.StatusBadNodeIDInvalid
}

// identifier skips a String (text) or Opaque identifier and refuses one
// over maxIdentifier.
func (s *scanner) identifier(text bool) {
	start := s.pos
	s.bytes()
	if s.err != nil {
		return
	}
	id := s.b[start+4 : s.pos]
	if len(id) <= maxIdentifier {
		return // no more characters than bytes: nothing to count
	}
	n, unit := len(id), "bytes"
	if text {
		n, unit = utf8.RuneCount(id), "characters"
	}
	if n <= maxIdentifier {
		return
	}
	s.fail(ua.StatusBadNodeIDInvalid, fmt.Sprintf("a NodeId identifier of %d %s, over the %d of OPC 10000-3 §8.2.4", n, unit, maxIdentifier))
}

func (s *scanner) expandedNodeID() {
	mask := s.nodeID()
	if mask&0x80 != 0 {
		s.bytes()
	}
	if mask&0x40 != 0 {
		s.skip(4)
	}
}

func (s *scanner) scan(t reflect.Type, depth int) {
	if s.err != nil {
		return
	}
	if t.Implements(binaryDecoderType) {
		s.custom(t, depth)
		return
	}
	if t == timeType {
		s.skip(8)
		return
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Uint8:
		s.skip(1)
	case reflect.Int16, reflect.Uint16:
		s.skip(2)
	case reflect.Int32, reflect.Uint32, reflect.Float32:
		s.skip(4)
	case reflect.Int64, reflect.Uint64, reflect.Float64:
		s.skip(8)
	case reflect.String:
		s.bytes()
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			s.bytes()
			return
		}
		n := s.count()
		if t.Kind() == reflect.Array && n > t.Len() {
			s.fail(ua.StatusBadDecodingError, "array too long")
			return
		}
		s.charge(int64(n) * int64(t.Elem().Size()))
		for i := 0; i < n && s.err == nil; i++ {
			s.scan(t.Elem(), depth)
		}
	case reflect.Pointer:
		s.charge(int64(t.Elem().Size()))
		s.scan(t.Elem(), depth)
	case reflect.Struct:
		for i := 0; i < t.NumField() && s.err == nil; i++ {
			s.scan(t.Field(i).Type, depth)
		}
	default:
		s.err = errScanGiveUp
	}
}

func (s *scanner) nest(depth int) bool {
	if depth >= maxNesting {
		s.fail(ua.StatusBadEncodingLimitsExceeded, "nesting deeper than 100")
		return false
	}
	return true
}

func (s *scanner) custom(t reflect.Type, depth int) {
	switch t {
	case nodeIDType:
		s.charge(nodeIDSize)
		s.nodeID()
	case expandedType:
		s.charge(expandedSize)
		s.expandedNodeID()
	case guidType:
		s.charge(16)
		s.skip(16)
	case localizedType:
		s.charge(localizedSize)
		mask := s.u8()
		if mask&0x01 != 0 {
			s.bytes()
		}
		if mask&0x02 != 0 {
			s.bytes()
		}
	case dataValueType:
		s.dataValue(depth)
	case variantType:
		s.variant(depth)
	case diagnosticType:
		s.diagnostic(depth)
	case extObjType:
		s.extensionObject(depth)
	default:
		s.err = errScanGiveUp
	}
}

func (s *scanner) dataValue(depth int) {
	if !s.nest(depth) {
		return
	}
	s.charge(dataValueSize)
	mask := s.u8()
	if mask&0x01 != 0 {
		s.variant(depth + 1)
	}
	if mask&0x02 != 0 {
		s.skip(4)
	}
	if mask&0x04 != 0 {
		s.skip(8)
	}
	if mask&0x10 != 0 {
		s.skip(2)
	}
	if mask&0x08 != 0 {
		s.skip(8)
	}
	if mask&0x20 != 0 {
		s.skip(2)
	}
}

func (s *scanner) diagnostic(depth int) {
	for ; s.err == nil; depth++ {
		if !s.nest(depth) {
			return
		}
		s.charge(diagnosticSize)
		mask := s.u8()
		for _, bit := range []byte{0x01, 0x02, 0x04, 0x08} {
			if mask&bit != 0 {
				s.skip(4)
			}
		}
		if mask&0x10 != 0 {
			s.bytes()
		}
		if mask&0x20 != 0 {
			s.skip(4)
		}
		if mask&0x40 == 0 {
			return
		}
	}
}

func (s *scanner) extensionObject(depth int) {
	if !s.nest(depth) {
		return
	}
	s.charge(extObjSize)
	start := s.pos
	s.expandedNodeID()
	tid := s.b[start:min(s.pos, len(s.b))]
	mask := s.u8()
	if s.err != nil || mask == 0 {
		return
	}
	n := s.i32()
	if s.err != nil {
		return
	}
	if n == 0 || n == -1 {
		s.keepOpaque(tid, nil) // the decoder stops before the body
		return
	}
	if !s.need(int(uint32(n))) {
		return
	}
	body := s.b[s.pos : s.pos+int(n)]
	s.pos += int(n)
	if mask == 0x02 {
		return // XML: decoded as a string
	}
	t := extensionType(tid)
	if t == nil {
		s.keepOpaque(tid, body) // not registered: the decoder keeps no value
		return
	}
	inner := &scanner{b: body, alloc: s.alloc, max: s.max, opaque: s.opaque}
	inner.scan(t, depth+1)
	s.alloc, s.opaque = inner.alloc, inner.opaque
	if inner.err != nil {
		s.err = inner.err
		return
	}
	if rest := len(body) - inner.pos; rest != 0 {
		// gopcua's decoder would drop them without a word, and the gateway
		// forward the structure changed; refused instead
		name := t.Name()
		if t.Kind() == reflect.Pointer {
			name = t.Elem().Name()
		}
		s.fail(ua.StatusBadDecodingError, fmt.Sprintf("structure %s has %d bytes after its fields", name, rest))
	}
}

// keepOpaque records a copy of the body of an ExtensionObject the decoder
// will keep without a value, and charges it.
func (s *scanner) keepOpaque(tid, body []byte) {
	if s.charge(int64(len(body)) + opaqueSize); s.err != nil {
		return
	}
	var typeID ua.ExpandedNodeID
	if _, err := typeID.Decode(tid); err != nil || typeID.NodeID == nil {
		s.fail(ua.StatusBadDecodingError, "invalid ExtensionObject type id")
		return
	}
	s.opaque = append(s.opaque, opaqueBody{typeID: typeID.NodeID.String(), body: append([]byte{}, body...)})
}

func (s *scanner) variant(depth int) {
	if !s.nest(depth) {
		return
	}
	s.charge(variantSize)
	mask := s.u8()
	typ := mask & 0x3f
	if s.err != nil || typ == 0 {
		return
	}
	if typ > 25 {
		s.fail(ua.StatusBadDecodingError, "invalid Variant type")
		return
	}
	if mask&0x80 == 0 {
		s.variantValue(typ, depth)
		return
	}
	n := s.i32()
	if s.err != nil {
		return
	}
	if n != -1 { // -1: a null array, whose dimensions gopcua reads all the same
		if n < -1 || int(n) > len(s.b)-s.pos || int(n) > ua.MaxVariantArrayLength {
			s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array length exceeds the limits")
			return
		}
		for i := 0; i < int(n) && s.err == nil; i++ {
			s.variantValue(typ, depth)
		}
	}
	if mask&0x40 == 0 {
		return
	}
	rank := s.i32()
	if s.err != nil {
		return
	}
	if rank < 0 || rank > maxArrayRank {
		s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array rank exceeds the limits")
		return
	}
	if n == -1 && rank > 0 {
		s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array dimensions of a null array")
		return
	}
	product := int64(1)
	for i := int32(0); i < rank && s.err == nil; i++ {
		d := s.i32()
		if d < 1 {
			s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array dimension below 1")
			return
		}
		if product *= int64(d); product > int64(n) {
			s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array dimensions exceed its length")
			return
		}
	}
	if s.err == nil && rank > 0 && product != int64(n) {
		s.fail(ua.StatusBadEncodingLimitsExceeded, "Variant array dimensions do not match its length")
	}
}

func (s *scanner) variantValue(typ byte, depth int) {
	s.charge(16) // the value in an interface, or its slot in an array
	switch typ {
	case 1, 2, 3:
		s.skip(1)
	case 4, 5:
		s.skip(2)
	case 6, 7, 10, 19:
		s.skip(4)
	case 8, 9, 11, 13:
		s.skip(8)
	case 12, 15, 16:
		s.bytes()
	case 14:
		s.skip(16)
	case 17:
		s.charge(nodeIDSize)
		s.nodeID()
	case 18:
		s.charge(expandedSize)
		s.expandedNodeID()
	case 20:
		s.charge(int64(reflect.TypeOf(ua.QualifiedName{}).Size()))
		s.skip(2)
		s.bytes()
	case 21:
		s.custom(localizedType, depth)
	case 22:
		s.extensionObject(depth + 1)
	case 23:
		s.dataValue(depth + 1)
	case 24:
		s.variant(depth + 1)
	case 25:
		s.diagnostic(depth + 1)
	}
}
