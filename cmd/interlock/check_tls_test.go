package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// withTLS adds a tls section to the gateway's plc1 listener, with a
// gateway certificate made from o by p, p's CA the client CA, and more
// lines of the section in extra; it returns the line of tls.cert.
func withTLS(t *testing.T, g *gw, p *gatewaytest.TLSPKI, o gatewaytest.CertOptions, extra string) (certFile string, certLine int) {
	t.Helper()
	crt, key := p.Issue(t, "gateway", o)
	return crt, insertTLS(t, g, crt, key, p.CAFile, extra)
}

// insertTLS puts a tls section before the modbus section of plc1 and
// returns the line of its cert key.
func insertTLS(t *testing.T, g *gw, cert, key, clientCA, extra string) int {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	section := fmt.Sprintf("    tls:\n      cert: %s\n      key: %s\n      client_ca: %s\n%s", cert, key, clientCA, extra)
	before, after, ok := strings.Cut(string(b), "    modbus:\n")
	if !ok {
		t.Fatalf("no modbus section in\n%s", b)
	}
	writeFile(t, g.config, before+section+"    modbus:\n"+after)
	return strings.Count(before, "\n") + 2
}

// check warns of a gateway certificate that expires within 30 days or is
// not for server authentication, and fails on an expired one.
func TestCheckListenerCertificate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    gatewaytest.CertOptions
		err  string // the error after FILE:LINE: KEY: CERT; "" none
		warn string // a warning after FILE:LINE: warning: KEY: CERT; "" none
	}{
		{"good", gatewaytest.CertOptions{CommonName: "gw", Server: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)}, "", ""},
		{"expires in 10 days", gatewaytest.CertOptions{CommonName: "gw", Server: true, NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)},
			"", " expires at {end}, in 10 days: clients refuse the gateway from then on"},
		{"expired", gatewaytest.CertOptions{CommonName: "gw", Server: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
			" expired at {end}: clients refuse the gateway", ""},
		{"client only", gatewaytest.CertOptions{CommonName: "gw", Client: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)},
			"", " is not for server authentication (extended key usage serverAuth): clients that check it refuse the gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			crt, line := withTLS(t, g, gatewaytest.NewTLSPKI(t), tc.o, "")
			end := tc.o.NotAfter.UTC().Truncate(time.Second).Format(time.RFC3339)
			var stdout, stderr bytes.Buffer
			err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr)
			prefix := fmt.Sprintf("%s:%d: ", g.config, line)
			if tc.err != "" {
				want := prefix + "listeners[0].tls.cert: " + crt + strings.ReplaceAll(tc.err, "{end}", end)
				if err == nil || err.Error() != want {
					t.Fatalf("check: %v\nwant %s", err, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			warned := strings.Contains(stdout.String(), "warning: listeners[0].tls.cert")
			if tc.warn == "" {
				if warned {
					t.Fatalf("a warning about a good certificate:\n%s", stdout.String())
				}
				return
			}
			want := prefix + "warning: listeners[0].tls.cert: " + crt + strings.ReplaceAll(tc.warn, "{end}", end) + "\n"
			if !strings.Contains(stdout.String(), want) {
				t.Fatalf("check output:\n%s\nwant the line\n%s", stdout.String(), want)
			}
		})
	}
}

// tls is Modbus/TCP Security: refused on an OPC UA listener, which secures
// its channel itself.
func TestCheckTLSRefusedOnOPCUA(t *testing.T) {
	t.Parallel()
	g := newGateway(t, gwOptions{upstreamPort: 502})
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	before, after, _ := strings.Cut(string(b), "sources:\n")
	writeFile(t, g.config, before+`  - name: line1
    protocol: opcua
    listen: opc.tcp://127.0.0.1:0
    upstream: opc.tcp://127.0.0.1:4840
    tls:
      cert: ./gw.crt
      key: ./gw.key
      client_ca: ./ca.crt
sources:
`+after)
	line := strings.Count(before, "\n") + 5
	err = cmdCheck([]string{"--config", g.config}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	want := fmt.Sprintf("%s:%d: listeners[1].tls: an opcua listener has its own security (opcua.security_policies, opcua.pki); tls is Modbus/TCP Security, for modbus listeners", g.config, line)
	if err == nil || err.Error() != want {
		t.Fatalf("check: %v\nwant %s", err, want)
	}
}

// check warns of a CRL past its next update, at its line, and says nothing
// of a current one.
func TestCheckStaleCRL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		next time.Time
		warn bool
	}{
		{"current", time.Now().Add(24 * time.Hour), false},
		{"stale", time.Now().Add(-2 * time.Hour).Truncate(time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			p := gatewaytest.NewTLSPKI(t)
			crl, _ := p.CRL(t, "clients", tc.next)
			_, line := withTLS(t, g, p, gatewaytest.CertOptions{CommonName: "gw", Server: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)},
				"      crl: "+crl+"\n")
			var stdout bytes.Buffer
			if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &bytes.Buffer{}); err != nil {
				t.Fatalf("check: %v", err)
			}
			want := fmt.Sprintf("%s:%d: warning: listeners[0].tls.crl: %s: the CRL of \"CN=Interlock test CA\" was due for its next update at %s; it still revokes what it lists",
				g.config, line+3, crl, tc.next.UTC().Format(time.RFC3339))
			if got := strings.Contains(stdout.String(), want); got != tc.warn {
				t.Fatalf("check output:\n%s\nwant the line %v:\n%s", stdout.String(), tc.warn, want)
			}
		})
	}
}

// check's ok line ends, for a Modbus/TCP Security listener, with the
// certificate it presents, how many client CAs it trusts, and its CRLs and
// the certificates they revoke, or that it checks no revocation; the line
// of a configuration without tls is as it was.
func TestCheckOKLineSaysTLS(t *testing.T) {
	t.Parallel()
	end := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	gwCert := gatewaytest.CertOptions{CommonName: "plc1 gateway", Server: true, NotAfter: end}
	okLine := func(t *testing.T, g *gw) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr); err != nil {
			t.Fatalf("check: %v\n%s", err, stderr.String())
		}
		for line := range strings.Lines(stdout.String()) {
			if strings.HasPrefix(line, g.config+": ok: 1 listener, policy ") {
				return line
			}
		}
		t.Fatalf("check printed no ok line:\n%s", stdout.String())
		return ""
	}
	plain := regexp.MustCompile(`: ok: 1 listener, policy \S+ revision \S+ \(enforce mode\), audit log \S+\n$`)
	tlsClause := func(line string) (string, bool) {
		_, clause, ok := strings.Cut(line, "audit log ")
		_, clause, found := strings.Cut(clause, "; ")
		return clause, ok && found
	}
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		line := okLine(t, newGateway(t, gwOptions{upstreamPort: 502}))
		if !plain.MatchString(line) {
			t.Fatalf("ok line %q, want it as before: no tls clause", line)
		}
	})
	t.Run("no CRL", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, gwOptions{upstreamPort: 502})
		withTLS(t, g, gatewaytest.NewTLSPKI(t), gwCert, "")
		line := okLine(t, g)
		want := "plc1: Modbus/TCP Security, certificate CN=plc1 gateway until " + end.Format(time.RFC3339) +
			", client CAs 1, no CRL: revocation not checked\n"
		if clause, ok := tlsClause(line); !ok || clause != want || !plain.MatchString(strings.TrimSuffix(line, "; "+want)+"\n") {
			t.Fatalf("ok line %q\nwant it to end with %q", line, "; "+want)
		}
	})
	t.Run("CRL", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, gwOptions{upstreamPort: 502})
		p, other := gatewaytest.NewTLSPKI(t), gatewaytest.NewTLSPKINamed(t, "Interlock other CA")
		var revoked []*x509.Certificate
		for _, name := range []string{"alice", "bob", "carol"} {
			crt, _ := p.Issue(t, name, gatewaytest.CertOptions{CommonName: name, Client: true})
			revoked = append(revoked, gatewaytest.ReadCert(t, crt))
		}
		crl, _ := p.CRL(t, "clients", time.Now().Add(24*time.Hour), revoked...)
		bundle := filepath.Join(g.dir, "client-cas.crt")
		writeFile(t, bundle, string(readFile(t, p.CAFile))+string(readFile(t, other.CAFile)))
		crt, key := p.Issue(t, "gateway", gwCert)
		insertTLS(t, g, crt, key, bundle, "      crl: "+crl+"\n")
		want := "plc1: Modbus/TCP Security, certificate CN=plc1 gateway until " + end.Format(time.RFC3339) +
			", client CAs 2, CRLs 1 (3 revoked)\n"
		if line := okLine(t, g); !strings.HasSuffix(line, "; "+want) {
			t.Fatalf("ok line %q\nwant it to end with %q", line, "; "+want)
		}
	})
}
