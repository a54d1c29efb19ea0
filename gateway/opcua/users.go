package opcua

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// User is one entry of the users file.
type User struct {
	Name         string   `yaml:"name"`
	PasswordHash string   `yaml:"password_hash"` // bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$v=19$m=…,t=…,p=…$salt$hash)
	Roles        []string `yaml:"roles"`
}

// Users is the users file: user names with password hashes and roles.
type Users struct {
	byName map[string]*User
	// dummy is checked for unknown users, so that a wrong user name costs
	// the same time as a wrong password.
	dummy string
}

// LoadUsers reads a users file (a YAML list of name, password_hash, roles).
// Its errors name the file and the line at fault (path:line: …).
func LoadUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty: want a YAML list of users (name, password_hash, roles)", path)
	}
	var list []User
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		return nil, usersDecodeError(path, doc.Content[0], err)
	}
	// line finds the line of entry i, or of its key when it has one.
	line := func(i int, key string) int {
		seq := doc.Content[0]
		if i >= len(seq.Content) {
			return seq.Line
		}
		e := seq.Content[i]
		for k := 0; k+1 < len(e.Content); k += 2 {
			if e.Content[k].Value == key {
				return e.Content[k+1].Line
			}
		}
		return e.Line
	}
	u := &Users{byName: map[string]*User{}}
	for i := range list {
		e := &list[i]
		if e.Name == "" {
			return nil, fmt.Errorf("%s:%d: [%d].name: missing", path, line(i, "name"), i)
		}
		if err := CheckUserName(e.Name); err != nil {
			return nil, fmt.Errorf("%s:%d: [%d].name: %s %v", path, line(i, "name"), i, QuoteUserName(e.Name), err)
		}
		if u.byName[e.Name] != nil {
			return nil, fmt.Errorf("%s:%d: [%d].name: %q is listed twice", path, line(i, "name"), i, e.Name)
		}
		if err := checkHash(e.PasswordHash); err != nil {
			return nil, fmt.Errorf("%s:%d: [%d].password_hash (user %q): %v", path, line(i, "password_hash"), i, e.Name, err)
		}
		u.byName[e.Name] = e
		if u.dummy == "" {
			u.dummy = e.PasswordHash
		}
	}
	return u, nil
}

var (
	yamlLineRe    = regexp.MustCompile(`^line (\d+): `)
	yamlUnknownRe = regexp.MustCompile(`^field \S+ not found in type \S+$`)
	yamlKindRe    = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (\\S+)$")
)

// usersDecodeError words a decode error of the users file as its other
// errors are (one line: path:line: entry and key: problem), not in Go's
// types: "unmarshal errors:\n  line 6: field pasword_hash not found in type opcua.User".
func usersDecodeError(path string, list *yaml.Node, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	m := yamlLineRe.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", path, msg)
	}
	line, _ := strconv.Atoi(m[1])
	msg = msg[len(m[0]):]
	key := "" // the entry, and its key, that the line is in
	for i, e := range list.Content {
		if list.Kind != yaml.SequenceNode || e.Line > line {
			break
		}
		key = fmt.Sprintf("[%d]", i)
		for k := 0; k+1 < len(e.Content) && e.Kind == yaml.MappingNode && e.Content[k].Line <= line; k += 2 {
			key = fmt.Sprintf("[%d].%s", i, e.Content[k].Value)
		}
	}
	if yamlUnknownRe.MatchString(msg) {
		msg = "unknown key (want name, password_hash, roles)"
	} else if k := yamlKindRe.FindStringSubmatch(msg); k != nil {
		got := map[string]string{"map": "a mapping", "seq": "a list", "str": "a string", "int": "a number", "float": "a number", "bool": "true or false"}[k[1]]
		if got == "" {
			got = "!!" + k[1]
		}
		if k[2] != "" {
			got += " (" + k[2] + ")"
		}
		want := map[string]string{"[]opcua.User": "a list of users (lines beginning with -: name, password_hash, roles)",
			"opcua.User": "a user (name, password_hash, roles)", "[]string": "a list (such as [engineer])", "string": "a string"}[k[3]]
		if want == "" {
			want = "another kind of value"
		}
		msg = got + " where " + want + " is wanted"
	}
	if key != "" {
		return fmt.Errorf("%s:%d: %s: %s", path, line, key, msg)
	}
	return fmt.Errorf("%s:%d: %s", path, line, msg)
}

// MaxUserNameBytes bounds a user name of the users file: far above any
// real account name, far below what a record or a policy input should carry.
const MaxUserNameBytes = 256

// CheckUserName refuses a user name that no client would log in with or
// that reads differently from what it is: not UTF-8 (OPC UA strings are
// UTF-8); a control character (a tab, a newline, an escape: a paste gone
// wrong, or a name that forges lines where it is shown), line separators
// and bidirectional controls included; a space at either end (invisible,
// so not the name an operator types); over MaxUserNameBytes. Spaces inside
// a name, colons and every other printable character are allowed: OPC UA
// (Part 4) does not restrict user names, and directory accounts have them
// ("Jane Doe", "plant:op1").
func CheckUserName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case len(name) > MaxUserNameBytes:
		return fmt.Errorf("is %d bytes, over the %d a user name may have", len(name), MaxUserNameBytes)
	}
	for i, r := range name {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(name[i:], "\uFFFD"):
			return fmt.Errorf("is not UTF-8 text (byte %d), which OPC UA user names are", i+1)
		case unicode.IsControl(r), unicode.In(r, unicode.Zl, unicode.Zp), bidiControl(r):
			return fmt.Errorf("holds a control character (%U at byte %d)", r, i+1)
		}
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return errors.New("begins or ends with a space, which nobody sees when typing it")
	}
	return nil
}

// bidiControl reports the characters that reorder the text around them
// (embeddings, overrides, isolates): a name holding one is shown as
// another.
func bidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

// QuoteUserName quotes a name for an error message, escaping what is not
// printable and cutting an over-long one, so that the message stays one
// readable line.
func QuoteUserName(name string) string {
	const show = 64
	if len(name) <= show {
		return strconv.Quote(name)
	}
	cut := show
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return strconv.Quote(name[:cut]) + "…"
}

// Len is the number of users.
func (u *Users) Len() int {
	if u == nil {
		return 0
	}
	return len(u.byName)
}

// Diff names the users of next that old lacks (added), the users of old
// that next lacks (removed), and those of both whose hash or roles differ
// (changed), each sorted. A nil u has no users.
func (u *Users) Diff(next *Users) (added, removed, changed []string) {
	var was map[string]*User
	if u != nil {
		was = u.byName
	}
	for n, e := range next.byName {
		switch o := was[n]; {
		case o == nil:
			added = append(added, n)
		case o.PasswordHash != e.PasswordHash || !slices.Equal(o.Roles, e.Roles):
			changed = append(changed, n)
		}
	}
	for n := range was {
		if next.byName[n] == nil {
			removed = append(removed, n)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	slices.Sort(changed)
	return added, removed, changed
}

// Check returns the user when the password matches its hash.
func (u *Users) Check(name, password string) (*User, bool) {
	e := u.byName[name]
	if e == nil {
		if u.dummy != "" {
			verifyHash(u.dummy, password)
		}
		return nil, false
	}
	if !verifyHash(e.PasswordHash, password) {
		return nil, false
	}
	return e, true
}

func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$2"):
		_, err := bcrypt.Cost([]byte(h))
		return err
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	case h == "":
		return errors.New("missing")
	}
	return errors.New("not a bcrypt ($2…) or argon2id ($argon2id$…) hash")
}

func verifyHash(h, password string) bool {
	if strings.HasPrefix(h, "$argon2id$") {
		a, err := parseArgon2id(h)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(password), a.salt, a.time, a.memory, a.threads, uint32(len(a.hash)))
		return subtle.ConstantTimeCompare(got, a.hash) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(h), []byte(password)) == nil
}

type argon2Params struct {
	memory, time uint32
	threads      uint8
	salt, hash   []byte
}

// parseArgon2id reads the PHC string form: $argon2id$v=19$m=65536,t=3,p=4$salt$hash
// (salt and hash in unpadded standard base64).
func parseArgon2id(h string) (*argon2Params, error) {
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return nil, errors.New("argon2id hash is not $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("argon2id version %q, want v=19", parts[2])
	}
	a := &argon2Params{}
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("argon2id parameter %q", kv)
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			a.memory = uint32(n)
		case "t":
			a.time = uint32(n)
		case "p":
			if n == 0 || n > 255 {
				return nil, fmt.Errorf("argon2id parallelism %d", n)
			}
			a.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id parameter %q", kv)
		}
	}
	if a.memory == 0 || a.time == 0 || a.threads == 0 {
		return nil, errors.New("argon2id hash needs m, t and p")
	}
	if a.memory > 4<<20 {
		return nil, fmt.Errorf("argon2id memory %d KiB is over 4 GiB", a.memory)
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return nil, errors.New("argon2id salt is not base64")
	}
	if a.hash, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.hash) < 16 {
		return nil, errors.New("argon2id hash is not base64 of 16 bytes or more")
	}
	return a, nil
}
