package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
)

type fakeTrustEngine struct {
	folders []string
	next    opcua.TrustRecheck
	err     error
}

func (f *fakeTrustEngine) TrustFolders() []string { return f.folders }
func (f *fakeTrustEngine) RecheckTrust() (opcua.TrustRecheck, error) {
	return f.next, f.err
}

// fieldsRecorder keeps each record's event and fields as JSON decodes them.
type fieldsRecorder struct{ records []map[string]any }

func (r *fieldsRecorder) Record(event string, _ bool, fields func(e *zerolog.Event)) error {
	var b bytes.Buffer
	l := zerolog.New(&b)
	e := l.Log().Str("event", event)
	fields(e)
	e.Send()
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		return err
	}
	r.records = append(r.records, m)
	return nil
}

// A pki.load says whether the trust lists changed since the last record
// (or the first check after start): a check that ends a session or closes
// the connections to the server with the trust lists as they were, as a
// SIGHUP after a client certificate expired, is recorded with
// trust_changed false; one that changes nothing and ends nothing is not
// recorded.
func TestPKIWatchTrustChanged(t *testing.T) {
	dir := t.TempDir()
	eng := &fakeTrustEngine{folders: []string{filepath.Join(dir, "trusted", "certs"), filepath.Join(dir, "trusted", "crl")}}
	rec := &fieldsRecorder{}
	w := newPKIWatch("line1", eng, rec, zerolog.Nop())
	trust := func(digest string) certs.Summary { return certs.Summary{Trusted: 2, Digest: digest} }
	steps := []struct {
		what   string
		next   opcua.TrustRecheck
		record bool // a pki.load is written
		change bool // its trust_changed
	}{
		{"first check, nothing ended", opcua.TrustRecheck{PKI: trust("a")}, false, false},
		{"same trust lists, a certificate expired", opcua.TrustRecheck{PKI: trust("a"), SessionsEnded: 1}, true, false},
		{"same trust lists, nothing ended", opcua.TrustRecheck{PKI: trust("a")}, false, false},
		{"a CRL added", opcua.TrustRecheck{PKI: trust("b")}, true, true},
		{"the server's certificate expired", opcua.TrustRecheck{PKI: trust("b"), UpstreamDropped: 2, UpstreamError: "server certificate: expired"}, true, false},
		{"user_pki changed, a session ended", opcua.TrustRecheck{PKI: trust("b"), UserPKI: trust("u"), SessionsEnded: 1}, true, true},
		{"back to the trust lists of the last record but one", opcua.TrustRecheck{PKI: trust("b")}, true, true},
	}
	for _, s := range steps {
		before := len(rec.records)
		eng.next = s.next
		w.reloadNow()
		switch got := len(rec.records) - before; {
		case !s.record && got != 0:
			t.Fatalf("%s: %d records %v, want none", s.what, got, rec.records[before:])
		case s.record && got != 1:
			t.Fatalf("%s: %d records, want one pki.load", s.what, got)
		case s.record:
			r := rec.records[before]
			if r["event"] != "pki.load" || r["trust_changed"] != s.change ||
				r["sessions_ended"] != float64(s.next.SessionsEnded) {
				t.Fatalf("%s: record %v, want pki.load with trust_changed %v", s.what, r, s.change)
			}
		}
	}

	// The first check after start is what sessions opened under: ending a
	// session then is no change either.
	rec = &fieldsRecorder{}
	eng.next = opcua.TrustRecheck{PKI: trust("c"), SessionsEnded: 3}
	newPKIWatch("line2", eng, rec, zerolog.Nop()).reloadNow()
	if len(rec.records) != 1 || rec.records[0]["trust_changed"] != false || rec.records[0]["listener"] != "line2" {
		t.Fatalf("first check that ended sessions: records %v, want one pki.load of line2 with trust_changed false", rec.records)
	}
}
