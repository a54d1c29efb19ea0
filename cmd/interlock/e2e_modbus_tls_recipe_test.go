package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// readmeRecipe is the shell block after the marker "<!-- recipe: NAME" in
// README.md.
func readmeRecipe(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "<!-- recipe: "+name)
	if !ok {
		t.Fatalf("README.md has no recipe %s", name)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, closed := strings.Cut(rest, "```\n")
	if !ok || !closed {
		t.Fatalf("README.md: recipe %s has no ```sh block", name)
	}
	return block
}

// The README's OpenSSL recipe, run as written with the system's openssl,
// makes certificates the gateway takes: alice's certificate gives her the
// role engineer, so her write goes through.
func TestE2EModbusTLSOpenSSLRecipe(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerOpenSSL, peerPymodbus)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-e", "-c", readmeRecipe(t, "modbus-tls"))
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the README recipe: %v\n%s", err, out)
	}
	pki := filepath.Join(dir, "pki", "modbus")

	v100, v101, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port, rego: map[string]string{"tls.rego": tlsRego}})
	insertTLS(t, g, filepath.Join(pki, "gateway.crt"), filepath.Join(pki, "gateway.key"), filepath.Join(pki, "clients.crt"), "")
	g.start(t)

	env := []string{"TLS_CA=" + filepath.Join(pki, "clients.crt"), "TLS_CERT=" + filepath.Join(pki, "alice.crt"), "TLS_KEY=" + filepath.Join(pki, "alice.key")}
	if r := pyclientEnv(t, env, g.port, "read", 100, 2); !slices.Equal(r.Registers, []int{v100, v101}) {
		t.Fatalf("alice's read over TLS: %+v, want [%d %d]", r, v100, v101)
	}
	if r := pyclientEnv(t, env, g.port, "write", 101, v101+1); r.Error != "" || r.Exception != nil {
		t.Fatalf("alice's write over TLS: %+v, want it written (role engineer)", r)
	}
	if got := plcRegisters(t, plc.port, 101, 1); got[0] != v101+1 {
		t.Fatalf("PLC register 101: %d, want %d", got[0], v101+1)
	}
	recs := waitAudit(t, g.auditPath, 10*time.Second, "two session.open records", func(rs []record) bool {
		return len(eventsOf(rs, "session.open")) == 2
	})
	for _, o := range eventsOf(recs, "session.open") {
		if o.str("principal.user") != "alice" || o.str("principal.auth") != "certificate" ||
			!slices.Equal(o.strs("principal.roles"), []string{"engineer"}) || o.str("principal.cert_thumbprint") != thumbprintOf(t, filepath.Join(pki, "alice.crt")) {
			t.Errorf("session.open: %s\nwant alice, certificate, roles [engineer], her thumbprint", o)
		}
	}
	if w := callRecords(recs, "write_multiple_registers", 101); len(w) != 1 || w[0].get("decision.allow") != true {
		t.Errorf("alice's write call records: %v, want one allowed", w)
	}
}
