package channel

import (
	"errors"
	"fmt"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
)

// Error is a refusal or protocol failure of a secure channel. When the peer
// was still reachable it has been answered with an ERR message carrying Code
// before the socket was closed.
type Error struct {
	Code   ua.StatusCode
	Reason string

	private bool // Reason is for the gateway's log only, not for the ERR message
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return "opcua channel: " + e.Code.Error()
	}
	return fmt.Sprintf("opcua channel: %s: %s", e.Code.Error(), e.Reason)
}

// StatusCode returns the OPC UA status the channel was refused or closed with.
func (e *Error) StatusCode() ua.StatusCode { return e.Code }

// ErrTokenExpired ends a channel whose client sent nothing before its
// security token expired (its lifetime and the 25 % grace): a connection
// gone silent, as after a network break the TCP stack has not noticed,
// not a violation of the protocol.
var ErrTokenExpired = &Error{Code: ua.StatusBadSecureChannelClosed, Reason: "security token expired without renewal"}

func errorf(code ua.StatusCode, format string, args ...any) *Error {
	return &Error{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// StatusOf returns the OPC UA status code an error carries: the code of an
// error with a StatusCode() method (as *Error and the certs package's
// validation errors have), a ua.StatusCode itself, or the code of a uacp ERR
// message; StatusOK for nil and Bad_InternalError for anything else.
func StatusOf(err error) ua.StatusCode {
	if err == nil {
		return ua.StatusOK
	}
	if code, ok := codeOf(err); ok {
		return code
	}
	return ua.StatusBadInternalError
}

// statusOr is StatusOf with a fallback for errors that carry no code.
func statusOr(err error, fallback ua.StatusCode) ua.StatusCode {
	if code, ok := codeOf(err); ok && code != ua.StatusOK {
		return code
	}
	return fallback
}

func codeOf(err error) (ua.StatusCode, bool) {
	var sc interface{ StatusCode() ua.StatusCode }
	if errors.As(err, &sc) {
		return sc.StatusCode(), true
	}
	var ue *uacp.Error
	if errors.As(err, &ue) {
		return ua.StatusCode(ue.ErrorCode), true
	}
	var code ua.StatusCode
	if errors.As(err, &code) {
		return code, true
	}
	return 0, false
}
