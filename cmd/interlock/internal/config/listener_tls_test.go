package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// tlsFiles writes a gateway certificate and key, a client CA and a CRL of
// that CA (clients.crl, listing one certificate) into dir/pki and returns the
// tls section that names the first three relatively.
func tlsFiles(t *testing.T, dir string) string {
	t.Helper()
	p := gatewaytest.NewTLSPKI(t)
	crt, key := p.Issue(t, "gateway", gatewaytest.CertOptions{CommonName: "gw", Server: true})
	old, _ := p.Issue(t, "old", gatewaytest.CertOptions{CommonName: "old", Client: true})
	crl, _ := p.CRL(t, "clients", time.Now().Add(time.Hour), gatewaytest.ReadCert(t, old))
	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o755); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{crt: "gateway.crt", key: "gateway.key", p.CAFile: "clients.crt", crl: "clients.crl"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pki, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return "    tls:\n      cert: ./pki/gateway.crt\n      key: ./pki/gateway.key\n      client_ca: ./pki/clients.crt\n"
}

func TestListenerTLSLoads(t *testing.T) {
	p := write(t, good)
	dir := filepath.Dir(p)
	body := strings.Replace(good, "    modbus:\n", tlsFiles(t, dir)+"    modbus:\n", 1)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	tl := c.Listeners[0].TLS
	if tl == nil {
		t.Fatal("no tls section")
	}
	if tl.Cert != filepath.Join(dir, "pki", "gateway.crt") || tl.ClientCA != filepath.Join(dir, "pki", "clients.crt") {
		t.Errorf("paths not resolved against the config file: %q %q", tl.Cert, tl.ClientCA)
	}
	if tl.HandshakeTimeout != 10*time.Second {
		t.Errorf("handshake_timeout default %v, want 10s", tl.HandshakeTimeout)
	}
	if tl.Certificate.Leaf == nil || tl.Certificate.Leaf.Subject.CommonName != "gw" || tl.ClientCAs == nil {
		t.Errorf("certificate or client CAs not read: %+v", tl)
	}
	if tl.CRL != "" || tl.CRLs != nil {
		t.Errorf("CRLs without tls.crl: %q %v", tl.CRL, tl.CRLs)
	}

	// With crl, the CRLs are read and the path resolved.
	body = strings.Replace(body, "    modbus:\n", "      crl: ./pki/clients.crl\n    modbus:\n", 1)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err = config.Load(p); err != nil {
		t.Fatal(err)
	}
	tl = c.Listeners[0].TLS
	if tl.CRL != filepath.Join(dir, "pki", "clients.crl") || len(tl.CRLs) != 1 || len(tl.CRLs[0].RevokedCertificateEntries) != 1 {
		t.Errorf("crl %q: %d CRLs read, want the one of pki/clients.crl with one entry", tl.CRL, len(tl.CRLs))
	}
	if paths := tl.Paths(); len(paths) != 4 || paths[3] != tl.CRL {
		t.Errorf("Paths %q, want cert, key, client_ca, crl", paths)
	}
}

// Each mistake in a tls section is an error naming the file, the line, the
// key and what is wrong.
func TestListenerTLSErrors(t *testing.T) {
	other := gatewaytest.NewTLSPKI(t)
	_, otherKey := other.Issue(t, "other", gatewaytest.CertOptions{CommonName: "other", Server: true})
	otherCRL, _ := other.CRL(t, "other", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		edit func(dir, section string) string // the new tls section
		want string                           // the error, after the directory of the config
	}{
		{"cert missing", func(dir, s string) string { return strings.Replace(s, "      cert: ./pki/gateway.crt\n", "", 1) },
			"config.yaml:8: listeners[0].tls.cert: missing: the gateway's certificate (PEM; its chain may follow it)"},
		{"key missing", func(dir, s string) string { return strings.Replace(s, "      key: ./pki/gateway.key\n", "", 1) },
			"config.yaml:8: listeners[0].tls.key: missing: the private key of tls.cert (PEM)"},
		{"client_ca missing", func(dir, s string) string { return strings.Replace(s, "      client_ca: ./pki/clients.crt\n", "", 1) },
			"config.yaml:8: listeners[0].tls.client_ca: missing: the CA certificates (PEM) that issue client certificates; Modbus/TCP Security authenticates every client by its certificate"},
		{"negative handshake timeout", func(dir, s string) string { return s + "      handshake_timeout: -1s\n" },
			"config.yaml:12: listeners[0].tls.handshake_timeout: -1s is negative"},
		{"bad handshake timeout", func(dir, s string) string { return s + "      handshake_timeout: soon\n" },
			`config.yaml:12: listeners[0].tls.handshake_timeout: "soon" is not a duration (such as 500ms, 5s, 2m)`},
		{"unknown key", func(dir, s string) string { return s + "      ca: x\n" },
			`config.yaml:12: listeners[0].tls.ca: unknown key "ca"`},
		{"no cert file", func(dir, s string) string { return strings.Replace(s, "./pki/gateway.crt", "./pki/nowhere.crt", 1) },
			"config.yaml:9: listeners[0].tls.cert: open DIR/pki/nowhere.crt: no such file or directory"},
		{"cert file without a certificate", func(dir, s string) string { return strings.Replace(s, "./pki/gateway.crt", "./pki/gateway.key", 1) },
			"config.yaml:9: listeners[0].tls.cert: DIR/pki/gateway.key holds no PEM certificate"},
		{"no key file", func(dir, s string) string { return strings.Replace(s, "./pki/gateway.key", "./pki/nowhere.key", 1) },
			"config.yaml:10: listeners[0].tls.key: open DIR/pki/nowhere.key: no such file or directory"},
		{"key of another certificate", func(dir, s string) string { return strings.Replace(s, "./pki/gateway.key", otherKey, 1) },
			"config.yaml:10: listeners[0].tls.key: " + otherKey + " is not the key of the certificate in DIR/pki/gateway.crt (tls: private key does not match public key)"},
		{"key file without a key", func(dir, s string) string { return strings.Replace(s, "./pki/gateway.key", "./pki/clients.crt", 1) },
			"config.yaml:10: listeners[0].tls.key: DIR/pki/clients.crt: tls: found a certificate rather than a key in the PEM for the private key"},
		{"client_ca without a certificate", func(dir, s string) string { return strings.Replace(s, "./pki/clients.crt", "./pki/gateway.key", 1) },
			"config.yaml:11: listeners[0].tls.client_ca: DIR/pki/gateway.key holds no PEM certificate"},
		{"client_ca with a broken certificate", func(dir, s string) string {
			os.WriteFile(filepath.Join(dir, "pki", "broken.crt"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
			return strings.Replace(s, "./pki/clients.crt", "./pki/broken.crt", 1)
		}, "config.yaml:11: listeners[0].tls.client_ca: DIR/pki/broken.crt: certificate 1: x509: malformed certificate"},
		{"no client_ca file", func(dir, s string) string { return strings.Replace(s, "./pki/clients.crt", "./pki/nowhere.crt", 1) },
			"config.yaml:11: listeners[0].tls.client_ca: open DIR/pki/nowhere.crt: no such file or directory"},
		{"no crl file", func(dir, s string) string { return s + "      crl: ./pki/nowhere.crl\n" },
			"config.yaml:12: listeners[0].tls.crl: open DIR/pki/nowhere.crl: no such file or directory"},
		{"crl file with a certificate", func(dir, s string) string { return s + "      crl: ./pki/clients.crt\n" },
			"config.yaml:12: listeners[0].tls.crl: DIR/pki/clients.crt holds no PEM X509 CRL block"},
		{"crl file of garbage", func(dir, s string) string {
			os.WriteFile(filepath.Join(dir, "pki", "garbage.crl"), []byte{0x30, 0x03, 1, 2, 3}, 0o600)
			return s + "      crl: ./pki/garbage.crl\n"
		}, "config.yaml:12: listeners[0].tls.crl: DIR/pki/garbage.crl: not a DER or PEM CRL: x509: malformed tbs crl"},
		{"crl of another CA", func(dir, s string) string { return s + "      crl: " + otherCRL + "\n" },
			"config.yaml:12: listeners[0].tls.crl: " + otherCRL + `: CRL 1, of "CN=Interlock test CA", is not signed by a CA in tls.client_ca (DIR/pki/clients.crt)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, good)
			dir := filepath.Dir(p)
			body := strings.Replace(good, "    modbus:\n", tc.edit(dir, tlsFiles(t, dir))+"    modbus:\n", 1)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(p)
			want := filepath.Join(dir, strings.ReplaceAll(tc.want, "DIR", dir))
			if err == nil || err.Error() != want {
				t.Fatalf("error\n %v\nwant\n %s", err, want)
			}
		})
	}
}
