package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// tlsListener is a Modbus/TCP Security listener as run serves it: its
// configuration, the TLS server its handshakes use, and the listener.
type tlsListener struct {
	cfg *config.ListenerTLS
	srv *modbus.TLSServer
	gl  *gateway.Listener
}

func newTLSServer(f config.TLSFiles) *modbus.TLSServer {
	return modbus.NewTLSServer(f.Certificate, modbus.ClientTrust{CAs: f.ClientCAs, CRLs: f.CRLs})
}

// tlsWatch keeps a TLS listener's files in force (tls.load and
// tls.load_failed records): a new certificate, client CA or CRL applies to
// the next handshake, and the sessions whose client certificate no longer
// passes (revoked, its CA removed) are ended at once.
func tlsWatch(tl tlsListener, aw recorder, log zerolog.Logger) *fileWatch {
	inForce := tl.cfg.TLSFiles
	return &fileWatch{listener: tl.gl.Name, kind: "tls", paths: tl.cfg.Paths(), aw: aw,
		log: log.With().Str("listener", tl.gl.Name).Logger(),
		load: func() (loaded, error) {
			out := loaded{msg: "tls files loaded: new handshakes use them",
				failMsg: "tls files not loaded; the certificate and trust in force stay"}
			f, err := tl.cfg.ReadFiles()
			if err != nil {
				out.fields = func(e *zerolog.Event) { tlsFields(e, tl.cfg, inForce) }
				return out, fmt.Errorf("listener %s: %w", tl.gl.Name, err)
			}
			if sameTLSFiles(f, inForce) {
				out.unchanged = true
				out.fields = func(e *zerolog.Event) { tlsFields(e, tl.cfg, f) }
				return out, nil
			}
			inForce = f
			tl.srv.Set(f.Certificate, modbus.ClientTrust{CAs: f.ClientCAs, CRLs: f.CRLs})
			ended := tl.gl.Recheck()
			stale := f.StaleCRLs(time.Now())
			for _, s := range stale {
				log.Warn().Str("listener", tl.gl.Name).Str("crl", tl.cfg.CRL).Msg(s + "; it still revokes what it lists")
			}
			out.fields = func(e *zerolog.Event) {
				tlsFields(e, tl.cfg, f)
				e.Int("sessions_ended", ended)
				if len(stale) > 0 {
					e.Strs("stale_crls", stale)
				}
			}
			return out, nil
		}}
}

// tlsFields are what a tls record says of the files in force.
func tlsFields(e *zerolog.Event, c *config.ListenerTLS, f config.TLSFiles) {
	e.Strs("paths", c.Paths())
	if leaf := f.Certificate.Leaf; leaf != nil {
		e.Str("cert_subject", leaf.Subject.String()).
			Str("cert_thumbprint", gateway.Thumbprint(leaf.Raw)).
			Time("cert_not_after", leaf.NotAfter.UTC())
	}
	e.Int("crls", len(f.CRLs)).Int("revoked_certificates", certs.RevokedCount(f.CRLs))
}

// sameTLSFiles says whether two readings of a tls section hold the same
// certificate, key, client CAs and CRLs.
func sameTLSFiles(a, b config.TLSFiles) bool {
	// The key goes with the certificate: ReadFiles checks that they match.
	if len(a.Certificate.Certificate) != len(b.Certificate.Certificate) || len(a.CRLs) != len(b.CRLs) ||
		!a.ClientCAs.Equal(b.ClientCAs) {
		return false
	}
	for i := range a.Certificate.Certificate {
		if !bytes.Equal(a.Certificate.Certificate[i], b.Certificate.Certificate[i]) {
			return false
		}
	}
	for i := range a.CRLs {
		if !bytes.Equal(a.CRLs[i].Raw, b.CRLs[i].Raw) {
			return false
		}
	}
	return true
}
