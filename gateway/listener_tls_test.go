package gateway_test

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
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
	crt, key := p.Issue(t, "gw", gatewaytest.CertOptions{CommonName: "gw", Server: true, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.CA)
	inv := gateway.NewInventory([]gateway.Workstation{{Prefix: netip.MustParsePrefix("127.0.0.1/32"),
		Name: "ews-alice", Owner: "alice", User: "alice", Roles: []string{"admin"}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &gatewaytest.Auditor{}
	l := &gateway.Listener{
		Name: "l1", Protocol: "line", Gateway: "gw", Target: gateway.Target{Name: "l1", UnitID: -1},
		Engine: eng, Pipeline: &gateway.Pipeline{Decider: gatewaytest.AllowAll, Auditor: a},
		Identify: &gateway.CertIdentifier{Inventory: inv, Roles: modbus.CertRoles},
		TLS:      modbus.ServerTLS(pair, pool), HandshakeTimeout: handshake,
		Limits: limits, Log: zerolog.Nop(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("listener did not stop within 5 s")
		}
	})
	return ln.Addr().String(), a, pool
}

// dialTLS connects with cert (nil: none) and TLS version max (0: any).
func dialTLS(addr string, roots *x509.CertPool, cert *tls.Certificate, max uint16) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: max,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		}}
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
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

	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
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
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
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
