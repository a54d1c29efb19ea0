package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Two data files of a policy directory that define one path of data are
// refused naming both files and the key, as in a bundle.
func TestDirDataCollision(t *testing.T) {
	const rego = "package interlock\n\ndecision := {\"allow\": true, \"alert\": false, \"reasons\": []}\n"
	for _, tc := range []struct {
		name  string
		files map[string]string
		file  string // the file refused
		other string // what else defines the path
		at    string
	}{
		{"a key and a directory", map[string]string{"data.json": `{"accounts": [{"user": "alice"}]}`, "accounts/data.json": `{"bob": {}}`},
			"data.json", "{dir}/accounts/data.json", "accounts"},
		{"a key inside both", map[string]string{"accounts/data.yaml": "alice: {roles: [engineer]}\n", "data.json": `{"accounts": {"alice": {"roles": []}}}`},
			"data.json", `key "alice.roles" of {dir}/accounts/data.yaml`, "accounts.alice.roles"},
		{"a whole file", map[string]string{"site/data.json": `[1, 2]`, "x.json": `{"site": {"a": 1}}`},
			"x.json", "{dir}/site/data.json", "site"},
		// b.json merges into the object a/data.json made: the path is b.json's.
		{"a file merged into another", map[string]string{"a/data.json": `{"x": 1}`, "b.json": `{"a": {"y": 2}}`, "c.yaml": "a: {y: 3}\n"},
			"c.yaml", `key "a.y" of {dir}/b.json`, "a.y"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["main.rego"] = rego
			dir := policyDir(t, tc.files)
			want := dir + ": " + filepath.Join(dir, tc.file) + " collides with " + strings.ReplaceAll(tc.other, "{dir}", dir) +
				": both define data." + tc.at
			_, err := New(Options{Path: dir, Log: zerolog.Nop()})
			if err == nil || err.Error() != want {
				t.Fatalf("New = %v\nwant %s", err, want)
			}
		})
	}
}
