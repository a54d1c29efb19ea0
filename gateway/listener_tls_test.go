package gateway_test

import (
	"bufio"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// tlsListener runs a TLS listener of lineEngine whose inventory names
// 127.0.0.1 ews-alice, user alice, role admin, with the given handshake
// timeout.
func tlsListener(t *testing.T, p *gatewaytest.TLSPKI, handshake time.Duration) (string, *gatewaytest.Auditor, *x509.CertPool) {
	t.Helper()
	return tlsListenerOf(t, p, handshake, lineEngine{}, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10})
}

// tlsListenerOf is tlsListener with the engine and limits given.
func tlsListenerOf(t *testing.T, p *gatewaytest.TLSPKI, handshake time.Duration, eng gateway.Engine, limits gateway.Limits) (string, *gatewaytest.Auditor, *x509.CertPool) {
	t.Helper()
	return tlsListenerWith(t, p, handshake, eng, limits, nil)
}

// tlsListenerWith is tlsListenerOf with set (nil: none) called on the
// listener before it serves.
func tlsListenerWith(t *testing.T, p *gatewaytest.TLSPKI, handshake time.Duration, eng gateway.Engine, limits gateway.Limits, set func(*gateway.Listener)) (string, *gatewaytest.Auditor, *x509.CertPool) {
	t.Helper()
	pair, pool := p.GatewayPair(t)
	inv := gateway.NewInventory([]gateway.Workstation{{Prefix: netip.MustParsePrefix("127.0.0.1/32"),
		Name: "ews-alice", Owner: "alice", User: "alice", Roles: []string{"admin"}}})
	a := &gatewaytest.Auditor{}
	l := &gateway.Listener{
		Name: "l1", Protocol: "line", Gateway: "gw", Target: gateway.Target{Name: "l1", UnitID: -1},
		Engine: eng, Pipeline: &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a},
		Identify: &gateway.CertIdentifier{Inventory: inv, Roles: modbus.CertRoles},
		TLS:      modbus.NewTLSServer(pair, modbus.ClientTrust{CAs: pool}).Config(), HandshakeTimeout: handshake,
		Limits: limits, Log: zerolog.Nop(),
	}
	if set != nil {
		set(l)
	}
	return serve(t, l), a, pool
}

// dialTLS connects with cert (nil: none) and TLS version max (0: any).
func dialTLS(addr string, roots *x509.CertPool, cert *tls.Certificate, max uint16) (*tls.Conn, error) {
	return dialTLSFrom("", addr, roots, cert, max)
}

// dialTLSFrom is dialTLS from the loopback address local ("": any).
func dialTLSFrom(local, addr string, roots *x509.CertPool, cert *tls.Certificate, max uint16) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: max,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		}}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}

func loadPair(t *testing.T, p *gatewaytest.TLSPKI, name string, o gatewaytest.CertOptions) (*tls.Certificate, string) {
	t.Helper()
	crt, key := p.Issue(t, name, o)
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(pair.Certificate[0])
	return &pair, hex.EncodeToString(sum[:])
}

func waitEvents(t *testing.T, a *gatewaytest.Auditor, event string, n int) []gatewaytest.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs := a.Events(event)
		if len(rs) >= n || time.Now().After(deadline) {
			return rs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The principal of a TLS session is its client certificate: its common
// name (or first SAN), its thumbprint, the role of its extension and no
// other; the inventory names only the machine. session.security_policy is
// the TLS version.
func TestTLSListenerPrincipalFromCertificate(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	addr, a, roots := tlsListener(t, p, 0)
	for i, tc := range []struct {
		name   string
		o      gatewaytest.CertOptions
		max    uint16
		user   string
		roles  []string
		policy string
	}{
		{"engineer", gatewaytest.CertOptions{CommonName: "bob", Client: true, Role: "engineer"}, 0, "bob", []string{"engineer"}, "TLS1.3"},
		{"no role", gatewaytest.CertOptions{CommonName: "carol", Client: true}, 0, "carol", nil, "TLS1.3"},
		{"san", gatewaytest.CertOptions{DNSNames: []string{"ews-7.plant", "ews-7"}, Client: true, Role: "operator"}, tls.VersionTLS12, "ews-7.plant", []string{"operator"}, "TLS1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, thumb := loadPair(t, p, tc.name, tc.o)
			c, err := dialTLS(addr, roots, cert, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			echo(t, c, "hello")
			c.Close()
			opens := waitEvents(t, a, "session.open", i+1)
			if len(opens) != i+1 {
				t.Fatalf("%d session.open records, want %d", len(opens), i+1)
			}
			s := opens[i].Session
			want := gateway.Principal{User: tc.user, Auth: gateway.AuthCertificate, Roles: tc.roles, CertThumbprint: thumb}
			if s.Principal.User != want.User || s.Principal.Auth != want.Auth || !slices.Equal(s.Principal.Roles, want.Roles) ||
				s.Principal.CertThumbprint != want.CertThumbprint {
				t.Errorf("principal %+v, want %+v (never the inventory's alice/admin)", s.Principal, want)
			}
			if s.Source.Name != "ews-alice" || s.Source.Owner != "alice" {
				t.Errorf("source %+v, want the inventory's ews-alice, alice", s.Source)
			}
			if s.SecurityPolicy != tc.policy {
				t.Errorf("security_policy %q, want %q", s.SecurityPolicy, tc.policy)
			}
		})
	}
	if rs := a.Events("request.rejected"); len(rs) != 0 {
		t.Errorf("auth failures for good certificates: %+v", rs[0])
	}
}

// authFailures returns the auth_failed records so far (the fake auditor has
// no AuthFailed hook: they come as rejected requests).
func authFailures(a *gatewaytest.Auditor) []gatewaytest.Record {
	var out []gatewaytest.Record
	for _, r := range a.Events("request.rejected") {
		if r.Reason == gateway.ReasonAuthFailed && r.Call.Operation.Function == gateway.FunctionSessionAuthFailed {
			out = append(out, r)
		}
	}
	return out
}

// A failed handshake is a session.auth_failed record that says why, no
// session, a closed connection; a socket that says nothing is closed at the
// handshake timeout; a good client is served all the while.
func TestTLSListenerRefusesBadHandshakes(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	addr, a, roots := tlsListener(t, p, 500*time.Millisecond)
	good, _ := loadPair(t, p, "good", gatewaytest.CertOptions{CommonName: "good", Client: true, Role: "engineer"})
	gc, err := dialTLS(addr, roots, good, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	echo(t, gc, "before")

	// The silent and the plain-text sockets come from other hosts: three
	// failed handshakes of 127.0.0.1 hold it back.
	silent := gatewaytest.DialFrom(t, "127.0.0.2", addr)
	opened := time.Now()

	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	stranger, strangerThumb := loadPair(t, other, "stranger", gatewaytest.CertOptions{CommonName: "stranger", Client: true, Role: "engineer"})
	badRole, _ := loadPair(t, p, "badrole", gatewaytest.CertOptions{CommonName: "mallory", Client: true, RoleExt: []byte{0x0c, 0x01, 'x', 0x00}})
	for _, tc := range []struct {
		name   string
		cert   *tls.Certificate
		user   string // principal.user of the record: the certificate's claim
		thumb  string
		detail string
	}{
		{"no certificate", nil, "", "", "client didn't provide a certificate"},
		{"another CA", stranger, "stranger", strangerThumb, "certificate signed by unknown authority"},
		{"malformed role", badRole, "mallory", "", "role extension 1.3.6.1.4.1.50316.802.1: 1 bytes after the UTF8String"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(authFailures(a))
			c, err := dialTLS(addr, roots, tc.cert, 0)
			if err == nil {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Read(make([]byte, 1))
				c.Close()
			}
			if err == nil {
				t.Fatal("the client was served")
			}
			waitEvents(t, a, "request.rejected", before+1)
			fs := authFailures(a)
			if len(fs) != before+1 {
				t.Fatalf("%d auth_failed records, want %d", len(fs), before+1)
			}
			r := fs[before]
			if !strings.Contains(r.Detail, "tls handshake: ") || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("detail %q, want the TLS error with %q", r.Detail, tc.detail)
			}
			pr := r.Session.Principal
			if pr.User != tc.user || len(pr.Roles) != 0 || (tc.thumb != "" && pr.CertThumbprint != tc.thumb) {
				t.Errorf("principal %+v, want user %q, no roles, thumbprint %q", pr, tc.user, tc.thumb)
			}
			if r.Session.Source.Name != "ews-alice" {
				t.Errorf("source %+v, want ews-alice", r.Session.Source)
			}
			echo(t, gc, "during "+tc.name)
		})
	}

	t.Run("plain text", func(t *testing.T) {
		before := len(authFailures(a))
		c := gatewaytest.DialFrom(t, "127.0.0.3", addr)
		// A Modbus read holding registers request in MBAP: no TLS record.
		c.Write([]byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1})
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("the gateway did not close the plain connection: %v", err)
		}
		fs := waitEvents(t, a, "request.rejected", before+1)
		if len(fs) != before+1 || !strings.Contains(fs[before].Detail, "tls handshake: ") {
			t.Fatalf("auth_failed records %+v, want one with the TLS error", fs)
		}
		if fs[before].Session.Principal.Auth != gateway.AuthNone {
			t.Errorf("principal %+v, want auth none", fs[before].Session.Principal)
		}
	})

	t.Run("silent", func(t *testing.T) {
		silent.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(silent); err != nil {
			t.Fatalf("the silent socket was not closed by the gateway: %v", err)
		}
		if d := time.Since(opened); d < 500*time.Millisecond {
			t.Errorf("closed after %v, before the handshake timeout", d)
		}
		var found bool
		for _, r := range authFailures(a) {
			found = found || strings.Contains(r.Detail, "tls handshake not done within the handshake timeout (500ms)")
		}
		if !found {
			t.Errorf("no auth_failed record of the handshake timeout: %+v", authFailures(a))
		}
	})
	echo(t, gc, "after")
	if opens := a.Events("session.open"); len(opens) != 1 {
		t.Errorf("%d session.open records, want only the good client's", len(opens))
	}
}

// refusingLine is lineEngine with a Refuser that tells a refused client
// why in a line.
type refusingLine struct{ lineEngine }

func (refusingLine) Refuse(conn net.Conn, reason string) {
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "refused: "+reason+"\n")
}

// A client over max_conns on a TLS listener is told inside TLS, as the
// engine tells any refused client, not in plain bytes its TLS stack cannot
// read; the client being served goes on.
func TestTLSListenerRefusalInsideTLS(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	addr, a, roots := tlsListenerOf(t, p, 5*time.Second, refusingLine{}, gateway.Limits{MaxConns: 1, MaxConnsPerSource: 10})
	cert, _ := loadPair(t, p, "alice", gatewaytest.CertOptions{CommonName: "alice", Client: true, Role: "engineer"})
	held, err := dialTLS(addr, roots, cert, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echo(t, held, "ping") // its session is open: the next one is over max_conns
	over, err := dialTLS(addr, roots, cert, 0)
	if err != nil {
		t.Fatalf("the client over max_conns: no TLS session to be told in: %v", err)
	}
	defer over.Close()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(over).ReadString('\n')
	if err != nil || line != "refused: "+gateway.RefusedConnLimit+"\n" {
		t.Fatalf("the client over max_conns read %q, %v; want the refusal", line, err)
	}
	echo(t, held, "ping")
	if !slices.ContainsFunc(a.Events("session.open"), func(r gatewaytest.Record) bool { return r.Reason == gateway.RefusedConnLimit }) {
		t.Errorf("no record of the refusal: %+v", a.Events("session.open"))
	}
}

// A source whose handshakes fail FreeFailures times in a row is held back:
// its next connections are closed before any handshake (even with a good
// certificate, even though the engine tells other refused clients why),
// recorded as refusals once per interval with the others counted, not one
// session.auth_failed each; a session it opened before and other hosts go
// on being served. When the hold-back ends its good certificate is accepted
// and clears the count.
func TestTLSListenerHoldsBackFailingSource(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	var skew atomic.Int64 // how far the listener's clock of hold-backs is ahead
	addr, a, roots := tlsListenerWith(t, p, 5*time.Second, refusingLine{}, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10},
		func(l *gateway.Listener) {
			l.RefusalInterval = time.Second
			l.SetClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
		})
	good, _ := loadPair(t, p, "good", gatewaytest.CertOptions{CommonName: "good", Client: true, Role: "engineer"})
	stranger, _ := loadPair(t, gatewaytest.NewTLSPKINamed(t, "another CA"), "stranger",
		gatewaytest.CertOptions{CommonName: "stranger", Client: true, Role: "engineer"})
	dial := func(local string, cert *tls.Certificate) (*tls.Conn, error) {
		c, err := dialTLSFrom(local, addr, roots, cert, 0)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	before, err := dial("127.0.0.1", good)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, before, "before")
	// fail makes one failed handshake from 127.0.0.1 and waits for its record
	// (the count of the failure comes before it).
	fail := func(want int) {
		t.Helper()
		c, err := dial("127.0.0.1", stranger)
		if err == nil {
			// TLS 1.3: the client learns of a refused certificate at its first read.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
		}
		if err == nil {
			t.Fatal("a certificate of another CA was served")
		}
		waitEvents(t, a, "request.rejected", want)
		if fs := authFailures(a); len(fs) != want || !strings.Contains(fs[want-1].Detail, "certificate signed by unknown authority") {
			t.Fatalf("%d auth_failed records, want %d, the last for the unknown authority: %+v", len(fs), want, fs)
		}
	}
	for i := range gateway.FreeFailures {
		fail(i + 1)
	}

	const heldBack = 4
	for i := range heldBack {
		c, err := dial("127.0.0.1", good)
		if err == nil {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, rerr := bufio.NewReader(c).ReadString('\n')
			t.Fatalf("held-back connection %d: handshake done (then read %q, %v), want it closed before", i+1, line, rerr)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("held-back connection %d: %v, want the connection closed (EOF or reset), no TLS alert", i+1, err)
		}
	}
	other, err := dial("127.0.0.2", good)
	if err != nil {
		t.Fatalf("another host during the hold-back: %v", err)
	}
	echo(t, other, "another host")
	echo(t, before, "opened before")
	if fs := authFailures(a); len(fs) != gateway.FreeFailures {
		t.Errorf("%d auth_failed records, want %d: none for the held-back connections", len(fs), gateway.FreeFailures)
	}
	if records, _ := refusals(a, gateway.RefusedAuthFailures, "127.0.0.1"); records != 1 {
		t.Errorf("%d refusal records of 127.0.0.1 at once, want 1 (the others counted)", records)
	}

	// The hold-back (1 s after the third failure) ends.
	skew.Store(int64(2 * time.Second))
	after, err := dial("127.0.0.1", good)
	if err != nil {
		t.Fatalf("the good certificate after the hold-back: %v", err)
	}
	echo(t, after, "after the hold-back")
	// Its success cleared the count: FreeFailures-1 failures again are
	// handshaken and recorded, and do not hold the source back.
	for i := range gateway.FreeFailures - 1 {
		fail(gateway.FreeFailures + i + 1)
	}
	again, err := dial("127.0.0.1", good)
	if err != nil {
		t.Fatalf("the good certificate after %d new failures: %v", gateway.FreeFailures-1, err)
	}
	echo(t, again, "count cleared")
	// The count of the held-back connections after the first comes once the
	// refusal interval has passed.
	if records, refused := waitRefusals(a, gateway.RefusedAuthFailures, "", heldBack); records != 2 || refused != heldBack {
		t.Errorf("refusals: %d records of %d connections, want 2 of %d (the first, then the count of the others)", records, refused, heldBack)
	}
}

// Recheck ends the sessions whose client certificate no longer passes (here
// revoked by a CRL set after they opened): their connections close, their
// session.close records say why, a new handshake with the certificate is
// refused, and the other sessions go on.
func TestTLSListenerRecheckEndsRevokedSessions(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	srv, pair, cas := recheckingServer(t, p)
	var l *gateway.Listener
	addr, a, roots := tlsListenerWith(t, p, 0, lineEngine{}, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10},
		func(gl *gateway.Listener) { gl.TLS, gl.CheckTLS, l = srv.Config(), srv.Recheck, gl })
	alice, _ := loadPair(t, p, "alice", gatewaytest.CertOptions{CommonName: "alice", Client: true, Role: "engineer"})
	bob, _ := loadPair(t, p, "bob", gatewaytest.CertOptions{CommonName: "bob", Client: true, Role: "engineer"})
	ac := openSession(t, addr, roots, alice, "alice before")
	bc := openSession(t, addr, roots, bob, "bob before")

	if n := l.Recheck(); n != 0 {
		t.Fatalf("Recheck ended %d sessions under the trust they opened with", n)
	}
	crlFile, crl := p.CRL(t, "crl", time.Now().Add(time.Hour), bob.Leaf)
	srv.Set(pair, modbus.ClientTrust{CAs: cas, CRLs: []*x509.RevocationList{crl}})
	if n := l.Recheck(); n != 1 {
		t.Fatalf("Recheck ended %d sessions, want bob's (%s)", n, crlFile)
	}
	bc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bc.Read(make([]byte, 1)); !closedByPeer(err) {
		t.Fatalf("bob's connection: %v, want it closed by the gateway", err)
	}
	echo(t, ac, "alice after")
	closes := waitEvents(t, a, "session.close", 1)
	if len(closes) != 1 || closes[0].Session.Principal.User != "bob" || closes[0].Err == nil ||
		!strings.Contains(closes[0].Err.Error(), "no longer passes") || !strings.Contains(closes[0].Err.Error(), "revoked") {
		t.Fatalf("session.close records %+v, want bob's, saying his certificate was revoked", closes)
	}
	if n := l.Recheck(); n != 0 {
		t.Errorf("a second Recheck ended %d more", n)
	}

	before := len(authFailures(a))
	if c, err := dialTLS(addr, roots, bob, 0); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
		if err == nil {
			t.Fatal("bob was served again")
		}
	}
	fs := waitEvents(t, a, "request.rejected", before+1)
	if len(fs) != before+1 || !strings.Contains(fs[before].Detail, "revoked") {
		t.Fatalf("auth_failed records %+v, want bob's with revoked", fs)
	}
	echo(t, ac, "alice at the end")
}

// A session does not outlive its client certificate: just after the
// certificate expires the gateway ends the session, whether it checks with
// CheckTLS (the trust in force) or with the chains of the handshake, and
// its session.close says why; a session with a longer certificate goes on.
func TestTLSListenerEndsSessionAtCertificateExpiry(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	srv, _, _ := recheckingServer(t, p)
	for _, tc := range []struct {
		name  string
		check func(tls.ConnectionState) (time.Time, error)
	}{{"checked against the trust in force", srv.Recheck}, {"the handshake's chains", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, a, roots := tlsListenerWith(t, p, 0, lineEngine{}, gateway.Limits{MaxConns: 10, MaxConnsPerSource: 10},
				func(gl *gateway.Listener) { gl.TLS, gl.CheckTLS = srv.Config(), tc.check })
			end := time.Now().Add(3 * time.Second).Truncate(time.Second)
			short, _ := loadPair(t, p, "short", gatewaytest.CertOptions{CommonName: "short", Client: true, NotAfter: end})
			long, _ := loadPair(t, p, "long", gatewaytest.CertOptions{CommonName: "long", Client: true})
			sc := openSession(t, addr, roots, short, "short before its expiry")
			lc := openSession(t, addr, roots, long, "long before")

			sc.SetReadDeadline(end.Add(10 * time.Second))
			_, err := sc.Read(make([]byte, 1))
			if !closedByPeer(err) {
				t.Fatalf("the session of the expiring certificate: %v, want it closed by the gateway", err)
			}
			if now := time.Now(); !now.After(end) {
				t.Fatalf("closed at %v, before its certificate expired at %v", now, end)
			}
			closes := waitEvents(t, a, "session.close", 1)
			if len(closes) != 1 || closes[0].Session.Principal.User != "short" || closes[0].Err == nil ||
				!strings.Contains(closes[0].Err.Error(), "no longer passes") || !strings.Contains(closes[0].Err.Error(), "expired") {
				t.Fatalf("session.close records %+v, want short's, saying its certificate expired", closes)
			}
			echo(t, lc, "long after")
		})
	}
}

// CertExpiry is the latest, over the chains a certificate verified along,
// of the first expiry on each.
func TestCertExpiry(t *testing.T) {
	at := func(h int) *x509.Certificate {
		return &x509.Certificate{NotAfter: time.Date(2030, 1, 1, h, 0, 0, 0, time.UTC)}
	}
	leaf := at(10)
	got := gateway.CertExpiry([][]*x509.Certificate{{leaf, at(5), at(20)}, {leaf, at(8)}, {leaf, at(12), at(7)}})
	if want := at(8).NotAfter; !got.Equal(want) {
		t.Errorf("CertExpiry = %v, want %v", got, want)
	}
	if got := gateway.CertExpiry(nil); !got.IsZero() {
		t.Errorf("CertExpiry(nil) = %v, want zero", got)
	}
}

// recheckingServer is a TLS server with a gateway certificate for
// 127.0.0.1 issued by p's CA, trusting p's CA for clients; and that
// certificate and trust.
func recheckingServer(t *testing.T, p *gatewaytest.TLSPKI) (*modbus.TLSServer, tls.Certificate, *x509.CertPool) {
	t.Helper()
	pair, cas := p.GatewayPair(t)
	return modbus.NewTLSServer(pair, modbus.ClientTrust{CAs: cas}), pair, cas
}

// openSession opens a TLS session with cert, sees it served (echo, as
// what) and closes it when the test ends.
func openSession(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate, what string) *tls.Conn {
	t.Helper()
	c, err := dialTLS(addr, roots, cert, 0)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Cleanup(func() { c.Close() })
	echo(t, c, what)
	return c
}
