package opcua

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
func LoadUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list []User
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	u := &Users{byName: map[string]*User{}}
	for i := range list {
		e := &list[i]
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("%s: [%d].name: missing", path, i)
		case u.byName[e.Name] != nil:
			return nil, fmt.Errorf("%s: [%d].name: %q is listed twice", path, i, e.Name)
		}
		if err := checkHash(e.PasswordHash); err != nil {
			return nil, fmt.Errorf("%s: [%d].password_hash (user %q): %v", path, i, e.Name, err)
		}
		u.byName[e.Name] = e
		if u.dummy == "" {
			u.dummy = e.PasswordHash
		}
	}
	return u, nil
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
