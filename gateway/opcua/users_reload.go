package opcua

import "errors"

// UsersFile is the users file the engine checks passwords against: "" when
// it has none (users: passthrough, or no user name logins).
func (e *Engine) UsersFile() string {
	if e.opts.Users == UsersPassthrough {
		return ""
	}
	return e.opts.Users
}

// UsersReload is what a reload of the users file found.
type UsersReload struct {
	Users                   int      // users in force after the reload
	Added, Removed, Changed []string // user names, sorted (Changed: a new hash or new roles)
}

// Unchanged says whether the reload left every user as it was.
func (r UsersReload) Unchanged() bool {
	return len(r.Added)+len(r.Removed)+len(r.Changed) == 0
}

// ReloadUsers reads the users file again and, when it loads, puts it in
// force for every login from now on; sessions already open stay open,
// whoever they belong to. When it does not load, the users in force stay,
// and the error names the file and line at fault.
func (e *Engine) ReloadUsers() (UsersReload, error) {
	path := e.UsersFile()
	if path == "" {
		return UsersReload{}, errors.New("the listener has no users file")
	}
	old := e.users.Load()
	next, err := LoadUsers(path)
	if err != nil {
		return UsersReload{Users: old.Len()}, err
	}
	r := UsersReload{Users: next.Len()}
	r.Added, r.Removed, r.Changed = old.Diff(next)
	if r.Unchanged() {
		return r, nil // the old set is as good, and keeps its dummy
	}
	e.users.Store(next)
	return r, nil
}
