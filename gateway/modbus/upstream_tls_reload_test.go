package modbus_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
)

// goTLSPLC is a Modbus/TCP Security server in the test: it requires a
// client certificate of its client CA, answers a read of holding registers
// with the register numbers, holds a read at heldAddr until release, and
// tells of each session: the client certificate's common name when it
// opens, and its end.
type goTLSPLC struct {
	addr     string
	sessions chan string
	ended    chan struct{}
	held     chan struct{}
	release  chan struct{}
	once     sync.Once
}

// letGo answers the held reads.
func (p *goTLSPLC) letGo() { p.once.Do(func() { close(p.release) }) }

const heldAddr = 99

func startGoTLSPLC(t *testing.T, cert, key, clientCA string) *goTLSPLC {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(clientCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	cfg := &tls.Config{Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	p := &goTLSPLC{sessions: make(chan string, 16), ended: make(chan struct{}, 16), held: make(chan struct{}, 4), release: make(chan struct{})}
	p.addr = serveConns(t, func(conn net.Conn) {
		tc := tls.Server(conn, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		p.sessions <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
		defer func() { p.ended <- struct{}{} }()
		for {
			h := make([]byte, 7)
			if _, err := io.ReadFull(tc, h); err != nil {
				return
			}
			pdu := make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
			if _, err := io.ReadFull(tc, pdu); err != nil || pdu[0] != 3 {
				return
			}
			addr, n := binary.BigEndian.Uint16(pdu[1:]), binary.BigEndian.Uint16(pdu[3:])
			if addr == heldAddr {
				p.held <- struct{}{}
				<-p.release
			}
			resp := []byte{3, byte(2 * n)}
			for i := range n {
				resp = binary.BigEndian.AppendUint16(resp, addr+i)
			}
			binary.BigEndian.PutUint16(h[4:], uint16(len(resp)+1))
			if _, err := tc.Write(append(h, resp...)); err != nil {
				return
			}
		}
	})
	t.Cleanup(p.letGo) // before serveConns waits for the handlers

	return p
}

// session waits for the next session and returns its client certificate's
// common name.
func (p *goTLSPLC) session(t *testing.T) string {
	t.Helper()
	select {
	case cn := <-p.sessions:
		return cn
	case <-time.After(5 * time.Second):
		t.Fatal("no new TLS session with the PLC")
		return ""
	}
}

// endedWithin says whether a session ended within d.
func (p *goTLSPLC) endedWithin(d time.Duration) bool {
	select {
	case <-p.ended:
		return true
	case <-time.After(d):
		return false
	}
}

// noSession fails when a session opened or ended since the last look.
func (p *goTLSPLC) noSession(t *testing.T, when string) {
	t.Helper()
	select {
	case cn := <-p.sessions:
		t.Errorf("%s: a new TLS session (%s), want the one open", when, cn)
	case <-p.ended:
		t.Errorf("%s: a TLS session ended, want it open", when)
	default:
	}
}

// reloadSetup is a gateway whose upstream_tls files are copies the test
// rewrites: gw.crt/gw.key (first the gateway certificate "interlock
// gateway"), ca.pem (the PLC authority).
type reloadSetup struct {
	*tlsSetup
	dir              string
	gw2Cert, gw2Key  string // "interlock gateway 2", of the PLC authority
	caFile, crt, key string // the files upstream_tls names
}

func newReloadSetup(t *testing.T) *reloadSetup {
	s := &reloadSetup{tlsSetup: newTLSSetup(t), dir: t.TempDir()}
	s.gw2Cert, s.gw2Key = s.pki.Issue(t, "gateway2", gatewaytest.CertOptions{CommonName: "interlock gateway 2", Client: true, Role: "gateway"})
	s.caFile, s.crt, s.key = filepath.Join(s.dir, "ca.pem"), filepath.Join(s.dir, "gw.crt"), filepath.Join(s.dir, "gw.key")
	s.put(t, s.caFile, s.pki.CAFile)
	s.put(t, s.crt, s.gwCert)
	s.put(t, s.key, s.gwKey)
	return s
}

// put copies from into the file to.
func (s *reloadSetup) put(t *testing.T, to, from string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (s *reloadSetup) options(conns int) modbus.Options {
	return modbus.Options{UpstreamConns: conns, UpstreamTLS: &modbus.UpstreamTLS{CA: s.caFile, Cert: s.crt, Key: s.key}}
}

func readAt(t *testing.T, g *gw, addr uint16) ([]uint16, error) {
	t.Helper()
	got, err := client(t, g.addr, 1).ReadHoldingRegisters(context.Background(), addr, 2)
	return regs(got), err
}

func reload(t *testing.T, g *gw) modbus.UpstreamTLSLoad {
	t.Helper()
	l, err := g.eng.ReloadUpstreamTLS()
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return l
}

// Reading upstream_tls again: unchanged files change nothing; a new
// gateway certificate closes the open session at once and the next request
// presents it; files that do not load leave the certificate in force and
// its session open, the error naming the key and file; a CA that did not
// issue the PLC's certificate makes the next request 0x0A, and the right
// one back serves it again.
func TestUpstreamTLSReload(t *testing.T) {
	s := newReloadSetup(t)
	plc := startGoTLSPLC(t, s.plcCert, s.plcKey, s.pki.CAFile)
	g := startGateway(t, gwOpts{upstream: "tls://" + plc.addr, modbus: s.options(1),
		limits: gateway.Limits{RequestTimeout: 5 * time.Second}})
	served := func(when string) {
		t.Helper()
		if got, err := readAt(t, g, 10); err != nil || !slices.Equal(got, []uint16{10, 11}) {
			t.Fatalf("%s: read %v, %v; want [10 11]", when, got, err)
		}
	}
	served("at start")
	if cn := plc.session(t); cn != "interlock gateway" {
		t.Fatalf("the PLC saw %q, want interlock gateway", cn)
	}
	if want := []string{s.caFile, s.crt, s.key}; !slices.Equal(g.eng.UpstreamTLSPaths(), want) {
		t.Errorf("paths %v, want %v", g.eng.UpstreamTLSPaths(), want)
	}

	if l := reload(t, g); l.Changed || l.ConnectionsClosed != 0 || l.Cert.Subject.CommonName != "interlock gateway" || l.CAs != 1 {
		t.Errorf("unchanged files: %+v, want nothing changed, interlock gateway and 1 CA in force", l)
	}
	plc.noSession(t, "after a reading of unchanged files")

	s.put(t, s.crt, s.gw2Cert)
	s.put(t, s.key, s.gw2Key)
	l := reload(t, g)
	if !l.Changed || l.ConnectionsClosed != 1 || l.Cert.Subject.CommonName != "interlock gateway 2" || l.CAs != 1 {
		t.Errorf("a new certificate: %+v, want changed, 1 connection closed, interlock gateway 2, 1 CA", l)
	}
	if !plc.endedWithin(2 * time.Second) {
		t.Fatal("the idle session of the certificate before is still open")
	}
	served("with the new certificate")
	if cn := plc.session(t); cn != "interlock gateway 2" {
		t.Fatalf("the PLC saw %q, want interlock gateway 2", cn)
	}

	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"not a certificate", s.crt, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n", "upstream_tls.cert: " + s.crt},
		{"another certificate's key", s.key, "", "upstream_tls.key: " + s.key + " is not the key of the certificate in " + s.crt},
		{"no CA", s.caFile, "", "upstream_tls.ca: " + s.caFile + " holds no PEM certificate"},
		{"missing key file", s.key, "-", "upstream_tls.key: open " + s.key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.content == "-":
				os.Remove(tc.file)
			case tc.file == s.key:
				s.put(t, s.key, s.gwKey)
			default:
				if err := os.WriteFile(tc.file, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l, err := g.eng.ReloadUpstreamTLS()
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %v, want it to begin %q", err, tc.want)
			}
			if l.Changed || l.Cert == nil || l.Cert.Subject.CommonName != "interlock gateway 2" || l.CAs != 1 {
				t.Errorf("what stays in force: %+v, want interlock gateway 2 and 1 CA", l)
			}
			served("while the files do not load")
			plc.noSession(t, "while the files do not load")
			if err := os.WriteFile(tc.file, before, 0o600); err != nil {
				t.Fatal(err)
			}
		})
	}

	s.put(t, s.caFile, s.otherCA.CAFile)
	if l := reload(t, g); !l.Changed || l.ConnectionsClosed != 1 {
		t.Errorf("another CA: %+v, want changed, 1 connection closed", l)
	}
	if !plc.endedWithin(2 * time.Second) {
		t.Fatal("the session verified under the CA before is still open")
	}
	if _, err := readAt(t, g, 10); exceptionCode(err) != modbus.ExGatewayPathUnavailable {
		t.Fatalf("read with a CA that did not issue the PLC's certificate: %v, want exception 0x0A", err)
	}
	rs := g.audit.Events("result")
	if d := rs[len(rs)-1].Result.Detail; !strings.Contains(d, "certificate signed by unknown authority") {
		t.Errorf("result detail %q, want the verification failure", d)
	}
	s.put(t, s.caFile, s.pki.CAFile)
	if l := reload(t, g); !l.Changed || l.ConnectionsClosed != 0 {
		t.Errorf("the PLC's CA back: %+v, want changed, no connection open to close", l)
	}
	served("with the PLC's CA back")
	if cn := plc.session(t); cn != "interlock gateway 2" {
		t.Fatalf("the PLC saw %q, want interlock gateway 2", cn)
	}
}

// A new certificate closes an idle session at once, and a session carrying
// a request when that request has been answered: the request is not cut
// off. Both count as closed, and every later request presents the new
// certificate.
func TestUpstreamTLSReloadInFlight(t *testing.T) {
	s := newReloadSetup(t)
	plc := startGoTLSPLC(t, s.plcCert, s.plcKey, s.pki.CAFile)
	g := startGateway(t, gwOpts{upstream: "tls://" + plc.addr, modbus: s.options(2),
		limits: gateway.Limits{RequestTimeout: 5 * time.Second}})
	// Two reads in turn take the two connections in turn.
	for range 2 {
		if _, err := readAt(t, g, 10); err != nil {
			t.Fatal(err)
		}
		plc.session(t)
	}
	type answer struct {
		got []uint16
		err error
	}
	held := make(chan answer, 1)
	go func() {
		got, err := client(t, g.addr, 1).ReadHoldingRegisters(context.Background(), heldAddr, 2)
		held <- answer{regs(got), err}
	}()
	select {
	case <-plc.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the read did not reach the PLC")
	}
	s.put(t, s.crt, s.gw2Cert)
	s.put(t, s.key, s.gw2Key)
	if l := reload(t, g); !l.Changed || l.ConnectionsClosed != 2 {
		t.Errorf("%+v, want changed, 2 connections closed (one idle, one in flight)", l)
	}
	if !plc.endedWithin(2 * time.Second) {
		t.Fatal("the idle session is still open")
	}
	if plc.endedWithin(200 * time.Millisecond) {
		t.Fatal("the session carrying a request ended before its answer")
	}
	plc.letGo()
	if a := <-held; a.err != nil || !slices.Equal(a.got, []uint16{heldAddr, heldAddr + 1}) {
		t.Fatalf("the read in flight: %v, %v; want its answer", a.got, a.err)
	}
	if !plc.endedWithin(2 * time.Second) {
		t.Fatal("the session of the certificate before is still open after its request")
	}
	for range 2 {
		if _, err := readAt(t, g, 10); err != nil {
			t.Fatal(err)
		}
		if cn := plc.session(t); cn != "interlock gateway 2" {
			t.Fatalf("the PLC saw %q, want interlock gateway 2", cn)
		}
	}
}
