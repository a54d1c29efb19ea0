package channel

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// acceptErrCount is how many connections Accept has refused so far.
func (s *testServer) acceptErrCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acceptErrs)
}

// nextAcceptErr waits for Accept to refuse one more connection than before.
func (s *testServer) nextAcceptErr(t *testing.T, before int) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		if len(s.acceptErrs) > before {
			err := s.acceptErrs[before]
			s.mu.Unlock()
			return err
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("Accept refused nothing")
	return nil
}

// channelFor waits for the server's channel with this policy and mode.
func (s *testServer) channelFor(t *testing.T, policy string, mode ua.MessageSecurityMode) *Channel {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for _, c := range s.channels {
			if c.SecurityPolicyURI() == policy && c.SecurityMode() == mode {
				s.mu.Unlock()
				return c
			}
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no such channel")
	return nil
}

// expectRefusal opens a channel twice, with gopcua's client (which must
// fail) and with a raw client (which must get an ERR with want), and checks
// that Accept returned want both times.
func expectRefusal(t *testing.T, srv *testServer, policy string, mode ua.MessageSecurityMode, cert testCert, want ua.StatusCode) {
	t.Helper()
	before := srv.acceptErrCount()
	if _, _, err := dialUASC(t, srv.endpoint, policy, mode, cert, time.Hour); err == nil {
		t.Fatal("gopcua's client opened the channel")
	}
	if got := StatusOf(srv.nextAcceptErr(t, before)); got != want {
		t.Fatalf("Accept refused gopcua's client with %v, want %v", got, want)
	}
	r := dialRaw(t, srv)
	r.hello()
	if policy == ua.SecurityPolicyURINone {
		r.mustWrite(opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: policy}, 1, 1, opnRequest(ua.SecurityTokenRequestTypeIssue, 60000)))
	} else {
		r.openSecuredNoRead(policy, mode, cert)
	}
	r.expectERR(want)
	if got := StatusOf(srv.nextAcceptErr(t, before+1)); got != want {
		t.Fatalf("Accept refused the raw client with %v, want %v", got, want)
	}
}

// Only offered (policy, mode) pairs open: no downgrade to None, no other
// mode, no other policy.
func TestRefusesPairsNotOffered(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Offers = []Offer{{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}}
	srv := startServer(t, cfg)
	for _, tc := range []struct {
		policy string
		mode   ua.MessageSecurityMode
		want   ua.StatusCode
	}{
		{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, ua.StatusBadSecurityPolicyRejected},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign, ua.StatusBadSecurityModeRejected},
		{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSignAndEncrypt, ua.StatusBadSecurityPolicyRejected},
		{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSign, ua.StatusBadSecurityPolicyRejected},
	} {
		t.Run(shortPolicy(tc.policy)+"_"+tc.mode.String(), func(t *testing.T) {
			expectRefusal(t, srv, tc.policy, tc.mode, clientCert, tc.want)
		})
	}
	// the offered pair opens
	if _, _, err := dialUASC(t, srv.endpoint, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, clientCert, time.Hour); err != nil {
		t.Fatal(err)
	}
	// and a mode of None under a secured policy is never accepted
	r := dialRaw(t, srv)
	r.hello()
	r.openSecuredNoRead(ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeNone, clientCert)
	r.expectERR(ua.StatusBadSecurityModeRejected)
}

// A client certificate ValidateClient refuses closes the channel with the
// validator's status code.
func TestRefusesUntrustedCertificate(t *testing.T) {
	srv := startServer(t, baseConfig(t))
	expectRefusal(t, srv, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, otherClientCert, ua.StatusBadCertificateUntrusted)
	// a validator error without a code refuses with Bad_SecurityChecksFailed
	cfg := baseConfig(t)
	cfg.ValidateClient = func([]byte) error { return errors.New("no") }
	srv2 := startServer(t, cfg)
	expectRefusal(t, srv2, ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSign, clientCert, ua.StatusBadSecurityChecksFailed)
}

// An ECDSA or malformed certificate in the OPN is refused with
// Bad_CertificateInvalid, without a panic; so is a missing one.
func TestRefusesNonRSACertificate(t *testing.T) {
	srv := noneServer(t)
	junk := make([]byte, 300)
	rand.Read(junk)
	for name, cert := range map[string][]byte{"ecdsa": ecdsaCertDER, "junk": junk, "none": nil} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, srv)
			r.hello()
			hdr := &uasc.AsymmetricSecurityHeader{
				SecurityPolicyURI:             ua.SecurityPolicyURIBasic256Sha256,
				SenderCertificate:             cert,
				ReceiverCertificateThumbprint: uapolicy.Thumbprint(serverCert.der),
			}
			before := srv.acceptErrCount()
			r.write(opnChunk(0, hdr, 1, 1, make([]byte, 512)))
			r.expectERR(ua.StatusBadCertificateInvalid)
			if err := srv.nextAcceptErr(t, before); StatusOf(err) != ua.StatusBadCertificateInvalid {
				t.Fatalf("Accept returned %v", err)
			}
		})
	}
	// an OPN encrypted for another certificate
	r := dialRaw(t, srv)
	r.hello()
	r.write(opnChunk(0, &uasc.AsymmetricSecurityHeader{
		SecurityPolicyURI:             ua.SecurityPolicyURIBasic256Sha256,
		SenderCertificate:             clientCert.der,
		ReceiverCertificateThumbprint: uapolicy.Thumbprint(clientCert.der),
	}, 1, 1, make([]byte, 512)))
	r.expectERR(ua.StatusBadSecurityChecksFailed)
	// a signed OPN whose ciphertext was tampered with
	r = dialRaw(t, srv)
	r.hello()
	r.write(opnChunk(0, &uasc.AsymmetricSecurityHeader{
		SecurityPolicyURI:             ua.SecurityPolicyURIBasic256Sha256,
		SenderCertificate:             clientCert.der,
		ReceiverCertificateThumbprint: uapolicy.Thumbprint(serverCert.der),
	}, 1, 1, make([]byte, 512)))
	r.expectERR(ua.StatusBadSecurityChecksFailed)
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open files needs /proc/self/fd: %v", err)
	}
	return len(ents)
}

// closeWaitSockets counts TCP sockets in CLOSE-WAIT on a local port.
func closeWaitSockets(t *testing.T, port int) int {
	n := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 {
				continue
			}
			local := fields[1]
			p, err := strconv.ParseInt(local[strings.LastIndex(local, ":")+1:], 16, 32)
			if err == nil && int(p) == port && fields[3] == "08" {
				n++
			}
		}
	}
	return n
}

// 50 clients come and go: a fifth refused before the Hello, the others
// open a channel, read and leave, with gopcua's client and
// CloseSecureChannel, or by dropping the connection between messages or in
// the middle of a chunk. Receive ends
// with io.EOF for each, and without anyone calling Close every server
// goroutine and socket is released (none in CLOSE-WAIT).
func TestNoLeakAfterManyClients(t *testing.T) {
	cfg := baseConfig(t)
	srv := startServer(t, cfg)
	srv.mu.Lock()
	srv.noClose = true
	srv.mu.Unlock()
	port := srv.l.Addr().(*net.TCPAddr).Port
	// warm up the codec registries and the listener goroutine
	r := dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	r.read(r.tokenID, 1)
	r.c.Close()
	srv.waitEnded(t, 1)
	time.Sleep(100 * time.Millisecond)
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)

	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%5 == 4 { // refused before the Hello
				rc := dialRaw(t, srv)
				rc.write(symChunk("MSG", 'F', 1, 1, 1, 1, readBody(1)))
				rc.expectERR(ua.StatusBadTCPMessageTypeInvalid)
				rc.c.Close()
				return
			}
			switch i % 3 {
			case 0:
				policy, mode := ua.SecurityPolicyURINone, ua.MessageSecurityModeNone
				if i%2 == 0 {
					policy, mode = ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				conn, err := uacp.Dial(ctx, srv.endpoint)
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				ucfg := &uasc.Config{SecurityPolicyURI: policy, SecurityMode: mode, Lifetime: 3600000, RequestTimeout: 5 * time.Second}
				if policy != ua.SecurityPolicyURINone {
					ucfg.Certificate, ucfg.LocalKey = clientCert.der, clientCert.key
					ucfg.RemoteCertificate, ucfg.Thumbprint = serverCert.der, uapolicy.Thumbprint(serverCert.der)
				}
				sc, err := uasc.NewSecureChannel(srv.endpoint, conn, ucfg, make(chan error, 8))
				if err == nil {
					err = sc.Open(ctx)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := readOnce(sc, ua.NewNumericNodeID(0, 2258)); err != nil {
					t.Error(err)
				}
				sc.Close() // CloseSecureChannel
			default:
				c, err := net.Dial("tcp", srv.l.Addr().String())
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				rc := &rawClient{t: t, c: c, seq: 1}
				rc.hello()
				rc.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
				rc.read(rc.tokenID, 1)
				if i%3 == 2 { // half a chunk, then gone
					b := symChunk("MSG", 'F', rc.chanID, rc.tokenID, rc.seq, 2, readBody(2))
					rc.write(b[:len(b)/2])
				}
			}
		}()
	}
	wg.Wait()
	ended := srv.waitEnded(t, 1+40) // the warm-up and the 40 accepted
	if n := srv.acceptErrCount(); n != 10 {
		t.Errorf("%d connections refused, want 10", n)
	}
	for _, err := range ended {
		if err != io.EOF {
			t.Errorf("Receive ended with %v, want io.EOF", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, fd, cw := runtime.NumGoroutine(), openFDs(t), closeWaitSockets(t, port)
		if g <= baseG && fd <= baseFD && cw == 0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after 50 clients: %d goroutines (%d before), %d fds (%d before), %d sockets in CLOSE-WAIT\n%s",
				g, baseG, fd, baseFD, cw, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With DiscoveryOverNone, a None channel to a SignAndEncrypt-only gateway
// opens for GetEndpoints and FindServers only: a Read on it is refused with
// Bad_SecurityPolicyRejected and never reaches Receive.
func TestDiscoveryOverNone(t *testing.T) {
	cfg := baseConfig(t)
	cfg.Offers = []Offer{{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt}}
	cfg.DiscoveryOverNone = true
	srv := startServer(t, cfg)
	sc, _, err := dialUASC(t, srv.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, clientCert, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var eps []*ua.EndpointDescription
	err = sc.SendRequest(context.Background(), &ua.GetEndpointsRequest{RequestHeader: requestHeader(1), EndpointURL: srv.endpoint}, nil, func(v ua.Response) error {
		r, ok := v.(*ua.GetEndpointsResponse)
		if !ok {
			return errors.New("not a GetEndpointsResponse")
		}
		eps = r.Endpoints
		return nil
	})
	if err != nil || len(eps) != 1 {
		t.Fatalf("GetEndpoints: %v, %d endpoints", err, len(eps))
	}
	if _, err := readOnce(sc, ua.NewNumericNodeID(0, 2258)); StatusOf(err) != ua.StatusBadSecurityPolicyRejected {
		t.Fatalf("Read on a discovery channel: %v, want Bad_SecurityPolicyRejected", err)
	}
	ch := srv.channelFor(t, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone)
	if !ch.DiscoveryOnly() {
		t.Fatal("channel not marked discovery-only")
	}
	// the secured pair opens as usual and is not discovery-only
	if _, _, err := dialUASC(t, srv.endpoint, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, clientCert, time.Hour); err != nil {
		t.Fatal(err)
	}
	if srv.channelFor(t, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt).DiscoveryOnly() {
		t.Fatal("secured channel marked discovery-only")
	}
	// None with another mode is still refused
	r := dialRaw(t, srv)
	r.hello()
	body, _ := encodeService(446, &ua.OpenSecureChannelRequest{RequestHeader: requestHeader(1), RequestType: ua.SecurityTokenRequestTypeIssue, SecurityMode: ua.MessageSecurityModeSign, RequestedLifetime: 60000})
	r.mustWrite(opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, 1, 1, body))
	r.expectERR(ua.StatusBadSecurityModeRejected)
}
