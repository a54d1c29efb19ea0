package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// startTLSPLC runs pymodbus's Modbus/TCP Security server
// (gateway/modbus/testdata/pymodbus_tls_server.py) with the certificate
// NAME of p, requiring client certificates of clientCA, and returns its
// port.
func startTLSPLC(t *testing.T, p *gatewaytest.TLSPKI, name, clientCA string, values ...string) int {
	t.Helper()
	script := filepath.Join(repoRoot, "gateway", "modbus", "testdata", "pymodbus_tls_server.py")
	port := freePort(t)
	args := append([]string{script, strconv.Itoa(port), filepath.Join(p.Dir, name+".crt"), filepath.Join(p.Dir, name+".key"), clientCA}, values...)
	pr := startProc(t, "pymodbus TLS server", filepath.Join(t.TempDir(), "plc.log"), []string{"PYTHONUNBUFFERED=1"}, systemPython, args...)
	eventually(t, 10*time.Second, 50*time.Millisecond, "the pymodbus TLS server listens", func() (bool, string) {
		if pr.exited() {
			t.Fatalf("the pymodbus TLS server exited: %v\n%s", pr.err, pr.output())
		}
		_, ours := portListener(pr.pid(), port)
		return ours, pr.output()
	})
	return port
}

// useTLSUpstream makes g's upstream tls://127.0.0.1:port with the
// upstream_tls files given, and more of the modbus section after them.
func useTLSUpstream(t *testing.T, g *gw, port int, ca, cert, key, more string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), fmt.Sprintf("upstream: tcp://127.0.0.1:%d\n", port), fmt.Sprintf("upstream: tls://127.0.0.1:%d\n", port), 1)
	s = strings.Replace(s, "    modbus:\n", fmt.Sprintf(`    modbus:
      upstream_tls:
        ca: %s
        cert: %s
        key: %s
`, ca, cert, key)+more, 1)
	writeFile(t, g.config, s)
}

// mbpoll → interlock → tls:// → pymodbus's TLS server, which requires the
// gateway's client certificate: reads and a write come back with the PLC's
// values and result records ok. Unit 7 is routed to a second TLS PLC whose
// certificate another authority issued: mbpoll gets 0x0A at once, the
// result record and the operational log say why, and unit 1 is served
// all along.
func TestE2ETLSUpstream(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, v101, init := plcValues()
	plcCA, otherCA := gatewaytest.NewTLSPKINamed(t, "PLC authority"), gatewaytest.NewTLSPKINamed(t, "Another authority")
	plcCert := gatewaytest.CertOptions{CommonName: "plc1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}
	plcCA.Issue(t, "plc1", plcCert)
	otherCA.Issue(t, "plc1", plcCert)
	gwCert, gwKey := plcCA.Issue(t, "gateway", gatewaytest.CertOptions{CommonName: "interlock gateway", Client: true, Role: "gateway"})
	good := startTLSPLC(t, plcCA, "plc1", plcCA.CAFile, init...)
	untrusted := startTLSPLC(t, otherCA, "plc1", plcCA.CAFile, init...)

	g := newGateway(t, gwOptions{upstreamPort: good, requestTimeout: "10s", rego: map[string]string{"allow.rego": allowAllRego}})
	useTLSUpstream(t, g, good, plcCA.CAFile, gwCert, gwKey, fmt.Sprintf(`      routes:
        - unit_ids: [7]
          target: untrusted
          upstream: tls://127.0.0.1:%d
`, untrusted))
	g.start(t)

	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != v100 || r.values[101] != v101 {
		t.Fatalf("mbpoll read through the tls:// upstream: exit %d, values %v, want [100]=%d [101]=%d\n%s", r.code, r.values, v100, v101, r.out)
	}
	if w := mbpoll(t, g.port, []string{"-r", "100"}, "4321"); w.code != 0 {
		t.Fatalf("mbpoll write through the tls:// upstream: exit %d\n%s", w.code, w.out)
	}
	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != 4321 || r.values[101] != v101 {
		t.Fatalf("read back: exit %d, values %v, want [100]=4321 [101]=%d\n%s", r.code, r.values, v101, r.out)
	}

	start := time.Now()
	r := mbpoll(t, g.port, []string{"-a", "7", "-r", "100"})
	if r.code == 0 || !strings.Contains(r.out, "Gateway path unavailable") {
		t.Errorf("mbpoll unit 7 (the PLC of another authority): exit %d, want exception 0x0A (Gateway path unavailable)\n%s", r.code, r.out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s, want at once (request_timeout 10s)", d)
	}
	g.waitLog(t, 5*time.Second, "the failed TLS session with its reason", func(l map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(l["message"]), "upstream TLS session failed") &&
			strings.Contains(fmt.Sprint(l["error"]), "certificate signed by unknown authority") &&
			l["upstream"] == fmt.Sprintf("tls://127.0.0.1:%d", untrusted)
	})
	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != 4321 {
		t.Errorf("unit 1 after unit 7's failure: exit %d, values %v\n%s", r.code, r.values, r.out)
	}

	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM, want 0", code)
	}
	recs := readAudit(t, g.auditPath)
	var calls []record
	for _, c := range eventsOf(recs, "call") {
		if c.num("operation.address") == 100 {
			calls = append(calls, c)
		}
	}
	for _, c := range calls {
		res := resultOf(recs, c.str("call_id"))
		switch {
		case res == nil:
			t.Errorf("no result record for %s", c)
		case c.num("target.unit_id") == 7:
			if res.str("status") != "error" || res.num("code") != 10 || !strings.Contains(res.str("detail"), "certificate signed by unknown authority") {
				t.Errorf("unit 7's result %s, want status error, code 10, the reason in detail", res)
			}
		case res.str("status") != "ok":
			t.Errorf("unit 1's result %s, want ok", res)
		}
	}
	if n := len(calls); n != 5 {
		t.Errorf("%d call records at 100, want 5", n)
	}
	verifyAudit(t, g.auditPath)
}

const allowAllRego = `package interlock

decision := {"allow": true, "alert": false, "reasons": ["test_allows_all"]}
`

// A running gateway's upstream_tls files, reloaded: the PLC's CA replaced
// by another authority's puts it in force (upstream_tls.load, the session
// open with the PLC closed) and the next request is 0x0A with the
// verification failure in its result record; the right CA back serves
// again; a broken client certificate file does not load (one
// upstream_tls.load_failed naming upstream_tls.cert, also after SIGHUP)
// and requests go on being served under what is in force.
func TestE2ETLSUpstreamReload(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plcCA, otherCA := gatewaytest.NewTLSPKINamed(t, "PLC authority"), gatewaytest.NewTLSPKINamed(t, "Another authority")
	plcCA.Issue(t, "plc1", gatewaytest.CertOptions{CommonName: "plc1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	gwCert, gwKey := plcCA.Issue(t, "gateway", gatewaytest.CertOptions{CommonName: "interlock gateway", Client: true, Role: "gateway"})
	port := startTLSPLC(t, plcCA, "plc1", plcCA.CAFile, init...)

	// The files the configuration names are copies the test replaces.
	dir := t.TempDir()
	ca, cert, key := filepath.Join(dir, "plc-ca.pem"), filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	for to, from := range map[string]string{ca: plcCA.CAFile, cert: gwCert, key: gwKey} {
		replaceFile(t, to, readFile(t, from))
	}
	g := newGateway(t, gwOptions{upstreamPort: port, requestTimeout: "10s", rego: map[string]string{"allow.rego": allowAllRego}})
	useTLSUpstream(t, g, port, ca, cert, key, "")
	g.start(t)
	served := func(when string) {
		t.Helper()
		if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code != 0 || r.values[100] != v100 {
			t.Fatalf("%s: mbpoll read exit %d, values %v, want [100]=%d\n%s", when, r.code, r.values, v100, r.out)
		}
	}
	served("at start")
	thumb := thumbprintOf(t, gwCert)
	loads := func(rs []record) []record { return eventsOf(rs, "upstream_tls.load") }

	replaceFile(t, ca, readFile(t, otherCA.CAFile))
	recs := waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load of the other CA", func(rs []record) bool { return len(loads(rs)) == 1 })
	l := loads(recs)[0]
	if l.str("listener") != "plc1" || !slices.Equal(l.strs("paths"), []string{ca, cert, key}) || l.str("cert_subject") != "CN=interlock gateway" ||
		l.str("cert_thumbprint") != thumb || l.str("cert_not_after") == "" || l.num("ca_certs") != 1 || l.num("connections_closed") != 1 {
		t.Errorf("upstream_tls.load: %s\nwant listener plc1, the three paths, the gateway's certificate, 1 CA, 1 connection closed", l)
	}
	refusedAtOnce(t, g, "under a CA that did not issue the PLC's certificate", "the verification failure", func(d string) bool {
		return strings.Contains(d, "certificate signed by unknown authority")
	})

	replaceFile(t, ca, readFile(t, plcCA.CAFile))
	recs = waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load of the PLC's CA", func(rs []record) bool { return len(loads(rs)) == 2 })
	if l := loads(recs)[1]; l.num("connections_closed") != 0 || l.num("ca_certs") != 1 {
		t.Errorf("upstream_tls.load: %s\nwant no connection open to close", l)
	}
	served("with the PLC's CA back")

	replaceFile(t, cert, []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"))
	failed := func(rs []record) []record { return eventsOf(rs, "upstream_tls.load_failed") }
	recs = waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load_failed", func(rs []record) bool { return len(failed(rs)) == 1 })
	f := failed(recs)[0]
	if !strings.HasPrefix(f.str("error"), "listener plc1: modbus.upstream_tls.cert: "+cert+": certificate 1: ") ||
		f.str("cert_thumbprint") != thumb || f.num("ca_certs") != 1 || f.get("connections_closed") != nil {
		t.Errorf("upstream_tls.load_failed: %s\nwant the error naming upstream_tls.cert and its file, and the certificate and CA in force", f)
	}
	served("while the certificate file does not load")
	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 10*time.Second, "the SIGHUP's failed load", func(l map[string]any) bool {
		return l["message"] == "upstream_tls files not loaded; the client certificate, CAs and CRLs in force stay" && l["trigger"] == "SIGHUP"
	})
	if n := len(failed(readAudit(t, g.auditPath))); n != 1 {
		t.Errorf("%d upstream_tls.load_failed records after a SIGHUP with the same error, want 1", n)
	}
	served("after the SIGHUP")

	// The certificate in force back in the file: nothing changed, nothing
	// recorded.
	replaceFile(t, cert, readFile(t, gwCert))
	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 10*time.Second, "the SIGHUP's reading of unchanged files", func(l map[string]any) bool {
		return l["message"] == "SIGHUP: upstream_tls files unchanged"
	})
	served("with the certificate back")
	if recs := readAudit(t, g.auditPath); len(loads(recs)) != 2 || len(failed(recs)) != 1 {
		t.Errorf("%d upstream_tls.load and %d upstream_tls.load_failed records, want 2 and 1", len(loads(recs)), len(failed(recs)))
	}
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM, want 0", code)
	}
	verifyAudit(t, g.auditPath)
}

// upstream_tls.crl on a running gateway, against pymodbus's TLS server: a
// CRL that revokes the PLC's certificate, written into the file, is an
// upstream_tls.load (the CRL counted, the session open with the PLC
// closed) and the next request is 0x0A, its result record naming the
// revoked certificate and the CRL's issuer; a stale CRL still revokes (and
// the record names it); a CRL that no longer lists the PLC serves it again.
func TestE2ETLSUpstreamRevocation(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	v100, _, init := plcValues()
	plcCA := gatewaytest.NewTLSPKINamed(t, "PLC authority")
	plcCert, _ := plcCA.Issue(t, "plc1", gatewaytest.CertOptions{CommonName: "plc1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	gwCert, gwKey := plcCA.Issue(t, "gateway", gatewaytest.CertOptions{CommonName: "interlock gateway", Client: true, Role: "gateway"})
	port := startTLSPLC(t, plcCA, "plc1", plcCA.CAFile, init...)
	empty, _ := plcCA.CRL(t, "empty", time.Now().Add(24*time.Hour))
	revoking, _ := plcCA.CRL(t, "revoking", time.Now().Add(24*time.Hour), gatewaytest.ReadCert(t, plcCert))
	staleNext := time.Now().Add(-time.Hour).Truncate(time.Second)
	stale, _ := plcCA.CRL(t, "stale", staleNext, gatewaytest.ReadCert(t, plcCert))

	crl := filepath.Join(t.TempDir(), "plc-ca.crl")
	replaceFile(t, crl, readFile(t, empty))
	g := newGateway(t, gwOptions{upstreamPort: port, requestTimeout: "10s", rego: map[string]string{"allow.rego": allowAllRego}})
	useTLSUpstream(t, g, port, plcCA.CAFile, gwCert, gwKey, "        crl: "+crl+"\n")
	g.start(t)
	served := func(when string) {
		t.Helper()
		if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code != 0 || r.values[100] != v100 {
			t.Fatalf("%s: mbpoll read exit %d, values %v, want [100]=%d\n%s", when, r.code, r.values, v100, r.out)
		}
	}
	served("with a CRL that lists nothing")
	loads := func(rs []record) []record { return eventsOf(rs, "upstream_tls.load") }

	replaceFile(t, crl, readFile(t, revoking))
	recs := waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load of the revoking CRL", func(rs []record) bool { return len(loads(rs)) == 1 })
	if l := loads(recs)[0]; !slices.Equal(l.strs("paths"), []string{plcCA.CAFile, gwCert, gwKey, crl}) || l.num("crls") != 1 ||
		l.num("revoked_certificates") != 1 || l.num("connections_closed") != 1 {
		t.Errorf("upstream_tls.load: %s\nwant the four paths, 1 CRL, 1 revoked certificate, 1 connection closed", l)
	}
	refusedAtOnce(t, g, "with the PLC's certificate revoked", "the revoked certificate", func(d string) bool {
		return strings.Contains(d, `certificate "CN=plc1"`) && strings.Contains(d, `revoked at`) &&
			strings.Contains(d, `by a CRL of "CN=PLC authority"`)
	})

	// A CRL past its next update still revokes; the record names it.
	replaceFile(t, crl, readFile(t, stale))
	recs = waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load of the stale CRL", func(rs []record) bool { return len(loads(rs)) == 2 })
	wantStale := []string{fmt.Sprintf(`the CRL of "CN=PLC authority" was due for its next update at %s`, staleNext.UTC().Format(time.RFC3339))}
	if l := loads(recs)[1]; l.num("revoked_certificates") != 1 || !slices.Equal(l.strs("stale_crls"), wantStale) {
		t.Errorf("upstream_tls.load: %s\nwant 1 revoked certificate, stale_crls %q", l, wantStale)
	}
	if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code == 0 || !strings.Contains(r.out, "Gateway path unavailable") {
		t.Errorf("mbpoll with the PLC's certificate on a stale CRL: exit %d, want exception 0x0A\n%s", r.code, r.out)
	}

	replaceFile(t, crl, readFile(t, empty))
	recs = waitAudit(t, g.auditPath, 10*time.Second, "upstream_tls.load of the CRL that lists nothing", func(rs []record) bool { return len(loads(rs)) == 3 })
	if l := loads(recs)[2]; l.num("crls") != 1 || l.num("revoked_certificates") != 0 || l.num("connections_closed") != 0 {
		t.Errorf("upstream_tls.load: %s\nwant 1 CRL, none revoked, no connection open to close", l)
	}
	served("when the CRL no longer lists the PLC")
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("the gateway exited %d on SIGTERM, want 0", code)
	}
	verifyAudit(t, g.auditPath)
}

// refusedAtOnce reads through the gateway with mbpoll (when, in what) and
// wants exception 0x0A at once, and a result record of code 0x0A whose
// detail names why (named).
func refusedAtOnce(t *testing.T, g *gw, when, named string, names func(detail string) bool) {
	t.Helper()
	start := time.Now()
	if r := mbpoll(t, g.port, []string{"-r", "100"}); r.code == 0 || !strings.Contains(r.out, "Gateway path unavailable") {
		t.Errorf("mbpoll %s: exit %d, want exception 0x0A\n%s", when, r.code, r.out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s, want at once (request_timeout 10s)", d)
	}
	waitAudit(t, g.auditPath, 10*time.Second, "the result naming "+named, func(rs []record) bool {
		for _, r := range eventsOf(rs, "result") {
			if r.num("code") == 10 && names(r.str("detail")) {
				return true
			}
		}
		return false
	})
}
