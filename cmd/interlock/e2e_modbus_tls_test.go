package main

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// tlsRego allows reads to everyone and writes only to a caller whose
// verified certificate carries the role engineer over TLS.
const tlsRego = `package interlock

default decision := {"allow": false, "alert": true, "reasons": ["no_rule_allows"]}

decision := {"allow": true, "alert": false, "reasons": ["session"]} if input.operation.access == "session"

decision := {"allow": true, "alert": false, "reasons": ["read"]} if input.operation.access == "read"

decision := {"allow": true, "alert": false, "reasons": ["engineer_over_tls"]} if {
	input.operation.access == "write"
	input.principal.auth == "certificate"
	"engineer" in input.principal.roles
	input.session.security_policy in {"TLS1.2", "TLS1.3"}
}

decision := {"allow": false, "alert": true, "reasons": ["write_needs_role_engineer"]} if {
	input.operation.access == "write"
	not "engineer" in input.principal.roles
}
`

// tlsClientEnv is the environment of testdata/pymodbus_client.py for
// Modbus/TCP Security with the certificate NAME of p ("" none); the
// gateway's certificate is p's too.
func tlsClientEnv(p *gatewaytest.TLSPKI, name string) []string {
	env := []string{"TLS_CA=" + p.CAFile}
	if name != "" {
		env = append(env, "TLS_CERT="+p.Dir+"/"+name+".crt", "TLS_KEY="+p.Dir+"/"+name+".key")
	}
	return env
}

// thumbprintOf is the hex SHA-1 of the PEM certificate in a file.
func thumbprintOf(t *testing.T, path string) string {
	t.Helper()
	sum := sha1.Sum(gatewaytest.ReadCert(t, path).Raw)
	return hex.EncodeToString(sum[:])
}

// mbapRead reads one holding register at addr on a Modbus connection.
func mbapRead(t *testing.T, c net.Conn, tx uint16, addr uint16) int {
	t.Helper()
	req := []byte{byte(tx >> 8), byte(tx), 0, 0, 0, 6, 1, 3, byte(addr >> 8), byte(addr), 0, 1}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		t.Fatalf("read %d over the held TLS session: %v", addr, err)
	}
	resp := make([]byte, 11)
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatalf("read %d over the held TLS session: %v", addr, err)
	}
	if binary.BigEndian.Uint16(resp) != tx || resp[7] != 3 || resp[8] != 2 {
		t.Fatalf("read %d over the held TLS session: answer % x", addr, resp)
	}
	return int(binary.BigEndian.Uint16(resp[9:]))
}

// Modbus/TCP Security end to end: pymodbus's TLS client → interlock's TLS
// listener → a plain pymodbus server. The role of the client certificate
// decides writes (the policy allows them to role engineer over TLS), never
// the inventory's roles for the address (engineer for 127.0.0.1 here); the
// records carry the certificate principal and the TLS version. Every bad
// handshake is a session.auth_failed record that says why, and a TLS
// session held open all along keeps being served.
func TestE2EModbusTLSRolesFromCertificates(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerPymodbus, peerMbpoll)
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"tls.rego": tlsRego}})
	p := gatewaytest.NewTLSPKI(t)
	withTLS(t, g, p, gatewaytest.CertOptions{CommonName: "interlock", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
		"      handshake_timeout: 3s\n")
	alice, _ := p.Issue(t, "alice", gatewaytest.CertOptions{CommonName: "alice", Client: true, Role: "engineer"})
	bob, _ := p.Issue(t, "bob", gatewaytest.CertOptions{CommonName: "bob", Client: true, Role: "operator"})
	carol, _ := p.Issue(t, "carol", gatewaytest.CertOptions{CommonName: "carol", Client: true})
	g.start(t)

	// A socket that never starts its handshake, open through all that follows.
	silent, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	// A TLS session held open through the bad handshakes.
	pair, err := tls.LoadX509KeyPair(alice, p.Dir+"/alice.key")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.CA)
	held, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)),
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	tx := uint16(1)
	if v := mbapRead(t, held, tx, 101); v != v101 {
		t.Fatalf("held session read 101: %d, want %d", v, v101)
	}

	if r := pyclientEnv(t, tlsClientEnv(p, "alice"), g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{v100, v101}) {
		t.Fatalf("engineer read 100..101 over TLS: %+v, want [%d %d]", r, v100, v101)
	}
	newVal := v100 + 1
	if r := pyclientEnv(t, tlsClientEnv(p, "alice"), g.port, "write", 100, newVal); r.Error != "" || r.Exception != nil {
		t.Fatalf("engineer write 100 over TLS: %+v, want it written", r)
	}
	if got := plcRegisters(t, plc.port, 100, 1); got[0] != newVal {
		t.Fatalf("PLC register 100 after the engineer's write: %d, want %d", got[0], newVal)
	}
	for _, who := range []string{"bob", "carol"} {
		r := pyclientEnv(t, tlsClientEnv(p, who), g.port, "write", 101, 7)
		if r.Exception == nil || *r.Exception != 1 {
			t.Errorf("%s's write 101 over TLS: %+v, want the deny exception 1", who, r)
		}
	}
	if got := plcRegisters(t, plc.port, 101, 1); got[0] != v101 {
		t.Fatalf("PLC register 101 after denied writes: %d, want %d unchanged", got[0], v101)
	}

	// Bad handshakes, each refused with its record while the held session
	// keeps being served.
	goodDial := func() {
		t.Helper()
		c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)),
			&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("alice's handshake: %v", err)
		}
		tx++
		if v := mbapRead(t, c, tx, 101); v != v101 {
			t.Fatalf("alice's read 101: %d, want %d", v, v101)
		}
		c.Close()
	}
	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	other.Issue(t, "stranger", gatewaytest.CertOptions{CommonName: "stranger", Client: true, Role: "engineer"})
	strangerEnv := []string{"TLS_CA=" + p.CAFile, "TLS_CERT=" + other.Dir + "/stranger.crt", "TLS_KEY=" + other.Dir + "/stranger.key"}
	p.Issue(t, "expired", gatewaytest.CertOptions{CommonName: "old", Client: true, Role: "engineer",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	p.Issue(t, "srvonly", gatewaytest.CertOptions{CommonName: "srvonly", Server: true, Role: "engineer"})
	p.Issue(t, "printable", gatewaytest.CertOptions{CommonName: "mallory", Client: true, RoleExt: []byte{0x13, 0x08, 'e', 'n', 'g', 'i', 'n', 'e', 'e', 'r'}})
	p.Issue(t, "trailing", gatewaytest.CertOptions{CommonName: "trudy", Client: true, RoleExt: []byte{0x0c, 0x08, 'e', 'n', 'g', 'i', 'n', 'e', 'e', 'r', 0x05, 0x00}})
	type bad struct {
		name   string
		run    func()
		detail string // in the record's detail
		user   string // principal.user of the record: what the certificate claimed
	}
	py := func(env []string) func() {
		return func() {
			if r := pyclientEnv(t, env, g.port, "write", 100, 4242); r.Registers != nil || r.Error == "" {
				t.Errorf("a refused TLS client got an answer: %+v", r)
			}
		}
	}
	bads := []bad{
		{"no client certificate", py(tlsClientEnv(p, "")), "tls handshake: tls: client didn't provide a certificate", ""},
		{"another CA", py(strangerEnv), "tls handshake: tls: failed to verify certificate: x509: certificate signed by unknown authority", "stranger"},
		{"expired", py(tlsClientEnv(p, "expired")), "x509: certificate has expired or is not yet valid", "old"},
		{"server-only key usage", py(tlsClientEnv(p, "srvonly")), "x509: certificate specifies an incompatible key usage", "srvonly"},
		{"role a PrintableString", py(tlsClientEnv(p, "printable")), "tls handshake: role extension 1.3.6.1.4.1.50316.802.1: not a UTF8String (class 0, tag 19)", "mallory"},
		{"role with trailing bytes", py(tlsClientEnv(p, "trailing")), "tls handshake: role extension 1.3.6.1.4.1.50316.802.1: 2 bytes after the UTF8String", "trudy"},
		{"plain Modbus (mbpoll)", func() {
			if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "1", "-o", "2"}); r.code == 0 || len(r.values) > 0 {
				t.Errorf("mbpoll in plain Modbus to the TLS port: exit %d\n%s", r.code, r.out)
			}
		}, "tls handshake: tls: first record does not look like a TLS handshake", ""},
	}
	// The silent socket's record comes at its handshake timeout, which a
	// slow machine may reach while the clients below are refused: it is
	// checked on its own after them.
	const silentDetail = "tls handshake not done within the handshake timeout (3s)"
	clientFails := func(rs []record) []record {
		var out []record
		for _, f := range eventsOf(rs, "session.auth_failed") {
			if !strings.Contains(f.str("detail"), silentDetail) {
				out = append(out, f)
			}
		}
		return out
	}
	seen := 0
	for _, b := range bads {
		b.run()
		recs := waitAudit(t, g.auditPath, 10*time.Second, b.name+": session.auth_failed", func(rs []record) bool {
			return len(clientFails(rs)) > seen
		})
		fs := clientFails(recs)
		if len(fs) != seen+1 {
			t.Fatalf("%s: %d auth_failed records, want %d", b.name, len(fs), seen+1)
		}
		f := fs[seen]
		seen++
		if !strings.Contains(f.str("detail"), b.detail) || f.str("reason") != "auth_failed" || f.get("success") != false {
			t.Errorf("%s: record %s\nwant reason auth_failed and a detail with %q", b.name, f, b.detail)
		}
		if f.str("principal.user") != b.user || f.get("principal.roles") != nil || f.str("source.name") != "ews-alice" {
			t.Errorf("%s: record %s\nwant principal.user %q, no roles, source.name ews-alice", b.name, f, b.user)
		}
		tx++
		if v := mbapRead(t, held, tx, 100); v != newVal {
			t.Fatalf("after %s: held session read 100: %d, want %d", b.name, v, newVal)
		}
		// A good handshake clears the source's count of failed ones (three
		// in a row would hold 127.0.0.1 back, as tested at the end).
		goodDial()
	}
	if got := plcRegisters(t, plc.port, 100, 1); got[0] != newVal {
		t.Fatalf("PLC register 100 after the refused clients: %d, want %d", got[0], newVal)
	}

	// The silent socket is closed at the handshake timeout, with its record.
	silent.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadAll(silent); err != nil {
		t.Fatalf("the silent socket was not closed by the gateway: %v", err)
	}
	waitAudit(t, g.auditPath, 10*time.Second, "the silent socket's session.auth_failed", func(rs []record) bool {
		return len(eventsOf(rs, "session.auth_failed"))-len(clientFails(rs)) == 1
	})
	if r := pyclientEnv(t, tlsClientEnv(p, "alice"), g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{newVal, v101}) {
		t.Fatalf("engineer read after the bad handshakes: %+v, want [%d %d]", r, newVal, v101)
	}
	held.Close()
	recs := waitAudit(t, g.auditPath, 10*time.Second, "the session.close of every session", func(rs []record) bool {
		return len(eventsOf(rs, "session.close")) == len(eventsOf(rs, "session.open"))
	})

	// The records: each session's principal is its certificate, with the
	// TLS version; the calls carry the principal and the verdict.
	principals := map[string]struct {
		thumb string
		roles []string
	}{
		"alice": {thumbprintOf(t, alice), []string{"engineer"}},
		"bob":   {thumbprintOf(t, bob), []string{"operator"}},
		"carol": {thumbprintOf(t, carol), []string{}},
	}
	opened := map[string]int{}
	for _, o := range eventsOf(recs, "session.open") {
		user := o.str("principal.user")
		want, ok := principals[user]
		if !ok {
			t.Errorf("a session for %q:\n%s", user, o)
			continue
		}
		opened[user]++
		if o.str("principal.auth") != "certificate" || o.str("principal.cert_thumbprint") != want.thumb ||
			!slices.Equal(o.strs("principal.roles"), want.roles) || o.str("session.security_policy") != "TLS1.3" ||
			o.str("source.name") != "ews-alice" || o.str("source.owner") != "alice" {
			t.Errorf("session.open of %s: %s\nwant auth certificate, thumbprint %s, roles %v, security_policy TLS1.3, source ews-alice", user, o, want.thumb, want.roles)
		}
	}
	if opened["alice"] != 4+len(bads) || opened["bob"] != 1 || opened["carol"] != 1 {
		t.Errorf("sessions opened %v, want alice %d (the held one, three pymodbus, one after each bad handshake), bob 1, carol 1", opened, 4+len(bads))
	}
	writes := callRecords(recs, "write_multiple_registers", -1)
	if len(writes) != 3 {
		t.Fatalf("%d write call records, want 3 (the refused clients never got to a call)", len(writes))
	}
	for _, w := range writes {
		user := w.str("principal.user")
		allow := user == "alice"
		if w.str("principal.auth") != "certificate" || w.str("principal.cert_thumbprint") != principals[user].thumb ||
			!slices.Equal(w.strs("principal.roles"), principals[user].roles) || w.get("decision.allow") != allow {
			t.Errorf("write call record of %s: %s\nwant auth certificate, its thumbprint and roles, allow %v", user, w, allow)
		}
		if !allow && !slices.Equal(w.strs("decision.reasons"), []string{"write_needs_role_engineer"}) {
			t.Errorf("denied write of %s: reasons %v", user, w.strs("decision.reasons"))
		}
	}

	// Three failed handshakes in a row hold 127.0.0.1 back: its next
	// connection, with a good certificate, is closed before any handshake
	// and recorded as a refusal, not as one more auth_failed.
	stranger, err := tls.LoadX509KeyPair(other.Dir+"/stranger.crt", other.Dir+"/stranger.key")
	if err != nil {
		t.Fatal(err)
	}
	failed := len(eventsOf(recs, "session.auth_failed"))
	for range 3 {
		c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)),
			&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{stranger}, ServerName: "127.0.0.1"})
		if err == nil {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1)) // TLS 1.3: the refusal comes at the first read
			c.Close()
		}
		if err == nil {
			t.Fatal("a certificate of another CA was served")
		}
		failed++
		waitAudit(t, g.auditPath, 10*time.Second, "the stranger's session.auth_failed", func(rs []record) bool {
			return len(eventsOf(rs, "session.auth_failed")) >= failed
		})
	}
	if c, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port)),
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: "127.0.0.1"}); err == nil {
		c.Close()
		t.Fatal("a held-back source was handshaken")
	}
	recs = waitAudit(t, g.auditPath, 10*time.Second, "the refusal of the held-back source", func(rs []record) bool {
		for _, o := range eventsOf(rs, "session.open") {
			if o.str("reason") == "limit: failed_handshakes" {
				return true
			}
		}
		return false
	})
	for _, o := range eventsOf(recs, "session.open") {
		if o.str("reason") == "limit: failed_handshakes" && (o.get("success") != false || o.str("source.name") != "ews-alice") {
			t.Errorf("the refusal of the held-back source: %s\nwant success false, source.name ews-alice", o)
		}
	}
	if n := len(eventsOf(recs, "session.auth_failed")); n != failed {
		t.Errorf("%d session.auth_failed records, want %d: none for the held-back connection", n, failed)
	}
	verifyAudit(t, g.auditPath)
}

// replaceFile puts data at path by writing a new file and renaming it over
// the old one, as the README tells operators to.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A running gateway's TLS files, reloaded: a CRL of another CA does not
// load (one tls.load_failed naming tls.crl, however often it is read
// again; pymodbus's TLS client is still served under the trust in force),
// and a new gateway certificate with its key, renamed into place, is used
// from the next handshake on (tls.load with its thumbprint) while a session
// open all along goes on.
func TestE2EModbusTLSReload(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerPymodbus)
	_, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"tls.rego": tlsRego}})
	p := gatewaytest.NewTLSPKI(t)
	crlFile, _ := p.CRL(t, "clients", time.Now().Add(24*time.Hour))
	gwCert, _ := withTLS(t, g, p, gatewaytest.CertOptions{CommonName: "interlock", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
		"      crl: "+crlFile+"\n")
	p.Issue(t, "alice", gatewaytest.CertOptions{CommonName: "alice", Client: true, Role: "engineer"})
	g.start(t)

	serverCert := func() string {
		t.Helper()
		c := holdTLS(t, g.port, p.CAFile, p.Dir, "alice")
		defer c.Close()
		sum := sha1.Sum(c.ConnectionState().PeerCertificates[0].Raw)
		return hex.EncodeToString(sum[:])
	}
	if got, want := serverCert(), thumbprintOf(t, gwCert); got != want {
		t.Fatalf("the gateway presented %s, want %s", got, want)
	}
	held := holdTLS(t, g.port, p.CAFile, p.Dir, "alice")
	if v := mbapRead(t, held, 1, 101); v != v101 {
		t.Fatalf("held session read %d, want %d", v, v101)
	}

	// A CRL of another CA: not loaded, recorded once, the trust in force stays.
	good := readFile(t, crlFile)
	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	otherCRL, _ := other.CRL(t, "other", time.Now().Add(24*time.Hour))
	replaceFile(t, crlFile, readFile(t, otherCRL))
	failed := func(rs []record) []record { return eventsOf(rs, "tls.load_failed") }
	recs := waitAudit(t, g.auditPath, 10*time.Second, "tls.load_failed", func(rs []record) bool { return len(failed(rs)) == 1 })
	f := failed(recs)[0]
	if !strings.Contains(f.str("error"), "listener plc1: tls.crl: "+crlFile+`: CRL 1, of "CN=another CA", is not signed by a CA in tls.client_ca`) ||
		f.str("cert_thumbprint") != thumbprintOf(t, gwCert) || f.num("crls") != 1 {
		t.Errorf("tls.load_failed: %s\nwant the error naming tls.crl, and the certificate and CRL in force", f)
	}
	env := tlsClientEnv(p, "alice")
	if r := pyclientEnv(t, env, g.port, "read", 101, 1); r.Error != "" || !slices.Equal(r.Registers, []int{v101}) {
		t.Fatalf("alice's read while the new CRL does not load: %+v, want [%d]", r, v101)
	}
	g.proc.signal(t, syscall.SIGHUP)
	g.waitLog(t, 10*time.Second, "the SIGHUP's failed load", func(l map[string]any) bool {
		return l["message"] == "tls files not loaded; the certificate and trust in force stay" && l["trigger"] == "SIGHUP"
	})
	if n := len(failed(readAudit(t, g.auditPath))); n != 1 {
		t.Errorf("%d tls.load_failed records after a SIGHUP with the same error, want 1", n)
	}

	// A new certificate and key, renamed into place, with the good CRL back.
	newCert, newKey := p.Issue(t, "gateway2", gatewaytest.CertOptions{CommonName: "interlock 2", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	cfgKey := strings.TrimSuffix(gwCert, ".crt") + ".key"
	replaceFile(t, crlFile, good)
	replaceFile(t, cfgKey, readFile(t, newKey))
	replaceFile(t, gwCert, readFile(t, newCert))
	want := thumbprintOf(t, newCert)
	recs = waitAudit(t, g.auditPath, 10*time.Second, "tls.load of the new certificate", func(rs []record) bool {
		for _, r := range eventsOf(rs, "tls.load") {
			if r.str("cert_thumbprint") == want {
				return true
			}
		}
		return false
	})
	loads := eventsOf(recs, "tls.load")
	if l := loads[len(loads)-1]; l.str("cert_subject") != "CN=interlock 2" || l.num("sessions_ended") != 0 || l.num("crls") != 1 {
		t.Errorf("tls.load: %s\nwant CN=interlock 2, no session ended, one CRL", l)
	}
	if got := serverCert(); got != want {
		t.Fatalf("after the reload the gateway presented %s, want the new certificate %s", got, want)
	}
	if v := mbapRead(t, held, 2, 101); v != v101 {
		t.Fatalf("held session read %d after the reload, want %d", v, v101)
	}
	if r := pyclientEnv(t, env, g.port, "read", 101, 1); r.Error != "" || !slices.Equal(r.Registers, []int{v101}) {
		t.Fatalf("alice's read after the reload: %+v, want [%d]", r, v101)
	}
}
