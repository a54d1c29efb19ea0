package policy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	pb "github.com/open-policy-agent/opa/v1/bundle/v1pb"
	"github.com/open-policy-agent/opa/v1/keys"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/proto"
)

// Bundle defaults.
const (
	DefaultBundleMaxBytes = 64 << 20
	DefaultBundleTimeout  = 30 * time.Second
	// BundleRevisionPrefix marks a policy revision taken from a bundle's
	// .manifest, so a decision shows that a bundle made it.
	BundleRevisionPrefix = "bundle:"
	maxRevisionLen       = 64 // of the manifest revision in a policy revision
)

// BundleOptions configure loading a policy from an OPA bundle file or an OPA
// bundle server (Options.Path).
type BundleOptions struct {
	// BundleKeyFile verifies signed bundles: a PEM public key or certificate
	// (RSA or ECDSA), or a file holding an HMAC secret. When set, a bundle
	// that is unsigned, signed with another key id, or whose signature or
	// file hashes do not verify is refused.
	BundleKeyFile string
	// BundleKeyID is the key id the bundle must be signed with (the JWT kid
	// of .signatures.json); required with BundleKeyFile.
	BundleKeyID string
	// BundleKeyAlg is the signature algorithm (RS256, PS256, ES256, HS256 …);
	// by default it follows the key: RS256, ES256/384/512 by curve, HS256.
	BundleKeyAlg string
	// BundleScope, when set, must equal the scope claim of the signature.
	BundleScope string
	// BundleCAFile holds the PEM roots trusted for an https bundle server,
	// instead of the system's.
	BundleCAFile string
	// BundleMaxBytes bounds a bundle's download and its unpacked size
	// (DefaultBundleMaxBytes when 0).
	BundleMaxBytes int64
	// BundleTimeout bounds one request to a bundle server
	// (DefaultBundleTimeout when 0).
	BundleTimeout time.Duration
}

// How a loaded bundle's signature was checked (the bundle_signature field
// of the load log line).
const (
	sigVerified  = "verified"
	sigUnsigned  = "unsigned"
	sigUnchecked = "not_checked" // signed, but no key is configured
)

// bundleInfo is what a snapshot read from a bundle knows beyond a directory.
type bundleInfo struct {
	revision  string // of the .manifest, "" when it has none
	signature string // sigVerified, sigUnsigned or sigUnchecked
	etag      string // of the bundle server's answer
}

// isBundleURL reports whether a policy path names a bundle server.
func isBundleURL(p string) bool {
	return strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://")
}

// newSource picks the source of Options.Path: a URL is a bundle server, a
// regular file a bundle, anything else a directory (whose read reports a
// missing path).
func newSource(opts Options) (source, error) {
	if isBundleURL(opts.Path) {
		return newHTTPSource(opts)
	}
	fi, err := os.Stat(opts.Path)
	if err == nil && fi.Mode().IsRegular() {
		r, err := newBundleReader(opts.BundleOptions)
		if err != nil {
			return nil, err
		}
		return &fileSource{path: opts.Path, r: r}, nil
	}
	if opts.BundleKeyFile != "" {
		// A key that checks nothing would look like protection.
		return nil, fmt.Errorf("policy: a bundle key is configured but %s is not a bundle file or URL: only bundles are signed", opts.Path)
	}
	return dirSource{dir: opts.Path}, nil
}

// fileSource is an OPA bundle file (.tar.gz).
type fileSource struct {
	path string
	r    *bundleReader
}

func (f *fileSource) String() string { return f.path }

func fileSignature(fi os.FileInfo) [32]byte {
	h := sha256.New()
	sigWriter(h, "", fi)
	var sig [32]byte
	h.Sum(sig[:0])
	return sig
}

func (f *fileSource) statSignature() ([32]byte, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return [32]byte{}, fmt.Errorf("bundle %w", err)
	}
	return fileSignature(fi), nil
}

func (f *fileSource) read(context.Context) (*snapshot, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("bundle %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fmt.Errorf("bundle %w", err)
	}
	if fi.Size() > f.r.max {
		return nil, fmt.Errorf("bundle %s: %d bytes, more than the limit of %d", f.path, fi.Size(), f.r.max)
	}
	raw, err := io.ReadAll(io.LimitReader(fh, f.r.max+1))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", f.path, err)
	}
	s, err := f.r.read(f.path, raw)
	if err != nil {
		return nil, err
	}
	s.sig = fileSignature(fi) // taken before the read: a change after it is seen by the next poll
	return s, nil
}

// bundleReader unpacks, verifies and parses bundles.
type bundleReader struct {
	verify *bundle.VerificationConfig // nil when no key is configured
	keyID  string
	max    int64
}

func newBundleReader(o BundleOptions) (*bundleReader, error) {
	r := &bundleReader{max: o.BundleMaxBytes, keyID: o.BundleKeyID}
	if r.max <= 0 {
		r.max = DefaultBundleMaxBytes
	}
	if o.BundleKeyFile == "" {
		if o.BundleKeyID != "" || o.BundleScope != "" || o.BundleKeyAlg != "" {
			return nil, errors.New("policy: a bundle key id, scope or algorithm is configured without the bundle key")
		}
		return r, nil
	}
	if o.BundleKeyID == "" {
		return nil, errors.New("policy: a bundle key needs the key id bundles are signed with")
	}
	raw, err := os.ReadFile(o.BundleKeyFile)
	if err != nil {
		return nil, fmt.Errorf("policy: bundle key: %w", err)
	}
	alg, err := verifyAlgorithm(raw, o.BundleKeyAlg)
	if err != nil {
		return nil, fmt.Errorf("policy: bundle key %s: %w", o.BundleKeyFile, err)
	}
	kc := &keys.Config{Key: string(raw), Algorithm: alg, Scope: o.BundleScope}
	// The explicit key id selects the key whatever the bundle claims; read
	// checks the claim too, so a bundle naming another key is refused.
	r.verify = bundle.NewVerificationConfig(map[string]*keys.Config{o.BundleKeyID: kc}, o.BundleKeyID, o.BundleScope, nil)
	return r, nil
}

// CheckBundleKey reads a bundle verification key and returns the signature
// algorithm it will be used with, so that configuration can be checked
// before the gateway starts.
func CheckBundleKey(file, alg string) (string, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return verifyAlgorithm(raw, alg)
}

// verifyAlgorithm settles the algorithm of a verification key: a PEM public
// key or certificate, or else an HMAC secret. A private key is refused: the
// gateway should not hold what can sign its policy.
func verifyAlgorithm(raw []byte, alg string) (string, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return secretAlgorithm(raw, alg)
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
		return "", errors.New("is a private key: give the gateway the public key only (openssl pkey -in KEY -pubout)")
	default:
		return "", fmt.Errorf("a PEM %q block is not a public key or certificate", block.Type)
	}
	if err != nil {
		return "", err
	}
	return keyAlgorithm(pub, alg)
}

// signingAlgorithm settles the algorithm of a signing key: a PEM private
// key, or else an HMAC secret.
func signingAlgorithm(raw []byte, alg string) (string, error) {
	block, _ := pem.Decode(raw)
	if block == nil {
		return secretAlgorithm(raw, alg)
	}
	var priv any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		priv, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return "", fmt.Errorf("a PEM %q block is not a private key", block.Type)
	}
	if err != nil {
		return "", err
	}
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		return keyAlgorithm(&k.PublicKey, alg)
	case *ecdsa.PrivateKey:
		return keyAlgorithm(&k.PublicKey, alg)
	}
	return "", fmt.Errorf("a %T key cannot sign a bundle (RSA or ECDSA)", priv)
}

func secretAlgorithm(raw []byte, alg string) (string, error) {
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("-----BEGIN")) {
		return "", errors.New("not a readable PEM block")
	}
	if len(raw) == 0 {
		return "", errors.New("the file is empty")
	}
	switch alg {
	case "":
		return "HS256", nil
	case "HS256", "HS384", "HS512":
		return alg, nil
	}
	return "", fmt.Errorf("%s needs a PEM key; this file holds no PEM block (an HMAC secret wants HS256, HS384 or HS512)", alg)
}

func keyAlgorithm(pub any, alg string) (string, error) {
	if alg != "" && !keys.IsSupportedAlgorithm(alg) {
		return "", fmt.Errorf("%q is not a supported algorithm (RS256, PS256, ES256, HS256 and their 384/512 forms)", alg)
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg == "" {
			return "RS256", nil
		}
		if strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS") {
			return alg, nil
		}
		return "", fmt.Errorf("%s does not fit an RSA key (RS256, PS256 …)", alg)
	case *ecdsa.PublicKey:
		want := map[elliptic.Curve]string{elliptic.P256(): "ES256", elliptic.P384(): "ES384", elliptic.P521(): "ES512"}[k.Curve]
		if want == "" {
			return "", fmt.Errorf("the ECDSA curve %s has no JWS algorithm", k.Curve.Params().Name)
		}
		if alg != "" && alg != want {
			return "", fmt.Errorf("%s does not fit a %s key (%s)", alg, k.Curve.Params().Name, want)
		}
		return want, nil
	}
	return "", fmt.Errorf("a %T key is not supported (RSA or ECDSA)", pub)
}

// read turns the bytes of a bundle into a snapshot: unpacked within the size
// limit, its signature and file hashes verified when a key is configured,
// its modules parsed, its manifest roots enforced (by OPA's reader).
func (r *bundleReader) read(src string, raw []byte) (*snapshot, error) {
	fail := func(err error) error {
		return fmt.Errorf("bundle %s: %s", src, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	if int64(len(raw)) > r.max {
		return nil, fail(fmt.Errorf("%d bytes, more than the limit of %d", len(raw), r.max))
	}
	files, manifest, err := listBundle(raw, r.max)
	if err != nil {
		return nil, fail(err)
	}
	// Before OPA parses the modules: a v0 manifest makes its parser fail on
	// v1 syntax with a hint that points the wrong way.
	if what := regoV0(manifest); what != "" {
		return nil, fail(fmt.Errorf("%s: Rego v0 bundles are refused: rewrite the policy in Rego v1 (opa fmt --write --v0-v1) and rebuild it with interlock policy bundle build", what))
	}
	signed := slices.ContainsFunc(files, bundle.IsSignaturesFile)
	loader := bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "").WithSizeLimitBytes(r.max)
	rd := bundle.NewCustomReader(loader).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotations(true).
		WithSizeLimitBytes(r.max).
		WithLazyLoadingMode(false)
	if r.verify != nil {
		rd = rd.WithBundleVerificationConfig(r.verify)
	} else {
		rd = rd.WithSkipBundleVerification(true)
	}
	b, err := rd.Read()
	if err != nil {
		var errs ast.Errors
		if errors.As(err, &errs) {
			return nil, loadError("bundle "+src, true, err)
		}
		if r.verify != nil && !signed {
			return nil, fail(errors.New("unsigned (no .signatures.json) but a bundle key is configured: refused"))
		}
		if strings.Contains(err.Error(), "failed to insert data file") {
			// OPA names one file and a path; say which other file holds it.
			if c := dataCollision(raw, r.max); c != nil {
				err = c
			}
		}
		return nil, fail(err)
	}
	info := &bundleInfo{revision: b.Manifest.Revision, signature: sigUnsigned}
	switch {
	case r.verify != nil:
		if err := r.checkKeyID(b.Signatures); err != nil {
			return nil, fail(err)
		}
		info.signature = sigVerified
	case signed:
		info.signature = sigUnchecked
	}
	if b.Type() != bundle.SnapshotBundleType {
		return nil, fail(errors.New("a delta bundle (patch.json) cannot be loaded on its own"))
	}
	if len(b.WasmModules) > 0 || len(b.PlanModules) > 0 || len(b.Wasm) > 0 {
		return nil, fail(errors.New("it holds Wasm or plan modules; the gateway evaluates Rego only"))
	}

	s := &snapshot{source: src, bundle: info, modules: map[string]*ast.Module{}, data: b.Data}
	if s.data == nil {
		s.data = map[string]any{}
	}
	h := sha256.New()
	slices.SortFunc(b.Modules, func(x, y bundle.ModuleFile) int { return strings.Compare(x.Path, y.Path) })
	for _, m := range b.Modules {
		if strings.HasSuffix(m.Path, "_test.rego") {
			continue // tests are not part of the runtime policy, as in a directory
		}
		if m.Parsed.RegoVersion() == ast.RegoV0 {
			// regoV0 saw the manifest; this holds whatever else made it v0.
			return nil, fail(fmt.Errorf("%s is Rego v0: Rego v0 bundles are refused: rewrite the policy in Rego v1 (opa fmt --write --v0-v1) and rebuild it with interlock policy bundle build", m.Path))
		}
		s.modules[m.Path] = m.Parsed
		var n [8]byte
		_, _ = h.Write([]byte(m.Path))
		binary.BigEndian.PutUint64(n[:], uint64(len(m.Raw)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(m.Raw)
	}
	data, err := json.Marshal(s.data) // map keys sorted: the same data hashes alike
	if err != nil {
		return nil, fail(err)
	}
	_, _ = h.Write(data)
	content := hex.EncodeToString(h.Sum(nil))[:16]
	if info.revision != "" {
		s.rev = BundleRevisionPrefix + shortRevision(info.revision)
		s.key = s.rev + "@" + content
	} else {
		s.rev, s.key = content, content
	}
	for _, f := range files {
		rego := path.Ext(f) == ".rego" && !strings.HasSuffix(f, "_test.rego")
		data := bundle.IsStructuredDoc(f) && path.Base(f) != ".manifest"
		if rego || data {
			s.names = append(s.names, f)
		}
	}
	return s, nil
}

// checkKeyID refuses a signature that names a key id other than the
// configured one. OPA verifies with the configured key whatever the token
// names; a bundle signed for another fleet must not pass because its key
// material happens to match.
func (r *bundleReader) checkKeyID(sc bundle.SignaturesConfig) error {
	if len(sc.Signatures) != 1 {
		return fmt.Errorf("want exactly one signature, found %d", len(sc.Signatures))
	}
	parts := strings.Split(sc.Signatures[0], ".")
	if len(parts) != 3 {
		return errors.New("the signature is not a compact JWS")
	}
	var hdr struct {
		KID string `json:"kid"`
	}
	var claims struct {
		KeyID string `json:"keyid"`
	}
	for i, into := range []any{&hdr, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("the signature does not decode: %w", err)
		}
		if err := json.Unmarshal(b, into); err != nil {
			return fmt.Errorf("the signature does not decode: %w", err)
		}
	}
	for _, kid := range []string{hdr.KID, claims.KeyID} {
		if kid != "" && kid != r.keyID {
			return fmt.Errorf("signed with key id %q, but the configured key id is %q: refused", kid, r.keyID)
		}
	}
	return nil
}

// manifestFile is a bundle's manifest as found in the archive.
type manifestFile struct {
	name  string // path in the archive: ….manifest (JSON) or ….manifest.pb (protobuf)
	bytes []byte
}

// listBundle walks a .tar.gz once and lists its regular files, and returns
// its manifest (the first file named as OPA's reader finds it: ….manifest
// or ….manifest.pb; nil when none). It bounds the unpacked size before
// OPA's reader holds every file in memory: a small archive can unpack to
// gigabytes.
func listBundle(raw []byte, max int64) (files []string, manifest *manifestFile, err error) {
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("not a gzip-compressed tar archive: %w", err)
	}
	lr := &io.LimitedReader{R: gz, N: max + 1}
	tr := tar.NewReader(lr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil && h.Typeflag == tar.TypeReg {
			name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
			files = append(files, name)
			if manifest == nil && (strings.HasSuffix(name, bundle.ManifestExt) || strings.HasSuffix(name, bundle.ManifestProtoExt)) {
				manifest = &manifestFile{name: name}
				manifest.bytes, err = io.ReadAll(tr)
			} else {
				_, err = io.Copy(io.Discard, tr)
			}
		}
		if lr.N <= 0 {
			return nil, nil, fmt.Errorf("it unpacks to more than the limit of %d bytes", max)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("not a readable tar archive: %w", err)
		}
	}
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return nil, nil, fmt.Errorf("not a readable gzip stream: %w", err)
	}
	if lr.N <= 0 {
		return nil, nil, fmt.Errorf("it unpacks to more than the limit of %d bytes", max)
	}
	return files, manifest, nil
}

// dataCollision finds two data files of a bundle that define one path of
// the data document where not both are objects (OPA's merge fails there),
// in the order OPA's reader loads them, and names both; nil when none do.
func dataCollision(raw []byte, max int64) error {
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil
	}
	var seen []dataFile
	tr := tar.NewReader(&io.LimitedReader{R: gz, N: max + 1})
	for {
		h, err := tr.Next()
		if err != nil {
			return nil
		}
		name := path.Clean("/" + h.Name)
		if h.Typeflag != tar.TypeReg || !bundle.IsStructuredDoc(name) || path.Base(name) == bundle.ManifestExt {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil
		}
		var v any
		if path.Base(name) == "data.json" {
			err = util.UnmarshalJSON(b, &v)
		} else {
			err = util.Unmarshal(b, &v)
		}
		if err != nil {
			return nil // OPA's reader says what is wrong with it
		}
		var dir []string
		if d := strings.Trim(path.Dir(name), "/"); d != "" {
			dir = strings.Split(d, "/")
		}
		for i := len(dir) - 1; i >= 0; i-- {
			v = map[string]any{dir[i]: v}
		}
		tree, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		f := dataFile{name: name, depth: len(dir), tree: tree}
		if err := collision(f, seen); err != nil {
			return err
		}
		seen = append(seen, f)
	}
}

// dataFile is one data file of a bundle or a policy directory.
type dataFile struct {
	name  string
	depth int            // of its directory: the path of its content in data
	tree  map[string]any // its content under its directory's path
}

// collision names f and the first of earlier that define one path of the
// data document where not both are objects, and the path; nil when none
// do. The files before f merged without a conflict, so a conflict with
// their merge is one with one of them.
func collision(f dataFile, earlier []dataFile) error {
	for _, e := range earlier {
		at := conflictAt(e.tree, f.tree, nil)
		if at == nil {
			continue
		}
		other := e.name
		if len(at) > e.depth {
			other = fmt.Sprintf("key %q of %s", strings.Join(at[e.depth:], "."), e.name)
		}
		return fmt.Errorf("%s collides with %s: both define data.%s", f.name, other, strings.Join(at, "."))
	}
	return nil
}

// conflictAt returns the first path (in key order) that a and b both
// define where not both values are objects, or nil.
func conflictAt(a, b map[string]any, at []string) []string {
	for _, k := range slices.Sorted(maps.Keys(b)) {
		av, ok := a[k]
		if !ok {
			continue
		}
		am, aok := av.(map[string]any)
		bm, bok := b[k].(map[string]any)
		if !aok || !bok {
			return append(slices.Clone(at), k)
		}
		if c := conflictAt(am, bm, append(at, k)); c != nil {
			return c
		}
	}
	return nil
}

// regoV0 says what in a bundle manifest, JSON or protobuf, asks for Rego
// v0 (rego_version 0, or a file_rego_versions pattern at 0), or "". A
// manifest that does not decode is left to OPA's reader to report.
func regoV0(manifest *manifestFile) string {
	if manifest == nil {
		return ""
	}
	var m bundle.Manifest
	if strings.HasSuffix(manifest.name, bundle.ManifestProtoExt) {
		var pm pb.Manifest
		if err := proto.Unmarshal(manifest.bytes, &pm); err != nil {
			return ""
		}
		mp, err := bundle.ManifestFromProto(&pm)
		if err != nil || mp == nil {
			return ""
		}
		m = *mp
	} else if err := json.Unmarshal(manifest.bytes, &m); err != nil {
		return ""
	}
	if m.RegoVersion != nil && *m.RegoVersion == 0 {
		return "the manifest has rego_version 0"
	}
	for _, pattern := range slices.Sorted(maps.Keys(m.FileRegoVersions)) {
		if m.FileRegoVersions[pattern] == 0 {
			return fmt.Sprintf("the manifest makes %s Rego v0 (file_rego_versions)", pattern)
		}
	}
	return ""
}

// shortRevision keeps a manifest revision short enough for every audit
// record; a longer one keeps its start and a hash of the whole.
func shortRevision(rev string) string {
	if len(rev) <= maxRevisionLen {
		return rev
	}
	sum := sha256.Sum256([]byte(rev))
	cut := maxRevisionLen - 9
	for cut > 0 && !utf8.RuneStart(rev[cut]) {
		cut--
	}
	return rev[:cut] + "~" + hex.EncodeToString(sum[:4])
}
