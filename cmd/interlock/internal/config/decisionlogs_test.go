package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// decisionLogConfig writes the good configuration with decision_logs added
// to its policy section, beside a token file of the given mode.
func decisionLogConfig(t *testing.T, logs string, tokenMode os.FileMode) string {
	t.Helper()
	p := write(t, strings.Replace(good, "policy:\n  path: ./policy\n", "policy:\n  path: ./policy\n  decision_logs:\n"+logs, 1))
	tok := filepath.Join(filepath.Dir(p), "dl.token")
	if err := os.WriteFile(tok, []byte("s3cret\n"), tokenMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tok, tokenMode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecisionLogs(t *testing.T) {
	c, err := config.Load(decisionLogConfig(t, "    url: https://logs.example:8443/v1\n    token_file: ./dl.token\n    interval: 2s\n    max_events: 500\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Policy.DecisionLogs
	if d == nil || d.URL != "https://logs.example:8443/v1" || d.Token != "s3cret" || d.Interval != 2*time.Second || d.MaxEvents != 500 ||
		!filepath.IsAbs(d.TokenFile) {
		t.Errorf("decision_logs: %+v", d)
	}
	c, err = config.Load(write(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Policy.DecisionLogs != nil {
		t.Errorf("decision logs on without a decision_logs section: %+v", c.Policy.DecisionLogs)
	}
}

func TestDecisionLogsErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, logs string
		mode       os.FileMode
		want       []string
	}{
		{"no url", "    interval: 1s\n", 0o600, []string{"policy.decision_logs.url", "want the http:// or https:// URL"}},
		{"not http", "    url: ftp://logs.example\n", 0o600, []string{"policy.decision_logs.url", `"ftp://logs.example"`}},
		{"token readable by others", "    url: http://logs.example\n    token_file: ./dl.token\n", 0o644, []string{"policy.decision_logs.token_file", "chmod 600"}},
		{"missing token file", "    url: http://logs.example\n    token_file: ./nowhere\n", 0o600, []string{"policy.decision_logs.token_file", "no such file"}},
		{"CA for plain http", "    url: http://logs.example\n    ca: ./dl.token\n", 0o600, []string{"policy.decision_logs.ca", "only for an https:// url"}},
		{"negative max_events", "    url: http://logs.example\n    max_events: -1\n", 0o600, []string{"policy.decision_logs.max_events", "must be positive"}},
		{"unknown key", "    url: http://logs.example\n    endpoint: /x\n", 0o600, []string{"endpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(decisionLogConfig(t, tc.logs, tc.mode))
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
