package modbus

// Function codes (Modbus Application Protocol V1.1b3, §6).
const (
	FuncReadCoils                  = 0x01
	FuncReadDiscreteInputs         = 0x02
	FuncReadHoldingRegisters       = 0x03
	FuncReadInputRegisters         = 0x04
	FuncWriteSingleCoil            = 0x05
	FuncWriteSingleRegister        = 0x06
	FuncReadExceptionStatus        = 0x07
	FuncDiagnostics                = 0x08
	FuncGetCommEventCounter        = 0x0B
	FuncGetCommEventLog            = 0x0C
	FuncWriteMultipleCoils         = 0x0F
	FuncWriteMultipleRegisters     = 0x10
	FuncReportServerID             = 0x11
	FuncReadFileRecord             = 0x14
	FuncWriteFileRecord            = 0x15
	FuncMaskWriteRegister          = 0x16
	FuncReadWriteMultipleRegisters = 0x17
	FuncReadFIFOQueue              = 0x18
	FuncEncapsulatedInterface      = 0x2B
)

// MEI types carried by FuncEncapsulatedInterface.
const (
	MEICANopenGeneralReference  = 0x0D
	MEIReadDeviceIdentification = 0x0E
)

// Exception codes (§7).
const (
	ExIllegalFunction         = 0x01
	ExIllegalDataAddress      = 0x02
	ExIllegalDataValue        = 0x03
	ExServerDeviceFailure     = 0x04
	ExAcknowledge             = 0x05
	ExServerDeviceBusy        = 0x06
	ExMemoryParity            = 0x08
	ExGatewayPathUnavailable  = 0x0A
	ExGatewayTargetNoResponse = 0x0B
)

// ExceptionFlag is set in the function code of an exception response.
const ExceptionFlag = 0x80

// MaxPDU is the largest PDU (function code + data) the protocol allows: the
// RS-485 ADU limit of 256 bytes minus address and CRC.
const MaxPDU = 253

// ExceptionPDU builds the exception response to function fc.
func ExceptionPDU(fc, code byte) []byte {
	return []byte{fc | ExceptionFlag, code}
}
