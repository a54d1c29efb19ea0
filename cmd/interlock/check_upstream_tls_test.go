package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// upstreamTLSConfig rewrites the e2e gateway's plc1 listener: its upstream
// (line 8 of the file) and, when section is not empty, an upstream_tls
// section at the top of its modbus section (lines from 13 on) followed
// by more modbus lines in extra.
func upstreamTLSConfig(t *testing.T, g *gw, upstream, section, extra string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "    upstream: tcp://127.0.0.1:502\n", "    upstream: "+upstream+"\n", 1)
	s = strings.Replace(s, "    modbus:\n", "    modbus:\n"+section+extra, 1)
	writeFile(t, g.config, s)
	lines := strings.Split(s, "\n")
	if lines[7] != "    upstream: "+upstream || (section != "" && lines[12] != "      upstream_tls:") {
		t.Fatalf("the listener is not where the test expects it:\n%s", s)
	}
}

// A tls:// upstream's section is read when the engine is built (check, run):
// each mistake is one error naming the file, the line and the key.
func TestCheckUpstreamTLSErrors(t *testing.T) {
	t.Parallel()
	p := gatewaytest.NewTLSPKI(t)
	crt, key := p.Issue(t, "gw-client", gatewaytest.CertOptions{CommonName: "interlock gateway", Client: true, Role: "gateway"})
	_, otherKey := p.Issue(t, "other", gatewaytest.CertOptions{CommonName: "other", Client: true})
	otherCRL, _ := gatewaytest.NewTLSPKINamed(t, "Another authority").CRL(t, "other", time.Now().Add(24*time.Hour))
	good := fmt.Sprintf("      upstream_tls:\n        ca: %s\n        cert: %s\n        key: %s\n", p.CAFile, crt, key)
	for _, tc := range []struct {
		name, upstream, section, extra string
		line                           int
		want                           string // after FILE:LINE: ; {dir} the config's folder
	}{
		{"tls:// without upstream_tls", "tls://127.0.0.1:802", "", "", 8,
			`listeners[0].upstream: "tls://127.0.0.1:802": a tls:// upstream needs modbus.upstream_tls (ca: the CA certificates that issued the PLC's certificate; cert, key: the gateway's client certificate)`},
		{"a route's tls:// without upstream_tls", "tcp://127.0.0.1:502", "", "      routes:\n        - unit_ids: [7]\n          upstream: tls://127.0.0.1:802\n", 15,
			`listeners[0].modbus.routes[0].upstream: "tls://127.0.0.1:802": a tls:// upstream needs modbus.upstream_tls (ca: the CA certificates that issued the PLC's certificate; cert, key: the gateway's client certificate)`},
		{"upstream_tls without a tls:// upstream", "tcp://127.0.0.1:502", good, "", 13,
			"listeners[0].modbus.upstream_tls: no upstream of this listener is tls:// (tcp://127.0.0.1:502): the section would secure nothing and the gateway would speak plain Modbus to the PLC; make the upstream tls://host:port or remove the section"},
		{"cert and key missing", "tls://127.0.0.1:802", "      upstream_tls:\n        ca: " + p.CAFile + "\n", "", 13,
			"listeners[0].modbus.upstream_tls: missing cert, key: ca is the CA certificates (PEM) that issued the PLC's certificate, cert and key the gateway's client certificate and its key (PEM); Modbus/TCP Security authenticates both ends"},
		{"cert unreadable", "tls://127.0.0.1:802", fmt.Sprintf("      upstream_tls:\n        ca: %s\n        cert: ./nope.crt\n        key: %s\n", p.CAFile, key), "", 15,
			"listeners[0].modbus.upstream_tls.cert: open {dir}/nope.crt: no such file or directory"},
		{"key of another certificate", "tls://127.0.0.1:802", fmt.Sprintf("      upstream_tls:\n        ca: %s\n        cert: %s\n        key: %s\n", p.CAFile, crt, otherKey), "", 16,
			fmt.Sprintf("listeners[0].modbus.upstream_tls.key: %s is not the key of the certificate in %s (tls: private key does not match public key)", otherKey, crt)},
		{"ca without a certificate", "tls://127.0.0.1:802", fmt.Sprintf("      upstream_tls:\n        ca: %s\n        cert: %s\n        key: %s\n", key, crt, key), "", 14,
			fmt.Sprintf("listeners[0].modbus.upstream_tls.ca: %s holds no PEM certificate", key)},
		{"crl unreadable", "tls://127.0.0.1:802", good + "        crl: ./nope.crl\n", "", 17,
			"listeners[0].modbus.upstream_tls.crl: open {dir}/nope.crl: no such file or directory"},
		{"crl of a CA not in ca", "tls://127.0.0.1:802", good + "        crl: " + otherCRL + "\n", "", 17,
			fmt.Sprintf(`listeners[0].modbus.upstream_tls.crl: %s: CRL 1, of "CN=Another authority", is not signed by a CA in upstream_tls.ca (%s)`, otherCRL, p.CAFile)},
		{"unknown key", "tls://127.0.0.1:802", good + "        insecure_skip_verify: true\n", "", 17,
			`listeners[0].modbus.upstream_tls.insecure_skip_verify: unknown key "insecure_skip_verify"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			upstreamTLSConfig(t, g, tc.upstream, tc.section, tc.extra)
			err := cmdCheck([]string{"--config", g.config}, nil, &bytes.Buffer{}, &bytes.Buffer{})
			want := fmt.Sprintf("%s:%d: %s", g.config, tc.line, strings.ReplaceAll(tc.want, "{dir}", filepath.Dir(g.config)))
			if err == nil || err.Error() != want {
				t.Fatalf("check: %v\nwant %s", err, want)
			}
		})
	}
}

// check passes a good section (tls:// without a port is port 802, a
// relative path is relative to the file) and warns of the gateway's client
// certificate when it has expired, expires within 30 days, or is not for
// client authentication.
func TestCheckUpstreamTLSCertificate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    gatewaytest.CertOptions
		warn string // after FILE:LINE: warning: listeners[0].modbus.upstream_tls.cert: CERT; "" none
	}{
		{"good", gatewaytest.CertOptions{CommonName: "gw", Client: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)}, ""},
		{"expires in 10 days", gatewaytest.CertOptions{CommonName: "gw", Client: true, NotAfter: time.Now().Add(10*24*time.Hour + time.Hour)},
			" expires at {end}, in 10 days: the PLC refuses the gateway from then on"},
		{"expired", gatewaytest.CertOptions{CommonName: "gw", Client: true, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
			" expired at {end}: the PLC refuses the gateway (every call to a tls:// upstream is answered 0x0A)"},
		{"server only", gatewaytest.CertOptions{CommonName: "gw", Server: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)},
			" is not for client authentication (extended key usage clientAuth): a PLC that checks it refuses the gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			p := gatewaytest.NewTLSPKI(t)
			crt, key := p.Issue(t, "gw-client", tc.o)
			for from, to := range map[string]string{p.CAFile: "ca.crt", crt: "gw-client.crt", key: "gw-client.key"} {
				copyFile(t, from, filepath.Join(g.dir, to))
			}
			upstreamTLSConfig(t, g, "tls://127.0.0.1", "      upstream_tls:\n        ca: ./ca.crt\n        cert: ./gw-client.crt\n        key: ./gw-client.key\n        server_name: plc1\n", "")
			var stdout bytes.Buffer
			if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &bytes.Buffer{}); err != nil {
				t.Fatalf("check: %v\n%s", err, stdout.String())
			}
			warned := strings.Contains(stdout.String(), "warning: listeners[0].modbus.upstream_tls")
			if tc.warn == "" {
				if warned {
					t.Fatalf("a warning about a good certificate:\n%s", stdout.String())
				}
				return
			}
			end := tc.o.NotAfter.UTC().Truncate(time.Second).Format(time.RFC3339)
			want := fmt.Sprintf("%s:15: warning: listeners[0].modbus.upstream_tls.cert: ./gw-client.crt%s\n", g.config, strings.ReplaceAll(tc.warn, "{end}", end))
			if !strings.Contains(stdout.String(), want) {
				t.Fatalf("check output:\n%s\nwant the line\n%s", stdout.String(), want)
			}
		})
	}
}

// check warns of an upstream_tls.crl past its next update, at its line,
// and says nothing of a current one.
func TestCheckUpstreamTLSStaleCRL(t *testing.T) {
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
			p := gatewaytest.NewTLSPKINamed(t, "PLC authority")
			crt, key := p.Issue(t, "gw-client", gatewaytest.CertOptions{CommonName: "gw", Client: true, NotAfter: time.Now().Add(90 * 24 * time.Hour)})
			crl, _ := p.CRL(t, "plc", tc.next)
			upstreamTLSConfig(t, g, "tls://127.0.0.1", fmt.Sprintf("      upstream_tls:\n        ca: %s\n        cert: %s\n        key: %s\n        crl: %s\n", p.CAFile, crt, key, crl), "")
			var stdout bytes.Buffer
			if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &bytes.Buffer{}); err != nil {
				t.Fatalf("check: %v\n%s", err, stdout.String())
			}
			want := fmt.Sprintf("%s:17: warning: listeners[0].modbus.upstream_tls.crl: %s: the CRL of \"CN=PLC authority\" was due for its next update at %s; it still revokes what it lists",
				g.config, crl, tc.next.UTC().Format(time.RFC3339))
			if got := strings.Contains(stdout.String(), want); got != tc.warn {
				t.Fatalf("check output:\n%s\nwant the line %v:\n%s", stdout.String(), tc.warn, want)
			}
		})
	}
}
