package main

import (
	"context"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// recorder writes a gateway-level audit record (audit.Writer.Record).
type recorder interface {
	Record(event string, durable bool, fields func(e *zerolog.Event)) error
}

// fileWatch keeps what one listener reads from files in force (its OPC UA
// users file and trust lists, its TLS certificate and trust): on SIGHUP, and when a file's
// size or modification time changed and then stayed the same for one poll,
// so that a file caught half written is not read. Files that do not load
// leave what is in force; each distinct failure is audited once. The
// records are KIND.load and KIND.load_failed.
type fileWatch struct {
	listener, kind string
	paths          []string
	load           func() (loaded, error)
	aw             recorder
	log            zerolog.Logger

	mu       sync.Mutex
	loaded   []fileSig // the files as they were when last read (nil at start: read again once settled)
	seen     []fileSig // the files at the last poll
	lastFail string    // the failure last audited; "" after a load
}

// loaded is what a fileWatch's load did.
type loaded struct {
	unchanged bool                   // the files hold what is in force: nothing recorded
	fields    func(e *zerolog.Event) // for the record and the log line, on failure what stays in force
	msg       string                 // the log line of a load
	failMsg   string                 // the log line of a failure
}

// fileSig is what a poll sees of a file: size and modification time, or
// why it could not be seen. Of a folder it is the number of its files,
// their sizes added up, and the latest modification time of the folder and
// its files: a file added, removed, renamed in or written changes it.
type fileSig struct {
	size  int64
	files int
	mtime time.Time
	err   string
}

func statSig(path string) fileSig {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{err: err.Error()}
	}
	if !fi.IsDir() {
		return fileSig{size: fi.Size(), mtime: fi.ModTime()}
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return fileSig{err: err.Error()}
	}
	sig := fileSig{mtime: fi.ModTime(), files: len(ents)}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed since the listing: the folder's time says so
		}
		sig.size += info.Size()
		if info.ModTime().After(sig.mtime) {
			sig.mtime = info.ModTime()
		}
	}
	return sig
}

func (w *fileWatch) stat() []fileSig {
	out := make([]fileSig, len(w.paths))
	for i, p := range w.paths {
		out[i] = statSig(p)
	}
	return out
}

// pollWatches polls every watch each interval until ctx is done.
func pollWatches(ctx context.Context, ws []*fileWatch, interval time.Duration) {
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

// poll reads the files again when they changed since they were last read
// and look the same as at the poll before.
func (w *fileWatch) poll() {
	sig := w.stat()
	w.mu.Lock()
	defer w.mu.Unlock()
	settled := slices.Equal(sig, w.seen)
	w.seen = sig
	if slices.Equal(sig, w.loaded) || !settled {
		return
	}
	w.reload(sig, "file changed")
}

// reloadNow reads the files whatever they look like (SIGHUP).
func (w *fileWatch) reloadNow() {
	sig := w.stat()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reload(sig, "SIGHUP")
}

// reload reads the files, sig as stat saw them just before; w.mu is held.
func (w *fileWatch) reload(sig []fileSig, why string) {
	w.loaded = sig
	r, err := w.load()
	// The log's lines name the listener already; the records do here.
	logFields := func(e *zerolog.Event) {
		if r.fields != nil {
			r.fields(e)
		}
	}
	fields := func(e *zerolog.Event) {
		e.Str("listener", w.listener)
		logFields(e)
	}
	if err != nil {
		ev := w.log.Error().Err(err).Str("trigger", why)
		logFields(ev)
		ev.Msg(r.failMsg)
		if err.Error() == w.lastFail {
			return // audited already
		}
		w.lastFail = err.Error()
		event := w.kind + ".load_failed"
		if aerr := w.aw.Record(event, true, func(e *zerolog.Event) { fields(e); e.Str("error", err.Error()) }); aerr != nil {
			w.log.Error().Err(aerr).Msg(event + " is not in the audit log")
		}
		return
	}
	w.lastFail = ""
	if r.unchanged {
		if why == "SIGHUP" {
			ev := w.log.Info()
			logFields(ev)
			ev.Msg("SIGHUP: " + w.kind + " files unchanged")
		}
		return
	}
	ev := w.log.Info().Str("trigger", why)
	logFields(ev)
	ev.Msg(r.msg)
	event := w.kind + ".load"
	if aerr := w.aw.Record(event, true, fields); aerr != nil {
		w.log.Error().Err(aerr).Msg(event + " is not in the audit log")
	}
}
