package channel

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

func TestConfigChecks(t *testing.T) {
	loadCerts(t)
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // substring of the error, "" for none
	}{
		{"valid", func(c *Config) {}, ""},
		{"no offers", func(c *Config) { c.Offers = nil }, "no security policy"},
		{"deprecated policy", func(c *Config) {
			c.Offers = []Offer{{ua.SecurityPolicyURIBasic128Rsa15, ua.MessageSecurityModeSignAndEncrypt}}
		}, "cannot be offered"},
		{"None with Sign", func(c *Config) { c.Offers = []Offer{{ua.SecurityPolicyURINone, ua.MessageSecurityModeSign}} }, "cannot be used"},
		{"secured with mode None", func(c *Config) {
			c.Offers = []Offer{{ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeNone}}
		}, "cannot be used"},
		{"no key", func(c *Config) { c.PrivateKey = nil }, "certificate and private key"},
		{"key of another certificate", func(c *Config) { c.PrivateKey = clientCert.key }, "does not match"},
		{"no validator", func(c *Config) { c.ValidateClient = nil }, "ValidateClient"},
		{"None needs no certificate", func(c *Config) {
			c.Offers = []Offer{{ua.SecurityPolicyURINone, ua.MessageSecurityModeNone}}
			c.Certificate, c.PrivateKey, c.ValidateClient = nil, nil, nil
		}, ""},
		{"small buffers", func(c *Config) { c.ReceiveBufferSize = 1024 }, "at least 8192"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig(t)
			tc.change(c)
			err := c.checkAndSetDefaults()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.ReceiveBufferSize != 65535 || c.MaxMessageSize != 16<<20 || c.MaxChunkCount != 512 ||
					c.MinTokenLifetime != 10*time.Second || c.MaxTokenLifetime != time.Hour || c.HelloTimeout != 5*time.Second {
					t.Fatalf("defaults not set: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestRevisedLifetime(t *testing.T) {
	c := &Config{MinTokenLifetime: 10 * time.Second, MaxTokenLifetime: time.Hour}
	for req, want := range map[uint32]time.Duration{0: time.Hour, 1000: 10 * time.Second, 60000: time.Minute, 1 << 31: time.Hour} {
		if got := c.revisedLifetime(req); got != want {
			t.Errorf("requested %d ms: revised %s, want %s", req, got, want)
		}
	}
}

type codedErr struct{ code ua.StatusCode }

func (e codedErr) Error() string             { return "coded" }
func (e codedErr) StatusCode() ua.StatusCode { return e.code }

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want ua.StatusCode
	}{
		{nil, ua.StatusOK},
		{&Error{Code: ua.StatusBadCertificateRevoked}, ua.StatusBadCertificateRevoked},
		{codedErr{ua.StatusBadCertificateURIInvalid}, ua.StatusBadCertificateURIInvalid},
		{ua.StatusBadTimeout, ua.StatusBadTimeout},
		{errors.Join(errors.New("x"), ua.StatusBadNonceInvalid), ua.StatusBadNonceInvalid},
		{errors.New("plain"), ua.StatusBadInternalError},
	} {
		if got := StatusOf(tc.err); got != tc.want {
			t.Errorf("StatusOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
