package policy

import (
	"fmt"
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

// A data file that does not parse is refused naming the file and the line
// at fault (YAML errors of the parser and of the scanner alike, a JSON
// document cut off at its end).
func TestDataSyntaxErrorLine(t *testing.T) {
	const rego = "package interlock\n\ndecision := {\"allow\": true, \"alert\": false, \"reasons\": []}\n"
	for _, tc := range []struct {
		name, file, body string
		line             int
	}{
		{"flow sequence not closed", "data.yaml", "a: 1\nb: 2\nc: 3\nd: [1, 2\n", 4},
		{"flow mapping not closed", "data.yaml", "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: {x: 1\n", 6},
		{"dedent in a sequence", "data.yaml", "a: 1\nb: 2\nc: 3\nd:\n  - x\n - y\n", 6},
		{"on the first line", "data.yaml", "a: [1\n", 1},
		{"mapping value in context", "data.yaml", "a: 1\nb: 2\nc: 3\nd: : x\n", 4},
		{"tab indentation", "data.yml", "a: 1\nb: 2\nc: 3\n\td: 4\n", 4},
		{"unterminated string", "data.yaml", "a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: \"unterminated\n", 6},
		{"json cut off", "data.json", "{\n  \"a\": [1,\n    2\n", 3},
		{"json syntax", "data.json", "{\n  \"a\": 1,\n  \"b\" 2\n}\n", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := policyDir(t, map[string]string{"main.rego": rego, tc.file: tc.body})
			_, err := New(Options{Path: dir, Log: zerolog.Nop()})
			want := fmt.Sprintf("%s:%d:", filepath.Join(dir, tc.file), tc.line)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("New = %v\nwant an error naming %s", err, want)
			}
		})
	}
}
