package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policyPathLine is the line of the gateway configuration's policy.path.
func policyPathLine(t *testing.T, g *gw) int {
	t.Helper()
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	before, _, ok := strings.Cut(string(b), "  path: ./policy\n")
	if !ok {
		t.Fatalf("the gateway configuration has no policy.path line:\n%s", b)
	}
	return strings.Count(before, "\n") + 1
}

// A policy directory's errors name the configuration file and the line of
// policy.path first, as a bundle file's do, then the file at fault.
func TestCheckPolicyDirErrorsNameConfigLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // after the prefix; {dir} is the policy directory
	}{
		{"Rego v0", map[string]string{"v0.rego": "package interlock\n\nlegacy { true }\n"},
			"{dir}/v0.rego:3: rego_parse_error: `if` keyword is required before rule body"},
		{"data collision", map[string]string{"sites/data.json": `{"x": 1}`, "zz.json": `{"sites": {"x": 2}}`},
			"{dir}: {dir}/zz.json collides with key \"x\" of {dir}/sites/data.json: both define data.sites.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gwOptions{upstreamPort: 502})
			for name, text := range tc.files {
				writeFile(t, filepath.Join(g.policyDir, name), text)
			}
			var stdout, stderr bytes.Buffer
			err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr)
			want := fmt.Sprintf("%s:%d: policy.path: %s", g.config, policyPathLine(t, g), strings.ReplaceAll(tc.want, "{dir}", g.policyDir))
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("check: %v\nwant an error starting %s", err, want)
			}
		})
	}
}
