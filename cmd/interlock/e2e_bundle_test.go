package main

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// e2eBundleServer serves one bundle with an ETag, as an OPA bundle server.
type e2eBundleServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	served int // answers with a bundle (not 304)
}

func newE2EBundleServer(t *testing.T, body []byte) *e2eBundleServer {
	t.Helper()
	s := &e2eBundleServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sum := sha256.Sum256(s.body)
		etag := strconv.Quote(hex.EncodeToString(sum[:8]))
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		s.served++
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *e2eBundleServer) servedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

func (s *e2eBundleServer) serve(body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = body
}

// e2eSigningKey writes an RSA key pair: the private key for `policy bundle
// build`, the public key for the gateway.
func e2eSigningKey(t *testing.T) (priv, pub string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "bundle-signing.pem"), filepath.Join(dir, "bundle-verify.pem")
	writeFile(t, priv, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	writeFile(t, pub, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})))
	return priv, pub
}

// buildQuickstartBundle runs `interlock policy bundle build` on the
// quickstart policy and returns the signed bundle.
func buildQuickstartBundle(t *testing.T, rev, signingKey, keyID string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), rev+".tar.gz")
	r := interlock(t, "policy", "bundle", "build", filepath.Join(repoRoot, "examples", "quickstart", "policy"),
		"--out", out, "--revision", rev, "--signing-key", signingKey, "--key-id", keyID, "--signing-alg", "RS256")
	if r.code != 0 || !strings.Contains(r.stdout, "revision bundle:"+rev) || !strings.Contains(r.stdout, "signed RS256, key id "+keyID) {
		t.Fatalf("interlock policy bundle build: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tamperBundle changes one byte of the bundle's .rego file after signing.
func tamperBundle(t *testing.T, raw []byte) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	changed := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(h.Name, ".rego") && !changed {
			i := bytes.Index(data, []byte("package interlock"))
			if i < 0 {
				t.Fatalf("%s has no package line", h.Name)
			}
			data[i+len("package interlock")-1] = 'K'
			changed = true
		}
		h.Size = int64(len(data))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if !changed {
		t.Fatal("no .rego file in the bundle")
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// useBundle points the gateway's policy.path at a bundle server URL and
// configures the key that verifies its bundles.
func useBundle(t *testing.T, g *gw, url, pubKey, keyID string) {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	const dirLine = "  path: ./policy\n"
	if !bytes.Contains(b, []byte(dirLine)) {
		t.Fatalf("the gateway configuration has no %q line:\n%s", dirLine, b)
	}
	b = bytes.Replace(b, []byte(dirLine), []byte(fmt.Sprintf("  path: %s\n  bundle_key: %s\n  bundle_key_id: %s\n", url, pubKey, keyID)), 1)
	writeFile(t, g.config, string(b))
}

// latestRead returns the last allowed read of holding registers 100..101
// in the audit log, or nil.
func latestRead(recs []record) record {
	calls := callRecords(recs, "read_holding_registers", 100)
	if len(calls) == 0 {
		return nil
	}
	return calls[len(calls)-1]
}

// A fleet pulls its policy: `policy bundle build` signs the quickstart
// policy, a local bundle server serves it, the gateway decides under its
// revision; a tampered bundle is refused with a policy.load_failed record
// and the old revision keeps deciding; a good new revision is picked up.
func TestE2EBundleSignedFromServer(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	priv, pub := e2eSigningKey(t)
	srv := newE2EBundleServer(t, buildQuickstartBundle(t, "e2e-1", priv, "site-a"))
	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	url := srv.URL + "/bundles/site-a.tar.gz"
	useBundle(t, g, url, pub, "site-a")
	if r := interlock(t, "check", "--config", g.config); r.code != 0 || !strings.Contains(r.stdout, "revision bundle:e2e-1") {
		t.Fatalf("interlock check: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	g.start(t)

	read := func(wantRev string) record {
		t.Helper()
		before := len(callRecords(readAudit(t, g.auditPath), "read_holding_registers", 100))
		if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "2"}); r.code != 0 || r.values[100] != v100 || r.values[101] != v101 {
			t.Fatalf("a read under %s: exit %d, values %v\n%s", wantRev, r.code, r.values, r.out)
		}
		recs := waitAudit(t, g.auditPath, 10*time.Second, "the read's call and result records", func(recs []record) bool {
			c := latestRead(recs)
			return len(callRecords(recs, "read_holding_registers", 100)) > before && resultOf(recs, c.str("call_id")) != nil
		})
		call := latestRead(recs)
		checkCallRecord(t, recs, call, true)
		if got := call.str("decision.policy_revision"); got != wantRev {
			t.Fatalf("the read was decided under %q, want %q\n%s", got, wantRev, call)
		}
		return call
	}

	recs := readAudit(t, g.auditPath)
	if s := eventsOf(recs, "gateway.start"); len(s) != 1 || s[0].str("policy_revision") != "bundle:e2e-1" {
		t.Fatalf("gateway.start records: %v", s)
	}
	if l := eventsOf(recs, "policy.load"); len(l) != 1 || l[0].str("policy_revision") != "bundle:e2e-1" || l[0].str("path") != url ||
		l[0].str("bundle_signature") != "verified" {
		t.Fatalf("policy.load records: %v; want bundle:e2e-1 from %s, its signature verified", l, url)
	}
	g.waitLog(t, 5*time.Second, "the load line says the signature was verified", func(l map[string]any) bool {
		return l["message"] == "policy loaded" && l["bundle_signature"] == "verified" && l["policy_revision"] == "bundle:e2e-1"
	})
	read("bundle:e2e-1")

	srv.serve(tamperBundle(t, buildQuickstartBundle(t, "e2e-2", priv, "site-a")))
	recs = waitAudit(t, g.auditPath, 10*time.Second, "a policy.load_failed record for the tampered bundle", func(recs []record) bool {
		for _, r := range eventsOf(recs, "policy.load_failed") {
			if strings.Contains(r.str("error"), "digest mismatch") {
				return true
			}
		}
		return false
	})
	if l := eventsOf(recs, "policy.load"); len(l) != 1 {
		t.Fatalf("the tampered bundle was loaded: %v", l)
	}
	for _, r := range eventsOf(recs, "policy.load_failed") {
		if r.str("path") != url || r.str("policy_revision") != "bundle:e2e-1" {
			t.Errorf("policy.load_failed record %v; want the path %s and the revision that stays in force, bundle:e2e-1", r, url)
		}
	}
	g.waitLog(t, 5*time.Second, "the refusal in the operational log", func(l map[string]any) bool {
		return l["message"] == "policy reload failed: previous policy stays in force" &&
			strings.Contains(fmt.Sprint(l["error"]), "digest mismatch") && l["policy_revision"] == "bundle:e2e-1"
	})
	read("bundle:e2e-1")
	served := srv.servedCount()
	time.Sleep(time.Second) // five more polls: the refused bundle is not fetched or recorded again
	if n := len(eventsOf(readAudit(t, g.auditPath), "policy.load_failed")); n != 1 || srv.servedCount() != served {
		t.Errorf("%d policy.load_failed records and %d more downloads; the one tampered bundle should give one record and no download",
			n, srv.servedCount()-served)
	}

	srv.serve(buildQuickstartBundle(t, "e2e-3", priv, "site-a"))
	waitAudit(t, g.auditPath, 10*time.Second, "a policy.load record for bundle:e2e-3", func(recs []record) bool {
		l := eventsOf(recs, "policy.load")
		return len(l) == 2 && l[1].str("policy_revision") == "bundle:e2e-3"
	})
	read("bundle:e2e-3")
	if code := g.stopGateway(t); code != 0 {
		t.Errorf("gateway exit code %d", code)
	}
	verifyAudit(t, g.auditPath)
}

// A SIGHUP while the bundle server does not answer does not hold up a
// stop: the reload runs beside the signal loop.
func TestE2EBundleHangingServerDoesNotHoldStop(t *testing.T) {
	t.Parallel()
	priv, pub := e2eSigningKey(t)
	body := buildQuickstartBundle(t, "e2e-1", priv, "site-a")
	var hang atomic.Bool
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			<-release
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	plc := startPLC(t, 0)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	useBundle(t, g, srv.URL+"/bundles/site-a.tar.gz", pub, "site-a")
	g.start(t)
	hang.Store(true)
	g.proc.signal(t, syscall.SIGHUP)
	time.Sleep(200 * time.Millisecond) // the reload is waiting for the server
	if code := g.stopGateway(t); code != 0 {
		t.Fatalf("the gateway exited %d", code)
	}
}

// A bundle server that cannot be reached at start is an error naming
// policy.path and saying that the gateway keeps no copy of the last bundle.
func TestE2EBundleServerDownAtStart(t *testing.T) {
	t.Parallel()
	_, pub := e2eSigningKey(t)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/bundles/site-a.tar.gz"
	srv.Close() // nothing listens there any more
	g := newGateway(t, gwOptions{upstreamPort: 502})
	useBundle(t, g, url, pub, "site-a")
	for _, cmd := range []string{"check", "run"} {
		r := interlock(t, cmd, "--config", g.config)
		if r.code != 1 || !strings.Contains(r.stderr, g.config+":") || !strings.Contains(r.stderr, "policy.path") ||
			!strings.Contains(r.stderr, "keeps no copy of the last bundle") {
			t.Errorf("interlock %s with the bundle server down: exit %d\nstderr: %s", cmd, r.code, r.stderr)
		}
	}
}

// check warns about a bundle whose origin nothing proves: unsigned, or
// signed with no bundle_key to check it against; with the key, no warning.
func TestE2ECheckWarnsUnverifiedBundle(t *testing.T) {
	t.Parallel()
	priv, pub := e2eSigningKey(t)
	signed := filepath.Join(t.TempDir(), "signed.tar.gz")
	writeFile(t, signed, string(buildQuickstartBundle(t, "e2e-s", priv, "site-a")))
	unsigned := filepath.Join(t.TempDir(), "unsigned.tar.gz")
	if r := interlock(t, "policy", "bundle", "build", filepath.Join(repoRoot, "examples", "quickstart", "policy"),
		"--out", unsigned, "--revision", "e2e-u"); r.code != 0 {
		t.Fatalf("bundle build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		name, path, key, want string
	}{
		{"unsigned", unsigned, "", "warning: policy.path: the bundle is unsigned"},
		{"signed, no key", signed, "", "warning: policy.path: the bundle is signed but no policy.bundle_key is set"},
		{"signed, checked", signed, pub, ""},
	} {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		with := "  path: " + tc.path + "\n"
		if tc.key != "" {
			with += "  bundle_key: " + tc.key + "\n  bundle_key_id: site-a\n"
		}
		writeFile(t, g.config, strings.Replace(string(b), "  path: ./policy\n", with, 1))
		r := interlock(t, "check", "--config", g.config)
		warned := strings.Contains(r.stdout, "warning: policy.path: the bundle is")
		if r.code != 0 || (tc.want == "" && warned) || (tc.want != "" && !strings.Contains(r.stdout, tc.want)) {
			t.Errorf("%s: check exit %d, want 0 and %q\nstdout: %s\nstderr: %s", tc.name, r.code, cmp.Or(tc.want, "no bundle warning"), r.stdout, r.stderr)
		}
	}
}

// A bundle file that cannot be loaded fails check and run with one line
// naming the configuration file, the line and policy.path, as a bundle
// server that cannot be reached does.
func TestE2EBundleFileErrorsNameConfigLine(t *testing.T) {
	t.Parallel()
	priv, pub := e2eSigningKey(t)
	signed := buildQuickstartBundle(t, "r1", priv, "site-a")
	unsigned := filepath.Join(t.TempDir(), "unsigned.tar.gz")
	if r := interlock(t, "policy", "bundle", "build", filepath.Join(repoRoot, "examples", "quickstart", "policy"), "--out", unsigned); r.code != 0 {
		t.Fatalf("policy bundle build: exit %d\n%s", r.code, r.stderr)
	}
	unsignedRaw, err := os.ReadFile(unsigned)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		bundle []byte
		keys   string // policy keys after path
		want   string
	}{
		{"truncated", signed[:len(signed)/2], "", "not a readable"},
		{"tampered", tamperBundle(t, signed), fmt.Sprintf("  bundle_key: %s\n  bundle_key_id: site-a\n", pub), "digest mismatch"},
		{"unsigned", unsignedRaw, fmt.Sprintf("  bundle_key: %s\n  bundle_key_id: site-a\n", pub), "unsigned"},
		{"other key id", signed, fmt.Sprintf("  bundle_key: %s\n  bundle_key_id: site-b\n", pub), "key id"},
		{"other algorithm", signed, fmt.Sprintf("  bundle_key: %s\n  bundle_key_id: site-a\n  bundle_key_alg: PS256\n", pub), "verif"},
		{"oversized", signed, "  bundle_max_bytes: 100\n", "more than the limit"},
	} {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		file := filepath.Join(g.dir, "bad.tar.gz")
		if err := os.WriteFile(file, tc.bundle, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		const dirLine = "  path: ./policy\n"
		before, _, ok := strings.Cut(string(b), dirLine)
		if !ok {
			t.Fatalf("the gateway configuration has no %q line:\n%s", dirLine, b)
		}
		line := strings.Count(before, "\n") + 1
		writeFile(t, g.config, strings.Replace(string(b), dirLine, "  path: ./bad.tar.gz\n"+tc.keys, 1))
		prefix := fmt.Sprintf("%s:%d: policy.path: bundle %s: ", g.config, line, file)
		for _, cmd := range []string{"check", "run"} {
			r := interlock(t, cmd, "--config", g.config)
			var errLine string // run logs warnings before it
			for l := range strings.Lines(r.stderr) {
				if strings.HasPrefix(l, "interlock: ") {
					errLine = l
				}
			}
			if r.code != 1 || !strings.HasPrefix(errLine, "interlock: "+prefix) || !strings.Contains(errLine, tc.want) {
				t.Errorf("%s: interlock %s: exit %d, want a line starting %q and naming %q\nstderr: %s", tc.name, cmd, r.code, prefix, tc.want, r.stderr)
			}
		}
	}
}
