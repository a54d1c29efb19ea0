package modbus

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/interlock-ics/interlock/certs"
)

// upstreamTLS is an engine's modbus.upstream_tls: the section, where its
// relative paths start, and the reading in force.
type upstreamTLS struct {
	section *UpstreamTLS
	baseDir string
	inForce clientFiles
}

// UpstreamTLSLoad is what a reading of modbus.upstream_tls found, or on a
// failure what stays in force.
type UpstreamTLSLoad struct {
	Paths   []string          // ca, cert, key, and crl when set
	Cert    *x509.Certificate // the gateway's client certificate in force
	CAs     int               // the CA certificates in force
	CRLs    int               // the CRLs in force
	Revoked int               // the entries over the CRLs in force
	Changed bool              // the certificate, the CAs or the CRLs changed: put in force
	// ConnectionsClosed counts the TLS sessions of the configuration before
	// that were open: closed, or closed when their request ends.
	ConnectionsClosed int
	Warnings          []string // about a new certificate (clientCertWarnings)
	// StaleCRLs are the new CRLs past their next update (certs.StaleCRLs):
	// they still revoke what they list.
	StaleCRLs []string
}

// UpstreamTLSPaths are the files of the listener's modbus.upstream_tls
// (ca, cert, key, and crl when set); none without one.
func (e *Engine) UpstreamTLSPaths() []string {
	t := e.upTLS.section
	if t == nil {
		return nil
	}
	ca, cert, key, crl := t.paths(e.upTLS.baseDir)
	if crl != "" {
		return []string{ca, cert, key, crl}
	}
	return []string{ca, cert, key}
}

// ReloadUpstreamTLS reads modbus.upstream_tls again, with the checks made
// at start. Files that do not load leave the certificate, CAs and CRLs in
// force (the error begins with the key at fault). A changed certificate, CA
// bundle or CRL file applies to every new session with the tls:// upstreams, and their
// open sessions are closed (SetTLS), so that the next request makes a new
// one. Not safe for concurrent use.
func (e *Engine) ReloadUpstreamTLS() (UpstreamTLSLoad, error) {
	u := &e.upTLS
	if u.section == nil {
		return UpstreamTLSLoad{}, fmt.Errorf("upstream_tls: not configured")
	}
	out := UpstreamTLSLoad{Paths: e.UpstreamTLSPaths(), Cert: u.inForce.leaf, CAs: u.inForce.cas,
		CRLs: len(u.inForce.crls), Revoked: certs.RevokedCount(u.inForce.crls)}
	f, err := u.section.clientTLS(u.baseDir)
	if err != nil {
		return out, err
	}
	if f.same(u.inForce) {
		return out, nil
	}
	f.cfg.ServerName = u.section.ServerName
	u.inForce = f
	out.Cert, out.CAs, out.Changed = f.leaf, f.cas, true
	out.CRLs, out.Revoked = len(f.crls), certs.RevokedCount(f.crls)
	out.Warnings = clientCertWarnings(f.leaf, u.section.Cert, time.Now())
	out.StaleCRLs = certs.StaleCRLs(f.crls, time.Now())
	for _, up := range e.upstreams {
		out.ConnectionsClosed += up.SetTLS(f.cfg)
	}
	return out, nil
}
