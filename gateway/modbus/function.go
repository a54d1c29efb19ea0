package modbus

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/interlock-ics/interlock/gateway"
)

// Function names of operation.function in the policy input and the audit
// record. They are a contract: policies match on them.
const (
	FunctionReadCoils                  = "read_coils"
	FunctionReadDiscreteInputs         = "read_discrete_inputs"
	FunctionReadHoldingRegisters       = "read_holding_registers"
	FunctionReadInputRegisters         = "read_input_registers"
	FunctionWriteSingleCoil            = "write_single_coil"
	FunctionWriteSingleRegister        = "write_single_register"
	FunctionReadExceptionStatus        = "read_exception_status"
	FunctionDiagnostics                = "diagnostics"
	FunctionGetCommEventCounter        = "get_comm_event_counter"
	FunctionGetCommEventLog            = "get_comm_event_log"
	FunctionWriteMultipleCoils         = "write_multiple_coils"
	FunctionWriteMultipleRegisters     = "write_multiple_registers"
	FunctionReportServerID             = "report_server_id"
	FunctionReadFileRecord             = "read_file_record"
	FunctionWriteFileRecord            = "write_file_record"
	FunctionMaskWriteRegister          = "mask_write_register"
	FunctionReadWriteMultipleRegisters = "read_write_multiple_registers"
	FunctionReadFIFOQueue              = "read_fifo_queue"
	FunctionReadDeviceIdentification   = "read_device_identification"
	FunctionCANopenGeneralReference    = "canopen_general_reference"
	// FunctionUnknown is every code the gateway has no layout for; its data
	// is opaque and only the policy decides whether it passes.
	FunctionUnknown = "unknown"
)

// Operation field names used only by Modbus (the shared ones are
// gateway.KeyCode, KeyAddress, KeyQuantity and KeyValues).
const (
	KeySubFunction      = "sub_function"
	KeySubFunctionName  = "sub_function_name"
	KeyRecords          = "records"
	KeyAndMask          = "and_mask"
	KeyOrMask           = "or_mask"
	KeyReadAddress      = "read_address"
	KeyReadQuantity     = "read_quantity"
	KeyMEIType          = "mei_type"
	KeyReadDeviceIDCode = "read_device_id_code"
	KeyObjectID         = "object_id"
	KeyData             = "data"

	// Keys of one element of KeyRecords.
	KeyRecordFile   = "file"
	KeyRecordNumber = "record"
	KeyRecordLength = "length"
	KeyRecordValues = "values"
)

// Reasons of a RequestError (stable codes, usable as metric labels).
const (
	ReasonBadLength          = "bad_length"
	ReasonQuantityOutOfRange = "quantity_out_of_range"
	ReasonByteCountMismatch  = "byte_count_mismatch"
	ReasonBadValue           = "bad_value"
	ReasonAddressOverflow    = "address_overflow"
	ReasonExceptionInRequest = "exception_in_request"
	ReasonBadSubrequest      = "bad_subrequest"
	ReasonNoFunction         = "no_function" // function code 0, which no Modbus function has
)

// Quantity limits of the specification; each keeps the PDU within MaxPDU.
const (
	MaxReadBits           = 2000 // FC 1, 2
	MaxReadRegisters      = 125  // FC 3, 4 and the read half of FC 23
	MaxWriteBits          = 1968 // FC 15
	MaxWriteRegisters     = 123  // FC 16
	MaxReadWriteRegisters = 121  // write half of FC 23
)

// File record limits (§6.14, §6.15): records 0..9999 per file.
const (
	fileRefType       = 6
	maxRecordNumber   = 0x270F
	recordsPerFile    = 10000
	minReadFileCount  = 0x07
	maxReadFileCount  = 0xF5
	minWriteFileCount = 0x09
	maxWriteFileCount = 0xFB
	fileSubReqLen     = 7 // reference type, file, record, length
)

const (
	coilOn  = 0xFF00
	coilOff = 0x0000
)

// RequestError is a request the gateway refuses before any policy decision
// because it breaks the protocol. Exception is what the client is answered.
type RequestError struct {
	Exception byte
	Reason    string // stable code, one of the Reason constants
	Detail    string // for the audit record, never sent to the client
}

func (e *RequestError) Error() string { return "modbus: " + e.Reason + ": " + e.Detail }

func refuse(exception byte, reason, format string, args ...any) *RequestError {
	return &RequestError{Exception: exception, Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// DecodeRequest checks a request PDU (function code + data) against its
// function's layout and returns the operation for policy and audit, and a
// new PDU built from the checked fields: the only bytes that may go upstream,
// so the gateway and the PLC cannot read the request differently.
//
// On error the operation still names the function and carries its code, for
// the audit record of the refusal; the PDU is nil.
func DecodeRequest(pdu []byte) (gateway.Operation, []byte, *RequestError) {
	if len(pdu) == 0 {
		return gateway.Operation{Function: FunctionUnknown, Access: gateway.AccessProgram}, nil,
			refuse(ExIllegalDataValue, ReasonBadLength, "empty PDU")
	}
	fc, data := pdu[0], pdu[1:]
	name, access, decode := lookup(fc, data)
	op := gateway.Operation{Function: name, Access: access, Fields: make([]gateway.Field, 0, 4)}
	op.Int(gateway.KeyCode, int64(fc))
	var rerr *RequestError
	var out []byte
	switch {
	case len(pdu) > MaxPDU:
		rerr = refuse(ExIllegalDataValue, ReasonBadLength, "PDU of %d bytes exceeds %d", len(pdu), MaxPDU)
	case fc == 0:
		rerr = refuse(ExIllegalFunction, ReasonNoFunction, "function code 0 is no Modbus function (1..127)")
	case fc >= ExceptionFlag:
		rerr = refuse(ExIllegalFunction, ReasonExceptionInRequest,
			"function code 0x%02X is an exception response, not a request", fc)
	default:
		out, rerr = decode(&op, fc, data)
	}
	if rerr != nil {
		op.Fields = op.Fields[:1]
		return op, nil, rerr
	}
	return op, out, nil
}

type decodeFunc func(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError)

// lookup names the function before decoding, so that a refusal is audited
// under the function the client meant.
func lookup(fc byte, data []byte) (string, gateway.Access, decodeFunc) {
	switch fc {
	case FuncReadCoils:
		return FunctionReadCoils, gateway.AccessRead, decodeReadBits
	case FuncReadDiscreteInputs:
		return FunctionReadDiscreteInputs, gateway.AccessRead, decodeReadBits
	case FuncReadHoldingRegisters:
		return FunctionReadHoldingRegisters, gateway.AccessRead, decodeReadRegisters
	case FuncReadInputRegisters:
		return FunctionReadInputRegisters, gateway.AccessRead, decodeReadRegisters
	case FuncWriteSingleCoil:
		return FunctionWriteSingleCoil, gateway.AccessWrite, decodeWriteSingleCoil
	case FuncWriteSingleRegister:
		return FunctionWriteSingleRegister, gateway.AccessWrite, decodeWriteSingleRegister
	case FuncReadExceptionStatus:
		return FunctionReadExceptionStatus, gateway.AccessDiagnostic, decodeNoData
	case FuncDiagnostics:
		return FunctionDiagnostics, gateway.AccessDiagnostic, decodeDiagnostics
	case FuncGetCommEventCounter:
		return FunctionGetCommEventCounter, gateway.AccessDiagnostic, decodeNoData
	case FuncGetCommEventLog:
		return FunctionGetCommEventLog, gateway.AccessDiagnostic, decodeNoData
	case FuncWriteMultipleCoils:
		return FunctionWriteMultipleCoils, gateway.AccessWrite, decodeWriteMultipleCoils
	case FuncWriteMultipleRegisters:
		return FunctionWriteMultipleRegisters, gateway.AccessWrite, decodeWriteMultipleRegisters
	case FuncReportServerID:
		return FunctionReportServerID, gateway.AccessDiagnostic, decodeNoData
	case FuncReadFileRecord:
		return FunctionReadFileRecord, gateway.AccessRead, decodeReadFileRecord
	case FuncWriteFileRecord:
		return FunctionWriteFileRecord, gateway.AccessWrite, decodeWriteFileRecord
	case FuncMaskWriteRegister:
		return FunctionMaskWriteRegister, gateway.AccessWrite, decodeMaskWriteRegister
	case FuncReadWriteMultipleRegisters:
		return FunctionReadWriteMultipleRegisters, gateway.AccessWrite, decodeReadWriteMultipleRegisters
	case FuncReadFIFOQueue:
		return FunctionReadFIFOQueue, gateway.AccessRead, decodeReadFIFOQueue
	case FuncEncapsulatedInterface:
		if len(data) == 0 {
			return FunctionUnknown, gateway.AccessProgram, decodeMissingMEI
		}
		switch data[0] {
		case MEIReadDeviceIdentification:
			return FunctionReadDeviceIdentification, gateway.AccessDiagnostic, decodeReadDeviceIdentification
		case MEICANopenGeneralReference:
			return FunctionCANopenGeneralReference, gateway.AccessProgram, decodeCANopen
		}
	}
	return FunctionUnknown, gateway.AccessProgram, decodeUnknown
}

// newPDU starts a re-encoded PDU with room for all n bytes.
func newPDU(fc byte, n int) []byte {
	b := make([]byte, 1, n)
	b[0] = fc
	return b
}

func u16(b []byte) int64 { return int64(binary.BigEndian.Uint16(b)) }

func put16(b []byte, v int64) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }

func wantLen(fc byte, data []byte, n int) *RequestError {
	if len(data) != n {
		return refuse(ExIllegalDataValue, ReasonBadLength,
			"function 0x%02X has %d data bytes, want %d", fc, len(data), n)
	}
	return nil
}

func wantAtLeast(fc byte, data []byte, n int) *RequestError {
	if len(data) < n {
		return refuse(ExIllegalDataValue, ReasonBadLength,
			"function 0x%02X has %d data bytes, want at least %d", fc, len(data), n)
	}
	return nil
}

func checkQuantity(what string, q, limit int64) *RequestError {
	if q < 1 || q > limit {
		return refuse(ExIllegalDataValue, ReasonQuantityOutOfRange, "%s %d outside 1..%d", what, q, limit)
	}
	return nil
}

func checkSpan(what string, addr, q int64) *RequestError {
	if addr+q > 0x10000 {
		return refuse(ExIllegalDataAddress, ReasonAddressOverflow,
			"%s %d + quantity %d runs past 65535", what, addr, q)
	}
	return nil
}

func decodeNoData(_ *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 0); err != nil {
		return nil, err
	}
	return []byte{fc}, nil
}

func decodeAddressQuantity(op *gateway.Operation, fc byte, data []byte, limit int64) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 4); err != nil {
		return nil, err
	}
	addr, q := u16(data), u16(data[2:])
	if err := checkQuantity("quantity", q, limit); err != nil {
		return nil, err
	}
	if err := checkSpan("address", addr, q); err != nil {
		return nil, err
	}
	op.Int(gateway.KeyAddress, addr)
	op.Int(gateway.KeyQuantity, q)
	return put16(put16(newPDU(fc, 5), addr), q), nil
}

func decodeReadBits(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	return decodeAddressQuantity(op, fc, data, MaxReadBits)
}

func decodeReadRegisters(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	return decodeAddressQuantity(op, fc, data, MaxReadRegisters)
}

func decodeWriteSingleCoil(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 4); err != nil {
		return nil, err
	}
	addr, v := u16(data), u16(data[2:])
	var bit int64
	switch v {
	case coilOff:
	case coilOn:
		bit = 1
	default:
		return nil, refuse(ExIllegalDataValue, ReasonBadValue, "coil value 0x%04X, want 0x0000 or 0xFF00", v)
	}
	op.Int(gateway.KeyAddress, addr)
	op.Ints(gateway.KeyValues, []int64{bit})
	return put16(put16(newPDU(fc, 5), addr), bit*coilOn), nil
}

func decodeWriteSingleRegister(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 4); err != nil {
		return nil, err
	}
	addr, v := u16(data), u16(data[2:])
	op.Int(gateway.KeyAddress, addr)
	op.Ints(gateway.KeyValues, []int64{v})
	return put16(put16(newPDU(fc, 5), addr), v), nil
}

// Diagnostics sub-functions (§6.8.1). Codes absent here are reserved.
var diagnosticNames = map[int64]string{
	0:  "return_query_data",
	1:  "restart_communications",
	2:  "return_diagnostic_register",
	3:  "change_ascii_delimiter",
	4:  "force_listen_only",
	10: "clear_counters",
	11: "return_bus_message_count",
	12: "return_bus_communication_error_count",
	13: "return_bus_exception_error_count",
	14: "return_server_message_count",
	15: "return_server_no_response_count",
	16: "return_server_nak_count",
	17: "return_server_busy_count",
	18: "return_bus_character_overrun_count",
	20: "clear_overrun_counter",
}

func decodeDiagnostics(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantAtLeast(fc, data, 2); err != nil {
		return nil, err
	}
	if len(data)%2 != 0 {
		return nil, refuse(ExIllegalDataValue, ReasonBadLength,
			"diagnostics data of %d bytes is not whole words", len(data))
	}
	sub := u16(data)
	name, known := diagnosticNames[sub]
	if !known {
		name = FunctionUnknown
	}
	ws := words(data[2:])
	// Every defined sub-function except the loopback takes exactly one word
	// with a fixed meaning; anything else would reach the device unexplained.
	if known && sub != 0 {
		if len(ws) != 1 {
			return nil, refuse(ExIllegalDataValue, ReasonBadLength,
				"diagnostics %s has %d data words, want 1", name, len(ws))
		}
		w := ws[0]
		switch {
		case sub == 1 && w != 0x0000 && w != 0xFF00:
			return nil, refuse(ExIllegalDataValue, ReasonBadValue,
				"restart_communications data 0x%04X, want 0x0000 or 0xFF00", w)
		case sub == 3 && w&0xFF != 0:
			return nil, refuse(ExIllegalDataValue, ReasonBadValue,
				"change_ascii_delimiter data 0x%04X, want the character in the high byte and 0x00", w)
		case sub != 1 && sub != 3 && w != 0:
			return nil, refuse(ExIllegalDataValue, ReasonBadValue, "diagnostics %s data 0x%04X, want 0x0000", name, w)
		}
	}
	op.Int(KeySubFunction, sub)
	op.String(KeySubFunctionName, name)
	op.Ints(gateway.KeyValues, ws)
	out := put16(newPDU(fc, 3+2*len(ws)), sub)
	return appendWords(out, ws), nil
}

// decodeWriteHeader reads address, quantity and byte count of FC 15 and 16
// and checks the byte count against the quantity and the bytes present
// (CVE-2019-14462, CVE-2019-14463).
func decodeWriteHeader(fc byte, data []byte, limit int64, bytesFor func(q int64) int64) (addr, q int64, payload []byte, err *RequestError) {
	if err := wantAtLeast(fc, data, 5); err != nil {
		return 0, 0, nil, err
	}
	addr, q, bc := u16(data), u16(data[2:]), int64(data[4])
	if err := checkQuantity("quantity", q, limit); err != nil {
		return 0, 0, nil, err
	}
	if want := bytesFor(q); bc != want {
		return 0, 0, nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d disagrees with quantity %d (want %d)", bc, q, want)
	}
	payload = data[5:]
	if int64(len(payload)) != bc {
		return 0, 0, nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d disagrees with the %d bytes present", bc, len(payload))
	}
	if err := checkSpan("address", addr, q); err != nil {
		return 0, 0, nil, err
	}
	return addr, q, payload, nil
}

func bitBytes(q int64) int64 { return (q + 7) / 8 }

func wordBytes(q int64) int64 { return 2 * q }

func decodeWriteMultipleCoils(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	addr, q, payload, err := decodeWriteHeader(fc, data, MaxWriteBits, bitBytes)
	if err != nil {
		return nil, err
	}
	bits := make([]int64, q)
	for i := range bits {
		bits[i] = int64(payload[i/8]>>(i%8)) & 1
	}
	op.Int(gateway.KeyAddress, addr)
	op.Int(gateway.KeyQuantity, q)
	op.Ints(gateway.KeyValues, bits)
	// Rebuilt from the q bits only: padding bits of the last byte go out as zero.
	out := make([]byte, 6+bitBytes(q))
	out[0] = fc
	binary.BigEndian.PutUint16(out[1:], uint16(addr))
	binary.BigEndian.PutUint16(out[3:], uint16(q))
	out[5] = byte(bitBytes(q))
	for i, b := range bits {
		out[6+i/8] |= byte(b) << (i % 8)
	}
	return out, nil
}

func decodeWriteMultipleRegisters(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	addr, q, payload, err := decodeWriteHeader(fc, data, MaxWriteRegisters, wordBytes)
	if err != nil {
		return nil, err
	}
	values := words(payload)
	op.Int(gateway.KeyAddress, addr)
	op.Int(gateway.KeyQuantity, q)
	op.Ints(gateway.KeyValues, values)
	out := put16(put16(newPDU(fc, 6+2*int(q)), addr), q)
	out = append(out, byte(2*q))
	return appendWords(out, values), nil
}

func words(b []byte) []int64 {
	w := make([]int64, len(b)/2)
	for i := range w {
		w[i] = u16(b[2*i:])
	}
	return w
}

func appendWords(b []byte, w []int64) []byte {
	for _, v := range w {
		b = put16(b, v)
	}
	return b
}

func checkFileSubrequest(i int, ref byte, file, record, length int64) *RequestError {
	switch {
	case ref != fileRefType:
		return refuse(ExIllegalDataAddress, ReasonBadSubrequest, "sub-request %d reference type %d, want 6", i, ref)
	case file < 1:
		return refuse(ExIllegalDataAddress, ReasonBadSubrequest, "sub-request %d file number 0", i)
	case record > maxRecordNumber:
		return refuse(ExIllegalDataAddress, ReasonBadSubrequest,
			"sub-request %d record number %d outside 0..%d", i, record, maxRecordNumber)
	case length < 1:
		return refuse(ExIllegalDataAddress, ReasonBadSubrequest, "sub-request %d record length 0", i)
	case record+length > recordsPerFile:
		return refuse(ExIllegalDataAddress, ReasonBadSubrequest,
			"sub-request %d record %d + length %d runs past record %d", i, record, length, recordsPerFile-1)
	}
	return nil
}

func checkFileByteCount(data []byte, lo, hi int) (int, *RequestError) {
	if len(data) == 0 {
		return 0, refuse(ExIllegalDataValue, ReasonBadLength, "file record request without byte count")
	}
	bc := int(data[0])
	if bc < lo || bc > hi {
		return 0, refuse(ExIllegalDataValue, ReasonByteCountMismatch, "byte count %d outside %d..%d", bc, lo, hi)
	}
	if len(data)-1 != bc {
		return 0, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d disagrees with the %d bytes present", bc, len(data)-1)
	}
	return bc, nil
}

func decodeReadFileRecord(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	bc, err := checkFileByteCount(data, minReadFileCount, maxReadFileCount)
	if err != nil {
		return nil, err
	}
	if bc%fileSubReqLen != 0 {
		return nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d is not a whole number of %d-byte sub-requests", bc, fileSubReqLen)
	}
	n := bc / fileSubReqLen
	records := make([]any, 0, n)
	out := make([]byte, 2, 2+bc)
	out[0], out[1] = fc, byte(bc)
	respLen := 2 // function code and response data length
	for i := range n {
		s := data[1+i*fileSubReqLen:]
		file, record, length := u16(s[1:]), u16(s[3:]), u16(s[5:])
		if err := checkFileSubrequest(i, s[0], file, record, length); err != nil {
			return nil, err
		}
		respLen += 2 + 2*int(length)
		records = append(records, map[string]any{KeyRecordFile: file, KeyRecordNumber: record, KeyRecordLength: length})
		out = put16(put16(put16(append(out, fileRefType), file), record), length)
	}
	// The answer must fit one PDU too, or the device has to refuse it.
	if respLen > MaxPDU {
		return nil, refuse(ExIllegalDataAddress, ReasonBadSubrequest,
			"records asked for need a %d-byte response, more than %d", respLen, MaxPDU)
	}
	op.Any(KeyRecords, records)
	return out, nil
}

func decodeWriteFileRecord(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	bc, err := checkFileByteCount(data, minWriteFileCount, maxWriteFileCount)
	if err != nil {
		return nil, err
	}
	var records []any
	out := make([]byte, 2, 2+bc)
	out[0], out[1] = fc, byte(bc)
	rest := data[1:]
	for i := 0; len(rest) > 0; i++ {
		if len(rest) < fileSubReqLen {
			return nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
				"sub-request %d truncated: %d bytes left, header needs %d", i, len(rest), fileSubReqLen)
		}
		file, record, length := u16(rest[1:]), u16(rest[3:]), u16(rest[5:])
		if err := checkFileSubrequest(i, rest[0], file, record, length); err != nil {
			return nil, err
		}
		rest = rest[fileSubReqLen:]
		if int64(len(rest)) < 2*length {
			return nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
				"sub-request %d record length %d needs %d bytes, %d left", i, length, 2*length, len(rest))
		}
		w := words(rest[:2*length])
		rest = rest[2*length:]
		values := make([]any, len(w))
		for j, v := range w {
			values[j] = v
		}
		records = append(records, map[string]any{
			KeyRecordFile: file, KeyRecordNumber: record, KeyRecordLength: length, KeyRecordValues: values,
		})
		out = put16(put16(put16(append(out, fileRefType), file), record), length)
		out = appendWords(out, w)
	}
	op.Any(KeyRecords, records)
	return out, nil
}

func decodeMaskWriteRegister(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 6); err != nil {
		return nil, err
	}
	addr, and, or := u16(data), u16(data[2:]), u16(data[4:])
	op.Int(gateway.KeyAddress, addr)
	op.Int(KeyAndMask, and)
	op.Int(KeyOrMask, or)
	return put16(put16(put16(newPDU(fc, 7), addr), and), or), nil
}

// decodeReadWriteMultipleRegisters reports the write half under the shared
// names so that policies on address/values cover FC 23 like FC 16.
func decodeReadWriteMultipleRegisters(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	// All fixed fields present before any is trusted (libmodbus #614).
	if err := wantAtLeast(fc, data, 9); err != nil {
		return nil, err
	}
	ra, rq, wa, wq, bc := u16(data), u16(data[2:]), u16(data[4:]), u16(data[6:]), int64(data[8])
	if err := checkQuantity("read quantity", rq, MaxReadRegisters); err != nil {
		return nil, err
	}
	if err := checkQuantity("write quantity", wq, MaxReadWriteRegisters); err != nil {
		return nil, err
	}
	if bc != 2*wq {
		return nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d disagrees with write quantity %d (want %d)", bc, wq, 2*wq)
	}
	payload := data[9:]
	if int64(len(payload)) != bc {
		return nil, refuse(ExIllegalDataValue, ReasonByteCountMismatch,
			"byte count %d disagrees with the %d bytes present", bc, len(payload))
	}
	if err := checkSpan("read address", ra, rq); err != nil {
		return nil, err
	}
	if err := checkSpan("write address", wa, wq); err != nil {
		return nil, err
	}
	values := words(payload)
	op.Int(gateway.KeyAddress, wa)
	op.Int(gateway.KeyQuantity, wq)
	op.Ints(gateway.KeyValues, values)
	op.Int(KeyReadAddress, ra)
	op.Int(KeyReadQuantity, rq)
	out := put16(put16(put16(put16(newPDU(fc, 10+int(bc)), ra), rq), wa), wq)
	out = append(out, byte(bc))
	return appendWords(out, values), nil
}

func decodeReadFIFOQueue(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 2); err != nil {
		return nil, err
	}
	addr := u16(data)
	op.Int(gateway.KeyAddress, addr)
	return put16(newPDU(fc, 3), addr), nil
}

func decodeMissingMEI(_ *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	return nil, wantAtLeast(fc, data, 1)
}

func decodeReadDeviceIdentification(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	if err := wantLen(fc, data, 3); err != nil {
		return nil, err
	}
	code, obj := data[1], data[2]
	if code < 1 || code > 4 {
		return nil, refuse(ExIllegalDataValue, ReasonBadValue, "read device id code %d outside 1..4", code)
	}
	op.Int(KeyMEIType, MEIReadDeviceIdentification)
	op.Int(KeyReadDeviceIDCode, int64(code))
	op.Int(KeyObjectID, int64(obj))
	return []byte{fc, MEIReadDeviceIdentification, code, obj}, nil
}

func decodeCANopen(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	op.Int(KeyMEIType, MEICANopenGeneralReference)
	op.String(KeyData, hex.EncodeToString(data[1:]))
	return append(newPDU(fc, 1+len(data)), data...), nil
}

func decodeUnknown(op *gateway.Operation, fc byte, data []byte) ([]byte, *RequestError) {
	op.String(KeyData, hex.EncodeToString(data))
	return append(newPDU(fc, 1+len(data)), data...), nil
}

// ErrBadResponse is wrapped by every CheckResponse error.
var ErrBadResponse = errors.New("modbus: malformed response")

func badResponse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadResponse, fmt.Sprintf(format, args...))
}

// CheckResponse checks that resp, the upstream's answer PDU, is either an
// exception to req or has the layout req asks for, so a malformed or
// mismatched answer is refused instead of passed on. req is a PDU returned by
// DecodeRequest.
func CheckResponse(req, resp []byte) error {
	if len(req) == 0 {
		return badResponse("no request")
	}
	if len(resp) == 0 {
		return badResponse("empty response")
	}
	if len(resp) > MaxPDU {
		return badResponse("response of %d bytes exceeds %d", len(resp), MaxPDU)
	}
	fc := req[0]
	if resp[0] == fc|ExceptionFlag && fc < ExceptionFlag {
		if len(resp) != 2 {
			return badResponse("exception response of %d bytes, want 2", len(resp))
		}
		if resp[1] == 0 {
			return badResponse("exception code 0")
		}
		return nil
	}
	if resp[0] != fc {
		return badResponse("function code 0x%02X answers a request for 0x%02X", resp[0], fc)
	}
	switch fc {
	case FuncReadCoils, FuncReadDiscreteInputs:
		if len(req) != 5 {
			return badResponse("request of %d bytes", len(req))
		}
		return checkCounted(resp, bitBytes(u16(req[3:])))
	case FuncReadHoldingRegisters, FuncReadInputRegisters:
		if len(req) != 5 {
			return badResponse("request of %d bytes", len(req))
		}
		return checkCounted(resp, 2*u16(req[3:]))
	case FuncReadWriteMultipleRegisters:
		if len(req) < 5 {
			return badResponse("request of %d bytes", len(req))
		}
		return checkCounted(resp, 2*u16(req[3:]))
	case FuncWriteSingleCoil, FuncWriteSingleRegister, FuncMaskWriteRegister, FuncWriteFileRecord:
		if !bytes.Equal(resp, req) {
			return badResponse("function 0x%02X response does not echo the request", fc)
		}
	case FuncWriteMultipleCoils, FuncWriteMultipleRegisters:
		if len(req) < 5 || len(resp) != 5 || !bytes.Equal(resp[1:5], req[1:5]) {
			return badResponse("function 0x%02X response does not echo address and quantity", fc)
		}
	case FuncReadExceptionStatus:
		return wantRespLen(resp, 2)
	case FuncGetCommEventCounter:
		return wantRespLen(resp, 5)
	case FuncGetCommEventLog:
		// byte count, status, event count, message count, then 0..64 events
		if len(resp) < 2 || int(resp[1]) != len(resp)-2 || resp[1] < 6 || resp[1] > 6+64 {
			return badResponse("comm event log response of %d bytes with byte count %d", len(resp), byteAt(resp, 1))
		}
	case FuncReportServerID:
		if len(resp) < 3 || int(resp[1]) != len(resp)-2 {
			return badResponse("server id response of %d bytes with byte count %d", len(resp), byteAt(resp, 1))
		}
	case FuncDiagnostics:
		return checkDiagnosticsResponse(req, resp)
	case FuncReadFileRecord:
		return checkReadFileRecordResponse(req, resp)
	case FuncReadFIFOQueue:
		if len(resp) < 5 {
			return badResponse("FIFO response of %d bytes", len(resp))
		}
		bc, n := u16(resp[1:]), u16(resp[3:])
		if bc != int64(len(resp)-3) || n > 31 || bc != 2+2*n {
			return badResponse("FIFO response of %d bytes with byte count %d and FIFO count %d", len(resp), bc, n)
		}
	case FuncEncapsulatedInterface:
		if len(req) < 2 || len(resp) < 2 || resp[1] != req[1] {
			return badResponse("MEI response does not echo the MEI type")
		}
		if req[1] == MEIReadDeviceIdentification {
			return checkDeviceIdentificationResponse(req, resp)
		}
	}
	return nil
}

func byteAt(b []byte, i int) int {
	if i < len(b) {
		return int(b[i])
	}
	return -1
}

func wantRespLen(resp []byte, n int) error {
	if len(resp) != n {
		return badResponse("function 0x%02X response of %d bytes, want %d", resp[0], len(resp), n)
	}
	return nil
}

// checkCounted checks a response of function code, byte count and that many
// bytes, where the request fixes the count.
func checkCounted(resp []byte, want int64) error {
	if len(resp) < 2 || int64(resp[1]) != want {
		return badResponse("function 0x%02X byte count %d, want %d", resp[0], byteAt(resp, 1), want)
	}
	if int64(len(resp)-2) != want {
		return badResponse("function 0x%02X byte count %d disagrees with the %d bytes present", resp[0], want, len(resp)-2)
	}
	return nil
}

func checkDiagnosticsResponse(req, resp []byte) error {
	if len(req) < 3 || len(resp) < 3 || !bytes.Equal(resp[1:3], req[1:3]) {
		return badResponse("diagnostics response does not echo the sub-function")
	}
	if (len(resp)-3)%2 != 0 {
		return badResponse("diagnostics response data of %d bytes is not whole words", len(resp)-3)
	}
	if u16(req[1:]) == 0 && !bytes.Equal(resp, req) {
		return badResponse("return_query_data response does not loop back the request")
	}
	return nil
}

// checkReadFileRecordResponse checks that each sub-response carries the
// records its sub-request asked for.
func checkReadFileRecordResponse(req, resp []byte) error {
	if len(resp) < 2 || int(resp[1]) != len(resp)-2 {
		return badResponse("file record response of %d bytes with data length %d", len(resp), byteAt(resp, 1))
	}
	if len(req) < 2 || (len(req)-2)%fileSubReqLen != 0 {
		return badResponse("file record request of %d bytes", len(req))
	}
	subs := req[2:]
	rest := resp[2:]
	for i := 0; len(subs) > 0; i++ {
		want := 1 + 2*int(u16(subs[5:]))
		subs = subs[fileSubReqLen:]
		if len(rest) < 2 {
			return badResponse("file record sub-response %d missing", i)
		}
		if int(rest[0]) != want || rest[1] != fileRefType {
			return badResponse("file record sub-response %d length %d reference %d, want %d and 6", i, rest[0], rest[1], want)
		}
		if len(rest)-1 < want {
			return badResponse("file record sub-response %d truncated", i)
		}
		rest = rest[1+want:]
	}
	if len(rest) != 0 {
		return badResponse("file record response has %d bytes after the last sub-response", len(rest))
	}
	return nil
}

// checkDeviceIdentificationResponse walks the object list (§6.21).
func checkDeviceIdentificationResponse(req, resp []byte) error {
	if len(resp) < 7 {
		return badResponse("device identification response of %d bytes", len(resp))
	}
	if len(req) < 3 || resp[2] != req[2] {
		return badResponse("device identification response for id code %d, asked %d", resp[2], byteAt(req, 2))
	}
	if resp[4] != 0x00 && resp[4] != 0xFF {
		return badResponse("device identification more-follows 0x%02X", resp[4])
	}
	rest := resp[7:]
	for i := range int(resp[6]) {
		if len(rest) < 2 || len(rest)-2 < int(rest[1]) {
			return badResponse("device identification object %d truncated", i)
		}
		rest = rest[2+int(rest[1]):]
	}
	if len(rest) != 0 {
		return badResponse("device identification response has %d bytes after the last object", len(rest))
	}
	return nil
}
