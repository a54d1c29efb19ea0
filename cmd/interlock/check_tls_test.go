package main

import (
	"bytes"
	"fmt"
	"os"
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
