package opcua

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"time"

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
	var uerr error
	if r.UpstreamDropped, uerr = e.recheckUpstream(); uerr != nil {
		r.UpstreamError = uerr.Error()
	}
	for _, s := range e.sessions.all() {
		r.SessionsEnded += e.recheckSession(s)
	}
	return r, nil
}

// recheckSession validates an active session's certificates again, and
// ends what no longer passes: the sessions of its secure channel when its
// application certificate fails (and the channel), the session alone when
// its X.509 user certificate does. It returns how many sessions it ended;
// a session that passes is set to be checked again at its certificates'
// first expiry.
func (e *Engine) recheckSession(s *uaSession) (ended int) {
	s.mu.Lock()
	active, userCert := s.activated && !s.closed, s.userCert
	s.mu.Unlock()
	if !active {
		return 0
	}
	appUntil, userUntil := s.appUntil, time.Time{}
	if s.clientCert != nil && e.validate != nil {
		until, verr := e.validate(s.clientCert, s.clientDesc.ApplicationURI)
		if verr != nil {
			cause := fmt.Errorf("ended by the gateway: the client application certificate no longer passes: %w", verr)
			ch := s.conn.Load()
			if ch == nil { // between channels: none to close
				if e.endSession(context.Background(), s, cause) {
					ended++
				}
				return ended
			}
			// Every session of the channel has its certificate: each
			// record says why before the channel goes.
			for _, x := range e.sessions.ofConn(ch) {
				if e.endSession(context.Background(), x, cause) {
					ended++
				}
			}
			ch.ch.Close()
			return ended
		}
		appUntil = until
	}
	if userCert != nil && e.validateUser != nil {
		until, verr := e.validateUser(userCert)
		if verr != nil {
			if e.endSession(context.Background(), s, fmt.Errorf("ended by the gateway: the X.509 user certificate no longer passes: %w", verr)) {
				ended++
			}
			return ended
		}
		userUntil = until
	}
	s.checkCertsAfter(appUntil, userUntil)
	return 0
}

// recheckUpstream checks the server certificate of a secured upstream leg
// again (recheckServer) and, when it no longer passes, closes every
// connection to the server: it returns how many, and why.
func (e *Engine) recheckUpstream() (dropped int, err error) {
	if err = e.recheckServer(); err == nil {
		return 0, nil
	}
	for _, s := range e.sessions.all() {
		s.mu.Lock()
		up := s.up
		s.mu.Unlock()
		if up != nil && up.dropConnection() {
			dropped++
		}
	}
	return dropped, err
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
	until, err := cfg.validate(cert)
	cfg.mu.Lock()
	if cfg.serverCert != nil && bytes.Equal(cfg.serverCert, cert) {
		cfg.serverUntil = until // zero on a failure: checked again at a change, not every second
	}
	cfg.mu.Unlock()
	if err != nil {
		cfg.forgetEndpoints()
		return fmt.Errorf("server certificate: %w", err)
	}
	return nil
}
