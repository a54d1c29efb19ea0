package main

import (
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
)

// trustRechecker is an engine whose trust lists are read at every
// validation, and whose open sessions can be checked against them again
// (the OPC UA engine).
type trustRechecker interface {
	TrustFolders() []string
	RecheckTrust() (opcua.TrustRecheck, error)
}

var _ trustRechecker = (*opcua.Engine)(nil)

// pkiWatches makes a watch for each listener whose engine checks clients
// against a certificate store (pki.load and pki.load_failed records): when
// its trust lists or CRLs change, and on SIGHUP, the open sessions are
// checked against them, those whose certificate no longer passes are
// ended, and the connections to a server whose certificate no longer
// passes are closed. A pki.load's trust_changed says whether the trust
// lists differ from those of the last pki.load (or of the first check).
// New connections use the store as it is without a watch.
func pkiWatches(gws []*gateway.Listener, aw recorder, log zerolog.Logger) []*fileWatch {
	var out []*fileWatch
	for _, g := range gws {
		r, ok := g.Engine.(trustRechecker)
		if !ok || len(r.TrustFolders()) == 0 {
			continue
		}
		out = append(out, newPKIWatch(g.Name, r, aw, log))
	}
	return out
}

func newPKIWatch(listener string, eng trustRechecker, aw recorder, log zerolog.Logger) *fileWatch {
	var digest string // of the trust lists last recorded; "" at start
	return &fileWatch{listener: listener, kind: "pki", paths: eng.TrustFolders(), aw: aw,
		log: log.With().Str("listener", listener).Logger(),
		load: func() (loaded, error) {
			r, err := eng.RecheckTrust()
			out := loaded{failMsg: "trust lists not read; open sessions not checked again"}
			if err != nil {
				return out, err
			}
			d := r.PKI.Digest + " " + r.UserPKI.Digest
			if digest == "" {
				digest = d // the first reading is what sessions opened under
			}
			// A check with the trust lists as they were still ends what no
			// longer passes (a certificate that expired): recorded, as no change.
			changed := d != digest
			out.unchanged = !changed && r.SessionsEnded == 0 && r.UpstreamDropped == 0
			digest = d
			out.msg = "trust lists changed: open sessions checked against them"
			if !changed {
				out.msg = "trust lists unchanged: open sessions checked against them again"
			}
			out.fields = func(e *zerolog.Event) {
				e.Bool("trust_changed", changed)
				e.Strs("paths", eng.TrustFolders())
				summaryFields(e, "pki", r.PKI)
				if r.UserPKI.Digest != "" {
					summaryFields(e, "user_pki", r.UserPKI)
				}
				e.Int("sessions_ended", r.SessionsEnded)
				if r.UpstreamError != "" {
					e.Int("upstream_connections_dropped", r.UpstreamDropped).Str("upstream_error", r.UpstreamError)
				}
			}
			return out, nil
		}}
}

// summaryFields puts what a store's trust lists hold in a record, as an
// object named key.
func summaryFields(e *zerolog.Event, key string, s certs.Summary) {
	e.Dict(key, zerolog.Dict().Int("trusted_certs", s.Trusted).Int("issuer_certs", s.Issuers).
		Int("crls", s.CRLs).Int("revoked_certificates", s.Revoked))
}
