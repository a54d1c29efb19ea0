package opcua

import (
	"time"
)

// certGrace is how long after a certificate's NotAfter the sessions that
// use it are checked again: it is still valid in its NotAfter second.
const certGrace = time.Second

// checkCertsAfter sets when the session's certificates are validated
// again: just after the first of the given ends (zero ones are none).
func (s *uaSession) checkCertsAfter(ends ...time.Time) {
	var first time.Time
	for _, t := range ends {
		if !t.IsZero() && (first.IsZero() || t.Before(first)) {
			first = t
		}
	}
	if first.IsZero() {
		s.certsDue.Store(0)
		return
	}
	s.certsDue.Store(first.Add(certGrace).UnixNano())
}

// checkExpiredCerts validates again, at now, the certificates of every
// session whose first certificate expiry has passed, and the upstream
// server's certificate once it has: what no longer passes is handled as
// a trust-list change would (RecheckTrust), so that a session ends with
// its certificate and the gateway stops talking to a server whose
// certificate expired.
func (e *Engine) checkExpiredCerts(now time.Time) {
	for _, s := range e.sessions.all() {
		if due := s.certsDue.Load(); due != 0 && now.UnixNano() >= due {
			e.recheckSession(s)
		}
	}
	cfg := e.up
	cfg.mu.Lock()
	until := cfg.serverUntil
	cfg.mu.Unlock()
	if !until.IsZero() && now.After(until.Add(certGrace)) {
		if dropped, err := e.recheckUpstream(); err != nil {
			e.log.Warn().Err(err).Int("upstream_connections_dropped", dropped).
				Msg("the server's certificate no longer passes: connections to it closed")
		}
	}
}
