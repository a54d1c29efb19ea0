package modbussim

import "encoding/binary"

// Function and exception codes answered by the simulator.
const (
	fcReadCoils             = 0x01
	fcReadDiscreteInputs    = 0x02
	fcReadHolding           = 0x03
	fcReadInput             = 0x04
	fcWriteCoil             = 0x05
	fcWriteRegister         = 0x06
	fcDiagnostics           = 0x08
	fcWriteCoils            = 0x0F
	fcWriteRegisters        = 0x10
	fcReportServerID        = 0x11
	fcMaskWrite             = 0x16
	fcReadWriteRegisters    = 0x17
	fcReadFIFO              = 0x18
	fcEncapsulated          = 0x2B
	meiDeviceIdentification = 0x0E

	exIllegalFunction = 0x01
	exIllegalAddress  = 0x02
	exIllegalValue    = 0x03
)

// Identity answered to Read Device Identification (basic objects 0..2) and
// Report Server ID.
var deviceObjects = [][]byte{[]byte("Interlock"), []byte("SIM"), []byte("1.0")}

var serverID = []byte("Interlock SIM")

const fifoMax = 31

func be16(b []byte) int { return int(binary.BigEndian.Uint16(b)) }

func put16(b []byte, v int) []byte { return binary.BigEndian.AppendUint16(b, uint16(v)) }

func exception(out []byte, fc, code byte) []byte { return append(out, fc|0x80, code) }

// handle appends the response to request pdu onto out.
func (s *Server) handle(out, pdu []byte) []byte {
	fc, d := pdu[0], pdu[1:]
	switch fc {
	case fcReadCoils, fcReadDiscreteInputs:
		return s.readBits(out, fc, d)
	case fcReadHolding, fcReadInput:
		return s.readRegisters(out, fc, d)
	case fcWriteCoil:
		return s.writeCoil(out, pdu)
	case fcWriteRegister:
		if len(d) != 4 {
			return exception(out, fc, exIllegalValue)
		}
		s.SetHolding(uint16(be16(d)), uint16(be16(d[2:])))
		return append(out, pdu...)
	case fcWriteCoils:
		return s.writeCoils(out, fc, d)
	case fcWriteRegisters:
		return s.writeRegisters(out, fc, d)
	case fcMaskWrite:
		return s.maskWrite(out, pdu)
	case fcReadWriteRegisters:
		return s.readWriteRegisters(out, fc, d)
	case fcReadFIFO:
		return s.readFIFO(out, fc, d)
	case fcDiagnostics:
		if len(d) < 2 || len(d)%2 != 0 {
			return exception(out, fc, exIllegalValue)
		}
		if be16(d) != 0 { // only Return Query Data
			return exception(out, fc, exIllegalFunction)
		}
		return append(out, pdu...)
	case fcReportServerID:
		if len(d) != 0 {
			return exception(out, fc, exIllegalValue)
		}
		out = append(out, fc, byte(len(serverID)+1))
		out = append(out, serverID...)
		return append(out, 0xFF) // run indicator: on
	case fcEncapsulated:
		return readDeviceIdentification(out, fc, d)
	}
	return exception(out, fc, exIllegalFunction)
}

// span checks quantity then address range, in the order of the spec's
// state diagrams.
func span(addr, q, limit int) byte {
	if q < 1 || q > limit {
		return exIllegalValue
	}
	if addr+q > tableSize {
		return exIllegalAddress
	}
	return 0
}

func (s *Server) readBits(out []byte, fc byte, d []byte) []byte {
	if len(d) != 4 {
		return exception(out, fc, exIllegalValue)
	}
	addr, q := be16(d), be16(d[2:])
	if ex := span(addr, q, 2000); ex != 0 {
		return exception(out, fc, ex)
	}
	table := &s.coils
	if fc == fcReadDiscreteInputs {
		table = &s.discrete
	}
	n := (q + 7) / 8
	out = append(out, fc, byte(n))
	start := len(out)
	out = append(out, make([]byte, n)...)
	s.mu.RLock()
	for i := range q {
		if table[addr+i] {
			out[start+i/8] |= 1 << (i % 8)
		}
	}
	s.mu.RUnlock()
	return out
}

func (s *Server) readRegisters(out []byte, fc byte, d []byte) []byte {
	if len(d) != 4 {
		return exception(out, fc, exIllegalValue)
	}
	addr, q := be16(d), be16(d[2:])
	if ex := span(addr, q, 125); ex != 0 {
		return exception(out, fc, ex)
	}
	table := &s.holding
	if fc == fcReadInput {
		table = &s.input
	}
	out = append(out, fc, byte(2*q))
	s.mu.RLock()
	for i := range q {
		out = put16(out, int(table[addr+i]))
	}
	s.mu.RUnlock()
	return out
}

func (s *Server) writeCoil(out, pdu []byte) []byte {
	fc, d := pdu[0], pdu[1:]
	if len(d) != 4 {
		return exception(out, fc, exIllegalValue)
	}
	v := be16(d[2:])
	if v != 0x0000 && v != 0xFF00 {
		return exception(out, fc, exIllegalValue)
	}
	s.SetCoil(uint16(be16(d)), v == 0xFF00)
	return append(out, pdu...)
}

func (s *Server) writeCoils(out []byte, fc byte, d []byte) []byte {
	if len(d) < 5 {
		return exception(out, fc, exIllegalValue)
	}
	addr, q, bc := be16(d), be16(d[2:]), int(d[4])
	if q < 1 || q > 1968 || bc != (q+7)/8 || len(d) != 5+bc {
		return exception(out, fc, exIllegalValue)
	}
	if addr+q > tableSize {
		return exception(out, fc, exIllegalAddress)
	}
	s.mu.Lock()
	for i := range q {
		s.coils[addr+i] = d[5+i/8]&(1<<(i%8)) != 0
	}
	s.mu.Unlock()
	return append(out, fc, d[0], d[1], d[2], d[3])
}

func (s *Server) writeRegisters(out []byte, fc byte, d []byte) []byte {
	if len(d) < 5 {
		return exception(out, fc, exIllegalValue)
	}
	addr, q, bc := be16(d), be16(d[2:]), int(d[4])
	if q < 1 || q > 123 || bc != 2*q || len(d) != 5+bc {
		return exception(out, fc, exIllegalValue)
	}
	if addr+q > tableSize {
		return exception(out, fc, exIllegalAddress)
	}
	s.mu.Lock()
	for i := range q {
		s.holding[addr+i] = uint16(be16(d[5+2*i:]))
	}
	s.mu.Unlock()
	return append(out, fc, d[0], d[1], d[2], d[3])
}

func (s *Server) maskWrite(out, pdu []byte) []byte {
	fc, d := pdu[0], pdu[1:]
	if len(d) != 6 {
		return exception(out, fc, exIllegalValue)
	}
	addr, and, or := be16(d), uint16(be16(d[2:])), uint16(be16(d[4:]))
	s.mu.Lock()
	s.holding[addr] = s.holding[addr]&and | or&^and
	s.mu.Unlock()
	return append(out, pdu...)
}

// readWriteRegisters writes before it reads, as the spec orders.
func (s *Server) readWriteRegisters(out []byte, fc byte, d []byte) []byte {
	if len(d) < 9 {
		return exception(out, fc, exIllegalValue)
	}
	ra, rq, wa, wq, bc := be16(d), be16(d[2:]), be16(d[4:]), be16(d[6:]), int(d[8])
	if rq < 1 || rq > 125 || wq < 1 || wq > 121 || bc != 2*wq || len(d) != 9+bc {
		return exception(out, fc, exIllegalValue)
	}
	if ra+rq > tableSize || wa+wq > tableSize {
		return exception(out, fc, exIllegalAddress)
	}
	out = append(out, fc, byte(2*rq))
	s.mu.Lock()
	for i := range wq {
		s.holding[wa+i] = uint16(be16(d[9+2*i:]))
	}
	for i := range rq {
		out = put16(out, int(s.holding[ra+i]))
	}
	s.mu.Unlock()
	return out
}

// readFIFO serves the queue at addr from the holding registers: its count
// at addr, its entries after it.
func (s *Server) readFIFO(out []byte, fc byte, d []byte) []byte {
	if len(d) != 2 {
		return exception(out, fc, exIllegalValue)
	}
	addr := be16(d)
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := int(s.holding[addr])
	if n > fifoMax {
		return exception(out, fc, exIllegalValue)
	}
	if addr+1+n > tableSize {
		return exception(out, fc, exIllegalAddress)
	}
	out = put16(put16(append(out, fc), 2+2*n), n)
	for i := range n {
		out = put16(out, int(s.holding[addr+1+i]))
	}
	return out
}

// readDeviceIdentification answers with the basic objects only; stream
// requests for a category it lacks restart at object 0, as the spec says.
func readDeviceIdentification(out []byte, fc byte, d []byte) []byte {
	if len(d) < 1 {
		return exception(out, fc, exIllegalValue)
	}
	if d[0] != meiDeviceIdentification {
		return exception(out, fc, exIllegalFunction)
	}
	if len(d) != 3 {
		return exception(out, fc, exIllegalValue)
	}
	code, obj := d[1], int(d[2])
	first, last := obj, len(deviceObjects)-1
	switch code {
	case 1, 2, 3:
		if first > last {
			first = 0
		}
	case 4:
		if first > last {
			return exception(out, fc, exIllegalAddress)
		}
		last = first
	default:
		return exception(out, fc, exIllegalValue)
	}
	const conformity = 0x81 // basic, stream and individual access
	out = append(out, fc, meiDeviceIdentification, code, conformity, 0x00, 0x00, byte(last-first+1))
	for id := first; id <= last; id++ {
		out = append(out, byte(id), byte(len(deviceObjects[id])))
		out = append(out, deviceObjects[id]...)
	}
	return out
}
