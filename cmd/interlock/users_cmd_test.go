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

// A password no client would send, or a users file whose folder is not
// there, is refused naming what is wrong, and nothing is written.
func TestUsersAddRefusals(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.yaml")
	add := func(file, stdin string) cliResult {
		t.Helper()
		cmd := exec.Command(interlockBin, "users", "add", "--file", file, "--user", "alice", "--password-stdin")
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return cliResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	}
	for _, tc := range []struct{ name, stdin, want string }{
		{"empty", "\n", "users add: the password for alice is empty; nothing written"},
		{"no input", "", "users add: the password for alice is empty; nothing written"},
		{"over 1024 bytes", strings.Repeat("x", 1100) + "\n", "users add: the password for alice (the first line of standard input) is over 1024 bytes; nothing written"},
		{"a megabyte without a newline", strings.Repeat("x", 1<<20), "is over 1024 bytes; nothing written"},
		{"over bcrypt's 72 bytes", strings.Repeat("x", 73) + "\n", "users add: the password for alice is 73 bytes; the bcrypt hash of the users file takes at most 72; nothing written"},
		{"a tab", "pass\tword\n", "users add: the password for alice holds a control character (U+0009 at byte 5)"},
		{"an escape", "pass\x1b[Aword\n", "holds a control character (U+001B at byte 5)"},
		{"a NUL", "pass\x00word\n", "holds a control character (U+0000 at byte 5)"},
		{"Latin-1", "caf\xe9\n", "users add: the password for alice is not UTF-8 text (byte 4)"},
	} {
		if r := add(file, tc.stdin); r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("a refused password wrote %s: %v", file, err)
	}
	missing := filepath.Join(dir, "nodir", "users.yaml")
	if r := add(missing, "pw\n"); r.code != 1 || !strings.Contains(r.stderr,
		"users add: --file "+missing+": the folder "+filepath.Dir(missing)+" does not exist; create it first") {
		t.Errorf("a users file in a missing folder: exit %d, stderr %q", r.code, r.stderr)
	}
	notDir := filepath.Join(dir, "notes.txt")
	writeFile(t, notDir, "x")
	if r := add(filepath.Join(notDir, "users.yaml"), "pw\n"); r.code != 1 || !strings.Contains(r.stderr, notDir+" is not a folder") {
		t.Errorf("a users file under a file: exit %d, stderr %q", r.code, r.stderr)
	}
	// 72 bytes of UTF-8, a space and non-ASCII letters included, are fine.
	pw := "pässwörd " + strings.Repeat("x", 72-len("pässwörd "))
	if r := add(file, pw+"\r\n"); r.code != 0 {
		t.Fatalf("a 72-byte password: exit %d, %s", r.code, r.stderr)
	}
	users, err := opcua.LoadUsers(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := users.Check("alice", pw); !ok {
		t.Error("the 72-byte password does not log in")
	}
}

// A user name the gateway's loader would refuse is refused by users add,
// naming --user and the name, before a password is asked for; inner
// spaces and colons are names like any other.
func TestUsersAddUserNames(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "users.yaml")
	add := func(user string) cliResult {
		t.Helper()
		cmd := exec.Command(interlockBin, "users", "add", "--file", file, "--user", user, "--password-stdin")
		cmd.Stdin = strings.NewReader("pw\n")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return cliResult{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	}
	long := strings.Repeat("a", opcua.MaxUserNameBytes+1)
	for user, want := range map[string]string{
		"alice\tb":     `users add: --user "alice\tb" holds a control character (U+0009 at byte 6); nothing written`,
		"alice\x1b[2J": `users add: --user "alice\x1b[2J" holds a control character (U+001B at byte 6); nothing written`,
		"al\xe9ice":    `users add: --user "al\xe9ice" is not UTF-8 text (byte 3), which OPC UA user names are; nothing written`,
		" alice":       `users add: --user " alice" begins or ends with a space, which nobody sees when typing it; nothing written`,
		"alice ":       `users add: --user "alice " begins or ends with a space`,
		"abc\u202egpj": `users add: --user "abc\u202egpj" holds a control character (U+202E at byte 4)`,
		long:           `users add: --user "` + long[:64] + `"… is 257 bytes, over the 256 a user name may have; nothing written`,
	} {
		if r := add(user); r.code != 2 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "password for") {
			t.Errorf("users add --user %q: exit %d, stderr %q; want 2 and %q, before any password is read", user, r.code, r.stderr, want)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a refused user name wrote %s: %v", file, err)
	}
	names := []string{"Jane Doe", "plant:op1", "Jürgen Müller", strings.Repeat("b", opcua.MaxUserNameBytes)}
	for _, user := range names {
		if r := add(user); r.code != 0 {
			t.Errorf("users add --user %q: exit %d, %s", user, r.code, r.stderr)
		}
	}
	users, err := opcua.LoadUsers(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range names {
		if _, ok := users.Check(user, "pw"); !ok {
			t.Errorf("%q does not log in from the file users add wrote", user)
		}
	}
}
