package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/certs"
)

// clientCert makes a self-signed OPC UA client application certificate.
func clientCert(t *testing.T, uri string) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "eng-ws1 client"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func wantExit(t *testing.T, r cliResult, code int, what string, parts ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
	out := r.stdout + r.stderr
	for _, p := range parts {
		if !strings.Contains(out, p) {
			t.Errorf("%s: output does not contain %q:\n%s", what, p, out)
		}
	}
}

func validateCode(t *testing.T, dir string, der []byte, uri string) ua.StatusCode {
	t.Helper()
	s, err := certs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate(der, certs.ValidateOptions{ApplicationURI: uri})
	if err == nil {
		return ua.StatusOK
	}
	var ve *certs.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v", err)
	}
	return ve.Code
}

func TestCertsCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")

	// init: the layout, the certificate, the audit key, and the config lines.
	r := interlock(t, "certs", "init", "--pki", dir, "--uri", "urn:site-a:interlock", "--host", "gw1.plant.local,127.0.0.1", "--days", "90")
	keyPath := filepath.Join(dir, "own", "private", audit.SigningKeyFile)
	pubPath := filepath.Join(dir, "own", "certs", audit.VerifyKeyFile)
	wantExit(t, r, 0, "certs init", filepath.Join(dir, "own", "certs", "gateway.der"), filepath.Join(dir, "own", "private", "gateway.pem"),
		"signing_key: "+keyPath, "pki: "+dir, pubPath, "urn:site-a:interlock")
	for path, mode := range map[string]os.FileMode{
		filepath.Join(dir, "own", "private"):                0o700,
		filepath.Join(dir, "own", "private", "gateway.pem"): 0o600,
		keyPath:                               0o600,
		filepath.Join(dir, "rejected"):        0o700,
		filepath.Join(dir, "trusted", "crl"):  0o755,
		filepath.Join(dir, "issuer", "certs"): 0o755,
	} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %04o", path, err, fi.Mode().Perm(), mode)
		}
	}
	// The audit key pair is the one audit keygen makes: it signs and verifies.
	priv, err := audit.LoadSigningKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := audit.LoadVerifyKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte("x"), ed25519.Sign(priv, []byte("x"))) {
		t.Fatal("the audit public key does not verify the private key's signature")
	}
	keyID := audit.KeyID(pub)
	if !strings.Contains(r.stdout, keyID) {
		t.Errorf("init does not print the key id %s", keyID)
	}
	s, err := certs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	own, _, err := s.Own()
	if err != nil {
		t.Fatal(err)
	}

	// No second init without --force; --force makes a new certificate and keeps the audit key.
	r = interlock(t, "certs", "init", "--pki", dir, "--uri", "urn:site-a:interlock")
	wantExit(t, r, 1, "certs init again", filepath.Join(dir, "own", "certs", "gateway.der"), "--force")
	r = interlock(t, "certs", "init", "--pki", dir, "--uri", "urn:site-a:interlock", "--host", "gw1", "--force")
	wantExit(t, r, 0, "certs init --force", "kept the existing key", keyID)
	own2, _, err := s.Own()
	if err != nil || string(own2) == string(own) {
		t.Fatalf("init --force: %v; same certificate %v", err, string(own2) == string(own))
	}

	// A client the gateway does not know lands in rejected, and list shows it.
	client := clientCert(t, "urn:eng-ws1:client")
	tp := certs.Thumbprint(client)
	if c := validateCode(t, dir, client, "urn:eng-ws1:client"); c != ua.StatusBadCertificateUntrusted {
		t.Fatalf("unknown client: %v", c)
	}
	r = interlock(t, "certs", "list", "--pki", dir)
	wantExit(t, r, 0, "certs list", "rejected/certs", tp, "urn:eng-ws1:client", "CN=eng-ws1 client", "urn:site-a:interlock", certs.Thumbprint(own2))
	r = interlock(t, "certs", "list", "--pki", dir, "--json")
	wantExit(t, r, 0, "certs list --json")
	var entries []struct {
		F string `json:"folder"`
		T string `json:"thumbprint"`
		U string `json:"application_uri"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	found := map[string]string{}
	for _, e := range entries {
		found[e.T] = e.F + " " + e.U
	}
	if found[tp] != certs.RejectedCertsDir+" urn:eng-ws1:client" || found[certs.Thumbprint(own2)] != certs.OwnCertsDir+" urn:site-a:interlock" {
		t.Fatalf("list --json: %v", found)
	}

	// trust by thumbprint (a prefix will do), then the client passes.
	r = interlock(t, "certs", "trust", "--pki", dir, tp[:12])
	wantExit(t, r, 0, "certs trust", "trusted:", filepath.Join(dir, "trusted", "certs", tp+".der"), "urn:eng-ws1:client")
	if c := validateCode(t, dir, client, "urn:eng-ws1:client"); c != ua.StatusOK {
		t.Fatalf("trusted client: %v", c)
	}
	// reject it again: refused, and back in rejected.
	r = interlock(t, "certs", "reject", tp, "--pki", dir)
	wantExit(t, r, 0, "certs reject", "rejected:", filepath.Join(dir, "rejected", "certs", tp+".der"))
	if c := validateCode(t, dir, client, ""); c != ua.StatusBadCertificateUntrusted {
		t.Fatalf("rejected client: %v", c)
	}
	if _, err := os.Stat(filepath.Join(dir, "trusted", "certs", tp+".der")); !os.IsNotExist(err) {
		t.Fatalf("still in trusted after reject: %v", err)
	}
	// trust a file (PEM, flags after the argument).
	f := filepath.Join(t.TempDir(), "client.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: client}), 0o644); err != nil {
		t.Fatal(err)
	}
	r = interlock(t, "certs", "trust", f, "--pki", dir)
	wantExit(t, r, 0, "certs trust FILE", tp)
	if c := validateCode(t, dir, client, "urn:eng-ws1:client"); c != ua.StatusOK {
		t.Fatalf("client trusted from a file: %v", c)
	}
	// Trusting it again, by file or thumbprint, says so and changes nothing.
	trusted := filepath.Join(dir, "trusted", "certs", tp+".der")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, f), 0, "certs trust FILE again", "trusted already (nothing changed): "+trusted)
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, tp[:10]), 0, "certs trust THUMBPRINT of a trusted one", "trusted already (nothing changed): "+trusted)
	if ents, err := os.ReadDir(filepath.Join(dir, "trusted", "certs")); err != nil || len(ents) != 1 {
		t.Errorf("trusted/certs after trusting twice: %v, %v", ents, err)
	}

	// Clear errors, naming the path.
	missing := filepath.Join(t.TempDir(), "nope")
	wantExit(t, interlock(t, "certs", "list", "--pki", missing), 1, "list of a missing PKI", missing, "certs init")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, "deadbeef00"), 1, "trust of an unknown thumbprint", filepath.Join(dir, "rejected", "certs"))
	wantExit(t, interlock(t, "certs", "reject", "--pki", dir, "deadbeef00"), 1, "reject of an unknown thumbprint", filepath.Join(dir, "trusted", "certs"))
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, "not-a-thumbprint"), 1, "trust of a bad argument", "not a thumbprint")
	nope := filepath.Join(t.TempDir(), "client.der")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, nope), 1, "trust of a missing file", "certs trust: "+nope+": no such file or directory, and it is not a thumbprint")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, t.TempDir()), 2, "trust of a folder", "is a folder: name a certificate file")
	notCert := filepath.Join(t.TempDir(), "notes.txt")
	writeFile(t, notCert, "hello\n")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir, notCert), 1, "trust of a text file", "certs trust: "+notCert+": not a certificate file (DER or PEM")
	for _, days := range []string{"0", "-5", "200000"} {
		pki := filepath.Join(t.TempDir(), "pki")
		wantExit(t, interlock(t, "certs", "init", "--pki", pki, "--uri", "urn:x", "--days", days), 2, "init --days "+days,
			"certs init: --days "+days+": want the certificate's validity in days, 1 to 36500")
		if _, err := os.Stat(pki); !os.IsNotExist(err) {
			t.Errorf("init --days %s made %s: %v", days, pki, err)
		}
	}
	wantExit(t, interlock(t, "certs", "init", "--pki", t.TempDir(), "--uri", "urn:x", "--bits", "1024"), 2, "init --bits 1024", "--bits 1024: want the RSA key size in bits, 2048 to 4096")
	wantExit(t, interlock(t, "certs", "init", "--pki", t.TempDir(), "--uri", "urn:x", "--bits", "8192"), 2, "init --bits 8192", "--bits 8192")
	wantExit(t, interlock(t, "certs", "init", "--pki", dir), 2, "init without --uri", "--uri URI")
	wantExit(t, interlock(t, "certs", "trust", "--pki", dir), 2, "trust without an argument", "THUMBPRINT")
}

func TestCertsCLIHelp(t *testing.T) {
	for verb, flags := range map[string][]string{
		"init":   {"-pki", "-uri", "-host", "-bits", "-days", "-force", "-no-audit-key"},
		"list":   {"-pki", "-json"},
		"trust":  {"-pki", "THUMBPRINT | FILE"},
		"reject": {"-pki", "THUMBPRINT"},
	} {
		wantExit(t, interlock(t, "certs", verb, "--help"), 0, "certs "+verb+" --help", append(flags, "Usage: interlock certs "+verb)...)
	}
	wantExit(t, interlock(t, "certs", "--help"), 0, "certs --help", "init", "list", "trust", "reject")
	wantExit(t, interlock(t, "--help"), 0, "interlock --help", "certs init", "certs trust")
}
