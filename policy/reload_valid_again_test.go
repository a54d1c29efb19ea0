package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// Files put back to the policy in force after a failed reload are logged as
// valid again, so the last line does not still say the reload failed; an
// unchanged reload with no failure before it logs nothing.
func TestReloadValidAgainIsLogged(t *testing.T) {
	dir := policyDir(t, map[string]string{"main.rego": versionPolicy("v1")})
	var logs bytes.Buffer
	e, err := New(Options{Path: dir, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	rev := e.Revision()
	logs.Reset()
	if _, err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if logs.Len() != 0 {
		t.Errorf("an unchanged reload logged %s", logs.String())
	}

	writeFiles(t, dir, map[string]string{"extra.rego": "package interlock\n\nbroken := }\n"})
	if _, err := e.Reload(); err == nil {
		t.Fatal("a broken policy reloaded")
	}
	if err := os.Remove(filepath.Join(dir, "extra.rego")); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if changed, err := e.Reload(); changed || err != nil {
		t.Fatalf("Reload back to the policy in force = %v, %v; want a no-op", changed, err)
	}
	if l := logs.String(); !strings.Contains(l, "policy files valid again; revision unchanged, still in force") ||
		!strings.Contains(l, `"policy_revision":"`+rev+`"`) || !strings.Contains(l, `"level":"info"`) {
		t.Errorf("the reload back to revision %s logged %q", rev, l)
	}
	logs.Reset()
	if _, err := e.Reload(); err != nil || logs.Len() != 0 {
		t.Errorf("the next unchanged reload: %v, logged %q; want nothing", err, logs.String())
	}
}
