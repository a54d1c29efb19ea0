package opcua

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestUsersFileNames: the loader refuses a user name no client logs in
// with, or that reads differently from what it is, naming file:line, the
// entry and the name; inner spaces, colons and non-ASCII letters load.
func TestUsersFileNames(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	dir := t.TempDir()
	n := 0
	write := func(name string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("users%d.yaml", n))
		body := fmt.Sprintf("- name: ok\n  password_hash: %q\n- name: %s\n  password_hash: %q\n", bc, name, bc)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	long := strings.Repeat("a", MaxUserNameBytes+1)
	for name, want := range map[string]string{
		`"alice\tb"`:         `:3: [1].name: "alice\tb" holds a control character (U+0009 at byte 6)`,
		`"alice\nb"`:         `:3: [1].name: "alice\nb" holds a control character (U+000A at byte 6)`,
		`"al\eice"`:          `:3: [1].name: "al\x1bice" holds a control character (U+001B at byte 3)`,
		`"al\x7fice"`:        `:3: [1].name: "al\x7fice" holds a control character (U+007F at byte 3)`,
		`"al\u0085ice"`:      `:3: [1].name: "al\u0085ice" holds a control character (U+0085 at byte 3)`,
		`" alice"`:           `:3: [1].name: " alice" begins or ends with a space`,
		`"alice "`:           `:3: [1].name: "alice " begins or ends with a space`,
		`"alice\u00a0"`:      `:3: [1].name: "alice\u00a0" begins or ends with a space`,
		long:                 fmt.Sprintf(`:3: [1].name: %q… is %d bytes, over the %d a user name may have`, long[:64], len(long), MaxUserNameBytes),
		"\"al\xffice\"":      "yaml: invalid", // the YAML parser refuses bytes that are not UTF-8 first
		`"alice\x00"`:        `:3: [1].name: "alice\x00" holds a control character (U+0000 at byte 6)`,
		`"\u200b\tx"`:        `holds a control character (U+0009 at byte 4)`,
		`"Jane Doe\r"`:       `holds a control character (U+000D at byte 9)`,
		`"ok\u2028line2"`:    `holds a control character (U+2028 at byte 3)`,
		`"abc\u202egpj.exe"`: `holds a control character (U+202E at byte 4)`,
	} {
		p := write(name)
		_, err := LoadUsers(p)
		if want == "" {
			if err != nil {
				t.Errorf("name %s: %v, want it loaded", name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), p+":") {
			t.Errorf("name %s: %v\nwant %q after the file name", name, err, want)
		}
	}
	for _, name := range []string{"Jane Doe", "plant:op1", `DOMAIN\op`, "Jürgen Müller", "オペレーター", "می‌خواهم", strings.Repeat("a", MaxUserNameBytes)} {
		p := write(fmt.Sprintf("%q", name))
		u, err := LoadUsers(p)
		if err != nil {
			t.Errorf("name %q: %v, want it loaded", name, err)
			continue
		}
		if _, ok := u.Check(name, "pw"); !ok {
			t.Errorf("name %q loaded but does not log in", name)
		}
	}
	if err := CheckUserName("al\xffice"); err == nil || err.Error() != "is not UTF-8 text (byte 3), which OPC UA user names are" {
		t.Errorf("CheckUserName of a name that is not UTF-8: %v", err)
	}
	if err := CheckUserName("ok\uFFFD"); err != nil {
		t.Errorf("CheckUserName of a name with U+FFFD itself: %v", err)
	}
}

// TestUsersFileDecodeErrors: a key the file does not have, or a value of
// the wrong kind, is named on one line by file:line, entry and key, as the
// loader's other errors are, not in Go's types.
func TestUsersFileDecodeErrors(t *testing.T) {
	dir := t.TempDir()
	for i, tc := range []struct{ body, want string }{
		{"- name: ok\n  password_hash: x\n- name: bob\n  pasword_hash: x\n",
			":4: [1].pasword_hash: unknown key (want name, password_hash, roles)"},
		{"- name: bob\n  roles: 5\n", ":2: [0].roles: a number (5) where a list (such as [engineer]) is wanted"},
		{"- name: [a]\n", ":1: [0].name: a list where a string is wanted"},
		{"alice: x\n", ":1: a mapping where a list of users (lines beginning with -: name, password_hash, roles) is wanted"},
	} {
		p := filepath.Join(dir, fmt.Sprintf("users%d.yaml", i))
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadUsers(p)
		if err == nil || err.Error() != p+tc.want {
			t.Errorf("%q: %v\nwant %s%s", tc.body, err, p, tc.want)
		}
	}
}
