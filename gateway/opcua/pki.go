package opcua

import (
	"crypto/rsa"
	"time"

	"github.com/interlock-ics/interlock/certs"
)

// pki is the gateway's certificate store as the engine uses it.
type pki struct{ store *certs.Store }

func openPKI(dir string) (*pki, error) {
	s, err := certs.Open(dir)
	if err != nil {
		return nil, err
	}
	return &pki{store: s}, nil
}

func (p *pki) Own() ([]byte, *rsa.PrivateKey, error) { return p.store.Own() }

// validate checks a peer's certificate chain in the OPC UA order; appURI ""
// skips the ApplicationURI check. until is when the chain stops passing
// by time alone (its first expiry).
func (p *pki) validate(chain []byte, appURI string) (until time.Time, err error) {
	return p.store.ValidUntil(chain, certs.ValidateOptions{ApplicationURI: appURI, Now: time.Now()})
}
