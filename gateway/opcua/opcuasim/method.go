package opcuasim

import (
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// methods answers the Call service for the PLC's one method,
// Start(speed Int32) -> (accepted Boolean).
type methods struct {
	ns *plcNamespace
}

func (m *methods) call(_ *uasc.SecureChannel, r ua.Request, _ uint32) (ua.Response, error) {
	req, ok := r.(*ua.CallRequest)
	if !ok {
		return nil, ua.StatusBadRequestTypeInvalid
	}
	results := make([]*ua.CallMethodResult, len(req.MethodsToCall))
	for i, c := range req.MethodsToCall {
		results[i] = m.callOne(c)
	}
	return &ua.CallResponse{
		ResponseHeader: &ua.ResponseHeader{
			Timestamp:          time.Now(),
			RequestHandle:      req.RequestHeader.RequestHandle,
			ServiceResult:      ua.StatusOK,
			ServiceDiagnostics: &ua.DiagnosticInfo{},
			StringTable:        []string{},
			AdditionalHeader:   ua.NewExtensionObject(nil),
		},
		Results:         results,
		DiagnosticInfos: []*ua.DiagnosticInfo{},
	}, nil
}

// callOne follows Part 4 §5.11.2: the object and method must exist and
// belong together; the arguments must be as many as declared, each of its
// type (InputArgumentResults says which is wrong).
func (m *methods) callOne(c *ua.CallMethodRequest) *ua.CallMethodResult {
	fail := func(code ua.StatusCode) *ua.CallMethodResult {
		return &ua.CallMethodResult{StatusCode: code, InputArgumentResults: []ua.StatusCode{}, OutputArguments: []*ua.Variant{}}
	}
	if c == nil || c.ObjectID == nil || c.MethodID == nil {
		return fail(ua.StatusBadNodeIDInvalid)
	}
	obj := m.ns.nodes[c.ObjectID.String()]
	if obj == nil {
		return fail(ua.StatusBadNodeIDUnknown)
	}
	if c.MethodID.String() != NodeStart || obj.id.String() != NodePLC {
		return fail(ua.StatusBadMethodInvalid)
	}
	switch {
	case len(c.InputArguments) < 1:
		return fail(ua.StatusBadArgumentsMissing)
	case len(c.InputArguments) > 1:
		return fail(ua.StatusBadTooManyArguments)
	}
	arg := c.InputArguments[0]
	if arg == nil || arg.Type() != ua.TypeIDInt32 || arg.Has(ua.VariantArrayValues) {
		return &ua.CallMethodResult{
			StatusCode:           ua.StatusBadInvalidArgument,
			InputArgumentResults: []ua.StatusCode{ua.StatusBadTypeMismatch},
			OutputArguments:      []*ua.Variant{},
		}
	}
	speed := arg.Value().(int32)
	if speed < 0 || speed > MaxSpeed {
		return &ua.CallMethodResult{
			StatusCode:           ua.StatusBadOutOfRange,
			InputArgumentResults: []ua.StatusCode{ua.StatusBadOutOfRange},
			OutputArguments:      []*ua.Variant{},
		}
	}
	m.ns.set(NodeSpeed, ua.MustVariant(speed))
	return &ua.CallMethodResult{
		StatusCode:           ua.StatusOK,
		InputArgumentResults: []ua.StatusCode{ua.StatusOK},
		OutputArguments:      []*ua.Variant{ua.MustVariant(true)},
	}
}
