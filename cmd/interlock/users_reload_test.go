package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway/opcua"
)

type fakeUsersEngine struct {
	path  string
	reads int
	err   error
	next  opcua.UsersReload
}

func (f *fakeUsersEngine) UsersFile() string { return f.path }
func (f *fakeUsersEngine) ReloadUsers() (opcua.UsersReload, error) {
	f.reads++
	return f.next, f.err
}

type fakeRecorder struct{ events []string }

func (r *fakeRecorder) Record(event string, _ bool, _ func(e *zerolog.Event)) error {
	r.events = append(r.events, event)
	return nil
}

// The poll reads the users file only once a change has stayed the same
// for one poll (a file caught half written is not read), and audits each
// distinct failure once, however often it is read.
func TestUsersWatchSettlesAndAuditsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.yaml")
	writeFile(t, path, "[]\n")
	eng := &fakeUsersEngine{path: path}
	rec := &fakeRecorder{}
	w := newUsersWatch("line1", eng, rec, zerolog.Nop())
	poll := func(wantReads int, what string) {
		t.Helper()
		w.poll()
		if eng.reads != wantReads {
			t.Fatalf("%s: %d reads, want %d", what, eng.reads, wantReads)
		}
	}
	poll(0, "first poll: the file is seen, not read")
	poll(1, "second poll, same size and time: read once (nothing changed, no record)")
	poll(1, "third poll, nothing changed")
	if len(rec.events) != 0 {
		t.Fatalf("records %v for a file read unchanged", rec.events)
	}

	// A change seen once is not read; the same again is.
	touch := func(text string, at time.Time) {
		t.Helper()
		writeFile(t, path, text)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	touch("- name: a\n", base)
	poll(1, "half written")
	touch("- name: a\n  password_hash: x\n", base.Add(time.Second))
	poll(1, "written on since the last poll")
	eng.next = opcua.UsersReload{Users: 1, Added: []string{"a"}}
	poll(2, "the same as at the last poll")
	if len(rec.events) != 1 || rec.events[0] != "users.load" {
		t.Fatalf("records %v, want users.load", rec.events)
	}

	// A failure: audited once for the poll and any number of SIGHUPs.
	eng.err, eng.next = errors.New(path+":2: [0].password_hash (user \"a\"): missing"), opcua.UsersReload{Users: 1}
	touch("- name: a\n", base.Add(2*time.Second))
	poll(2, "changed")
	poll(3, "settled")
	w.reloadNow()
	w.reloadNow()
	if eng.reads != 5 || len(rec.events) != 2 || rec.events[1] != "users.load_failed" {
		t.Fatalf("%d reads, records %v; want 5 reads and one users.load_failed", eng.reads, rec.events)
	}
	// Another failure is recorded; so is the first again after a load.
	eng.err = errors.New("another")
	w.reloadNow()
	eng.err = nil
	eng.next = opcua.UsersReload{Users: 1, Changed: []string{"a"}}
	w.reloadNow()
	eng.err = errors.New("another")
	w.reloadNow()
	want := []string{"users.load", "users.load_failed", "users.load_failed", "users.load", "users.load_failed"}
	if len(rec.events) != len(want) {
		t.Fatalf("records %v, want %v", rec.events, want)
	}
	for i := range want {
		if rec.events[i] != want[i] {
			t.Fatalf("records %v, want %v", rec.events, want)
		}
	}
}
