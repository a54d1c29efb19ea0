package main

import (
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
)

// usersReloader is an engine with a users file that can be read again
// while it serves (the OPC UA engine).
type usersReloader interface {
	UsersFile() string
	ReloadUsers() (opcua.UsersReload, error)
}

var _ usersReloader = (*opcua.Engine)(nil)

// usersWatches makes a watch for each listener whose engine has a users
// file: users.load and users.load_failed records.
func usersWatches(gws []*gateway.Listener, aw recorder, log zerolog.Logger) []*fileWatch {
	var out []*fileWatch
	for _, g := range gws {
		r, ok := g.Engine.(usersReloader)
		if !ok || r.UsersFile() == "" {
			continue
		}
		out = append(out, newUsersWatch(g.Name, r, aw, log))
	}
	return out
}

func newUsersWatch(listener string, eng usersReloader, aw recorder, log zerolog.Logger) *fileWatch {
	path := eng.UsersFile()
	return &fileWatch{listener: listener, kind: "users", paths: []string{path}, aw: aw,
		log: log.With().Str("listener", listener).Str("path", path).Logger(),
		load: func() (loaded, error) {
			r, err := eng.ReloadUsers()
			out := loaded{unchanged: err == nil && r.Unchanged(),
				msg:     "users file loaded: new logins use it; open sessions stay open",
				failMsg: "users file not loaded; the users in force stay"}
			out.fields = func(e *zerolog.Event) {
				e.Str("path", path).Int("users", r.Users)
				if err == nil {
					e.Strs("added", r.Added).Strs("removed", r.Removed).Strs("changed", r.Changed)
				}
			}
			return out, err
		}}
}
