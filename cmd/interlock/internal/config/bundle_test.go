package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// writeBundleConfig writes the good configuration with its policy section
// replaced, beside a bundle file, a key file and a CA file.
func writeBundleConfig(t *testing.T, policy string) string {
	t.Helper()
	p := write(t, strings.Replace(good, "policy:\n  path: ./policy\n", policy, 1))
	for _, f := range []string{"policy.tar.gz", "bundle.pub", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(filepath.Dir(p), f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestBundlePolicy(t *testing.T) {
	p := writeBundleConfig(t, "policy:\n  path: ./policy.tar.gz\n  bundle_key: ./bundle.pub\n  bundle_key_id: fleet\n  bundle_max_bytes: 1048576\n  bundle_timeout: 5s\n")
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.Policy.Path != filepath.Join(dir, "policy.tar.gz") || c.Policy.BundleKey != filepath.Join(dir, "bundle.pub") ||
		c.Policy.BundleKeyID != "fleet" || c.Policy.BundleMaxBytes != 1<<20 || c.Policy.BundleTimeout != 5*time.Second {
		t.Errorf("policy section: %+v", c.Policy)
	}
	url := "https://bundles.example:8443/site-a.tar.gz"
	c, err = config.Load(writeBundleConfig(t, "policy:\n  path: "+url+"\n  bundle_key: ./bundle.pub\n  bundle_key_id: fleet\n  bundle_ca: ./ca.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.Path != url || !filepath.IsAbs(c.Policy.BundleCA) {
		t.Errorf("a URL is kept as it is, the CA resolved: %+v", c.Policy)
	}
}

func TestBundlePolicyErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, policy string
		want         []string
	}{
		{"key without id", "  path: ./policy.tar.gz\n  bundle_key: ./bundle.pub\n", []string{"policy.bundle_key_id", "missing"}},
		{"id without key", "  path: ./policy.tar.gz\n  bundle_key_id: fleet\n", []string{"policy.bundle_key", "bundle_key_id needs the verification key"}},
		{"missing key file", "  path: ./policy.tar.gz\n  bundle_key: ./nowhere.pub\n  bundle_key_id: fleet\n", []string{"policy.bundle_key", "no such file"}},
		{"key for a directory", "  path: ./policy\n  bundle_key: ./bundle.pub\n  bundle_key_id: fleet\n", []string{"policy.bundle_key", "only bundles"}},
		{"bad algorithm", "  path: ./policy.tar.gz\n  bundle_key: ./bundle.pub\n  bundle_key_id: fleet\n  bundle_key_alg: RS1\n", []string{"policy.bundle_key_alg", `"RS1" is not one of`}},
		{"CA for plain http", "  path: http://bundles.example/b.tar.gz\n  bundle_ca: ./ca.pem\n", []string{"policy.bundle_ca", "only for an https://"}},
		{"URL without host", "  path: https:///b.tar.gz\n", []string{"policy.path", "not a bundle server URL"}},
		{"negative size", "  path: ./policy.tar.gz\n  bundle_max_bytes: -1\n", []string{"policy.bundle_max_bytes", "must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(writeBundleConfig(t, "policy:\n"+tc.policy))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
