package modbus_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// The role is the extension's one UTF8String; no extension is no role;
// anything else in the extension is an error that names the OID.
func TestCertRoles(t *testing.T) {
	if !modbus.OIDRole.Equal(gatewaytest.OIDModbusRole) {
		t.Fatalf("OIDRole %v, want %v", modbus.OIDRole, gatewaytest.OIDModbusRole)
	}
	p := gatewaytest.NewTLSPKI(t)
	for _, tc := range []struct {
		name  string
		o     gatewaytest.CertOptions
		roles []string
		err   string // a part of the error; "" none
	}{
		{"engineer", gatewaytest.CertOptions{Role: "engineer"}, []string{"engineer"}, ""},
		{"non-ascii", gatewaytest.CertOptions{Role: "Ingenieur·in"}, []string{"Ingenieur·in"}, ""},
		{"no extension", gatewaytest.CertOptions{}, nil, ""},
		{"printable string", gatewaytest.CertOptions{RoleExt: []byte{0x13, 0x08, 'e', 'n', 'g', 'i', 'n', 'e', 'e', 'r'}}, nil, "not a UTF8String (class 0, tag 19)"},
		{"trailing bytes", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x03, 'o', 'p', 's', 0x00}}, nil, "1 bytes after the UTF8String"},
		{"two strings", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x01, 'a', 0x0c, 0x01, 'b'}}, nil, "3 bytes after the UTF8String"},
		{"sequence of a string", gatewaytest.CertOptions{RoleExt: []byte{0x30, 0x03, 0x0c, 0x01, 'a'}}, nil, "not a UTF8String (class 0, tag 16)"},
		{"constructed utf8", gatewaytest.CertOptions{RoleExt: []byte{0x2c, 0x03, 0x0c, 0x01, 'a'}}, nil, "not a UTF8String"},
		{"context tag", gatewaytest.CertOptions{RoleExt: []byte{0x8c, 0x01, 'a'}}, nil, "not a UTF8String (class 2, tag 12)"},
		{"empty", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x00}}, nil, "an empty UTF8String"},
		{"not utf-8", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x02, 0xc3, 0x28}}, nil, "not UTF-8"},
		{"length past the end", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x09, 'a'}}, nil, "not DER"},
		{"long form length", gatewaytest.CertOptions{RoleExt: []byte{0x0c, 0x81, 0x01, 'a'}}, nil, "not DER"},
		{"no bytes", gatewaytest.CertOptions{RoleExt: []byte{}}, nil, "not DER"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.CommonName, tc.o.Client = "c", true
			crt, _ := p.Issue(t, "c", tc.o)
			roles, err := modbus.CertRoles(gatewaytest.ReadCert(t, crt))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want roles %q", err, tc.roles)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "1.3.6.1.4.1.50316.802.1")):
				t.Fatalf("roles %q, error %v; want an error naming the OID with %q", roles, err, tc.err)
			case !slices.Equal(roles, tc.roles) || (tc.roles == nil) != (roles == nil):
				t.Fatalf("roles %q, want %q", roles, tc.roles)
			}
		})
	}
}

// The TLS server takes only a client certificate of its CA, valid now, for
// client authentication, with a well-formed role, over TLS 1.2 or later.
func TestServerTLSHandshake(t *testing.T) {
	p := gatewaytest.NewTLSPKI(t)
	pair, pool := p.GatewayPair(t)
	addr, results := handshakeServer(t, modbus.NewTLSServer(pair, modbus.ClientTrust{CAs: pool}).Config())
	other := gatewaytest.NewTLSPKINamed(t, "another CA")
	issue := func(pk *gatewaytest.TLSPKI, name string, o gatewaytest.CertOptions) []tls.Certificate {
		return issuePair(t, pk, name, o)
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		max   uint16 // client's highest TLS version; 0: default
		err   string // server side; "" accepted
	}{
		{"engineer", issue(p, "eng", gatewaytest.CertOptions{Client: true, Role: "engineer"}), 0, ""},
		{"no role", issue(p, "norole", gatewaytest.CertOptions{Client: true}), 0, ""},
		{"no extended key usage", issue(p, "noeku", gatewaytest.CertOptions{Role: "engineer"}), 0, ""},
		{"tls 1.2", issue(p, "tls12", gatewaytest.CertOptions{Client: true, Role: "engineer"}), tls.VersionTLS12, ""},
		{"no certificate", nil, 0, "client didn't provide a certificate"},
		{"another CA", issue(other, "stranger", gatewaytest.CertOptions{Client: true, Role: "engineer"}), 0, "certificate signed by unknown authority"},
		{"expired", issue(p, "old", gatewaytest.CertOptions{Client: true, Role: "engineer",
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}), 0, "expired"},
		{"server only", issue(p, "srvonly", gatewaytest.CertOptions{Server: true, Role: "engineer"}), 0, "incompatible key usage"},
		{"malformed role", issue(p, "badrole", gatewaytest.CertOptions{Client: true, RoleExt: []byte{0x13, 0x01, 'x'}}), 0, "role extension 1.3.6.1.4.1.50316.802.1: not a UTF8String"},
		{"tls 1.1", issue(p, "tls11", gatewaytest.CertOptions{Client: true, Role: "engineer"}), tls.VersionTLS11, "unsupported versions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serr, err := tryHandshake(t, addr, results, pool, tc.certs, tc.max)
			if tc.err == "" {
				if serr != nil {
					t.Fatalf("refused: %v", serr)
				}
				return
			}
			if serr == nil || !strings.Contains(serr.Error(), tc.err) {
				t.Fatalf("server handshake error %v, want one with %q (client: %v)", serr, tc.err, err)
			}
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("client error %v: the client was not told", err)
			}
		})
	}
}

// handshakeServer accepts TLS connections with cfg and sends the result of
// each one's server handshake on results.
func handshakeServer(t *testing.T, cfg *tls.Config) (addr string, results chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results = make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			results <- c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String(), results
}

// tryHandshake connects to a handshakeServer with the first of certs (none:
// no certificate) and TLS versions up to max (0: any), and returns the
// server's handshake error and the client's.
func tryHandshake(t *testing.T, addr string, results chan error, roots *x509.CertPool, certs []tls.Certificate, max uint16) (serverErr, clientErr error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: max, MinVersion: tls.VersionTLS10}
	// Sent whatever CAs the server names, as OpenSSL clients do.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if len(certs) == 0 {
			return &tls.Certificate{}, nil
		}
		return &certs[0], nil
	}
	c, err := tls.Dial("tcp", addr, cfg)
	if err == nil {
		// TLS 1.3: the client learns of a refused certificate at its first read.
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(make([]byte, 1))
		c.Close()
	}
	select {
	case serverErr = <-results:
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake on the server side")
	}
	return serverErr, err
}

// issuePair issues a certificate of pk for o (common name: name unless
// set) and loads it with its key.
func issuePair(t *testing.T, pk *gatewaytest.TLSPKI, name string, o gatewaytest.CertOptions) []tls.Certificate {
	t.Helper()
	if o.CommonName == "" {
		o.CommonName = name
	}
	crt, key := pk.Issue(t, name, o)
	c, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	return []tls.Certificate{c}
}
