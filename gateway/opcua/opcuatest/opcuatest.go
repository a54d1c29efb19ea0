// Package opcuatest runs node-opcua, a third-party OPC UA stack, as a test
// peer: a server standing in for a controller (peers/server.js) and a client
// driven by a scenario (peers/client.js). Tests that use them call
// gatewaytest.RequirePeer through StartServer and RunClient, so they skip when
// node-opcua is not installed (scripts/install-peers.sh) and fail under
// INTERLOCK_REQUIRE_PEERS=1. Every child process is killed when the test ends.
package opcuatest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// Node ids of the test server's address space (namespace 1, under
// Objects/PLC), the same in the opcuasim simulator.
const (
	NodePLC         = "ns=1;s=PLC"
	NodeTemperature = "ns=1;s=Temperature" // Double, changes every 100 ms
	NodeSetpoint    = "ns=1;s=Setpoint"    // Double, writable, starts at 50
	NodePressure    = "ns=1;s=Pressure"    // Double, 1.013
	NodeCounter     = "ns=1;s=Counter"     // Int32, writable, starts at 0
	NodeSpeed       = "ns=1;s=Speed"       // Int32, the speed of the last accepted Start
	NodeTrend       = "ns=1;s=Trend"       // Int32 array of 20,000 values, 0 to 19,999
	NodeStart       = "ns=1;s=Start"       // method of PLC: Start(speed Int32) -> (accepted Boolean)
	// NodeWait is a method of PLC in the test server only: Wait(ms UInt32)
	// answers after ms.
	NodeWait = "ns=1;s=Wait"
	// NodeRecipe is a vendor's structure in the test server only: an
	// ExtensionObject of encoding ns=1;i=5001 (which no codec here knows),
	// writable, starting as the bytes "recipe 7: 120 rpm, 35 s".
	NodeRecipe = "ns=1;s=Recipe"
	// NodeLevel is a historized Double in the test server only: writable,
	// starting at 0.5; HistoryRead (raw) returns its changes.
	NodeLevel = "ns=1;s=Level"
)

// Users of the test server.
const (
	Engineer         = "alice" // role engineer
	EngineerPassword = "engineer-pw"
	Operator         = "bob" // role operator
	OperatorPassword = "operator-pw"
)

// StartTimeout bounds how long StartServer waits for the server to listen;
// the first start creates the server's certificate.
const StartTimeout = 90 * time.Second

// Peers is the folder holding server.js and client.js.
func Peers() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "peers")
}

func nodeEnv(t testing.TB) []string {
	t.Helper()
	dir, err := gatewaytest.NodeModules()
	if err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "NODE_PATH="+dir)
}

// ServerOptions configure the node-opcua test server. The zero value is a
// server on a free port with SecurityPolicy None, anonymous access allowed
// and unknown client certificates rejected.
type ServerOptions struct {
	// Port to listen on (on 127.0.0.1); 0 picks a free one.
	Port int
	// SecurityPolicies offered, by node-opcua's names: None, Basic256Sha256,
	// Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss. Default: None. UserName
	// logins on a None endpoint need a second policy: node-opcua offers
	// UserName token policies that encrypt the password with one of the
	// others, never a plain password.
	SecurityPolicies []string
	// SecurityModes offered: None, Sign, SignAndEncrypt. Default: None for
	// the None policy and Sign and SignAndEncrypt for the others.
	SecurityModes []string
	// DenyAnonymous refuses anonymous sessions.
	DenyAnonymous bool
	// AcceptUnknownCertificates trusts every client certificate; otherwise
	// a client needs its certificate in the server's trust list (Trust).
	AcceptUnknownCertificates bool
	// HangPublish delays every Publish response from the start; change it
	// later with Server.HangPublish.
	HangPublish time.Duration
	// PKI is the server's certificate store root; default a temporary
	// directory of the test.
	PKI string
}

// Server is a running node-opcua test server.
type Server struct {
	// Endpoint is opc.tcp://127.0.0.1:PORT; it stays the same across Restart.
	Endpoint string
	// Port is the TCP port the server listens on.
	Port int
	// PKI is the root of the server's stores: PKI/server is its application
	// PKI (own/certs/certificate.pem, trusted/certs, rejected, issuers) and
	// PKI/user the store for X.509 user tokens.
	PKI string

	t    testing.TB
	opts ServerOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan map[string]any
	exited  chan struct{}
	log     *lockedBuffer
}

// StartServer starts peers/server.js and waits until it listens. The server
// is stopped when the test ends.
func StartServer(t testing.TB, o ServerOptions) *Server {
	t.Helper()
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	if len(o.SecurityPolicies) == 0 {
		o.SecurityPolicies = []string{"None"}
	}
	if o.PKI == "" {
		o.PKI = t.TempDir()
	}
	s := &Server{t: t, opts: o, PKI: o.PKI, Port: o.Port}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("opcuatest: node-opcua server: %v", err)
	}
	return s
}

func (s *Server) args() []string {
	a := []string{filepath.Join(Peers(), "server.js"),
		"--pki", s.PKI,
		"--port", strconv.Itoa(s.Port),
		"--security", strings.Join(s.opts.SecurityPolicies, ","),
		"--anonymous", strconv.FormatBool(!s.opts.DenyAnonymous),
	}
	if len(s.opts.SecurityModes) > 0 {
		a = append(a, "--modes", strings.Join(s.opts.SecurityModes, ","))
	}
	if s.opts.AcceptUnknownCertificates {
		a = append(a, "--accept-unknown")
	}
	if s.opts.HangPublish > 0 {
		a = append(a, "--hang-publish-ms", strconv.FormatInt(s.opts.HangPublish.Milliseconds(), 10))
	}
	return a
}

func (s *Server) start() error {
	cmd := exec.Command("node", s.args()...)
	cmd.Env = nodeEnv(s.t)
	setProcAttr(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	log := &lockedBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan map[string]any, 1)
	replies := make(chan map[string]any, 16)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		first := true
		for sc.Scan() {
			line := sc.Bytes()
			var m map[string]any
			if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &m) != nil {
				log.Write(append(append([]byte(nil), line...), '\n')) // node-opcua's own messages
				continue
			}
			if first {
				first = false
				ready <- m
				continue
			}
			select {
			case replies <- m:
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case m := <-ready:
		if ok, _ := m["ready"].(bool); !ok {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("not ready: %v\n%s", m["error"], log.String())
		}
		ep, _ := m["endpoint"].(string)
		port, _ := m["port"].(float64)
		s.mu.Lock()
		s.cmd, s.stdin, s.replies, s.exited, s.log = cmd, stdin, replies, exited, log
		s.Endpoint, s.Port = ep, int(port)
		s.mu.Unlock()
		return nil
	case <-exited:
		return fmt.Errorf("exited before listening:\n%s", log.String())
	case <-time.After(StartTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("not listening after %s:\n%s", StartTimeout, log.String())
	}
}

// Stop stops the server and waits for the process to end; it is safe to
// call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, stdin, exited := s.cmd, s.stdin, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = stdin.Close() // the server shuts down when its stdin closes
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart stops the server and starts it again on the same port with the
// same PKI (and so the same certificate). Sessions and values start afresh.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for i := 0; i < 50; i++ { // the port may linger for a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("opcuatest: restart node-opcua server: %v", err)
}

// command sends one command to the server and returns its answer.
func (s *Server) command(cmd map[string]any) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return nil, errors.New("server is stopped")
	}
	b, _ := json.Marshal(cmd)
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	select {
	case m := <-s.replies:
		if ok, _ := m["ok"].(bool); !ok {
			return m, fmt.Errorf("%v", m["error"])
		}
		return m, nil
	case <-s.exited:
		return nil, errors.New("server exited")
	case <-time.After(10 * time.Second):
		return nil, errors.New("no answer in 10 s")
	}
}

// HangPublish delays every Publish response by d from now on (0: answer at
// once). Other services are answered as usual.
func (s *Server) HangPublish(d time.Duration) {
	s.t.Helper()
	if _, err := s.command(map[string]any{"cmd": "hangPublish", "ms": d.Milliseconds()}); err != nil {
		s.t.Fatalf("opcuatest: hangPublish: %v", err)
	}
}

// Value is the current value of a variable read inside the server, without
// a session: what the controller really holds (numbers as float64).
func (s *Server) Value(node string) any {
	s.t.Helper()
	m, err := s.command(map[string]any{"cmd": "get", "node": node})
	if err != nil {
		s.t.Fatalf("opcuatest: value of %s: %v", node, err)
	}
	return m["value"]
}

// Certificate is the server's application instance certificate (DER).
func (s *Server) Certificate() []byte {
	s.t.Helper()
	der, err := readCertificate(filepath.Join(s.PKI, "server", "own", "certs", "certificate.pem"))
	if err != nil {
		s.t.Fatalf("opcuatest: server certificate: %v", err)
	}
	return der
}

// Trust puts a client application certificate (DER) into the server's trust
// list and takes it out of its rejected store. A running server takes it at
// once; a stopped one reads it when it starts again.
func (s *Server) Trust(der []byte) {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		if _, err := s.command(map[string]any{"cmd": "trust", "der": der}); err != nil {
			s.t.Fatalf("opcuatest: trust: %v", err)
		}
		return
	}
	root := filepath.Join(s.PKI, "server")
	dir := filepath.Join(root, "trusted", "certs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	sum := sha1.Sum(der)
	name := "client-" + hex.EncodeToString(sum[:]) + ".der"
	if err := os.WriteFile(filepath.Join(dir, name), der, 0o644); err != nil {
		s.t.Fatal(err)
	}
	// node-opcua treats a certificate in both stores as rejected.
	rejected, _ := filepath.Glob(filepath.Join(root, "rejected", "*"))
	for _, f := range rejected {
		if got, err := readCertificate(f); err == nil && bytes.Equal(got, der) {
			if err := os.Remove(f); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// Log is what the server printed besides its JSON lines (node-opcua's
// messages and errors), for failure messages.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// ClientCertificate is the application instance certificate (DER) the
// client created in a scenario's CertDir.
func ClientCertificate(certDir string) ([]byte, error) {
	return readCertificate(filepath.Join(certDir, "own", "certs", "client_certificate.pem"))
}

func readCertificate(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes, nil
	}
	return b, nil
}

// lockedBuffer collects a child's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Status is an OPC UA status code as node-opcua names it (BadOutOfRange).
type Status struct {
	Name string `json:"name"`
	Code uint32 `json:"code"`
}

// StatusCode is the status as a gopcua status code.
func (s Status) StatusCode() ua.StatusCode { return ua.StatusCode(s.Code) }

// Good is true for Good (0) only.
func (s Status) Good() bool { return s.Code == 0 }

func (s Status) String() string { return fmt.Sprintf("%s (0x%08X)", s.Name, s.Code) }
