package channel

import (
	"encoding/binary"
	"io"
	"math"
	"reflect"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// The binary codec of the Read service, written out. A Read crosses the
// gateway as four messages to decode or encode (the client's request, the
// request to the server, its response, the response to the client), and
// gopcua's generic codec walks each one by reflection, allocating for every
// field and every integer it writes. Written out, the gateway makes 114
// allocations per single-node Read instead of 219, and spends about a
// quarter less CPU on it under load. These functions give exactly what
// ua.DecodeService and ua.Encode give for ReadRequest and ReadResponse
// (readcodec_test.go compares them on built and fuzzed messages), with the
// same nil and empty forms; the types gopcua writes out by hand (NodeID,
// ExtensionObject, DataValue with its Variant, DiagnosticInfo) still use
// gopcua's own code, each behind the limits scanner (guard), so that a
// Read needs no scan of the whole message first. A body that is not in
// this form (another service, a type id not in its four-byte form) takes
// the generic codec.

// nullLength is the length of a null string or array.
const nullLength = 0xffffffff

// fourByteServiceID returns the numeric id of the service type id at the
// start of body when it has the four-byte form in namespace 0 that stacks
// write for service types.
func fourByteServiceID(body []byte) (uint16, bool) {
	if len(body) < 4 || body[0] != 0x01 || body[1] != 0 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(body[2:]), true
}

// decodeRead decodes a ReadRequest or ReadResponse body (type id first);
// ok is false for any other body.
func decodeRead(body []byte, maxDecoded int64) (typeID *ua.ExpandedNodeID, svc any, ok bool, err error) {
	sid, four := fourByteServiceID(body)
	if !four || sid != id.ReadRequest_Encoding_DefaultBinary && sid != id.ReadResponse_Encoding_DefaultBinary {
		return nil, nil, false, nil
	}
	typeID = ua.NewFourByteExpandedNodeID(0, sid)
	r := &reader{b: body, pos: 4, max: maxDecoded}
	if sid == id.ReadRequest_Encoding_DefaultBinary {
		svc = r.readRequest()
	} else {
		svc = r.readResponse()
	}
	if r.err != nil {
		if _, ok := r.err.(*Error); !ok {
			r.err = errorf(ua.StatusBadDecodingError, "%v", r.err)
		}
		return typeID, nil, true, r.err
	}
	return typeID, svc, true, nil
}

// reader reads the binary encoding the way ua.Buffer does; after the first
// error every read returns a zero value.
type reader struct {
	b     []byte
	pos   int
	err   error
	alloc int64 // what the decoded message takes so far, about (limits.go)
	max   int64 // the most alloc may reach
}

// charge adds n bytes of the decoded message and refuses a message that
// would take more than r.max, as checkLimits does for the other services.
func (r *reader) charge(n int64) {
	if r.err != nil {
		return
	}
	if r.alloc += n; r.alloc > r.max {
		r.err = overDecodedSize(r.max)
	}
}

// Sizes of one element of the arrays the codec makes itself, with what it
// and gopcua's NodeID decoder allocate for it.
var (
	readValueIDSize = int64(8+reflect.TypeOf(ua.ReadValueID{}).Size()+reflect.TypeOf(ua.QualifiedName{}).Size()) + nodeIDSize + decodeOverhead
	stringSize      = int64(reflect.TypeOf("").Size())
)

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.pos {
		r.err = io.ErrUnexpectedEOF
		return nil
	}
	d := r.b[r.pos : r.pos+n]
	r.pos += n
	return d
}

func (r *reader) u16() uint16 {
	if d := r.next(2); d != nil {
		return binary.LittleEndian.Uint16(d)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if d := r.next(4); d != nil {
		return binary.LittleEndian.Uint32(d)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if d := r.next(8); d != nil {
		return binary.LittleEndian.Uint64(d)
	}
	return 0
}

func (r *reader) f64() float64 {
	bits := r.u64()
	if bits == 0xfff8000000000000 {
		return math.NaN()
	}
	return math.Float64frombits(bits)
}

func (r *reader) str() string {
	n := r.u32()
	if n == 0 || n == nullLength {
		return ""
	}
	b := r.next(int(n))
	r.charge(int64(len(b)))
	return string(b)
}

// dateTime is ua.Buffer.ReadTime: 100 ns intervals since 1601, 0 is the
// zero time.
func (r *reader) dateTime() time.Time {
	ts := r.u64()
	if ts == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64((ts-116444736000000000)*100)).UTC()
}

// count reads an array length: -1 is null (nil), and a count larger than
// the bytes left (every element takes one at least) is an error.
func (r *reader) count() (n int, null bool) {
	c := r.u32()
	switch {
	case r.err != nil:
		return 0, true
	case c == nullLength:
		return 0, true
	case c > math.MaxInt32 || int(c) > len(r.b)-r.pos:
		r.err = io.ErrUnexpectedEOF
		return 0, true
	}
	return int(c), false
}

// decode runs a gopcua decoder at the current position.
func (r *reader) decode(d ua.BinaryDecoder) {
	if r.err != nil {
		return
	}
	n, err := d.Decode(r.b[r.pos:])
	if err != nil {
		r.err = err
		return
	}
	r.pos += n
}

// guard runs the limits scanner (limits.go) over the part at the current
// position before gopcua's decoder reads it: the parts that nest (an
// ExtensionObject's body, a DataValue's Variant, a DiagnosticInfo) are
// checked for depth and for counts longer than the bytes left, as
// checkLimits checks a whole message of another service (which counts
// these parts at depth 0 too).
//
// It returns the bodies of the ExtensionObjects the part holds that the
// decoder will keep without a value, for fillOpaque.
func (r *reader) guard(scan func(*scanner, int)) []opaqueBody {
	if r.err != nil {
		return nil
	}
	s := scanner{b: r.b, pos: r.pos, alloc: r.alloc, max: r.max}
	scan(&s, 0)
	r.alloc = s.alloc
	if s.err == errScanGiveUp {
		return nil // not followed to its end: nothing to fill
	}
	r.err = s.err
	return s.opaque
}

// fill is fillOpaque for a part guard scanned, once it is decoded.
func (r *reader) fill(v any, opaque []opaqueBody) {
	if r.err == nil {
		r.err = fillOpaque(v, opaque)
	}
}

// A NodeID does not nest, and gopcua checks its lengths against the bytes
// left before it allocates; the scanner holds its identifier to
// maxIdentifier first (what else it finds, gopcua's decoder reports).
func (r *reader) nodeID() *ua.NodeID {
	if r.err == nil {
		s := scanner{b: r.b, pos: r.pos, max: math.MaxInt64}
		if s.nodeID(); isNodeIDInvalid(s.err) {
			r.err = s.err
		}
	}
	n := new(ua.NodeID)
	r.decode(n)
	return n
}

func (r *reader) extensionObject() *ua.ExtensionObject {
	opaque := r.guard((*scanner).extensionObject)
	e := new(ua.ExtensionObject)
	r.decode(e)
	r.fill(e, opaque)
	return e
}

func (r *reader) diagnosticInfo() *ua.DiagnosticInfo {
	r.guard((*scanner).diagnostic)
	d := new(ua.DiagnosticInfo)
	r.decode(d)
	return d
}

func (r *reader) readRequest() *ua.ReadRequest {
	req := &ua.ReadRequest{RequestHeader: &ua.RequestHeader{}}
	h := req.RequestHeader
	h.AuthenticationToken = r.nodeID()
	h.Timestamp = r.dateTime()
	h.RequestHandle = r.u32()
	h.ReturnDiagnostics = r.u32()
	h.AuditEntryID = r.str()
	h.TimeoutHint = r.u32()
	h.AdditionalHeader = r.extensionObject()
	req.MaxAge = r.f64()
	req.TimestampsToReturn = ua.TimestampsToReturn(r.u32())
	if n, null := r.count(); !null {
		if r.charge(int64(n) * readValueIDSize); r.err != nil {
			return req
		}
		req.NodesToRead = make([]*ua.ReadValueID, n)
		for i := range n {
			v := &ua.ReadValueID{DataEncoding: &ua.QualifiedName{}}
			v.NodeID = r.nodeID()
			v.AttributeID = ua.AttributeID(r.u32())
			v.IndexRange = r.str()
			v.DataEncoding.NamespaceIndex = r.u16()
			v.DataEncoding.Name = r.str()
			req.NodesToRead[i] = v
			if r.err != nil {
				break
			}
		}
	}
	return req
}

func (r *reader) readResponse() *ua.ReadResponse {
	resp := &ua.ReadResponse{ResponseHeader: &ua.ResponseHeader{}}
	h := resp.ResponseHeader
	h.Timestamp = r.dateTime()
	h.RequestHandle = r.u32()
	h.ServiceResult = ua.StatusCode(r.u32())
	h.ServiceDiagnostics = r.diagnosticInfo()
	if n, null := r.count(); !null {
		if r.charge(int64(n) * stringSize); r.err != nil {
			return resp
		}
		h.StringTable = make([]string, n)
		for i := range n {
			h.StringTable[i] = r.str()
		}
	}
	h.AdditionalHeader = r.extensionObject()
	if n, null := r.count(); !null {
		if r.charge(int64(n) * 8); r.err != nil { // the DataValues: guard charges them
			return resp
		}
		resp.Results = make([]*ua.DataValue, n)
		for i := range n {
			opaque := r.guard((*scanner).dataValue)
			v := new(ua.DataValue)
			r.decode(v)
			r.fill(v, opaque)
			resp.Results[i] = v
			if r.err != nil {
				break
			}
		}
	}
	if n, null := r.count(); !null {
		if r.charge(int64(n) * 8); r.err != nil {
			return resp
		}
		resp.DiagnosticInfos = make([]*ua.DiagnosticInfo, n)
		for i := range n {
			resp.DiagnosticInfos[i] = r.diagnosticInfo()
			if r.err != nil {
				break
			}
		}
	}
	return resp
}

// encodeRead encodes a ReadRequest or ReadResponse after its type id
// (typeID, in the four-byte form ua.NewFourByteExpandedNodeID gives); ok is
// false, and nothing is allocated, for any other value.
func encodeRead(typeID uint16, v any) (out []byte, ok bool, err error) {
	switch v.(type) {
	case *ua.ReadRequest, *ua.ReadResponse:
	default:
		return nil, false, nil
	}
	w := &writer{b: append(make([]byte, 0, 256), 0x01, 0, byte(typeID), byte(typeID>>8))}
	switch m := v.(type) {
	case *ua.ReadRequest:
		w.readRequest(m)
	case *ua.ReadResponse:
		w.readResponse(m)
	}
	return w.b, true, w.err
}

// writer writes the binary encoding the way ua.Encode does: a nil pointer
// to a structure writes nothing, a nil array is null, an empty string is
// null, NaN is the quiet NaN. Types with codecs of their own encode
// themselves, nil or not, as they do under ua.Encode.
type writer struct {
	b   []byte
	err error
}

func (w *writer) u16(v uint16) { w.b = binary.LittleEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }

func (w *writer) f64(v float64) {
	if math.IsNaN(v) {
		w.b = binary.LittleEndian.AppendUint64(w.b, 0xfff8000000000000)
		return
	}
	w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(v))
}

func (w *writer) str(s string) {
	if s == "" {
		w.u32(nullLength)
		return
	}
	w.u32(uint32(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) dateTime(t time.Time) {
	var ts uint64
	if !t.IsZero() {
		ts = uint64(t.UTC().UnixNano()/100 + 116444736000000000)
	}
	w.b = binary.LittleEndian.AppendUint64(w.b, ts)
}

// count writes an array length; -1 for a nil array.
func (w *writer) count(n int, null bool) {
	if null {
		w.u32(nullLength)
		return
	}
	w.u32(uint32(n))
}

func (w *writer) encode(e ua.BinaryEncoder) {
	if w.err != nil {
		return
	}
	d, err := e.Encode()
	if err != nil {
		w.err = err
		return
	}
	w.b = append(w.b, d...)
}

func (w *writer) readRequest(req *ua.ReadRequest) {
	if h := req.RequestHeader; h != nil {
		w.encode(h.AuthenticationToken)
		w.dateTime(h.Timestamp)
		w.u32(h.RequestHandle)
		w.u32(h.ReturnDiagnostics)
		w.str(h.AuditEntryID)
		w.u32(h.TimeoutHint)
		w.encode(h.AdditionalHeader)
	}
	w.f64(req.MaxAge)
	w.u32(uint32(req.TimestampsToReturn))
	w.count(len(req.NodesToRead), req.NodesToRead == nil)
	for _, v := range req.NodesToRead {
		if v == nil {
			continue
		}
		w.encode(v.NodeID)
		w.u32(uint32(v.AttributeID))
		w.str(v.IndexRange)
		if q := v.DataEncoding; q != nil {
			w.u16(q.NamespaceIndex)
			w.str(q.Name)
		}
	}
}

func (w *writer) readResponse(resp *ua.ReadResponse) {
	if h := resp.ResponseHeader; h != nil {
		w.dateTime(h.Timestamp)
		w.u32(h.RequestHandle)
		w.u32(uint32(h.ServiceResult))
		w.encode(h.ServiceDiagnostics)
		w.count(len(h.StringTable), h.StringTable == nil)
		for _, s := range h.StringTable {
			w.str(s)
		}
		w.encode(h.AdditionalHeader)
	}
	w.count(len(resp.Results), resp.Results == nil)
	for _, v := range resp.Results {
		w.encode(v)
	}
	w.count(len(resp.DiagnosticInfos), resp.DiagnosticInfos == nil)
	for _, d := range resp.DiagnosticInfos {
		w.encode(d)
	}
}
