package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// upstreamTLSReloader is an engine whose client side of Modbus/TCP
// Security toward its PLCs can be read again (the Modbus engine with
// modbus.upstream_tls).
type upstreamTLSReloader interface {
	UpstreamTLSPaths() []string
	ReloadUpstreamTLS() (modbus.UpstreamTLSLoad, error)
}

var _ upstreamTLSReloader = (*modbus.Engine)(nil)

// upstreamTLSWatches makes a watch for each listener with
// modbus.upstream_tls (upstream_tls.load and upstream_tls.load_failed
// records): a new client certificate or CA bundle applies to every new
// session with its tls:// upstreams (a new CRL file to every handshake),
// and the sessions made under the one before are closed.
func upstreamTLSWatches(gws []*gateway.Listener, aw recorder, log zerolog.Logger) []*fileWatch {
	var out []*fileWatch
	for _, g := range gws {
		r, ok := g.Engine.(upstreamTLSReloader)
		if !ok || len(r.UpstreamTLSPaths()) == 0 {
			continue
		}
		out = append(out, newUpstreamTLSWatch(g.Name, r, aw, log))
	}
	return out
}

func newUpstreamTLSWatch(listener string, eng upstreamTLSReloader, aw recorder, log zerolog.Logger) *fileWatch {
	log = log.With().Str("listener", listener).Logger()
	return &fileWatch{listener: listener, kind: "upstream_tls", paths: eng.UpstreamTLSPaths(), aw: aw, log: log,
		load: func() (loaded, error) {
			l, err := eng.ReloadUpstreamTLS()
			out := loaded{msg: "upstream_tls files loaded: new sessions with the PLCs use them, the sessions before are closed",
				failMsg: "upstream_tls files not loaded; the client certificate, CAs and CRLs in force stay",
				fields:  func(e *zerolog.Event) { upstreamTLSFields(e, l) }}
			if err != nil {
				return out, fmt.Errorf("listener %s: modbus.%w", listener, err)
			}
			if !l.Changed {
				out.unchanged = true
				return out, nil
			}
			for _, w := range l.Warnings {
				log.Warn().Msg("modbus." + w)
			}
			for _, s := range l.StaleCRLs {
				log.Warn().Str("crl", l.Paths[len(l.Paths)-1]).Msg("modbus.upstream_tls.crl: " + s + "; it still revokes what it lists")
			}
			out.fields = func(e *zerolog.Event) {
				upstreamTLSFields(e, l)
				e.Int("connections_closed", l.ConnectionsClosed)
				if len(l.StaleCRLs) > 0 {
					e.Strs("stale_crls", l.StaleCRLs)
				}
			}
			return out, nil
		}}
}

// upstreamTLSFields are what an upstream_tls record says of the files in
// force.
func upstreamTLSFields(e *zerolog.Event, l modbus.UpstreamTLSLoad) {
	e.Strs("paths", l.Paths)
	if c := l.Cert; c != nil {
		e.Str("cert_subject", c.Subject.String()).
			Str("cert_thumbprint", gateway.Thumbprint(c.Raw)).
			Time("cert_not_after", c.NotAfter.UTC())
	}
	e.Int("ca_certs", l.CAs).Int("crls", l.CRLs).Int("revoked_certificates", l.Revoked)
}
