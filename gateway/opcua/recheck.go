package opcua

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/interlock-ics/interlock/certs"
)

// TrustFolders are the folders whose files decide which clients are
// trusted (the trust lists and CRLs of pki, and of user_pki when set): a
// change in them is a reason to RecheckTrust.
func (e *Engine) TrustFolders() []string {
	var out []string
	for _, p := range []*pki{e.pki, e.userPKI} {
		if p == nil {
			continue
		}
		for _, f := range certs.TrustFolders {
			out = append(out, filepath.Join(p.store.Dir(), f))
		}
	}
	return out
}

// TrustRecheck is what RecheckTrust found.
type TrustRecheck struct {
	PKI, UserPKI  certs.Summary // UserPKI is zero without user_pki
	SessionsEnded int
	// UpstreamDropped counts the connections to the server closed because
	// its certificate no longer passes (UpstreamError says why).
	UpstreamDropped int
	UpstreamError   string
}

// RecheckTrust checks the certificates of every active session again
// against the trust lists as they are now: the client's application
// instance certificate (pki) and the certificate of an X.509 user token
// (user_pki, or pki). A session whose certificate no longer passes —
// removed from trusted/, revoked by a CRL since, expired — is ended, its
// session.close saying why; a failed application certificate also closes
// its secure channel. On a secured upstream leg the server's certificate
// is checked too: when it no longer passes, every connection to the server
// is closed, and the next request of each session connects again and is
// refused (the sessions stay open, and recover once the server is trusted
// again). A store that cannot be read is an error, and ends nothing.
func (e *Engine) RecheckTrust() (TrustRecheck, error) {
	var r TrustRecheck
	if e.pki == nil {
		return r, nil
	}
	var err error
	if r.PKI, err = e.pki.store.Summary(); err != nil {
		return r, fmt.Errorf("pki: %w", err)
	}
	if e.userPKI != nil {
		if r.UserPKI, err = e.userPKI.store.Summary(); err != nil {
			return r, fmt.Errorf("user_pki: %w", err)
		}
	}
	if err := e.recheckServer(); err != nil {
		r.UpstreamError = err.Error()
		for _, s := range e.sessions.all() {
			s.mu.Lock()
			up := s.up
			s.mu.Unlock()
			if up != nil && up.dropConnection() {
				r.UpstreamDropped++
			}
		}
	}
	for _, s := range e.sessions.all() {
		s.mu.Lock()
		active, userCert := s.activated && !s.closed, s.userCert
		s.mu.Unlock()
		if !active {
			continue
		}
		if s.clientCert != nil && e.validate != nil {
			if verr := e.validate(s.clientCert, s.clientDesc.ApplicationURI); verr != nil {
				// Every session of the channel has its certificate: each
				// record says why before the channel goes.
				cause := fmt.Errorf("ended by the gateway: the client application certificate no longer passes: %w", verr)
				for _, x := range e.sessions.ofConn(s.conn) {
					if e.endSession(context.Background(), x, cause) {
						r.SessionsEnded++
					}
				}
				s.conn.ch.Close()
				continue
			}
		}
		if userCert != nil && e.validateUser != nil {
			if verr := e.validateUser(userCert); verr != nil &&
				e.endSession(context.Background(), s, fmt.Errorf("ended by the gateway: the X.509 user certificate no longer passes: %w", verr)) {
				r.SessionsEnded++
			}
		}
	}
	return r, nil
}

// recheckServer checks the server certificate the last upstream connect
// validated against the trust list as it is now; nil when it passes, when
// the upstream leg is not secured, or before any connect. On a failure
// the server's endpoints are forgotten, so that the next connect asks the
// server again.
func (e *Engine) recheckServer() error {
	cfg := e.up
	if cfg.validate == nil {
		return nil
	}
	cfg.mu.Lock()
	cert := cfg.serverCert
	cfg.mu.Unlock()
	if cert == nil {
		return nil
	}
	if err := cfg.validate(cert); err != nil {
		cfg.forgetEndpoints()
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}
