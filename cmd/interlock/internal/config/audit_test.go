package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

func TestAuditEvidenceDefaults(t *testing.T) {
	c, err := config.Load(write(t, good))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Audit
	if a.SigningKey != "" || a.CheckpointEvery != 1000 || a.CheckpointInterval != time.Minute || a.RotateSize != 0 ||
		a.RotateInterval != 0 || a.RetainDays != 0 || a.RetainBytes != 0 || a.WarnFillPercent != 80 || a.CapacityInterval != 10*time.Second {
		t.Errorf("audit defaults: %+v", a)
	}
}

func TestAuditEvidenceKeys(t *testing.T) {
	p := write(t, good+`  signing_key: ./keys/audit-signing.key
  checkpoint_every: 50
  checkpoint_interval: 5s
  rotate_size: 100MB
  rotate_interval: 24h
  retain_days: 90
  retain_bytes: 2GiB
  warn_fill_percent: 75.5
  capacity_interval: 30s
`)
	key := filepath.Join(filepath.Dir(p), "keys", "audit-signing.key")
	os.MkdirAll(filepath.Dir(key), 0o700)
	if err := os.WriteFile(key, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Audit
	if a.SigningKey != key || a.CheckpointEvery != 50 || a.CheckpointInterval != 5*time.Second || a.RotateSize != 100e6 ||
		a.RotateInterval != 24*time.Hour || a.RetainDays != 90 || a.RetainBytes != 2<<30 || a.WarnFillPercent != 75.5 ||
		a.CapacityInterval != 30*time.Second {
		t.Errorf("audit: %+v", a)
	}

	// A key anyone but its owner may read is refused, naming the key.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(p)
	if err == nil || !strings.Contains(err.Error(), "audit.signing_key") || !strings.Contains(err.Error(), key) ||
		!strings.Contains(err.Error(), "0644") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a key readable by others: %v", err)
	}
}

func TestAuditEvidenceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, add string
		want      []string
	}{
		{"missing key", "  signing_key: ./nope.key\n", []string{"audit.signing_key", "nope.key", "interlock audit keygen"}},
		{"bad size", "  rotate_size: 100 parsecs\n", []string{"config.yaml:21", "audit.rotate_size", `"100 parsecs" is not a size`}},
		{"negative every", "  checkpoint_every: -1\n", []string{"audit.checkpoint_every", "must be positive"}},
		{"negative interval", "  rotate_interval: -1h\n", []string{"audit.rotate_interval", "must be positive"}},
		{"retention without rotation", "  retain_days: 30\n", []string{"audit.retain_days", "rotation is off"}},
		{"fill over 100", "  warn_fill_percent: 120\n", []string{"audit.warn_fill_percent", "1..100"}},
		{"unknown key", "  rotate_every: 5\n", []string{"audit.rotate_every", "unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, good+tc.add))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]config.ByteSize{
		"4096": 4096, "100MB": 100e6, "100mb": 100e6, "1GiB": 1 << 30, "1.5 KiB": 1536, "64kB": 64e3, "10B": 10,
	} {
		if got, err := config.ParseByteSize(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1MB", "ten", "1e30GB"} {
		if _, err := config.ParseByteSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// An audit.path on a kernel file system (/proc, /sys, /dev: no storage, or
// memory such as /dev/shm) is refused, as written or through a symlink,
// naming the key, the value and the file system.
func TestAuditPathOnAKernelFileSystem(t *testing.T) {
	link := filepath.Join(t.TempDir(), "logs")
	if err := os.Symlink("/proc/self", link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, under string }{
		{"/proc/interlock/audit.jsonl", "/proc"},
		{"/sys/audit.jsonl", "/sys"},
		{"/dev/shm/interlock/audit.jsonl", "/dev"},
		{"/dev/null", "/dev"},
		{"/var/../dev/audit.jsonl", "/dev"},
		{link + "/audit/audit.jsonl", "/proc"},
	} {
		body := strings.Replace(good, "path: ./audit/audit.jsonl", "path: "+tc.path, 1)
		line := strings.Count(body[:strings.Index(body, "path: "+tc.path)], "\n") + 1
		p := write(t, body)
		_, err := config.Load(p)
		if want := fmt.Sprintf("%s:%d: audit.path: %s is under %s", p, line, tc.path, tc.under); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("audit.path %s: %v; want an error starting %s", tc.path, err, want)
		}
	}
	// a name that only begins like one is a disk folder
	dir := t.TempDir()
	for _, path := range []string{dir + "/devices/audit.jsonl", "/tmp/dev/audit.jsonl"} {
		if _, err := config.Load(write(t, strings.Replace(good, "path: ./audit/audit.jsonl", "path: "+path, 1))); err != nil {
			t.Errorf("audit.path %s: %v", path, err)
		}
	}
}
