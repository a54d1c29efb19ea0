package modbus_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// upstream_tls.crl: every handshake with the PLC checks its chain against
// the CRLs. A CRL that revokes the PLC's certificate, read while it is
// served, closes the session and makes the next request 0x0A, the detail
// naming the certificate and the CRL's issuer; a CRL of a CA not in ca does
// not load and what is in force stays; a CA without a CRL is "revocation
// unknown"; a CRL past its next update still revokes (and is reported
// stale); a CRL that no longer lists the PLC serves it again.
func TestUpstreamTLSRevocation(t *testing.T) {
	s := newReloadSetup(t)
	plcLeaf := gatewaytest.ReadCert(t, s.plcCert)
	crl := filepath.Join(s.dir, "plc.crl")
	empty, _ := s.pki.CRL(t, "empty", time.Now().Add(24*time.Hour))
	s.put(t, crl, empty)
	plc := startGoTLSPLC(t, s.plcCert, s.plcKey, s.pki.CAFile)
	o := s.options(1)
	o.UpstreamTLS.CRL = crl
	g := startGateway(t, gwOpts{upstream: "tls://" + plc.addr, modbus: o, limits: gateway.Limits{RequestTimeout: 5 * time.Second}})
	served := func(when string) {
		t.Helper()
		if got, err := readAt(t, g, 10); err != nil || !slices.Equal(got, []uint16{10, 11}) {
			t.Fatalf("%s: read %v, %v; want [10 11]", when, got, err)
		}
	}
	refused := func(when, detail string) {
		t.Helper()
		if _, err := readAt(t, g, 10); exceptionCode(err) != modbus.ExGatewayPathUnavailable {
			t.Fatalf("%s: read %v, want exception 0x0A", when, err)
		}
		rs := g.audit.Events("result")
		if d := rs[len(rs)-1].Result.Detail; !strings.Contains(d, detail) {
			t.Fatalf("%s: result detail %q, want %q", when, d, detail)
		}
	}
	served("with a CRL that lists nothing")
	plc.session(t)
	if want := []string{s.caFile, s.crt, s.key, crl}; !slices.Equal(g.eng.UpstreamTLSPaths(), want) {
		t.Errorf("paths %v, want %v", g.eng.UpstreamTLSPaths(), want)
	}
	if l := reload(t, g); l.Changed || l.CRLs != 1 || l.Revoked != 0 {
		t.Errorf("unchanged files: %+v, want nothing changed, 1 CRL, none revoked", l)
	}

	revoking, _ := s.pki.CRL(t, "revoking", time.Now().Add(24*time.Hour), plcLeaf)
	s.put(t, crl, revoking)
	if l := reload(t, g); !l.Changed || l.ConnectionsClosed != 1 || l.CRLs != 1 || l.Revoked != 1 || len(l.StaleCRLs) != 0 {
		t.Errorf("a CRL revoking the PLC: %+v, want changed, 1 connection closed, 1 CRL, 1 revoked, none stale", l)
	}
	if !plc.endedWithin(2 * time.Second) {
		t.Fatal("the session made under the CRL before is still open")
	}
	revokedDetail := `certificate "CN=plc1" (serial ` + plcLeaf.SerialNumber.Text(16) + `) revoked at `
	refused("the PLC's certificate revoked", revokedDetail)
	refused("again", `by a CRL of "CN=PLC authority"`)

	other, _ := s.otherCA.CRL(t, "other", time.Now().Add(24*time.Hour))
	s.put(t, crl, other)
	l, err := g.eng.ReloadUpstreamTLS()
	want := "upstream_tls.crl: " + crl + `: CRL 1, of "CN=Another authority", is not signed by a CA in upstream_tls.ca (` + s.caFile + ")"
	if err == nil || err.Error() != want {
		t.Errorf("a CRL of another CA: %v, want %s", err, want)
	}
	if l.Changed || l.CRLs != 1 || l.Revoked != 1 {
		t.Errorf("what stays in force: %+v, want the revoking CRL", l)
	}
	refused("while the CRL file does not load", revokedDetail)

	// Both authorities trusted, a CRL of the other only: the PLC's CA has
	// none.
	both := append(must(os.ReadFile(s.pki.CAFile)), must(os.ReadFile(s.otherCA.CAFile))...)
	if err := os.WriteFile(s.caFile, both, 0o600); err != nil {
		t.Fatal(err)
	}
	if l := reload(t, g); !l.Changed || l.CAs != 2 || l.Revoked != 0 {
		t.Errorf("two CAs, a CRL of the other: %+v, want changed, 2 CAs, none revoked", l)
	}
	refused("the PLC's CA without a CRL", `revocation unknown: no CRL of "CN=PLC authority", the issuer of "CN=plc1"`)
	s.put(t, s.caFile, s.pki.CAFile)

	stale, _ := s.pki.CRL(t, "stale", time.Now().Add(-time.Hour), plcLeaf)
	s.put(t, crl, stale)
	if l := reload(t, g); !l.Changed || l.Revoked != 1 || len(l.StaleCRLs) != 1 || !strings.Contains(l.StaleCRLs[0], `the CRL of "CN=PLC authority" was due for its next update at`) {
		t.Errorf("a stale CRL: %+v, want changed, 1 revoked, 1 stale", l)
	}
	refused("a stale CRL that lists the PLC", revokedDetail)

	s.put(t, crl, empty)
	if l := reload(t, g); !l.Changed || l.Revoked != 0 || l.ConnectionsClosed != 0 {
		t.Errorf("the CRL that lists nothing back: %+v, want changed, none revoked, no connection open", l)
	}
	served("when the CRL no longer lists the PLC")
	if cn := plc.session(t); cn != "interlock gateway" {
		t.Fatalf("the PLC saw %q, want interlock gateway", cn)
	}
}

// A CRL file that does not load, or whose CRL no CA in ca signed, stops
// the engine at start, the error naming the key and the file.
func TestUpstreamTLSCRLErrors(t *testing.T) {
	s := newReloadSetup(t)
	other, _ := s.otherCA.CRL(t, "other", time.Now().Add(24*time.Hour))
	notCRL := filepath.Join(s.dir, "not.crl")
	if err := os.WriteFile(notCRL, []byte("-----BEGIN CERTIFICATE-----\nbm90\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, crl, want string }{
		{"missing", filepath.Join(s.dir, "nope.crl"), "upstream_tls.crl: open " + filepath.Join(s.dir, "nope.crl") + ": no such file or directory"},
		{"no CRL in it", notCRL, "upstream_tls.crl: " + notCRL + " holds no PEM X509 CRL block"},
		{"of another CA", other, "upstream_tls.crl: " + other + `: CRL 1, of "CN=Another authority", is not signed by a CA in upstream_tls.ca (` + s.caFile + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := s.options(1)
			o.UpstreamTLS.CRL = tc.crl
			_, err := modbus.New(gateway.EngineSpec{Upstream: "tls://127.0.0.1:802", Options: func(v any) error { *v.(*modbus.Options) = o; return nil }})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("%v\nwant %s", err, tc.want)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
