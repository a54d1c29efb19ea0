package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// readmeRecipe is the shell block after the marker "<!-- recipe: NAME" in
// README.md.
func readmeRecipe(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- recipe: "+name)
	if !ok {
		t.Fatalf("README.md has no recipe %s", name)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, closed := strings.Cut(rest, "```\n")
	if !ok || !closed {
		t.Fatalf("README.md: recipe %s has no ```sh block", name)
	}
	return block
}

// The README's OpenSSL recipe, run as written with the system's openssl,
// makes certificates the gateway takes: alice's certificate gives her the
// role engineer, so her write goes through.
func TestE2EModbusTLSOpenSSLRecipe(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerOpenSSL, peerPymodbus)
	dir := t.TempDir()
	runRecipe(t, dir, "modbus-tls")
	pki := filepath.Join(dir, "pki", "modbus")

	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"tls.rego": tlsRego}})
	insertTLS(t, g, filepath.Join(pki, "gateway.crt"), filepath.Join(pki, "gateway.key"), filepath.Join(pki, "clients.crt"), "")
	g.start(t)

	env := []string{"TLS_CA=" + filepath.Join(pki, "clients.crt"), "TLS_CERT=" + filepath.Join(pki, "alice.crt"), "TLS_KEY=" + filepath.Join(pki, "alice.key")}
	if r := pyclientEnv(t, env, g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{v100, v101}) {
		t.Fatalf("alice's read over TLS: %+v, want [%d %d]", r, v100, v101)
	}
	if r := pyclientEnv(t, env, g.port, "write", 101, v101+1); r.Error != "" || r.Exception != nil {
		t.Fatalf("alice's write over TLS: %+v, want it written (role engineer)", r)
	}
	if got := plcRegisters(t, plc.port, 101, 1); got[0] != v101+1 {
		t.Fatalf("PLC register 101: %d, want %d", got[0], v101+1)
	}
	recs := waitAudit(t, g.auditPath, 10*time.Second, "two session.open records", func(rs []record) bool {
		return len(eventsOf(rs, "session.open")) == 2
	})
	for _, o := range eventsOf(recs, "session.open") {
		if o.str("principal.user") != "alice" || o.str("principal.auth") != "certificate" ||
			!slices.Equal(o.strs("principal.roles"), []string{"engineer"}) || o.str("principal.cert_thumbprint") != thumbprintOf(t, filepath.Join(pki, "alice.crt")) {
			t.Errorf("session.open: %s\nwant alice, certificate, roles [engineer], her thumbprint", o)
		}
	}
	if w := callRecords(recs, "write_multiple_registers", 101); len(w) != 1 || w[0].get("decision.allow") != true {
		t.Errorf("alice's write call records: %v, want one allowed", w)
	}
}

// runRecipe runs the README's recipe NAME as written with sh -e in dir.
func runRecipe(t *testing.T, dir, name string) {
	t.Helper()
	cmd := exec.Command("sh", "-e", "-c", readmeRecipe(t, name))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README recipe %s: %v\n%s", name, err, out)
	}
}

// holdTLS opens a Modbus/TCP Security session with the PEM certificate and
// key NAME.crt and NAME.key of dir, trusting ca for the gateway.
func holdTLS(t *testing.T, port int, ca, dir, name string) *tls.Conn {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(gatewaytest.ReadCert(t, ca))
	c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("%s's TLS session: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The README's revocation recipes, run as written with the system's
// openssl, against a running gateway: with the CA's first (empty) CRL in
// tls.crl alice and bob are served; once alice's certificate is revoked and
// the new CRL renamed into place, the gateway loads it (tls.load), ends
// alice's open session (its session.close says why) and refuses her next
// handshake (pymodbus's TLS client), while bob's session, open all along,
// and his new ones are served.
func TestE2EModbusTLSRevocationRecipe(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerOpenSSL, peerPymodbus)
	dir := t.TempDir()
	runRecipe(t, dir, "modbus-tls")
	runRecipe(t, dir, "modbus-tls-crl")
	pki := filepath.Join(dir, "pki", "modbus")
	bob := exec.Command("openssl", "req", "-x509", "-CA", "clients.crt", "-CAkey", "clients-ca.key",
		"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "365",
		"-subj", "/CN=bob", "-keyout", "bob.key", "-out", "bob.crt",
		"-addext", "basicConstraints=CA:FALSE", "-addext", "extendedKeyUsage=clientAuth",
		"-addext", "1.3.6.1.4.1.50316.802.1=ASN1:UTF8String:operator")
	bob.Dir = pki
	if out, err := bob.CombinedOutput(); err != nil {
		t.Fatalf("bob's certificate: %v\n%s", err, out)
	}

	v100, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"tls.rego": tlsRego}})
	ca := filepath.Join(pki, "clients.crt")
	insertTLS(t, g, filepath.Join(pki, "gateway.crt"), filepath.Join(pki, "gateway.key"), ca,
		"      crl: "+filepath.Join(pki, "clients.crl")+"\n")
	g.start(t)

	envOf := func(name string) []string {
		return []string{"TLS_CA=" + ca, "TLS_CERT=" + filepath.Join(pki, name+".crt"), "TLS_KEY=" + filepath.Join(pki, name+".key")}
	}
	for _, name := range []string{"alice", "bob"} {
		if r := pyclientEnv(t, envOf(name), g.port, "read", 100, 1); r.Error != "" || !slices.Equal(r.Registers, []int{v100}) {
			t.Fatalf("%s's read before the revocation: %+v, want [%d]", name, r, v100)
		}
	}
	heldAlice, heldBob := holdTLS(t, g.port, ca, pki, "alice"), holdTLS(t, g.port, ca, pki, "bob")
	if v := mbapRead(t, heldAlice, 1, 100); v != v100 {
		t.Fatalf("alice's held session read %d, want %d", v, v100)
	}
	if v := mbapRead(t, heldBob, 1, 100); v != v100 {
		t.Fatalf("bob's held session read %d, want %d", v, v100)
	}

	runRecipe(t, dir, "modbus-tls-revoke")
	recs := waitAudit(t, g.auditPath, 15*time.Second, "a tls.load that ended alice's session", func(rs []record) bool {
		for _, r := range eventsOf(rs, "tls.load") {
			if r.num("sessions_ended") == 1 {
				return true
			}
		}
		return false
	})
	load := eventsOf(recs, "tls.load")[0]
	if load.str("listener") != "plc1" || load.num("revoked_certificates") != 1 || load.num("crls") != 1 ||
		load.str("cert_thumbprint") != thumbprintOf(t, filepath.Join(pki, "gateway.crt")) {
		t.Errorf("tls.load: %s\nwant listener plc1, 1 CRL with 1 revoked certificate, the gateway's thumbprint", load)
	}
	heldAlice.SetReadDeadline(time.Now().Add(5 * time.Second))
	var ne net.Error
	if _, err := heldAlice.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("alice's held session after the revocation: %v, want it closed by the gateway", err)
	}
	if v := mbapRead(t, heldBob, 2, 100); v != v100 {
		t.Fatalf("bob's held session read %d after the revocation, want %d", v, v100)
	}
	if r := pyclientEnv(t, envOf("alice"), g.port, "read", 100, 1); r.Error == "" {
		t.Fatalf("alice's read after the revocation: %+v, want her refused", r)
	}
	if r := pyclientEnv(t, envOf("bob"), g.port, "read", 100, 1); r.Error != "" || !slices.Equal(r.Registers, []int{v100}) {
		t.Fatalf("bob's read after the revocation: %+v, want [%d]", r, v100)
	}
	recs = waitAudit(t, g.auditPath, 10*time.Second, "alice's refused handshake", func(rs []record) bool {
		return len(eventsOf(rs, "session.auth_failed")) >= 1
	})
	var ended []record
	for _, c := range eventsOf(recs, "session.close") {
		if c.str("principal.user") == "alice" && strings.Contains(c.str("error"), "no longer passes") {
			ended = append(ended, c)
		}
	}
	if len(ended) != 1 || !strings.Contains(ended[0].str("error"), "revoked") {
		t.Errorf("alice's session.close records ended by the revocation: %v, want one saying revoked", ended)
	}
	fails := eventsOf(recs, "session.auth_failed")
	if len(fails) != 1 || fails[0].str("principal.user") != "alice" || !strings.Contains(fails[0].str("detail"), `revoked at`) ||
		!strings.Contains(fails[0].str("detail"), `by a CRL of "CN=Modbus clients CA"`) {
		t.Errorf("session.auth_failed: %v, want alice's, revoked by the clients CA's CRL", fails)
	}
}
