package channel

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// nodeRenewalScript connects with node-opcua's client, reads for a while
// with a short token lifetime, and prints one JSON summary line.
const nodeRenewalScript = `
const path = require("path");
const opcua = require(path.join(process.env.NODE_PATH, "node-opcua"));
const [endpoint, certFile, keyFile, pkiDir, durationMs, policy, mode] = process.argv.slice(2);
(async () => {
  const out = { reads: 0, renewals: 0, errors: [], tokens: [] };
  const certificateManager = new opcua.OPCUACertificateManager({ rootFolder: pkiDir, automaticallyAcceptUnknownCertificate: true });
  await certificateManager.initialize();
  const client = opcua.OPCUAClient.create({
    applicationName: "interlock-test", applicationUri: "urn:interlock:test:client",
    securityMode: opcua.MessageSecurityMode[mode], securityPolicy: opcua.SecurityPolicy[policy],
    certificateFile: certFile, privateKeyFile: keyFile, clientCertificateManager: certificateManager,
    defaultSecureTokenLifetime: 2000, endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
    requestedSessionTimeout: 60000,
  });
  client.on("security_token_renewed", (channel, token) => { out.renewals++; out.tokens.push(token.tokenId); });
  try {
    await client.connect(endpoint);
    const session = await client.createSession();
    const end = Date.now() + Number(durationMs);
    while (Date.now() < end) {
      const dv = await session.read({ nodeId: "ns=0;i=2258", attributeId: opcua.AttributeIds.Value });
      if (dv.statusCode.value !== 0) out.errors.push(dv.statusCode.toString()); else out.reads++;
      await new Promise(r => setTimeout(r, 50));
    }
    await session.close();
    await client.disconnect();
  } catch (err) {
    out.errors.push(String(err && err.message || err));
    try { await client.disconnect(); } catch (e) {}
  }
  console.log(JSON.stringify(out));
  process.exit(0);
})();
`

// node-opcua's client at SignAndEncrypt (each policy) and Sign keeps reading across many token
// renewals with a 2 s lifetime: each renewal has a new token id, and
// node-opcua accepts the old keys until it uses the new token. The gateway
// offers secured pairs only, with discovery over None.
func TestNodeOPCUARenewal(t *testing.T) {
	gatewaytest.RequirePeer(t, gatewaytest.PeerNodeOPCUA)
	modules, err := gatewaytest.NodeModules()
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t)
	cfg.MinTokenLifetime, cfg.MaxTokenLifetime = 2*time.Second, 2*time.Second
	// secured pairs only: node-opcua fetches the certificate over a
	// discovery-only None channel first
	cfg.Offers = []Offer{
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign},
	}
	cfg.DiscoveryOverNone = true
	srv := startServer(t, cfg)

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client_key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientCert.key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientCert.der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	script := filepath.Join(dir, "renew.js")
	os.WriteFile(script, []byte(nodeRenewalScript), 0o600)

	d := 8 * time.Second
	if testing.Short() {
		d = 4 * time.Second
	}
	for _, pm := range [][2]string{
		{"Basic256Sha256", "SignAndEncrypt"},
		{"Aes256_Sha256_RsaPss", "SignAndEncrypt"},
		{"Aes128_Sha256_RsaOaep", "SignAndEncrypt"},
		{"Basic256Sha256", "Sign"},
	} {
		t.Run(pm[0]+"_"+pm[1], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), d+60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", script, srv.endpoint, certFile, keyFile, filepath.Join(dir, "pki-"+pm[0]), strconv.FormatInt(d.Milliseconds(), 10), pm[0], pm[1])
			cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			var res struct {
				Reads, Renewals int
				Errors          []string
				Tokens          []uint32
			}
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				if line := sc.Text(); strings.HasPrefix(line, "{\"reads\"") {
					if err := json.Unmarshal([]byte(line), &res); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(res.Errors) > 0 || res.Reads == 0 {
				t.Fatalf("node-opcua: %d reads, errors %v\n%s", res.Reads, res.Errors, out)
			}
			if res.Renewals < 3 {
				t.Fatalf("node-opcua renewed %d times in %s, want several\n%s", res.Renewals, d, out)
			}
			for i := 1; i < len(res.Tokens); i++ {
				if res.Tokens[i] == res.Tokens[i-1] {
					t.Fatalf("renewal kept token id %d", res.Tokens[i])
				}
			}
			t.Logf("node-opcua %s/%s: %d reads, %d renewals", pm[0], pm[1], res.Reads, res.Renewals)
			mode := ua.MessageSecurityModeSignAndEncrypt
			if pm[1] == "Sign" {
				mode = ua.MessageSecurityModeSign
			}
			ch := srv.channelFor(t, ua.SecurityPolicyURIPrefix+pm[0], mode)
			if ch.RemoteCertificate() == nil {
				t.Fatal("no client certificate on the channel")
			}
		})
	}
}
