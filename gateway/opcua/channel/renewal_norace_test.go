//go:build !race

// gopcua v0.9.0's client races with itself when a token renewal meets a
// request in flight (uasc/secure_channel.go: scheduleRenewal against
// SendRequestWithTimeout), so this test runs without the race detector;
// TestRawSecuredRenewal covers the same rules under -race.

package channel

import (
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uapolicy"
)

// gopcua's client renews its token at 75 % of a 2 s lifetime: reads go on
// for 10 s across several renewals, each with a new token id and new keys.
func TestRenewalUnderLoad(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MinTokenLifetime, cfg.MaxTokenLifetime = 2*time.Second, 2*time.Second
	srv := startServer(t, cfg)
	d := 10 * time.Second
	if testing.Short() {
		d = 4 * time.Second
	}
	for _, o := range []Offer{
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSignAndEncrypt},
		{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSign},
	} {
		t.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(t *testing.T) {
			t.Parallel()
			sc, _, err := dialUASC(t, srv.endpoint, o.PolicyURI, o.Mode, clientCert, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ch := srv.channelFor(t, o.PolicyURI, o.Mode)
			seen := map[uint32]*uapolicy.EncryptionAlgorithm{}
			end := time.Now().Add(d)
			n := 0
			for time.Now().Before(end) {
				if _, err := readOnce(sc, ua.NewNumericNodeID(0, 2258)); err != nil {
					t.Fatalf("read %d: %v", n, err)
				}
				n++
				ch.mu.Lock()
				seen[ch.current.id] = ch.current.sym
				ch.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
			if len(seen) < 3 {
				t.Fatalf("%d tokens in %s, want several renewals", len(seen), d)
			}
			var keys []*uapolicy.EncryptionAlgorithm
			for _, k := range seen {
				for _, p := range keys {
					if p == k {
						t.Fatal("two tokens share their keys")
					}
				}
				keys = append(keys, k)
			}
			t.Logf("%d reads over %d tokens", n, len(seen))
		})
	}
}
