package channel

import (
	"testing"
	"time"

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
