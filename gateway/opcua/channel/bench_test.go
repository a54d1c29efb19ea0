package channel

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// BenchmarkReadRoundTrip is one Read through a channel and back, with
// gopcua's client secure channel on the other side.
func BenchmarkReadRoundTrip(b *testing.B) {
	srv := startServer(b, baseConfig(b))
	for _, o := range []Offer{
		{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
	} {
		b.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(b *testing.B) {
			sc, _, err := dialUASC(b, srv.endpoint, o.PolicyURI, o.Mode, clientCert, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			node := ua.NewNumericNodeID(0, 2258)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := readOnce(sc, node); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeRead decodes a single-node Read request and its response
// as decodeService does for every Read that crosses the gateway; the
// generic rows are the same bodies through the pre-scan and gopcua's
// codec. Run: go test -run '^$' -bench DecodeRead -benchmem ./gateway/opcua/channel/
func BenchmarkDecodeRead(b *testing.B) {
	t := &testing.T{}
	req := mustEncode(t, id.ReadRequest_Encoding_DefaultBinary, readRequest(ua.NewStringNodeID(1, "Pressure")))
	resp := mustEncode(t, id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{
		ResponseHeader: &ua.ResponseHeader{Timestamp: time.Now(), RequestHandle: 7, ServiceDiagnostics: &ua.DiagnosticInfo{}, AdditionalHeader: ua.NewExtensionObject(nil)},
		Results: []*ua.DataValue{{EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
			Value: ua.MustVariant(1.013), SourceTimestamp: time.Now(), ServerTimestamp: time.Now()}}})
	for _, c := range []struct {
		name   string
		body   []byte
		decode func([]byte, int64) (*ua.ExpandedNodeID, any, error)
	}{
		{"request", req, decodeService},
		{"response", resp, decodeService},
		{"request/generic", req, genericChecked},
		{"response/generic", resp, genericChecked},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.decode(c.body, DefaultMaxDecodedSize); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// genericChecked is how decodeService decodes a service other than Read.
func genericChecked(body []byte, maxDecoded int64) (*ua.ExpandedNodeID, any, error) {
	if err := checkLimits(body, maxDecoded); err != nil {
		return nil, nil, err
	}
	return ua.DecodeService(body)
}
