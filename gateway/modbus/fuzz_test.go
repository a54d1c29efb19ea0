package modbus

import (
	"bytes"
	"reflect"
	"testing"
)

func addDecodeSeeds(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.pdu)
	}
	for _, tc := range badCases() {
		f.Add(tc.pdu)
	}
}

// FuzzDecodeRequest: no input panics, every refusal is a known reason with a
// spec exception, and every accepted request re-encodes to a PDU that fits
// and decodes to the same operation.
func FuzzDecodeRequest(f *testing.F) {
	addDecodeSeeds(f)
	f.Fuzz(func(t *testing.T, pdu []byte) {
		in := bytes.Clone(pdu)
		op, out, rerr := DecodeRequest(in)
		if !bytes.Equal(in, pdu) {
			t.Fatalf("DecodeRequest modified its input")
		}
		if rerr != nil {
			if out != nil {
				t.Fatalf("PDU % X with error %v", out, rerr)
			}
			switch rerr.Exception {
			case ExIllegalFunction, ExIllegalDataAddress, ExIllegalDataValue:
			default:
				t.Fatalf("exception 0x%02X for %v", rerr.Exception, rerr)
			}
			if rerr.Reason == "" || rerr.Detail == "" {
				t.Fatalf("error without reason or detail: %+v", rerr)
			}
			return
		}
		if len(out) == 0 || len(out) > MaxPDU {
			t.Fatalf("re-encoded PDU of %d bytes", len(out))
		}
		if out[0] != pdu[0] {
			t.Fatalf("re-encoded function code 0x%02X, request 0x%02X", out[0], pdu[0])
		}
		if len(pdu) > 0 && &out[0] == &in[0] {
			t.Fatalf("re-encoded PDU aliases the input")
		}
		op2, out2, rerr := DecodeRequest(out)
		if rerr != nil {
			t.Fatalf("re-encoded % X does not decode: %v", out, rerr)
		}
		if !reflect.DeepEqual(op, op2) {
			t.Fatalf("round trip changed the operation\n got %+v\nwant %+v", op2, op)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("re-encoding is not stable\n got % X\nwant % X", out2, out)
		}
	})
}

// FuzzCheckResponse: any upstream answer to any accepted request is checked
// without a panic, and an accepted answer fits a PDU.
func FuzzCheckResponse(f *testing.F) {
	f.Add(h("03 006B 0003"), h("03 06 022B 0000 0064"))
	f.Add(h("14 0E 06 0004 0001 0002 06 0003 0009 0002"), h("14 0C 05 06 0DFE 0020 05 06 33CD 0040"))
	f.Add(h("2B 0E 01 00"), h("2B 0E 01 81 00 00 01 00 03 414243"))
	f.Add(h("18 04DE"), h("18 0006 0002 01B8 1284"))
	f.Add(h("08 0000 A537"), h("08 0000 A537"))
	f.Add(h("0C"), h("0C 08 0000 0108 0121 2000"))
	f.Fuzz(func(t *testing.T, req, resp []byte) {
		_, out, rerr := DecodeRequest(req)
		if rerr != nil {
			out = req // the check must hold even for requests it never sees
		}
		if err := CheckResponse(out, resp); err == nil && (len(resp) == 0 || len(resp) > MaxPDU) {
			t.Fatalf("accepted a response of %d bytes", len(resp))
		}
	})
}
