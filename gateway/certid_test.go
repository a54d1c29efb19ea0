package gateway_test

import (
	"crypto/tls"
	"testing"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// A Modbus client certificate and an OPC UA certificate are named alike in
// principal.cert_thumbprint: gateway.Thumbprint is certs.Thumbprint.
func TestThumbprintIsCertsThumbprint(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	crt, key := p.Issue(t, "alice", gatewaytest.CertOptions{CommonName: "alice", Client: true})
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, der := range [][]byte{pair.Certificate[0], p.CA.Raw} {
		if got, want := gateway.Thumbprint(der), certs.Thumbprint(der); got != want || len(got) != 40 {
			t.Errorf("gateway.Thumbprint %q, certs.Thumbprint %q", got, want)
		}
	}
}
