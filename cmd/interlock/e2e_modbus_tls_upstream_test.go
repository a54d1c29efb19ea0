package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), fmt.Sprintf("upstream: tcp://127.0.0.1:%d\n", good), fmt.Sprintf("upstream: tls://127.0.0.1:%d\n", good), 1)
	s = strings.Replace(s, "    modbus:\n", fmt.Sprintf(`    modbus:
      upstream_tls:
        ca: %s
        cert: %s
        key: %s
      routes:
        - unit_ids: [7]
          target: untrusted
          upstream: tls://127.0.0.1:%d
`, plcCA.CAFile, gwCert, gwKey, untrusted), 1)
	writeFile(t, g.config, s)
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
