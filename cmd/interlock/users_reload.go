package main

import (
	"context"
	"os"
	"sync"
	"time"

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

// recorder writes a gateway-level audit record (audit.Writer.Record).
type recorder interface {
	Record(event string, durable bool, fields func(e *zerolog.Event)) error
}

// usersWatch keeps one listener's users file in force: on SIGHUP, and when
// the file's size or modification time changed and then stayed the same for
// one poll, so that a file caught half written is not read. A file that does
// not load leaves the users in force; each distinct failure is audited once.
type usersWatch struct {
	listener, path string
	eng            usersReloader
	aw             recorder
	log            zerolog.Logger

	mu       sync.Mutex
	loaded   fileSig // the file as it was when last read ("" at start: read again once settled)
	seen     fileSig // the file at the last poll
	lastFail string  // the failure last audited; "" after a load
}

// fileSig is what a poll sees of a file: size and modification time, or
// why it could not be seen.
type fileSig struct {
	size  int64
	mtime time.Time
	err   string
}

func statSig(path string) fileSig {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{err: err.Error()}
	}
	return fileSig{size: fi.Size(), mtime: fi.ModTime()}
}

// usersWatches makes a watch for each listener whose engine has a users file.
func usersWatches(gws []*gateway.Listener, aw recorder, log zerolog.Logger) []*usersWatch {
	var out []*usersWatch
	for _, g := range gws {
		r, ok := g.Engine.(usersReloader)
		if !ok || r.UsersFile() == "" {
			continue
		}
		out = append(out, &usersWatch{listener: g.Name, path: r.UsersFile(), eng: r, aw: aw,
			log: log.With().Str("listener", g.Name).Str("path", r.UsersFile()).Logger()})
	}
	return out
}

// pollUsers polls every watch each interval until ctx is done.
func pollUsers(ctx context.Context, ws []*usersWatch, interval time.Duration) {
	if len(ws) == 0 {
		return
	}
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, w := range ws {
			w.poll()
		}
	}
}

// poll reads the file again when it changed since it was last read and
// looks the same as at the poll before.
func (w *usersWatch) poll() {
	sig := statSig(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	settled := sig == w.seen
	w.seen = sig
	if sig == w.loaded || !settled {
		return
	}
	w.reload(sig, "file changed")
}

// reloadNow reads the file whatever it looks like (SIGHUP).
func (w *usersWatch) reloadNow() {
	sig := statSig(w.path)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reload(sig, "SIGHUP")
}

// reload reads the file, sig as stat saw it just before; w.mu is held.
func (w *usersWatch) reload(sig fileSig, why string) {
	w.loaded = sig
	r, err := w.eng.ReloadUsers()
	if err != nil {
		w.log.Error().Err(err).Int("users_in_force", r.Users).Str("trigger", why).
			Msg("users file not loaded; the users in force stay")
		if err.Error() == w.lastFail {
			return // audited already
		}
		w.lastFail = err.Error()
		if aerr := w.aw.Record("users.load_failed", true, func(e *zerolog.Event) {
			e.Str("listener", w.listener).Str("path", w.path).Int("users", r.Users).Str("error", err.Error())
		}); aerr != nil {
			w.log.Error().Err(aerr).Msg("users.load_failed is not in the audit log")
		}
		return
	}
	w.lastFail = ""
	if r.Unchanged() {
		if why == "SIGHUP" {
			w.log.Info().Int("users", r.Users).Msg("SIGHUP: users file unchanged")
		}
		return
	}
	w.log.Info().Int("users", r.Users).Strs("added", r.Added).Strs("removed", r.Removed).Strs("changed", r.Changed).
		Str("trigger", why).Msg("users file loaded: new logins use it; open sessions stay open")
	if aerr := w.aw.Record("users.load", true, func(e *zerolog.Event) {
		e.Str("listener", w.listener).Str("path", w.path).Int("users", r.Users).
			Strs("added", r.Added).Strs("removed", r.Removed).Strs("changed", r.Changed)
	}); aerr != nil {
		w.log.Error().Err(aerr).Msg("users.load is not in the audit log")
	}
}
