package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// bundlePolicy allows every call with reasons [version, "rego-a"]: the
// version comes from data (site/data.json), "rego-a" from the Rego, so a
// decision shows which bundle made it and a tampered byte has a target.
const bundlePolicy = `package interlock

decision := {"allow": true, "reasons": [data.site.version, "rego-a"]}
`

func bundleFiles(version string) map[string]string {
	return map[string]string{
		"main.rego":      bundlePolicy,
		"main_test.rego": "package interlock_test\n\ntest_nothing if true\n",
		"site/data.json": fmt.Sprintf(`{"version": %q}`, version),
	}
}

// buildBundle builds the bundle of bundleFiles(version) with opts; the
// manifest revision is version unless opts says otherwise.
func buildBundle(t *testing.T, version string, opts BuildOptions) []byte {
	t.Helper()
	if opts.Revision == "" {
		opts.Revision = version
	}
	var buf bytes.Buffer
	if _, err := BuildBundle(context.Background(), policyDir(t, bundleFiles(version)), &buf, opts); err != nil {
		t.Fatalf("BuildBundle %s: %v", version, err)
	}
	return buf.Bytes()
}

// rewriteBundle unpacks a .tar.gz, lets edit change, drop (nil) or keep
// each file, adds the files of add, and packs it again: tampering after
// signing.
func rewriteBundle(t *testing.T, raw []byte, edit func(name string, data []byte) []byte, add map[string]string) []byte {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	put := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
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
		if edit != nil {
			data = edit(h.Name, data)
		}
		if data != nil {
			put(h.Name, data)
		}
	}
	for name, data := range add {
		put(name, []byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// tamperRego changes one byte of main.rego, keeping it valid Rego.
func tamperRego(t *testing.T, raw []byte) []byte {
	t.Helper()
	changed := false
	out := rewriteBundle(t, raw, func(name string, data []byte) []byte {
		if strings.HasSuffix(name, "main.rego") {
			changed = true
			return bytes.Replace(data, []byte("rego-a"), []byte("rego-b"), 1)
		}
		return data
	}, nil)
	if !changed {
		t.Fatal("no main.rego in the bundle")
	}
	return out
}

// keyPair writes a fresh key pair as PEM files: the private key (PKCS#8)
// signs, the public key verifies.
func keyPair(t *testing.T, ec bool) (priv, pub string) {
	t.Helper()
	var key any
	var err error
	if ec {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var pubKey any
	switch k := key.(type) {
	case *rsa.PrivateKey:
		pubKey = &k.PublicKey
	case *ecdsa.PrivateKey:
		pubKey = &k.PublicKey
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub = filepath.Join(dir, "bundle.key"), filepath.Join(dir, "bundle.pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// bundleServer is a bundle server with ETags, counting what it answers.
type bundleServer struct {
	*httptest.Server
	mu          sync.Mutex
	body        []byte
	status      int  // answer this status instead of the bundle when not 0
	truncate    bool // send half the body under the full Content-Length
	requests    int
	served      int // 200 with a bundle
	notModified int // 304
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	t.Helper()
	s := &bundleServer{body: body}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *bundleServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.status != 0 {
		http.Error(w, "bundle store unavailable", s.status)
		return
	}
	sum := sha256.Sum256(s.body)
	etag := strconv.Quote(hex.EncodeToString(sum[:8]))
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		s.notModified++
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.served++
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Length", strconv.Itoa(len(s.body)))
	if s.truncate {
		_, _ = w.Write(s.body[:len(s.body)/2])
		return // the server closes the connection short of Content-Length
	}
	_, _ = w.Write(s.body)
}

// serve sets what the server answers from now on.
func (s *bundleServer) serve(body []byte, status int, truncate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.status, s.truncate = body, status, truncate
}

func (s *bundleServer) counts() (requests, served, notModified int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.served, s.notModified
}

// syncBuffer is a log sink that tests read while the engine writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loadLog records OnLoad calls.
type loadLog struct {
	mu    sync.Mutex
	loads []loadRecord
	full  []Load
}

func (l *loadLog) onLoad(ld Load) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads = append(l.loads, loadRecord{ld.Revision, ld.Files, ld.Err})
	l.full = append(l.full, ld)
}

func (l *loadLog) all() []loadRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.loads)
}

func (l *loadLog) failures(substr string) int {
	n := 0
	for _, r := range l.all() {
		if r.err != nil && strings.Contains(r.err.Error(), substr) {
			n++
		}
	}
	return n
}

// decideVersion decides a read and returns its first reason (the bundle's
// data version) and the revision it carries.
func decideVersion(t *testing.T, e *Engine) (string, string) {
	t.Helper()
	s := testSession()
	d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if !d.Allow || len(d.Reasons) != 2 {
		t.Fatalf("decision %+v, want an allow with two reasons", d)
	}
	return d.Reasons[0], d.Revision
}

// wantDeciding asserts the policy in force is version under revision.
func wantDeciding(t *testing.T, e *Engine, version, rev string) {
	t.Helper()
	if v, r := decideVersion(t, e); v != version || r != rev || e.Revision() != rev {
		t.Fatalf("deciding %s under %s (Revision() %s), want %s under %s", v, r, e.Revision(), version, rev)
	}
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("no %s within 5s", what)
}

// A bundle file loads and decides under its manifest revision, with its
// data where the directory had it and without its tests; a broken
// replacement is refused and the old revision keeps deciding; a good one is
// picked up by Reload and by Watch.
func TestBundleFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.tar.gz")
	writeAtomic(t, file, buildBundle(t, "r1", BuildOptions{}))
	var ll loadLog
	e, err := New(Options{Path: file, Log: zerolog.Nop(), NoCache: true, OnLoad: ll.onLoad})
	if err != nil {
		t.Fatal(err)
	}
	wantDeciding(t, e, "r1", "bundle:r1")
	if want := []string{"data.json", "main.rego"}; !slices.Equal(e.Files(), want) {
		t.Errorf("Files() = %v, want %v (no test file, no manifest)", e.Files(), want)
	}

	writeAtomic(t, file, []byte("this is not a bundle"))
	changed, err := e.Reload()
	if changed || err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("Reload of a broken file = %v, %v; want a gzip error", changed, err)
	}
	wantDeciding(t, e, "r1", "bundle:r1")
	if l := ll.all(); len(l) != 2 || l[1].err == nil {
		t.Errorf("OnLoad calls %+v, want the load and a failure", l)
	}
	ll.mu.Lock()
	full := slices.Clone(ll.full)
	ll.mu.Unlock()
	// the audit record says how the bundle was checked, and what a failure left in force
	if len(full) != 2 || full[0].BundleSignature != sigUnsigned || full[0].InForce != "bundle:r1" || full[1].InForce != "bundle:r1" {
		t.Errorf("OnLoad calls %+v; want the load unsigned in force as bundle:r1, and the failure leaving bundle:r1 in force", full)
	}

	writeAtomic(t, file, buildBundle(t, "r2", BuildOptions{}))
	if changed, err := e.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	wantDeciding(t, e, "r2", "bundle:r2")
	if changed, err := e.Reload(); changed || err != nil {
		t.Fatalf("unchanged Reload = %v, %v; want a no-op", changed, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	writeAtomic(t, file, buildBundle(t, "r3", BuildOptions{}))
	waitFor(t, "revision bundle:r3", func() bool { return e.Revision() == "bundle:r3" })
	writeAtomic(t, file, []byte{0x1f, 0x8b, 0x08, 0x00}) // a gzip header, then nothing
	waitFor(t, "a refused reload", func() bool { return ll.failures("bundle") == 2 })
	time.Sleep(50 * time.Millisecond)
	wantDeciding(t, e, "r3", "bundle:r3")
	if n := ll.failures("bundle"); n != 2 {
		t.Errorf("%d failures reported; an unchanged broken file must be reported once", n)
	}
}

// Without a manifest revision a bundle's revision is its content hash, as
// for a directory; a revision too long for an audit record is shortened.
func TestBundleRevision(t *testing.T) {
	b := buildBundle(t, "r1", BuildOptions{})
	noManifest := rewriteBundle(t, b, func(name string, data []byte) []byte {
		if strings.HasSuffix(name, ".manifest") {
			return nil
		}
		return data
	}, nil)
	r, _ := newBundleReader(BundleOptions{})
	s, err := r.read("test", noManifest)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(s.rev) {
		t.Errorf("revision without a manifest: %q, want a content hash", s.rev)
	}
	long := strings.Repeat("é", 40) // 80 bytes
	short := shortRevision(long)
	if len(short) > maxRevisionLen || !strings.HasPrefix(long, strings.Split(short, "~")[0]) || short == shortRevision(long+"x") {
		t.Errorf("shortRevision(%q) = %q", long, short)
	}
}

// A signed bundle from a bundle server is picked up; an unchanged ETag does
// no work; a new signed revision is picked up; every kind of tampered,
// unsigned, foreign or broken answer is refused with its reason logged and
// reported, while the revision in force keeps deciding.
func TestBundleServer(t *testing.T) {
	priv, pub := keyPair(t, false)
	otherPriv, _ := keyPair(t, false)
	sign := BuildOptions{SigningKeyFile: priv, KeyID: "fleet"}
	srv := newBundleServer(t, buildBundle(t, "r1", sign))
	var logs syncBuffer
	var ll loadLog
	e, err := New(Options{Path: srv.URL + "/bundles/site-a.tar.gz", Log: zerolog.New(&logs), NoCache: true, OnLoad: ll.onLoad,
		BundleOptions: BundleOptions{BundleKeyFile: pub, BundleKeyID: "fleet", BundleTimeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	wantDeciding(t, e, "r1", "bundle:r1")
	if !strings.Contains(logs.String(), `"bundle_signature":"verified"`) {
		t.Errorf("the load line does not say the signature was verified:\n%s", logs.String())
	}

	for range 3 {
		if changed, err := e.Reload(); changed || err != nil {
			t.Fatalf("Reload of an unchanged bundle = %v, %v", changed, err)
		}
	}
	if req, served, nm := srv.counts(); req != 4 || served != 1 || nm != 3 {
		t.Errorf("server saw %d requests, served %d, answered 304 to %d; want 4, 1, 3", req, served, nm)
	}
	if n := len(ll.all()); n != 1 {
		t.Errorf("OnLoad called %d times for one load", n)
	}

	srv.serve(buildBundle(t, "r2", sign), 0, false)
	if changed, err := e.Reload(); !changed || err != nil {
		t.Fatalf("Reload of r2 = %v, %v", changed, err)
	}
	wantDeciding(t, e, "r2", "bundle:r2")

	r3 := buildBundle(t, "r3", sign)
	refusals := []struct {
		name     string
		body     []byte
		status   int
		truncate bool
		want     string
	}{
		{"one byte of a .rego changed after signing", tamperRego(t, r3), 0, false, "main.rego: digest mismatch"},
		{"manifest revision changed after signing", rewriteBundle(t, r3, func(name string, data []byte) []byte {
			if strings.HasSuffix(name, ".manifest") {
				return bytes.Replace(data, []byte(`"r3"`), []byte(`"r9"`), 1)
			}
			return data
		}, nil), 0, false, ".manifest: digest mismatch"},
		{"a file added after signing", rewriteBundle(t, r3, nil, map[string]string{"/extra.rego": "package interlock\n\nx := 1\n"}), 0, false,
			"not included in bundle signature"},
		{"signed with another key id", buildBundle(t, "r3", BuildOptions{SigningKeyFile: priv, KeyID: "other-fleet"}), 0, false,
			`signed with key id "other-fleet", but the configured key id is "fleet"`},
		{"signed by another key", buildBundle(t, "r3", BuildOptions{SigningKeyFile: otherPriv, KeyID: "fleet"}), 0, false,
			"failed to verify JWT signature"},
		{"unsigned", buildBundle(t, "r3", BuildOptions{}), 0, false, "unsigned (no .signatures.json) but a bundle key is configured"},
		{"server error", nil, http.StatusInternalServerError, false, "the server answered 500 Internal Server Error"},
		{"truncated answer", r3, 0, true, "unexpected EOF"},
		{"not a bundle", []byte("<html>login</html>"), 0, false, "not a gzip-compressed tar archive"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ll.all())
			srv.serve(tc.body, tc.status, tc.truncate)
			changed, err := e.Reload()
			if changed || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, %v; want a refusal containing %q", changed, err, tc.want)
			}
			wantDeciding(t, e, "r2", "bundle:r2")
			l := ll.all()
			if len(l) != before+1 || l[before].err == nil || l[before].err.Error() != err.Error() {
				t.Errorf("OnLoad after the refusal: %+v", l[before:])
			}
			quoted, _ := json.Marshal(tc.want)
			if !strings.Contains(logs.String(), "policy reload failed: previous policy stays in force") ||
				!strings.Contains(logs.String(), string(quoted[1:len(quoted)-1])) {
				t.Errorf("the log does not name the refusal %q:\n%s", tc.want, logs.String())
			}
		})
	}

	srv.serve(buildBundle(t, "r4", sign), 0, false)
	if changed, err := e.Reload(); !changed || err != nil {
		t.Fatalf("Reload of r4 after the refusals = %v, %v", changed, err)
	}
	wantDeciding(t, e, "r4", "bundle:r4")
}

// Watch polls a bundle server every interval: an unchanged bundle costs
// 304s and no load; a new revision is picked up; a refused bundle or a
// server that stays down is reported once, not every poll.
func TestBundleServerWatch(t *testing.T) {
	priv, pub := keyPair(t, true) // ES256
	sign := BuildOptions{SigningKeyFile: priv, KeyID: "fleet"}
	srv := newBundleServer(t, buildBundle(t, "w1", sign))
	var ll loadLog
	e, err := New(Options{Path: srv.URL, Log: zerolog.Nop(), OnLoad: ll.onLoad,
		BundleOptions: BundleOptions{BundleKeyFile: pub, BundleKeyID: "fleet"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Watch(ctx, 10*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "five 304s", func() bool { _, _, nm := srv.counts(); return nm >= 5 })
	if _, served, _ := srv.counts(); served != 1 || len(ll.all()) != 1 {
		t.Fatalf("an unchanged bundle was served %d times and loaded %d times", served, len(ll.all()))
	}

	srv.serve(buildBundle(t, "w2", sign), 0, false)
	waitFor(t, "revision bundle:w2", func() bool { return e.Revision() == "bundle:w2" })

	srv.serve(tamperRego(t, buildBundle(t, "w3", sign)), 0, false)
	waitFor(t, "the tampered bundle refused", func() bool { return ll.failures("digest mismatch") == 1 })
	_, _, nm := srv.counts()
	waitFor(t, "more polls", func() bool { _, _, n := srv.counts(); return n >= nm+5 })
	if n := ll.failures("digest mismatch"); n != 1 {
		t.Errorf("the tampered bundle was reported %d times; once is enough", n)
	}

	srv.serve(nil, http.StatusServiceUnavailable, false)
	waitFor(t, "the outage reported", func() bool { return ll.failures("503 Service Unavailable") == 1 })
	req, _, _ := srv.counts()
	waitFor(t, "more polls", func() bool { r, _, _ := srv.counts(); return r >= req+5 })
	if n := ll.failures("503 Service Unavailable"); n != 1 {
		t.Errorf("the outage was reported %d times; once is enough", n)
	}
	wantDeciding(t, e, "w2", "bundle:w2")

	srv.serve(buildBundle(t, "w4", sign), 0, false)
	waitFor(t, "revision bundle:w4", func() bool { return e.Revision() == "bundle:w4" })
}

// An HMAC-signed bundle verifies with the shared secret; with another
// secret it is refused.
func TestBundleHMAC(t *testing.T) {
	dir := t.TempDir()
	secret, wrong := filepath.Join(dir, "secret"), filepath.Join(dir, "wrong")
	writeAtomic(t, secret, []byte("a-long-shared-secret-of-the-fleet-0123456789"))
	writeAtomic(t, wrong, []byte("another-secret-entirely-0123456789-abcdefghi"))
	file := filepath.Join(dir, "policy.tar.gz")
	writeAtomic(t, file, buildBundle(t, "h1", BuildOptions{SigningKeyFile: secret, KeyID: "k1"}))
	e, err := New(Options{Path: file, Log: zerolog.Nop(), BundleOptions: BundleOptions{BundleKeyFile: secret, BundleKeyID: "k1"}})
	if err != nil {
		t.Fatal(err)
	}
	wantDeciding(t, e, "h1", "bundle:h1")
	_, err = New(Options{Path: file, Log: zerolog.Nop(), BundleOptions: BundleOptions{BundleKeyFile: wrong, BundleKeyID: "k1"}})
	if err == nil || !strings.Contains(err.Error(), "failed to verify JWT signature") {
		t.Fatalf("New with the wrong secret: %v", err)
	}
}

// With no key configured a bundle loads, and the load log says it is
// unsigned, or signed but not checked.
func TestBundleWithoutKey(t *testing.T) {
	priv, _ := keyPair(t, false)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"unsigned", buildBundle(t, "u1", BuildOptions{}), `"bundle_signature":"unsigned"`},
		{"signed", buildBundle(t, "u1", BuildOptions{SigningKeyFile: priv, KeyID: "fleet"}), `"bundle_signature":"not_checked"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBundleServer(t, tc.body)
			var logs syncBuffer
			e, err := New(Options{Path: srv.URL, Log: zerolog.New(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			wantDeciding(t, e, "u1", "bundle:u1")
			if !strings.Contains(logs.String(), tc.want) || !strings.Contains(logs.String(), `"level":"warn"`) {
				t.Errorf("the load log does not warn %s:\n%s", tc.want, logs.String())
			}
		})
	}
}

// Size limits hold for the download and for the unpacked archive (a gzip
// bomb), and a bundle's manifest roots are enforced.
func TestBundleRefusedContent(t *testing.T) {
	bomb := func() []byte {
		var raw bytes.Buffer
		zw := gzip.NewWriter(&raw)
		tw := tar.NewWriter(zw)
		data := []byte(`{"pad": "` + strings.Repeat("0", 1<<20) + `"}`)
		_ = tw.WriteHeader(&tar.Header{Name: "/data.json", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(data)
		_ = tw.Close()
		_ = zw.Close()
		return raw.Bytes()
	}()
	roots := func() []byte {
		m, err := ast.ParseModuleWithOpts("/main.rego", bundlePolicy, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		b := bundle.Bundle{Data: map[string]any{}, Manifest: bundle.Manifest{Revision: "x", Roots: &[]string{"other"}},
			Modules: []bundle.ModuleFile{{URL: "/main.rego", Path: "/main.rego", Raw: []byte(bundlePolicy), Parsed: m}}}
		var buf bytes.Buffer
		if err := bundle.NewWriter(&buf).Write(b); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	for _, tc := range []struct {
		name string
		body []byte
		max  int64
		want string
	}{
		{"download over the limit", buildBundle(t, "big", BuildOptions{}), 200, "more than the limit of 200"},
		{"unpacks over the limit", bomb, 64 << 10, "unpacks to more than the limit of 65536 bytes"},
		{"module outside the manifest roots", roots, 0, "manifest roots [other] do not permit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBundleServer(t, tc.body)
			_, err := New(Options{Path: srv.URL, Log: zerolog.Nop(), BundleOptions: BundleOptions{BundleMaxBytes: tc.max}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A bundle key that cannot protect anything is a configuration error.
func TestBundleKeyOptions(t *testing.T) {
	priv, pub := keyPair(t, false)
	_, ecPub := keyPair(t, true)
	file := filepath.Join(t.TempDir(), "p.tar.gz")
	writeAtomic(t, file, buildBundle(t, "k1", BuildOptions{}))
	dir := policyDir(t, bundleFiles("d1"))
	for _, tc := range []struct {
		name string
		path string
		o    BundleOptions
		want string
	}{
		{"key without id", file, BundleOptions{BundleKeyFile: pub}, "needs the key id"},
		{"id without key", file, BundleOptions{BundleKeyID: "fleet"}, "without the bundle key"},
		{"private key", file, BundleOptions{BundleKeyFile: priv, BundleKeyID: "fleet"}, "is a private key"},
		{"algorithm for another key type", file, BundleOptions{BundleKeyFile: ecPub, BundleKeyID: "fleet", BundleKeyAlg: "RS256"}, "RS256 does not fit a P-256 key"},
		{"key for a directory", dir, BundleOptions{BundleKeyFile: pub, BundleKeyID: "fleet"}, "only bundles are signed"},
		{"CA for plain http", "http://127.0.0.1:1/b.tar.gz", BundleOptions{BundleCAFile: pub}, "not https"},
		{"CA file without certificates", "https://127.0.0.1:1/b.tar.gz", BundleOptions{BundleCAFile: pub}, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Path: tc.path, Log: zerolog.Nop(), BundleOptions: tc.o})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if alg, err := CheckBundleKey(ecPub, ""); err != nil || alg != "ES256" {
		t.Errorf("CheckBundleKey(P-256 public key) = %q, %v", alg, err)
	}
}

// A directory and the bundle built from it decide alike.
func TestBundleBuildMatchesDirectory(t *testing.T) {
	files := map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}
	dir := policyDir(t, files)
	var buf bytes.Buffer
	built, err := BuildBundle(context.Background(), dir, &buf, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := New(Options{Path: dir, Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if built.Revision != fromDir.Revision() {
		t.Errorf("default bundle revision %q, want the directory's %q", built.Revision, fromDir.Revision())
	}
	file := filepath.Join(t.TempDir(), "site.tar.gz")
	writeAtomic(t, file, buf.Bytes())
	fromBundle, err := New(Options{Path: file, Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	for _, at := range []time.Time{inWindow, outOfWindow} {
		for _, fn := range []string{"read_coils", "write_multiple_registers", "diagnostics"} {
			c := testCall(s, fn, gateway.AccessWrite, at)
			a, errA := fromDir.Decide(context.Background(), s, c)
			b, errB := fromBundle.Decide(context.Background(), s, c)
			if errA != nil || errB != nil || a.Allow != b.Allow || a.Alert != b.Alert || !slices.Equal(a.Reasons, b.Reasons) {
				t.Errorf("%s at %s: directory %+v (%v), bundle %+v (%v)", fn, at, a, errA, b, errB)
			}
		}
	}
	if _, err := BuildBundle(context.Background(), policyDir(t, map[string]string{"main.rego": "package interlock\n\nx := 1\n"}),
		io.Discard, BuildOptions{}); err == nil || !strings.Contains(err.Error(), "no rule defines data.interlock.decision") {
		t.Errorf("building a policy without a decision: %v", err)
	}
}

// Rego errors in a bundle name the bundle and the file inside it; a
// manifest asking for Rego v0, for all files or some, is refused before
// the Rego is parsed; v0 Rego in a bundle that does not say so gets a hint.
func TestBundleRegoErrors(t *testing.T) {
	const v1Rego = "package interlock\n\ndecision := {\"allow\": \"a\" in {\"a\"}} if { true }\n"
	const v0Rego = "package interlock\n\ndecision = {\"allow\": true} { true }\n"
	build := func(proto bool, rego string, v0 bool, fileV0 ...string) []byte {
		b := bundle.Bundle{Data: map[string]any{}, Manifest: bundle.Manifest{Revision: "e1"},
			Modules: []bundle.ModuleFile{{URL: "/main.rego", Path: "/main.rego", Raw: []byte(rego)}}}
		b.SetManifestProto(proto) // a protobuf /.manifest.pb instead of the JSON /.manifest
		if v0 {
			b.Manifest.SetRegoVersion(ast.RegoV0)
		}
		for _, pattern := range fileV0 {
			b.Manifest.FileRegoVersions = map[string]int{pattern: 0}
		}
		var buf bytes.Buffer
		if err := bundle.NewWriter(&buf).Write(b); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	write := func(rego string, v0 bool, fileV0 ...string) []byte { return build(false, rego, v0, fileV0...) }
	writePB := func(rego string, v0 bool, fileV0 ...string) []byte { return build(true, rego, v0, fileV0...) }
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"parse error", write("package interlock\n\ndecision := {\n", false), "/main.rego:4: rego_parse_error"},
		{"compile error", write("package interlock\n\ndecision := {\"allow\": undefined_fn(1)}\n", false), "/main.rego:3: rego_type_error"},
		{"Rego v0 manifest, v0 Rego", write(v0Rego, true), ": the manifest has rego_version 0: Rego v0 bundles are refused: rewrite the policy in Rego v1"},
		{"Rego v0 manifest, v1 Rego", write(v1Rego, true), ": the manifest has rego_version 0: Rego v0 bundles are refused"},
		{"Rego v0 file", write(v1Rego, false, "/main.rego"), ": the manifest makes /main.rego Rego v0 (file_rego_versions): Rego v0 bundles are refused"},
		{"Rego v0 protobuf manifest, v0 Rego", writePB(v0Rego, true), ": the manifest has rego_version 0: Rego v0 bundles are refused: rewrite the policy in Rego v1"},
		{"Rego v0 protobuf manifest, v1 Rego", writePB(v1Rego, true), ": the manifest has rego_version 0: Rego v0 bundles are refused"},
		{"Rego v0 file, protobuf manifest", writePB(v1Rego, false, "/main.rego"), ": the manifest makes /main.rego Rego v0 (file_rego_versions): Rego v0 bundles are refused"},
		{"v0 Rego, no protobuf manifest version", writePB(v0Rego, false), "/main.rego:3: rego_parse_error: `if` keyword is required before rule body; the file looks like Rego v0, which Interlock does not load"},
		{"v0 Rego, no manifest version", write(v0Rego, false), "/main.rego:3: rego_parse_error: `if` keyword is required before rule body; the file looks like Rego v0, which Interlock does not load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newBundleServer(t, tc.body)
			_, err := New(Options{Path: srv.URL, Log: zerolog.Nop()})
			if err == nil || !strings.HasPrefix(err.Error(), "bundle "+srv.URL+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error naming the bundle and %q", err, tc.want)
			}
		})
	}
}

// tarGz packs files, in the order given, as a .tar.gz.
func tarGz(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Two data files that define one path of data are refused naming both
// files and the key.
func TestBundleDataCollision(t *testing.T) {
	rego := [2]string{"/main.rego", bundlePolicy}
	for _, tc := range []struct {
		name  string
		files [][2]string
		want  string
	}{
		{"a key and a directory", [][2]string{rego, {"/data.json", `{"accounts": [{"user": "alice"}]}`}, {"/accounts/data.json", `{"bob": {}}`}},
			`/accounts/data.json collides with key "accounts" of /data.json: both define data.accounts`},
		{"a key inside both", [][2]string{rego, {"/data.json", `{"accounts": {"alice": {"roles": []}}}`}, {"/accounts/data.yaml", "alice: {roles: [engineer]}\n"}},
			`/accounts/data.yaml collides with key "accounts.alice.roles" of /data.json: both define data.accounts.alice.roles`},
		{"a whole file", [][2]string{rego, {"/site/data.json", `[1, 2]`}, {"/data.json", `{"site": {"a": 1}}`}},
			`/data.json collides with /site/data.json: both define data.site`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "b.tar.gz")
			writeAtomic(t, file, tarGz(t, tc.files...))
			_, err := New(Options{Path: file, Log: zerolog.Nop()})
			if err == nil || err.Error() != "bundle "+file+": "+tc.want {
				t.Fatalf("New = %v\nwant bundle %s: %s", err, file, tc.want)
			}
		})
	}
}

// A bundle server that does not answer, or stops halfway through its
// answer, within bundle_timeout is reported by that setting and its value.
func TestBundleServerTimeout(t *testing.T) {
	body := buildBundle(t, "t1", BuildOptions{})
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/half" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body[:len(body)/2])
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	for _, tc := range []struct{ path, want string }{
		{"/none", ": no answer within policy.bundle_timeout (300ms)"},
		{"/half", ": reading the answer: not done within policy.bundle_timeout (300ms)"},
	} {
		_, err := New(Options{Path: srv.URL + tc.path, Log: zerolog.Nop(), BundleOptions: BundleOptions{BundleTimeout: 300 * time.Millisecond}})
		if err == nil || err.Error() != "bundle "+srv.URL+tc.path+tc.want {
			t.Errorf("New = %v, want bundle %s%s%s", err, srv.URL, tc.path, tc.want)
		}
	}
}
