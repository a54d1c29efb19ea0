package modbus

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

// h parses hex with spaces, so test PDUs read like the spec's examples.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func fInt(k string, v int64) gateway.Field {
	return gateway.Field{Key: k, Kind: gateway.KindInt, Int: v}
}

func fStr(k, v string) gateway.Field {
	return gateway.Field{Key: k, Kind: gateway.KindString, Str: v}
}

func fInts(k string, v ...int64) gateway.Field {
	if v == nil {
		v = []int64{}
	}
	return gateway.Field{Key: k, Kind: gateway.KindInts, Ints: v}
}

func fAny(k string, v any) gateway.Field {
	return gateway.Field{Key: k, Kind: gateway.KindAny, Any: v}
}

func code(c int64) gateway.Field { return fInt(gateway.KeyCode, c) }
func addr(a int64) gateway.Field { return fInt(gateway.KeyAddress, a) }
func qty(q int64) gateway.Field  { return fInt(gateway.KeyQuantity, q) }
func vals(v ...int64) gateway.Field {
	return fInts(gateway.KeyValues, v...)
}

func seq(n int, f func(i int) int64) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = f(i)
	}
	return v
}

func repeat(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

type decodeCase struct {
	name     string
	pdu      []byte
	function string
	access   gateway.Access
	fields   []gateway.Field // success: every field, code first
	out      []byte          // success: re-encoded PDU; nil means equal to pdu
	reason   string          // failure: RequestError.Reason
	exc      byte            // failure: RequestError.Exception
}

func ok(name, pdu, function string, access gateway.Access, fields ...gateway.Field) decodeCase {
	return decodeCase{name: name, pdu: h(pdu), function: function, access: access, fields: fields}
}

func bad(name, pdu, function, reason string, exc byte) decodeCase {
	return decodeCase{name: name, pdu: h(pdu), function: function, reason: reason, exc: exc}
}

func validCases() []decodeCase {
	rd, wr, dg, pg := gateway.AccessRead, gateway.AccessWrite, gateway.AccessDiagnostic, gateway.AccessProgram
	diag := func(sub int64, name string, v ...int64) []gateway.Field {
		return []gateway.Field{code(8), fInt(KeySubFunction, sub), fStr(KeySubFunctionName, name), vals(v...)}
	}
	cases := []decodeCase{
		ok("read coils one", "01 0000 0001", FunctionReadCoils, rd, code(1), addr(0), qty(1)),
		ok("read coils spec example", "01 0013 0013", FunctionReadCoils, rd, code(1), addr(19), qty(19)),
		ok("read coils 2000", "01 0000 07D0", FunctionReadCoils, rd, code(1), addr(0), qty(2000)),
		ok("read coils last address", "01 FFFF 0001", FunctionReadCoils, rd, code(1), addr(65535), qty(1)),
		ok("read coils span to end", "01 F830 07D0", FunctionReadCoils, rd, code(1), addr(0xF830), qty(2000)),
		ok("read discrete inputs", "02 00C4 0016", FunctionReadDiscreteInputs, rd, code(2), addr(196), qty(22)),
		ok("read holding registers", "03 006B 0003", FunctionReadHoldingRegisters, rd, code(3), addr(107), qty(3)),
		ok("read holding registers 125", "03 0000 007D", FunctionReadHoldingRegisters, rd, code(3), addr(0), qty(125)),
		ok("read holding registers span to end", "03 FF83 007D", FunctionReadHoldingRegisters, rd, code(3), addr(0xFF83), qty(125)),
		ok("read input registers", "04 0008 0001", FunctionReadInputRegisters, rd, code(4), addr(8), qty(1)),
		ok("write single coil on", "05 00AC FF00", FunctionWriteSingleCoil, wr, code(5), addr(172), vals(1)),
		ok("write single coil off", "05 00AC 0000", FunctionWriteSingleCoil, wr, code(5), addr(172), vals(0)),
		ok("write single register", "06 0001 0003", FunctionWriteSingleRegister, wr, code(6), addr(1), vals(3)),
		ok("write single register max", "06 FFFF FFFF", FunctionWriteSingleRegister, wr, code(6), addr(65535), vals(65535)),
		ok("read exception status", "07", FunctionReadExceptionStatus, dg, code(7)),
		ok("diagnostics return query data", "08 0000 A537", FunctionDiagnostics, dg, diag(0, "return_query_data", 0xA537)...),
		ok("diagnostics return query data no words", "08 0000", FunctionDiagnostics, dg, diag(0, "return_query_data")...),
		ok("diagnostics return query data words", "08 0000 0102 0304 0506", FunctionDiagnostics, dg, diag(0, "return_query_data", 0x0102, 0x0304, 0x0506)...),
		ok("diagnostics restart", "08 0001 0000", FunctionDiagnostics, dg, diag(1, "restart_communications", 0)...),
		ok("diagnostics restart clear log", "08 0001 FF00", FunctionDiagnostics, dg, diag(1, "restart_communications", 0xFF00)...),
		ok("diagnostics register", "08 0002 0000", FunctionDiagnostics, dg, diag(2, "return_diagnostic_register", 0)...),
		ok("diagnostics ascii delimiter", "08 0003 3A00", FunctionDiagnostics, dg, diag(3, "change_ascii_delimiter", 0x3A00)...),
		ok("diagnostics listen only", "08 0004 0000", FunctionDiagnostics, dg, diag(4, "force_listen_only", 0)...),
		ok("diagnostics clear counters", "08 000A 0000", FunctionDiagnostics, dg, diag(10, "clear_counters", 0)...),
		ok("diagnostics bus message count", "08 000B 0000", FunctionDiagnostics, dg, diag(11, "return_bus_message_count", 0)...),
		ok("diagnostics busy count", "08 0011 0000", FunctionDiagnostics, dg, diag(17, "return_server_busy_count", 0)...),
		ok("diagnostics clear overrun", "08 0014 0000", FunctionDiagnostics, dg, diag(20, "clear_overrun_counter", 0)...),
		ok("diagnostics reserved 5", "08 0005 1234", FunctionDiagnostics, dg, diag(5, "unknown", 0x1234)...),
		ok("diagnostics reserved 19", "08 0013", FunctionDiagnostics, dg, diag(19, "unknown")...),
		ok("diagnostics unknown 21", "08 0015 1234 5678", FunctionDiagnostics, dg, diag(21, "unknown", 0x1234, 0x5678)...),
		ok("get comm event counter", "0B", FunctionGetCommEventCounter, dg, code(11)),
		ok("get comm event log", "0C", FunctionGetCommEventLog, dg, code(12)),
		ok("report server id", "11", FunctionReportServerID, dg, code(17)),
		ok("write multiple coils spec example", "0F 0013 000A 02 CD01", FunctionWriteMultipleCoils, wr,
			code(15), addr(19), qty(10), vals(1, 0, 1, 1, 0, 0, 1, 1, 1, 0)),
		ok("write multiple coils one", "0F 0000 0001 01 01", FunctionWriteMultipleCoils, wr, code(15), addr(0), qty(1), vals(1)),
		{
			name: "write multiple coils padding bits zeroed", pdu: h("0F 0013 000A 02 CDFF"),
			function: FunctionWriteMultipleCoils, access: wr,
			fields: []gateway.Field{code(15), addr(19), qty(10), vals(1, 0, 1, 1, 0, 0, 1, 1, 1, 1)},
			out:    h("0F 0013 000A 02 CD03"),
		},
		{
			name: "write multiple coils 1968", pdu: cat(h("0F 0000 07B0 F6"), repeat(0xA5, 246)),
			function: FunctionWriteMultipleCoils, access: wr,
			fields: []gateway.Field{code(15), addr(0), qty(1968), vals(seq(1968, func(i int) int64 { return int64(0xA5>>(i%8)) & 1 })...)},
		},
		ok("write multiple registers spec example", "10 0001 0002 04 000A 0102", FunctionWriteMultipleRegisters, wr,
			code(16), addr(1), qty(2), vals(10, 258)),
		{
			name: "write multiple registers 123", pdu: cat(h("10 FF85 007B F6"), repeat(0x12, 246)),
			function: FunctionWriteMultipleRegisters, access: wr,
			fields: []gateway.Field{code(16), addr(0xFF85), qty(123), vals(seq(123, func(int) int64 { return 0x1212 })...)},
		},
		ok("read file record spec example", "14 0E 06 0004 0001 0002 06 0003 0009 0002", FunctionReadFileRecord, rd,
			code(20), fAny(KeyRecords, []any{
				map[string]any{"file": int64(4), "record": int64(1), "length": int64(2)},
				map[string]any{"file": int64(3), "record": int64(9), "length": int64(2)},
			})),
		ok("read file record last record", "14 07 06 FFFF 270F 0001", FunctionReadFileRecord, rd,
			code(20), fAny(KeyRecords, []any{map[string]any{"file": int64(65535), "record": int64(9999), "length": int64(1)}})),
		ok("read file record largest answer", "14 07 06 0001 0000 007C", FunctionReadFileRecord, rd,
			code(20), fAny(KeyRecords, []any{map[string]any{"file": int64(1), "record": int64(0), "length": int64(124)}})),
		ok("write file record spec example", "15 0D 06 0004 0007 0003 06AF 04BE 100D", FunctionWriteFileRecord, wr,
			code(21), fAny(KeyRecords, []any{map[string]any{"file": int64(4), "record": int64(7), "length": int64(3),
				"values": []any{int64(0x06AF), int64(0x04BE), int64(0x100D)}}})),
		ok("write file record two", "15 14 06 0001 0000 0001 1111 06 0002 0005 0002 2222 3333", FunctionWriteFileRecord, wr,
			code(21), fAny(KeyRecords, []any{
				map[string]any{"file": int64(1), "record": int64(0), "length": int64(1), "values": []any{int64(0x1111)}},
				map[string]any{"file": int64(2), "record": int64(5), "length": int64(2), "values": []any{int64(0x2222), int64(0x3333)}},
			})),
		ok("mask write register", "16 0004 00F2 0025", FunctionMaskWriteRegister, wr,
			code(22), addr(4), fInt(KeyAndMask, 0xF2), fInt(KeyOrMask, 0x25)),
		ok("read write multiple registers spec example", "17 0003 0006 000E 0003 06 00FF 00FF 00FF", FunctionReadWriteMultipleRegisters, wr,
			code(23), addr(14), qty(3), vals(255, 255, 255), fInt(KeyReadAddress, 3), fInt(KeyReadQuantity, 6)),
		{
			name: "read write multiple registers limits", pdu: cat(h("17 FF83 007D FF87 0079 F2"), repeat(0, 242)),
			function: FunctionReadWriteMultipleRegisters, access: wr,
			fields: []gateway.Field{code(23), addr(0xFF87), qty(121), vals(make([]int64, 121)...),
				fInt(KeyReadAddress, 0xFF83), fInt(KeyReadQuantity, 125)},
		},
		ok("read fifo queue", "18 04DE", FunctionReadFIFOQueue, rd, code(24), addr(0x04DE)),
		ok("read device identification basic", "2B 0E 01 00", FunctionReadDeviceIdentification, dg,
			code(43), fInt(KeyMEIType, 14), fInt(KeyReadDeviceIDCode, 1), fInt(KeyObjectID, 0)),
		ok("read device identification specific", "2B 0E 04 81", FunctionReadDeviceIdentification, dg,
			code(43), fInt(KeyMEIType, 14), fInt(KeyReadDeviceIDCode, 4), fInt(KeyObjectID, 0x81)),
		ok("canopen general reference", "2B 0D 00 01 02 FF", FunctionCANopenGeneralReference, pg,
			code(43), fInt(KeyMEIType, 13), fStr(KeyData, "000102ff")),
		ok("canopen general reference empty", "2B 0D", FunctionCANopenGeneralReference, pg,
			code(43), fInt(KeyMEIType, 13), fStr(KeyData, "")),
		ok("encapsulated interface other MEI", "2B 0F 01 AB", FunctionUnknown, pg, code(43), fStr(KeyData, "0f01ab")),
		ok("function code 0x7F", "7F 00", FunctionUnknown, pg, code(0x7F), fStr(KeyData, "00")),
		ok("vendor 0x5A", "5A 0102 ABCD", FunctionUnknown, pg, code(0x5A), fStr(KeyData, "0102abcd")),
		{
			name: "unknown of full size", pdu: cat([]byte{0x64}, repeat(0xEE, 252)),
			function: FunctionUnknown, access: pg,
			fields: []gateway.Field{code(0x64), fStr(KeyData, strings.Repeat("ee", 252))},
		},
	}
	// Every code without a layout is opaque: reserved, user-defined 65–72 and
	// 100–110, and the rest below 0x80.
	for _, fc := range []byte{0x09, 0x0A, 0x0D, 0x0E, 0x12, 0x13, 0x19, 0x2A, 0x2C, 0x41, 0x48, 0x64, 0x6E} {
		cases = append(cases, decodeCase{
			name: "unknown " + hex.EncodeToString([]byte{fc}), pdu: []byte{fc, 0x01, 0x02},
			function: FunctionUnknown, access: pg,
			fields: []gateway.Field{code(int64(fc)), fStr(KeyData, "0102")},
		})
	}
	return cases
}

func badCases() []decodeCase {
	const (
		ill = ExIllegalFunction
		adr = ExIllegalDataAddress
		val = ExIllegalDataValue
	)
	cases := []decodeCase{
		{name: "empty PDU", pdu: []byte{}, function: FunctionUnknown, reason: ReasonBadLength, exc: val},
		{name: "PDU of 254 bytes", pdu: cat([]byte{0x64}, repeat(0, 253)), function: FunctionUnknown, reason: ReasonBadLength, exc: val},
		{name: "FC16 PDU of 254 bytes", pdu: cat(h("10 0000 007B F6"), repeat(0, 248)), function: FunctionWriteMultipleRegisters, reason: ReasonBadLength, exc: val},
		bad("read coils too long", "01 0000 0001 00", FunctionReadCoils, ReasonBadLength, val),
		bad("read coils too short", "01 0000 00", FunctionReadCoils, ReasonBadLength, val),
		bad("read coils quantity 0", "01 0000 0000", FunctionReadCoils, ReasonQuantityOutOfRange, val),
		bad("read coils 2001", "01 0000 07D1", FunctionReadCoils, ReasonQuantityOutOfRange, val),
		bad("read coils 0xFFFF", "01 0000 FFFF", FunctionReadCoils, ReasonQuantityOutOfRange, val),
		bad("read coils past 65535", "01 FFFF 0002", FunctionReadCoils, ReasonAddressOverflow, adr),
		bad("read discrete inputs quantity 0", "02 0000 0000", FunctionReadDiscreteInputs, ReasonQuantityOutOfRange, val),
		bad("read discrete inputs 2001", "02 0000 07D1", FunctionReadDiscreteInputs, ReasonQuantityOutOfRange, val),
		bad("read holding registers quantity 0", "03 0000 0000", FunctionReadHoldingRegisters, ReasonQuantityOutOfRange, val),
		bad("read holding registers 126", "03 0000 007E", FunctionReadHoldingRegisters, ReasonQuantityOutOfRange, val),
		bad("read holding registers past 65535", "03 FFFE 0003", FunctionReadHoldingRegisters, ReasonAddressOverflow, adr),
		bad("read input registers 126", "04 0000 007E", FunctionReadInputRegisters, ReasonQuantityOutOfRange, val),
		bad("write single coil 0x1234", "05 0000 1234", FunctionWriteSingleCoil, ReasonBadValue, val),
		bad("write single coil 0x00FF", "05 0000 00FF", FunctionWriteSingleCoil, ReasonBadValue, val),
		bad("write single coil 0xFFFF", "05 0000 FFFF", FunctionWriteSingleCoil, ReasonBadValue, val),
		bad("write single coil short", "05 0000 FF", FunctionWriteSingleCoil, ReasonBadLength, val),
		bad("write single register long", "06 0000 0001 02", FunctionWriteSingleRegister, ReasonBadLength, val),
		bad("read exception status with data", "07 00", FunctionReadExceptionStatus, ReasonBadLength, val),
		bad("get comm event counter with data", "0B 00", FunctionGetCommEventCounter, ReasonBadLength, val),
		bad("get comm event log with data", "0C 0000", FunctionGetCommEventLog, ReasonBadLength, val),
		bad("report server id with data", "11 01", FunctionReportServerID, ReasonBadLength, val),
		bad("diagnostics one byte", "08 00", FunctionDiagnostics, ReasonBadLength, val),
		bad("diagnostics odd data", "08 0000 01", FunctionDiagnostics, ReasonBadLength, val),
		bad("diagnostics restart without data", "08 0001", FunctionDiagnostics, ReasonBadLength, val),
		bad("diagnostics restart two words", "08 0001 0000 0000", FunctionDiagnostics, ReasonBadLength, val),
		bad("diagnostics restart bad value", "08 0001 1234", FunctionDiagnostics, ReasonBadValue, val),
		bad("diagnostics ascii delimiter low byte", "08 0003 3A01", FunctionDiagnostics, ReasonBadValue, val),
		bad("diagnostics listen only bad value", "08 0004 0001", FunctionDiagnostics, ReasonBadValue, val),
		bad("diagnostics clear counters bad value", "08 000A FF00", FunctionDiagnostics, ReasonBadValue, val),
		bad("write multiple coils header short", "0F 0000 0001", FunctionWriteMultipleCoils, ReasonBadLength, val),
		bad("write multiple coils quantity 0", "0F 0000 0000 00", FunctionWriteMultipleCoils, ReasonQuantityOutOfRange, val),
		{name: "write multiple coils 1969", pdu: cat(h("0F 0000 07B1 F7"), repeat(0, 247)), function: FunctionWriteMultipleCoils, reason: ReasonQuantityOutOfRange, exc: val},
		bad("write multiple coils byte count below quantity", "0F 0000 000A 01 CD", FunctionWriteMultipleCoils, ReasonByteCountMismatch, val),
		bad("write multiple coils byte count above quantity", "0F 0000 000A 03 CD0100", FunctionWriteMultipleCoils, ReasonByteCountMismatch, val),
		bad("write multiple coils fewer bytes than count", "0F 0000 000A 02 CD", FunctionWriteMultipleCoils, ReasonByteCountMismatch, val),
		bad("write multiple coils more bytes than count", "0F 0000 000A 02 CD01 00", FunctionWriteMultipleCoils, ReasonByteCountMismatch, val),
		bad("write multiple coils past 65535", "0F FFFF 0002 01 03", FunctionWriteMultipleCoils, ReasonAddressOverflow, adr),
		bad("write multiple registers function code only", "10", FunctionWriteMultipleRegisters, ReasonBadLength, val),
		bad("write multiple registers no byte count", "10 0000 0002", FunctionWriteMultipleRegisters, ReasonBadLength, val),
		bad("write multiple registers quantity 0", "10 0000 0000 00", FunctionWriteMultipleRegisters, ReasonQuantityOutOfRange, val),
		{name: "write multiple registers 124", pdu: cat(h("10 0000 007C F8"), repeat(0, 8)), function: FunctionWriteMultipleRegisters, reason: ReasonQuantityOutOfRange, exc: val},
		bad("write multiple registers byte count 5 for 2", "10 0000 0002 05 0001 0002 00", FunctionWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("write multiple registers byte count 0 for 2", "10 0000 0002 00", FunctionWriteMultipleRegisters, ReasonByteCountMismatch, val),
		{name: "write multiple registers byte count 255 for 2 (CVE-2019-14462)", pdu: cat(h("10 0000 0002 FF"), repeat(0, 4)), function: FunctionWriteMultipleRegisters, reason: ReasonByteCountMismatch, exc: val},
		bad("write multiple registers fewer bytes than count (CVE-2019-14463)", "10 0000 0002 04 0001", FunctionWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("write multiple registers more bytes than count", "10 0000 0002 04 0001 0002 0003", FunctionWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("write multiple registers past 65535", "10 FFFF 0002 04 0001 0002", FunctionWriteMultipleRegisters, ReasonAddressOverflow, adr),
		bad("read file record no byte count", "14", FunctionReadFileRecord, ReasonBadLength, val),
		bad("read file record byte count 6", "14 06 06 0001 0000 00", FunctionReadFileRecord, ReasonByteCountMismatch, val),
		{name: "read file record byte count 0xF6", pdu: cat(h("14 F6"), repeat(0, 246)), function: FunctionReadFileRecord, reason: ReasonByteCountMismatch, exc: val},
		bad("read file record byte count not whole", "14 08 06 0001 0000 0001 00", FunctionReadFileRecord, ReasonByteCountMismatch, val),
		bad("read file record bytes missing", "14 0E 06 0001 0000 0001", FunctionReadFileRecord, ReasonByteCountMismatch, val),
		bad("read file record reference type 7", "14 07 07 0001 0000 0001", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record file 0", "14 07 06 0000 0000 0001", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record record 10000", "14 07 06 0001 2710 0001", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record length 0", "14 07 06 0001 0000 0000", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record past the file end", "14 07 06 0001 270F 0002", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record answer too large", "14 07 06 0001 0000 007D", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("read file record second sub-request bad", "14 0E 06 0001 0000 0001 05 0001 0000 0001", FunctionReadFileRecord, ReasonBadSubrequest, adr),
		bad("write file record byte count 8", "15 08 06 0001 0000 0000 00", FunctionWriteFileRecord, ReasonByteCountMismatch, val),
		bad("write file record bytes missing", "15 0B 06 0001 0000 0001 1111", FunctionWriteFileRecord, ReasonByteCountMismatch, val),
		bad("write file record data truncated", "15 09 06 0001 0000 0002 0001", FunctionWriteFileRecord, ReasonByteCountMismatch, val),
		bad("write file record header truncated", "15 0D 06 0001 0000 0001 1111 06 0001", FunctionWriteFileRecord, ReasonByteCountMismatch, val),
		bad("write file record reference type 5", "15 09 05 0001 0000 0001 1111", FunctionWriteFileRecord, ReasonBadSubrequest, adr),
		bad("write file record length 0", "15 09 06 0001 0000 0000 1111", FunctionWriteFileRecord, ReasonBadSubrequest, adr),
		bad("mask write register short", "16 0004 00F2", FunctionMaskWriteRegister, ReasonBadLength, val),
		bad("read write function code only (libmodbus #614)", "17", FunctionReadWriteMultipleRegisters, ReasonBadLength, val),
		bad("read write read half only (libmodbus #614)", "17 0000 0001", FunctionReadWriteMultipleRegisters, ReasonBadLength, val),
		bad("read write no byte count (libmodbus #614)", "17 0000 0001 0000 0001", FunctionReadWriteMultipleRegisters, ReasonBadLength, val),
		bad("read write no values (libmodbus #614)", "17 0000 0001 0000 0001 02", FunctionReadWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("read write half a value (libmodbus #614)", "17 0000 0001 0000 0001 02 00", FunctionReadWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("read write byte count disagrees with quantity", "17 0000 0001 0000 0001 04 0001 0002", FunctionReadWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("read write extra bytes", "17 0000 0001 0000 0001 02 0001 0002", FunctionReadWriteMultipleRegisters, ReasonByteCountMismatch, val),
		bad("read write read quantity 0", "17 0000 0000 0000 0001 02 0001", FunctionReadWriteMultipleRegisters, ReasonQuantityOutOfRange, val),
		bad("read write read quantity 126", "17 0000 007E 0000 0001 02 0001", FunctionReadWriteMultipleRegisters, ReasonQuantityOutOfRange, val),
		bad("read write write quantity 0", "17 0000 0001 0000 0000 00", FunctionReadWriteMultipleRegisters, ReasonQuantityOutOfRange, val),
		{name: "read write write quantity 122", pdu: cat(h("17 0000 0001 0000 007A F4"), repeat(0, 8)), function: FunctionReadWriteMultipleRegisters, reason: ReasonQuantityOutOfRange, exc: val},
		bad("read write read past 65535", "17 FFFF 0002 0000 0001 02 0001", FunctionReadWriteMultipleRegisters, ReasonAddressOverflow, adr),
		bad("read write write past 65535", "17 0000 0001 FFFF 0002 04 0001 0002", FunctionReadWriteMultipleRegisters, ReasonAddressOverflow, adr),
		bad("read fifo queue long", "18 0000 00", FunctionReadFIFOQueue, ReasonBadLength, val),
		bad("encapsulated interface without MEI", "2B", FunctionUnknown, ReasonBadLength, val),
		bad("read device identification short", "2B 0E 01", FunctionReadDeviceIdentification, ReasonBadLength, val),
		bad("read device identification long", "2B 0E 01 00 00", FunctionReadDeviceIdentification, ReasonBadLength, val),
		bad("read device identification code 0", "2B 0E 00 00", FunctionReadDeviceIdentification, ReasonBadValue, val),
		bad("read device identification code 5", "2B 0E 05 00", FunctionReadDeviceIdentification, ReasonBadValue, val),
		bad("function code 0", "00", FunctionUnknown, ReasonNoFunction, ill),
		bad("function code 0 with data", "00 0000 0001", FunctionUnknown, ReasonNoFunction, ill),
		bad("exception code in request 0x80", "80", FunctionUnknown, ReasonExceptionInRequest, ill),
		bad("exception code in request 0x83", "83 02", FunctionUnknown, ReasonExceptionInRequest, ill),
		bad("exception code in request 0xFF", "FF 0000 0001", FunctionUnknown, ReasonExceptionInRequest, ill),
	}
	// A PDU of the function code alone (libmodbus #837) for every function
	// that has data.
	for _, fc := range []struct {
		fc   byte
		name string
	}{
		{0x01, FunctionReadCoils}, {0x02, FunctionReadDiscreteInputs}, {0x03, FunctionReadHoldingRegisters},
		{0x04, FunctionReadInputRegisters}, {0x05, FunctionWriteSingleCoil}, {0x06, FunctionWriteSingleRegister},
		{0x08, FunctionDiagnostics}, {0x0F, FunctionWriteMultipleCoils}, {0x15, FunctionWriteFileRecord},
		{0x16, FunctionMaskWriteRegister}, {0x18, FunctionReadFIFOQueue},
	} {
		cases = append(cases, decodeCase{
			name: "function code only " + fc.name, pdu: []byte{fc.fc},
			function: fc.name, reason: ReasonBadLength, exc: val,
		})
	}
	return cases
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Clone(tc.pdu)
			op, out, rerr := DecodeRequest(in)
			if rerr != nil {
				t.Fatalf("DecodeRequest(% X): %v", tc.pdu, rerr)
			}
			if op.Function != tc.function || op.Access != tc.access {
				t.Errorf("function/access = %s/%s, want %s/%s", op.Function, op.Access, tc.function, tc.access)
			}
			if !reflect.DeepEqual(op.Fields, tc.fields) {
				t.Errorf("fields\n got %+v\nwant %+v", op.Fields, tc.fields)
			}
			want := tc.out
			if want == nil {
				want = tc.pdu
			}
			if !bytes.Equal(out, want) {
				t.Errorf("re-encoded\n got % X\nwant % X", out, want)
			}
			// The re-encoded PDU must not share memory with the input, which
			// the frame reader reuses for the next request.
			for i := range in {
				in[i] ^= 0xFF
			}
			if !bytes.Equal(out, want) {
				t.Errorf("re-encoded PDU changed with the input buffer")
			}
			assertRoundTrip(t, op, out)
		})
	}
}

func assertRoundTrip(t *testing.T, op gateway.Operation, out []byte) {
	t.Helper()
	op2, out2, rerr := DecodeRequest(out)
	if rerr != nil {
		t.Fatalf("re-encoded PDU % X does not decode: %v", out, rerr)
	}
	if !reflect.DeepEqual(op, op2) {
		t.Fatalf("round trip changed the operation\n got %+v\nwant %+v", op2, op)
	}
	if !bytes.Equal(out, out2) {
		t.Fatalf("round trip changed the PDU\n got % X\nwant % X", out2, out)
	}
}

func TestDecodeRequestRefuses(t *testing.T) {
	for _, tc := range badCases() {
		t.Run(tc.name, func(t *testing.T) {
			op, out, rerr := DecodeRequest(tc.pdu)
			if rerr == nil {
				t.Fatalf("DecodeRequest(% X) = %+v, % X; want %s", tc.pdu, op, out, tc.reason)
			}
			if rerr.Reason != tc.reason || rerr.Exception != tc.exc {
				t.Errorf("reason/exception = %s/0x%02X (%s), want %s/0x%02X", rerr.Reason, rerr.Exception, rerr.Detail, tc.reason, tc.exc)
			}
			if rerr.Detail == "" {
				t.Errorf("no detail")
			}
			if out != nil {
				t.Errorf("re-encoded PDU % X on error", out)
			}
			if op.Function != tc.function {
				t.Errorf("function = %q, want %q", op.Function, tc.function)
			}
			if len(tc.pdu) > 0 {
				if f, ok := op.Field(gateway.KeyCode); !ok || f.Int != int64(tc.pdu[0]) || len(op.Fields) != 1 {
					t.Errorf("fields on error = %+v, want the code only", op.Fields)
				}
			}
		})
	}
}

func TestRequestErrorDetail(t *testing.T) {
	_, _, rerr := DecodeRequest(h("10 0000 0002 05 0001 0002 00"))
	if rerr == nil {
		t.Fatal("no error")
	}
	const want = "modbus: byte_count_mismatch: byte count 5 disagrees with quantity 2 (want 4)"
	if rerr.Error() != want {
		t.Errorf("Error() = %q, want %q", rerr.Error(), want)
	}
}

func TestExceptionPDU(t *testing.T) {
	if got := ExceptionPDU(FuncReadHoldingRegisters, ExIllegalDataAddress); !bytes.Equal(got, h("83 02")) {
		t.Errorf("ExceptionPDU = % X", got)
	}
	if got := ExceptionPDU(FuncWriteMultipleRegisters, ExGatewayTargetNoResponse); !bytes.Equal(got, h("90 0B")) {
		t.Errorf("ExceptionPDU = % X", got)
	}
}

// TestDecodeRequestAllCodes checks that every function code decodes or is
// refused with a known reason, with and without data.
func TestDecodeRequestAllCodes(t *testing.T) {
	reasons := map[string]bool{
		ReasonBadLength: true, ReasonQuantityOutOfRange: true, ReasonByteCountMismatch: true, ReasonBadValue: true,
		ReasonAddressOverflow: true, ReasonExceptionInRequest: true, ReasonBadSubrequest: true, ReasonNoFunction: true,
	}
	for fc := range 256 {
		for _, data := range [][]byte{nil, h("0000 0001"), repeat(0x01, 20)} {
			pdu := append([]byte{byte(fc)}, data...)
			op, out, rerr := DecodeRequest(pdu)
			if rerr != nil {
				if !reasons[rerr.Reason] {
					t.Errorf("% X: reason %q", pdu, rerr.Reason)
				}
				continue
			}
			if op.Function == "" || op.Access == "" {
				t.Errorf("% X: function %q access %q", pdu, op.Function, op.Access)
			}
			assertRoundTrip(t, op, out)
		}
	}
}

func TestCheckResponse(t *testing.T) {
	devID := cat(h("2B 0E 01 81 00 00 03"), h("00 09"), []byte("Interlock"), h("01 03"), []byte("SIM"), h("02 03"), []byte("1.0"))
	tests := []struct {
		name      string
		req, resp []byte
		ok        bool
	}{
		{"exception", h("03 006B 0003"), h("83 02"), true},
		{"gateway exception", h("10 0001 0002 04 000A 0102"), h("90 0B"), true},
		{"exception too long", h("03 006B 0003"), h("83 02 00"), false},
		{"exception too short", h("03 006B 0003"), h("83"), false},
		{"exception code 0", h("03 006B 0003"), h("83 00"), false},
		{"exception of another function", h("03 006B 0003"), h("84 02"), false},
		{"empty", h("03 006B 0003"), nil, false},
		{"too long", h("5A"), cat([]byte{0x5A}, repeat(0, 253)), false},
		{"other function", h("03 006B 0003"), h("04 06 022B 0000 0064"), false},
		{"read holding registers", h("03 006B 0003"), h("03 06 022B 0000 0064"), true},
		{"read holding registers count disagrees with quantity", h("03 006B 0003"), h("03 04 022B 0000"), false},
		{"read holding registers fewer bytes than count", h("03 006B 0003"), h("03 06 022B 0000"), false},
		{"read holding registers more bytes than count", h("03 006B 0003"), h("03 06 022B 0000 0064 0000"), false},
		{"read holding registers no count", h("03 006B 0003"), h("03"), false},
		{"read input registers", h("04 0008 0001"), h("04 02 000A"), true},
		{"read coils", h("01 0013 0013"), h("01 03 CD6B05"), true},
		{"read coils short", h("01 0013 0013"), h("01 02 CD6B"), false},
		{"read discrete inputs", h("02 00C4 0016"), h("02 03 ACDB35"), true},
		{"write single coil echo", h("05 00AC FF00"), h("05 00AC FF00"), true},
		{"write single coil different value", h("05 00AC FF00"), h("05 00AC 0000"), false},
		{"write single register echo", h("06 0001 0003"), h("06 0001 0003"), true},
		{"write single register short", h("06 0001 0003"), h("06 0001"), false},
		{"read exception status", h("07"), h("07 6D"), true},
		{"read exception status long", h("07"), h("07 6D 00"), false},
		{"diagnostics loopback", h("08 0000 A537"), h("08 0000 A537"), true},
		{"diagnostics loopback altered", h("08 0000 A537"), h("08 0000 A538"), false},
		{"diagnostics counter", h("08 000B 0000"), h("08 000B 0005"), true},
		{"diagnostics other sub-function", h("08 000B 0000"), h("08 000C 0005"), false},
		{"diagnostics half word", h("08 000B 0000"), h("08 000B 00"), false},
		{"get comm event counter", h("0B"), h("0B FFFF 0108"), true},
		{"get comm event counter short", h("0B"), h("0B FFFF"), false},
		{"get comm event log", h("0C"), h("0C 08 0000 0108 0121 2000"), true},
		{"get comm event log count disagrees", h("0C"), h("0C 09 0000 0108 0121 2000"), false},
		{"get comm event log count below 6", h("0C"), h("0C 02 0000"), false},
		{"write multiple coils", h("0F 0013 000A 02 CD01"), h("0F 0013 000A"), true},
		{"write multiple coils other quantity", h("0F 0013 000A 02 CD01"), h("0F 0013 000B"), false},
		{"write multiple registers", h("10 0001 0002 04 000A 0102"), h("10 0001 0002"), true},
		{"write multiple registers long", h("10 0001 0002 04 000A 0102"), h("10 0001 0002 00"), false},
		{"report server id", h("11"), h("11 02 01 FF"), true},
		{"report server id count disagrees", h("11"), h("11 05 01 FF"), false},
		{"report server id no data", h("11"), h("11 00"), false},
		{"read file record", h("14 0E 06 0004 0001 0002 06 0003 0009 0002"), h("14 0C 05 06 0DFE 0020 05 06 33CD 0040"), true},
		{"read file record data length disagrees", h("14 0E 06 0004 0001 0002 06 0003 0009 0002"), h("14 0D 05 06 0DFE 0020 05 06 33CD 0040"), false},
		{"read file record sub-response length", h("14 0E 06 0004 0001 0002 06 0003 0009 0002"), h("14 0C 03 06 0DFE 07 06 0020 33CD 0040"), false},
		{"read file record sub-response missing", h("14 0E 06 0004 0001 0002 06 0003 0009 0002"), h("14 06 05 06 0DFE 0020"), false},
		{"read file record reference type", h("14 07 06 0004 0001 0001"), h("14 04 03 07 0DFE"), false},
		{"read file record trailing bytes", h("14 07 06 0004 0001 0001"), h("14 05 03 06 0DFE 00"), false},
		{"write file record echo", h("15 0D 06 0004 0007 0003 06AF 04BE 100D"), h("15 0D 06 0004 0007 0003 06AF 04BE 100D"), true},
		{"write file record altered", h("15 0D 06 0004 0007 0003 06AF 04BE 100D"), h("15 0D 06 0004 0007 0003 06AF 04BE 100E"), false},
		{"mask write register echo", h("16 0004 00F2 0025"), h("16 0004 00F2 0025"), true},
		{"mask write register altered", h("16 0004 00F2 0025"), h("16 0004 00F2 0026"), false},
		{"read write multiple registers", h("17 0003 0006 000E 0003 06 00FF 00FF 00FF"), h("17 0C 00FE 0ACD 0001 0003 000D 00FF"), true},
		{"read write multiple registers count is write quantity", h("17 0003 0006 000E 0003 06 00FF 00FF 00FF"), h("17 06 00FE 0ACD 0001"), false},
		{"read fifo queue", h("18 04DE"), h("18 0006 0002 01B8 1284"), true},
		{"read fifo queue empty", h("18 04DE"), h("18 0002 0000"), true},
		{"read fifo queue count disagrees", h("18 04DE"), h("18 0006 0001 01B8 1284"), false},
		{"read fifo queue byte count disagrees", h("18 04DE"), h("18 0008 0002 01B8 1284"), false},
		{"read fifo queue 32 entries", h("18 04DE"), cat(h("18 0042 0020"), repeat(0, 64)), false},
		{"read device identification", h("2B 0E 01 00"), devID, true},
		{"read device identification truncated object", h("2B 0E 01 00"), devID[:len(devID)-1], false},
		{"read device identification trailing byte", h("2B 0E 01 00"), cat(devID, []byte{0}), false},
		{"read device identification other MEI", h("2B 0E 01 00"), h("2B 0D 01 81 00 00 00"), false},
		{"read device identification other code", h("2B 0E 01 00"), h("2B 0E 02 81 00 00 00"), false},
		{"read device identification more follows", h("2B 0E 01 00"), h("2B 0E 01 81 01 00 00"), false},
		{"canopen", h("2B 0D 00 01"), h("2B 0D 00 01 02"), true},
		{"canopen other MEI", h("2B 0D 00 01"), h("2B 0E 00 01 02"), false},
		{"unknown", h("5A 0102"), h("5A 0304 0506"), true},
		{"unknown exception", h("5A 0102"), h("DA 01"), true},
		{"unknown largest", h("5A 0102"), cat([]byte{0x5A}, repeat(0, 252)), true},
		{"no request", nil, h("03 00"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckResponse(tc.req, tc.resp)
			if tc.ok && err != nil {
				t.Fatalf("CheckResponse(% X, % X) = %v, want nil", tc.req, tc.resp, err)
			}
			if !tc.ok {
				if err == nil {
					t.Fatalf("CheckResponse(% X, % X) = nil, want an error", tc.req, tc.resp)
				}
				if !errors.Is(err, ErrBadResponse) {
					t.Fatalf("error %v does not wrap ErrBadResponse", err)
				}
			}
		})
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	for _, pdu := range [][]byte{h("03 006B 0003"), cat(h("10 0000 007B F6"), repeat(0x12, 246))} {
		b.Run(hex.EncodeToString(pdu[:1]), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := DecodeRequest(pdu); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
