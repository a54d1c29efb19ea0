package opcua_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
	"github.com/interlock-ics/interlock/policy"
)

// testPolicy: reads, browsing, subscriptions and session opens are allowed;
// engineers and anonymous clients may write anything but Counter and call
// methods with a first argument up to 500; operators may not write or call.
// Writes ask for the old value.
const testPolicy = `package interlock

default allow := false

allow if input.operation.access in {"session", "read", "browse", "subscribe"}

writer if "engineer" in input.principal.roles
writer if input.principal.auth == "anonymous"

allow if {
	input.operation.access == "write"
	writer
	input.operation.node_id != "ns=1;s=Counter"
}

allow if {
	input.operation.access == "execute"
	writer
	input.operation.arguments[0] <= 500
}

decision := {"allow": allow, "record_old_value": input.operation.access == "write", "reasons": reasons}

reasons := [] if allow
reasons := ["not_allowed"] if not allow
`

// gatewayPKI makes the gateway's PKI with its certificate for localhost.
func gatewayPKI(t testing.TB) (string, *certs.Store) {
	t.Helper()
	return pkiWithKey(t, "urn:interlock:test", 0)
}

// pkiWithKey makes a PKI whose own certificate has ApplicationURI uri, is
// for localhost and has an RSA key of bits (certs.Init's default when 0).
func pkiWithKey(t testing.TB, uri string, bits int) (string, *certs.Store) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	st, err := certs.Init(dir, certs.InitOptions{ApplicationURI: uri, Hosts: []string{"localhost", "127.0.0.1"}, KeyBits: bits})
	if err != nil {
		t.Fatal(err)
	}
	return dir, st
}

// trust puts a DER certificate into the store's trust list.
// pairWith makes the server and the gateway's store trust each other's
// certificate, for a secured upstream leg.
func pairWith(t *testing.T, srv *opcuatest.Server, store *certs.Store) {
	t.Helper()
	own, _, err := store.Own()
	if err != nil {
		t.Fatal(err)
	}
	srv.Trust(own)                     // the server knows the gateway
	trust(t, store, srv.Certificate()) // and the gateway the server
}

// trustedClient gives the node-opcua client of sc a certificate the
// gateway trusts: a first run (refused, with a Read) makes it in a new
// sc.CertDir, and the gateway's store trusts it. It returns the certificate.
func trustedClient(t *testing.T, g *gw, sc *opcuatest.Scenario) []byte {
	t.Helper()
	sc.CertDir = t.TempDir()
	first := *sc
	first.Steps = []opcuatest.Step{{Read: []string{opcuatest.NodePressure}}}
	opcuatest.RunClient(t, first) // refused: it only makes the client's certificate
	cert, err := opcuatest.ClientCertificate(sc.CertDir)
	if err != nil {
		t.Fatal(err)
	}
	trust(t, g.store, cert)
	return cert
}

func trust(t *testing.T, st *certs.Store, der []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("c%d.der", time.Now().UnixNano()))
	if err := os.WriteFile(p, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TrustFile(p); err != nil {
		t.Fatal(err)
	}
}

// usersFile writes alice (engineer, bcrypt) and bob (operator, argon2id).
func usersFile(t testing.TB) string {
	t.Helper()
	bc, err := bcrypt.GenerateFromPassword([]byte(opcuatest.EngineerPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(opcuatest.OperatorPassword), salt, 1, 8*1024, 1, 32)
	a2 := fmt.Sprintf("$argon2id$v=19$m=%d,t=1,p=1$%s$%s", 8*1024,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	body := fmt.Sprintf("- name: %s\n  password_hash: %q\n  roles: [engineer]\n- name: %s\n  password_hash: %q\n  roles: [operator]\n",
		opcuatest.Engineer, string(bc), opcuatest.Operator, a2)
	p := filepath.Join(t.TempDir(), "users.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

type gw struct {
	endpoint  string
	auditPath string
	store     *certs.Store
	engine    gateway.Engine
	policy    *policy.Engine
	policyDir string
	stop      func() // stops the listener as a shutdown does (drains), once
}

type gwOpts struct {
	upstream string
	opts     opcua.Options
	policy   string // Rego; testPolicy when empty
	limits   gateway.Limits
	pkiDir   string
	store    *certs.Store
}

// startGateway runs a listener with the OPC UA engine, a real policy engine
// and a real audit log.
func startGateway(t testing.TB, o gwOpts) *gw {
	t.Helper()
	if o.pkiDir == "" {
		o.pkiDir, o.store = gatewayPKI(t)
	}
	o.opts.PKI = o.pkiDir
	if o.policy == "" {
		o.policy = testPolicy
	}
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "p.rego"), []byte(o.policy), 0o600); err != nil {
		t.Fatal(err)
	}
	pe, err := policy.New(policy.Options{Path: pdir, Gateway: "gw", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.jsonl")
	aw, err := audit.Open(audit.Options{Path: auditPath, Gateway: "gw", SyncInterval: 10 * time.Millisecond, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	p := &gateway.Pipeline{Decider: pe, Auditor: aw, DecisionTimeout: time.Second}
	if o.limits.RequestTimeout == 0 {
		o.limits.RequestTimeout = 5 * time.Second
	}
	if o.limits.MaxConnsPerSource == 0 {
		// Every test client comes from 127.0.0.1: the per-source cap is
		// max_conns unless a test sets it.
		o.limits.MaxConnsPerSource = cmp.Or(o.limits.MaxConns, gateway.DefaultMaxConns)
	}
	if o.opts.Limits.MaxSessionsPerSource == 0 {
		// The same for the sessions: the share of one source is all of
		// max_sessions unless a test sets it.
		o.opts.Limits.MaxSessionsPerSource = cmp.Or(o.opts.Limits.MaxSessions, opcua.DefaultMaxSessions)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := gateway.Target{Name: "line1", Upstream: o.upstream, UnitID: -1}
	eng, err := opcua.New(gateway.EngineSpec{
		Listener: "line1", Upstream: o.upstream, Listen: ln.Addr().String(), Target: target,
		Limits: o.limits, Pipeline: p, Log: zerolog.Nop(),
		Options: func(into any) error { *into.(*opcua.Options) = o.opts; return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &gateway.Listener{Name: "line1", Protocol: "opcua", Gateway: "gw", Target: target,
		Engine: eng, Pipeline: p, Limits: o.limits, Log: testLog(), RefusalInterval: 200 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Serve(ctx, ln); close(done) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(func() {
		stop()
		eng.Close()
		aw.Close()
	})
	return &gw{endpoint: "opc.tcp://" + ln.Addr().String(), auditPath: auditPath, store: o.store, engine: eng, policy: pe, policyDir: pdir, stop: stop}
}

// record is an audit record, loosely decoded.
type record map[string]any

func (r record) str(path ...string) string {
	var v any = map[string]any(r)
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[k]
	}
	s, _ := v.(string)
	if s == "" && v != nil {
		if _, isMap := v.(map[string]any); !isMap {
			return fmt.Sprint(v)
		}
	}
	return s
}

// records reads the audit log (records of non-durable calls reach the file
// within the sync interval, so it waits until cond holds or 5 s passed).
func (g *gw) records(t testing.TB, cond func([]record) bool) []record {
	t.Helper()
	var out []record
	deadline := time.Now().Add(5 * time.Second)
	for {
		out = out[:0]
		f, err := os.Open(g.auditPath)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("audit line %q: %v", sc.Text(), err)
			}
			out = append(out, r)
		}
		f.Close()
		if cond == nil || cond(out) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRecords is records with a bound of its own that fails the test when
// cond is still false at its end (records gives up silently after 5 s).
func (g *gw) waitRecords(t testing.TB, timeout time.Duration, what string, cond func([]record) bool) []record {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := g.records(t, cond)
		if cond(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the audit log within %v", what, timeout)
		}
	}
}

// events returns the records of one event.
func events(rs []record, event string) []record {
	var out []record
	for _, r := range rs {
		if r.str("event") == event {
			out = append(out, r)
		}
	}
	return out
}

func step(t *testing.T, r *opcuatest.Result, i int, name string) opcuatest.StepResult {
	t.Helper()
	if !r.Connect.OK || !r.Session.OK {
		t.Fatalf("connect %+v session %+v\n%s", r.Connect, r.Session, r.Log)
	}
	if len(r.Steps) <= i {
		t.Fatalf("step %d missing: %d results\n%s", i, len(r.Steps), r.Log)
	}
	s := r.Steps[i]
	if s.Step != name || s.Error != "" {
		t.Fatalf("step %d: want %s, got %+v\n%s", i, name, s, r.Log)
	}
	return s
}

func fmtValue(v any) string { return fmt.Sprint(v) }

// testLog is the operational log: silent unless OPCUA_TEST_LOG=1.
func testLog() zerolog.Logger {
	if os.Getenv("OPCUA_TEST_LOG") == "1" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.DebugLevel).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }
