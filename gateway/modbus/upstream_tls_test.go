package modbus_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
)

// tlsPLC is a pymodbus Modbus/TCP Security server: holding registers 10..12
// hold 1010..1012.
type tlsPLC struct {
	addr string
	cmd  *exec.Cmd
}

// startTLSPLC runs testdata/pymodbus_tls_server.py on addr ("" a free
// port) with the server certificate and key given, requiring client
// certificates issued by clientCA.
func startTLSPLC(t *testing.T, addr, cert, key, clientCA string) *tlsPLC {
	t.Helper()
	gatewaytest.RequirePeer(t, gatewaytest.PeerPymodbus)
	if addr == "" {
		addr = freeTCPAddr(t)
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := startProcess(t, gatewaytest.SystemPython, "testdata/pymodbus_tls_server.py", port, cert, key, clientCA, "10=1010", "11=1011", "12=1012")
	portNum, _ := strconv.Atoi(port)
	waitListening(t, cmd.Process.Pid, portNum)
	return &tlsPLC{addr: addr, cmd: cmd}
}

func (p *tlsPLC) stop() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cmd.Wait()
}

// tlsSetup is a PLC authority that issues the PLC's certificate (plc1,
// 127.0.0.1) and the gateway's client certificate (role gateway).
type tlsSetup struct {
	pki                 *gatewaytest.TLSPKI
	plcCert, plcKey     string
	gwCert, gwKey       string
	upstreamTLS         *modbus.UpstreamTLS
	otherCA             *gatewaytest.TLSPKI
	otherCert, otherKey string // the PLC's names, issued by another authority
}

func newTLSSetup(t *testing.T) *tlsSetup {
	s := &tlsSetup{pki: gatewaytest.NewTLSPKINamed(t, "PLC authority"), otherCA: gatewaytest.NewTLSPKINamed(t, "Another authority")}
	plc := gatewaytest.CertOptions{CommonName: "plc1", DNSNames: []string{"plc1"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}
	s.plcCert, s.plcKey = s.pki.Issue(t, "plc1", plc)
	s.otherCert, s.otherKey = s.otherCA.Issue(t, "plc1", plc)
	s.gwCert, s.gwKey = s.pki.Issue(t, "gateway", gatewaytest.CertOptions{CommonName: "interlock gateway", Client: true, Role: "gateway"})
	s.upstreamTLS = &modbus.UpstreamTLS{CA: s.pki.CAFile, Cert: s.gwCert, Key: s.gwKey}
	return s
}

// readTLS reads holding registers 10..12 of unit 1 through the gateway.
func readTLS(t *testing.T, g *gw) ([]uint16, error) {
	t.Helper()
	got, err := client(t, g.addr, 1).ReadHoldingRegisters(context.Background(), 10, 3)
	return regs(got), err
}

// Reads and writes through a tls:// upstream reach pymodbus's TLS server,
// which requires the gateway's client certificate, and come back; the
// server name checked is the upstream's host (127.0.0.1, an IP SAN), and
// the port defaults to 802 only when none is given (here one is).
func TestTLSUpstreamPymodbus(t *testing.T) {
	s := newTLSSetup(t)
	plc := startTLSPLC(t, "", s.plcCert, s.plcKey, s.pki.CAFile)
	g := startGateway(t, gwOpts{upstream: "tls://" + plc.addr, modbus: modbus.Options{UpstreamTLS: s.upstreamTLS},
		limits: gateway.Limits{RequestTimeout: 5 * time.Second}})
	if got, err := readTLS(t, g); err != nil || !slices.Equal(got, []uint16{1010, 1011, 1012}) {
		t.Fatalf("read through the gateway: %v, %v; want [1010 1011 1012]", got, err)
	}
	c := client(t, g.addr, 1)
	if _, err := c.WriteMultipleRegisters(context.Background(), 20, 2, []byte{0, 7, 0, 8}); err != nil {
		t.Fatalf("write through the gateway: %v", err)
	}
	got, err := c.ReadHoldingRegisters(context.Background(), 20, 2)
	if err != nil || !slices.Equal(regs(got), []uint16{7, 8}) {
		t.Fatalf("read back: %v, %v; want [7 8] (the write reached the PLC)", regs(got), err)
	}
	rs := g.audit.Events("result")
	if len(rs) != 3 {
		t.Fatalf("%d result records, want 3", len(rs))
	}
	for _, r := range rs {
		if r.Result.Status != gateway.StatusOK {
			t.Errorf("result %+v, want ok", r.Result)
		}
	}
}

// Each failed TLS session with the PLC is exception 0x0A (no path) at once,
// well under request_timeout, with the reason in the operational log and
// the result record; another listener goes on being served; and the
// upstream recovers when the PLC is fixed.
func TestTLSUpstreamFaults(t *testing.T) {
	s := newTLSSetup(t)
	sim, simAddr := startSim(t, "", modbussim.Options{})
	sim.SetHolding(10, 42)
	other := startGateway(t, gwOpts{upstream: "tcp://" + simAddr})
	const timeout = 10 * time.Second
	for _, tc := range []struct {
		name       string
		plc        func(t *testing.T) *tlsPLC
		tls        modbus.UpstreamTLS
		reason     string // in the log and the result record
		fixed      func(t *testing.T, addr string) *tlsPLC
		alsoReason string // another acceptable reason (a close racing the alert)
		upFirst    bool   // served once, then the PLC stops
	}{
		{name: "PLC certificate from another CA",
			plc:    func(t *testing.T) *tlsPLC { return startTLSPLC(t, "", s.otherCert, s.otherKey, s.pki.CAFile) },
			tls:    *s.upstreamTLS,
			reason: "certificate signed by unknown authority",
			fixed: func(t *testing.T, addr string) *tlsPLC {
				return startTLSPLC(t, addr, s.plcCert, s.plcKey, s.pki.CAFile)
			}},
		{name: "PLC refuses the gateway certificate",
			plc:        func(t *testing.T) *tlsPLC { return startTLSPLC(t, "", s.plcCert, s.plcKey, s.otherCA.CAFile) },
			tls:        *s.upstreamTLS,
			reason:     "the device ended the TLS session",
			alsoReason: "the device closed the TLS session before its first answer",
			fixed: func(t *testing.T, addr string) *tlsPLC {
				return startTLSPLC(t, addr, s.plcCert, s.plcKey, s.pki.CAFile)
			}},
		{name: "server name does not match",
			plc:    func(t *testing.T) *tlsPLC { return startTLSPLC(t, "", s.plcCert, s.plcKey, s.pki.CAFile) },
			tls:    modbus.UpstreamTLS{CA: s.pki.CAFile, Cert: s.gwCert, Key: s.gwKey, ServerName: "plc2"},
			reason: "certificate is valid for plc1, not plc2"},
		{name: "PLC down, then back",
			plc:     func(t *testing.T) *tlsPLC { return startTLSPLC(t, "", s.plcCert, s.plcKey, s.pki.CAFile) },
			tls:     *s.upstreamTLS,
			reason:  "connection refused",
			upFirst: true,
			fixed: func(t *testing.T, addr string) *tlsPLC {
				return startTLSPLC(t, addr, s.plcCert, s.plcKey, s.pki.CAFile)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plc := tc.plc(t)
			log := &gatewaytest.LogBuffer{}
			u := tc.tls
			g := startGateway(t, gwOpts{upstream: "tls://" + plc.addr, modbus: modbus.Options{UpstreamTLS: &u},
				limits: gateway.Limits{RequestTimeout: timeout}, log: log})
			if tc.upFirst {
				if got, err := readTLS(t, g); err != nil || !slices.Equal(got, []uint16{1010, 1011, 1012}) {
					t.Fatalf("before the PLC stopped: %v, %v", got, err)
				}
				plc.stop()
			}
			for i := range 2 { // a second call dials again, as the first
				start := time.Now()
				_, err := readTLS(t, g)
				if el := time.Since(start); exceptionCode(err) != modbus.ExGatewayPathUnavailable || el > timeout/2 {
					t.Fatalf("call %d: %v after %v; want exception 0x0A at once (request_timeout %v)", i+1, err, el, timeout)
				}
			}
			rs := g.audit.Events("result")
			rs = rs[max(len(rs)-2, 0):]
			if len(rs) != 2 || rs[0].Result.Code != int(modbus.ExGatewayPathUnavailable) || !hasReason(rs[0].Result.Detail, tc.reason, tc.alsoReason) {
				t.Fatalf("result records %+v; want 0x0A with %q", rs[0].Result, tc.reason)
			}
			if !hasReason(log.String(), tc.reason, tc.alsoReason) {
				t.Fatalf("operational log:\n%s\nwant the reason %q", log, tc.reason)
			}
			if got, err := readTLS(t, other); err != nil || got[0] != 42 {
				t.Fatalf("the other listener: %v, %v; want it served", got, err)
			}
			if tc.fixed == nil {
				return
			}
			plc.stop()
			tc.fixed(t, plc.addr)
			if got, err := readTLS(t, g); err != nil || !slices.Equal(got, []uint16{1010, 1011, 1012}) {
				t.Fatalf("after the PLC was fixed: %v, %v; want [1010 1011 1012]", got, err)
			}
		})
	}
}

func hasReason(s, reason, also string) bool {
	return strings.Contains(s, reason) || (also != "" && strings.Contains(s, also))
}

// A gateway without a client certificate, against a PLC that requires
// one, is answered 0x0A, not 0x0B (the configuration cannot leave the
// certificate out: this drives the upstream itself).
func TestTLSUpstreamWithoutClientCertificate(t *testing.T) {
	s := newTLSSetup(t)
	plc := startTLSPLC(t, "", s.plcCert, s.plcKey, s.pki.CAFile)
	b, err := os.ReadFile(s.pki.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	log := &gatewaytest.LogBuffer{}
	u, err := modbus.NewUpstream("tls://"+plc.addr, modbus.UpstreamOptions{Timeout: 10 * time.Second,
		TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Log: zerologTo(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	start := time.Now()
	r, err := u.RoundTrip(context.Background(), &gateway.Call{Target: gateway.Target{UnitID: 1}, Request: []byte{3, 0, 10, 0, 1}})
	if el := time.Since(start); err == nil || r.Code != int(modbus.ExGatewayPathUnavailable) || el > 5*time.Second {
		t.Fatalf("%+v, %v after %v; want exception 0x0A at once", r, err, el)
	}
	const refused, closed = "the device ended the TLS session", "the device closed the TLS session before its first answer"
	if !hasReason(err.Error(), refused, closed) || !hasReason(log.String(), refused, closed) {
		t.Fatalf("error %v, log\n%s\nwant the PLC's refusal", err, log)
	}
}

func zerologTo(w io.Writer) zerolog.Logger { return zerolog.New(w) }

// A device that accepts the connection and never answers the TLS
// handshake (a plain Modbus server on the port, or a hung one) is 0x0A
// once connect_timeout has passed, not 0x0B at request_timeout.
func TestTLSUpstreamSilentHandshake(t *testing.T) {
	s := newTLSSetup(t)
	addr := serveConns(t, func(conn net.Conn) { io.Copy(io.Discard, conn) })
	log := &gatewaytest.LogBuffer{}
	g := startGateway(t, gwOpts{upstream: "tls://" + addr, log: log,
		modbus: modbus.Options{UpstreamTLS: s.upstreamTLS, ConnectTimeout: 300 * time.Millisecond},
		limits: gateway.Limits{RequestTimeout: 10 * time.Second}})
	start := time.Now()
	_, err := readTLS(t, g)
	if el := time.Since(start); exceptionCode(err) != modbus.ExGatewayPathUnavailable || el > 5*time.Second {
		t.Fatalf("%v after %v; want exception 0x0A after connect_timeout (300ms), well before request_timeout (10s)", err, el)
	}
	if !strings.Contains(log.String(), "not done within connect_timeout") {
		t.Fatalf("operational log:\n%s\nwant the handshake timeout", log)
	}
}
