package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/gateway/opcua"
)

// users add writes a file the OPC UA engine loads, with working hashes,
// replaces an existing user, keeps the file private, and refuses a file it
// cannot read as a users file.
func TestUsersAdd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users.yaml")
	add := func(user, roles, password string) cliResult {
		t.Helper()
		cmd := exec.Command(interlockBin, "users", "add", "--file", file, "--user", user, "--roles", roles, "--password-stdin")
		cmd.Stdin = strings.NewReader(password + "\n")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return cliResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	}
	for _, u := range [][3]string{{"alice", "engineer", "first"}, {"bob", "operator", "bob-pw"}, {"alice", "engineer,admin", "second"}} {
		if r := add(u[0], u[1], u[2]); r.code != 0 {
			t.Fatalf("users add %s: exit %d: %s%s", u[0], r.code, r.stdout, r.stderr)
		}
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	users, err := opcua.LoadUsers(file)
	if err != nil {
		t.Fatalf("the engine cannot load the file users add wrote: %v", err)
	}
	if _, ok := users.Check("alice", "first"); ok {
		t.Error("alice's replaced password still logs in")
	}
	if u, ok := users.Check("alice", "second"); !ok || strings.Join(u.Roles, ",") != "engineer,admin" {
		t.Errorf("alice with her new password: %+v %v", u, ok)
	}
	if u, ok := users.Check("bob", "bob-pw"); !ok || strings.Join(u.Roles, ",") != "operator" {
		t.Errorf("bob: %+v %v", u, ok)
	}

	// A new password alone keeps the roles; --roles '' clears them.
	newPassword := func(user, password string, extra ...string) {
		t.Helper()
		cmd := exec.Command(interlockBin, append([]string{"users", "add", "--file", file, "--user", user, "--password-stdin"}, extra...)...)
		cmd.Stdin = strings.NewReader(password + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("users add %s: %v\n%s", user, err, out)
		}
	}
	newPassword("alice", "third")
	newPassword("bob", "bob-2", "--roles", "")
	if users, err = opcua.LoadUsers(file); err != nil {
		t.Fatal(err)
	}
	if u, ok := users.Check("alice", "third"); !ok || strings.Join(u.Roles, ",") != "engineer,admin" {
		t.Errorf("alice after a new password without --roles: %+v %v, want her roles kept", u, ok)
	}
	if u, ok := users.Check("bob", "bob-2"); !ok || len(u.Roles) != 0 {
		t.Errorf("bob after --roles '': %+v %v, want no roles", u, ok)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "- name: carol\n  password_hash: plain\n")
	file = bad
	if r := add("dave", "", "x"); r.code != 1 || !strings.Contains(r.stderr, "password_hash") {
		t.Errorf("users add on a file with a plain-text password: exit %d, %q; want 1 naming password_hash", r.code, r.stderr)
	}
	if r := interlock(t, "users", "add", "--user", "x"); r.code != 2 || !strings.Contains(r.stderr, "--file") {
		t.Errorf("users add without --file: exit %d, %q", r.code, r.stderr)
	}
}
