package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/interlock-ics/interlock/gateway/opcua"
)

const usersAddSynopsis = "--file FILE --user NAME [--roles R,…] [--password-stdin]"

func init() {
	register(command{group: "users", name: "add", synopsis: usersAddSynopsis,
		run: cmdUsersAdd, help: "add a user, or give one a new password (and new roles with --roles), in an OPC UA users file, with a bcrypt hash"})
}

// bcryptCost is the work factor of the hashes users add writes: about 0.2 s
// of CPU per check on the machines this runs on, paid once per login.
const bcryptCost = 12

func cmdUsersAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("users add", "users add "+usersAddSynopsis, stderr)
	file := fs.String("file", "", "the users `file` (opcua.users of a listener); created with mode 0600 when missing")
	user := fs.String("user", "", fmt.Sprintf("user `name` as the client logs in: UTF-8, up to %d bytes, no control characters, no space at either end (spaces inside are fine)", opcua.MaxUserNameBytes))
	roles := fs.String("roles", "", "comma-separated `roles`, the principal.roles of the policy input (an existing user keeps its roles when omitted; --roles '' clears them)")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input instead of asking on the terminal (for scripts)")
	if err := parse(fs, args); err != nil {
		return err
	}
	rolesGiven := false
	fs.Visit(func(f *flag.Flag) { rolesGiven = rolesGiven || f.Name == "roles" })
	switch {
	case *file == "":
		return usageErr("users add: --file is required")
	case *user == "":
		return usageErr("users add: --user is required")
	case fs.NArg() > 0:
		return usageErr("users add: unexpected argument %q", fs.Arg(0))
	}
	// The gateway's loader refuses the same names: a file users add wrote
	// always loads.
	if err := opcua.CheckUserName(*user); err != nil {
		return usageErr("users add: --user %s %v; nothing written", opcua.QuoteUserName(*user), err)
	}
	// The folder is not made: a typo in --file would hide the file where
	// the gateway never looks. Checked before the password is asked for.
	if dir := filepath.Dir(*file); dir != "" {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("users add: --file %s: the folder %s does not exist; create it first (users add makes the file, not its folder)", *file, dir)
		case err != nil:
			return fmt.Errorf("users add: --file %s: %v", *file, err)
		case !fi.IsDir():
			return fmt.Errorf("users add: --file %s: %s is not a folder", *file, dir)
		}
	}
	password, err := readPassword(*user, *fromStdin, stdin, stderr)
	if err != nil {
		return err
	}
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("users add: the password for %s %v; nothing written", *user, err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("users add: %v", err)
	}

	var list []opcua.User
	if b, err := os.ReadFile(*file); err == nil {
		if _, err := opcua.LoadUsers(*file); err != nil && len(strings.TrimSpace(string(b))) > 0 {
			return fmt.Errorf("users add: %v", err)
		}
		if err := yaml.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("users add: %s: %v", *file, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("users add: %v", err)
	}
	entry := opcua.User{Name: *user, PasswordHash: string(hash)}
	for r := range strings.SplitSeq(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			entry.Roles = append(entry.Roles, r)
		}
	}
	verb := "added"
	replaced := false
	for i := range list {
		if list[i].Name == *user {
			if !rolesGiven {
				entry.Roles = list[i].Roles // a new password only
			}
			list[i], replaced, verb = entry, true, "updated"
		}
	}
	if !replaced {
		list = append(list, entry)
	}
	out, err := yaml.Marshal(list)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*file), ".users-*.yaml")
	if err != nil {
		return fmt.Errorf("users add: %v", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(out)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), *file)
	}
	if err != nil {
		return fmt.Errorf("users add: writing %s: %v", *file, err)
	}
	fmt.Fprintf(stdout, "%s %s in %s (roles: %s)\n", verb, *user, *file, strings.Join(entry.Roles, ","))
	fmt.Fprintf(stdout, "a running gateway uses the file for new logins within two polls (policy.reload_interval) or at once on SIGHUP;"+
		" a policy that lists its users (data.opcua.users in examples/opcua) must list %s too\n", *user)
	return nil
}

// Password bounds: bcrypt hashes at most 72 bytes; a first line of standard
// input is read up to maxPasswordRead bytes, so a stream without a newline
// is not read whole.
const (
	maxPasswordBytes = 72
	maxPasswordRead  = 1024
)

// checkPassword refuses a password no client would send: empty, too long
// for the hash, not UTF-8 (clients send UTF-8), or with a control
// character (a tab, an escape: a paste gone wrong).
func checkPassword(pw string) error {
	switch {
	case pw == "":
		return errors.New("is empty")
	case len(pw) > maxPasswordRead:
		return fmt.Errorf("is over %d bytes", maxPasswordRead)
	case len(pw) > maxPasswordBytes:
		return fmt.Errorf("is %d bytes; the bcrypt hash of the users file takes at most %d", len(pw), maxPasswordBytes)
	}
	for i, r := range pw {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(pw[i:], "\uFFFD"):
			return fmt.Errorf("is not UTF-8 text (byte %d), which clients send", i+1)
		case unicode.IsControl(r):
			return fmt.Errorf("holds a control character (%U at byte %d), which no client sends from a login field", r, i+1)
		}
	}
	return nil
}

// readPassword asks for the password on a terminal without echo, twice, and
// compares; with --password-stdin, or when standard input is no terminal
// (a script), it reads the first line of standard input.
func readPassword(user string, fromStdin bool, stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && !fromStdin && term.IsTerminal(int(f.Fd())) {
		ask := func(prompt string) (string, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
			if err != nil {
				return "", fmt.Errorf("users add: reading the password: %v", err)
			}
			return string(b), nil
		}
		first, err := ask(fmt.Sprintf("password for %s: ", user))
		if err != nil || first == "" {
			return first, err
		}
		again, err := ask(fmt.Sprintf("password for %s again: ", user))
		if err != nil {
			return "", err
		}
		if again != first {
			return "", errors.New("users add: the passwords do not match; nothing written")
		}
		return first, nil
	}
	if !fromStdin {
		fmt.Fprintf(stderr, "password for %s (first line of standard input): ", user)
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, maxPasswordRead+3)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("users add: reading the password: %v", err)
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if len(line) > maxPasswordRead {
		return "", fmt.Errorf("users add: the password for %s (the first line of standard input) is over %d bytes; nothing written", user, maxPasswordRead)
	}
	return line, nil
}
