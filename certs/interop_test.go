package certs

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// nodeCert runs testdata/nodeopcua_cert.cjs under node with node-opcua.
func nodeCert(t *testing.T, out any, args ...string) {
	t.Helper()
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	mods, err := gatewaytest.NodeModules()
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "nodeopcua_cert.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	cmd.Dir = t.TempDir()
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node %v: %v\n%s%s", args, err, b, stderr)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("node %v: %v: %s", args, err, b)
	}
}

// node-opcua reads the certificate of `certs init` as a server certificate:
// the ApplicationURI and host names from the subjectAltName, the key usage
// an OPC UA application needs, self-signed by its key identifiers, and its
// CertificateManager judges it Good once trusted.
func TestInitCertificateReadByNodeOPCUA(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	s, err := Init(t.TempDir(), InitOptions{ApplicationURI: gwURI, Hosts: []string{"gw1.plant.local", "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ApplicationURI   string          `json:"applicationUri"`
		DNS              []string        `json:"dns"`
		IP               []string        `json:"ip"`
		KeyUsage         map[string]bool `json:"keyUsage"`
		ExtKeyUsage      map[string]bool `json:"extKeyUsage"`
		BasicConstraints struct {
			CA bool `json:"cA"`
		} `json:"basicConstraints"`
		KeyLengthBytes int    `json:"keyLengthBytes"`
		SelfSigned     bool   `json:"selfSigned"`
		SignatureOK    bool   `json:"signatureOK"`
		StatusUnknown  string `json:"statusUnknown"`
		StatusTrusted  string `json:"statusTrusted"`
	}
	nodeCert(t, &got, "explore", s.OwnCertPath())
	t.Logf("node-opcua reads: %+v", got)
	if got.ApplicationURI != gwURI {
		t.Errorf("node-opcua reads ApplicationURI %q, want %q", got.ApplicationURI, gwURI)
	}
	if len(got.DNS) != 1 || got.DNS[0] != "gw1.plant.local" || len(got.IP) != 1 || got.IP[0] != "7f000001" {
		t.Errorf("node-opcua reads DNS %v, IP %v", got.DNS, got.IP)
	}
	for _, u := range []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyCertSign"} {
		if !got.KeyUsage[u] {
			t.Errorf("node-opcua reads no %s in the key usage %v", u, got.KeyUsage)
		}
	}
	if !got.ExtKeyUsage["serverAuth"] || !got.ExtKeyUsage["clientAuth"] {
		t.Errorf("node-opcua reads extended key usage %v, want serverAuth and clientAuth", got.ExtKeyUsage)
	}
	if got.BasicConstraints.CA || got.KeyLengthBytes != 256 || !got.SelfSigned || !got.SignatureOK {
		t.Errorf("node-opcua reads cA %v, key of %d bytes, self-signed %v, signature ok %v", got.BasicConstraints.CA, got.KeyLengthBytes, got.SelfSigned, got.SignatureOK)
	}
	if got.StatusUnknown != "BadCertificateUntrusted" || got.StatusTrusted != "Good" {
		t.Errorf("node-opcua's CertificateManager: %s untrusted, %s trusted; want BadCertificateUntrusted, Good", got.StatusUnknown, got.StatusTrusted)
	}
}

// A certificate node-opcua makes for itself (as a client does) is refused
// until trusted, then passes every check of Validate.
func TestValidateNodeOPCUACertificate(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	out := filepath.Join(t.TempDir(), "client.pem")
	var made struct{ File string }
	nodeCert(t, &made, "make", out, "urn:node-opcua:client", "eng-ws1")
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseOne(b)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	o := ValidateOptions{ApplicationURI: "urn:node-opcua:client", Hostname: "eng-ws1"}
	wantCode(t, s.Validate(c.Raw, o), ua.StatusBadCertificateUntrusted)
	if _, err := s.Trust(Thumbprint(c.Raw)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, s.Validate(c.Raw, o), ua.StatusOK)
	wantCode(t, s.Validate(c.Raw, ValidateOptions{ApplicationURI: "urn:someone:else"}), ua.StatusBadCertificateURIInvalid)
}
