package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for Options.now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// signed makes l sign checkpoints with a new key; timers are an hour away
// unless the test sets them.
func (l *testLog) signed(t testing.TB) ed25519.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	l.opts.SigningKey, l.opts.BootID = priv, "boot-1"
	l.opts.CheckpointInterval = time.Hour
	return pub
}

// rec is one record of a log as the tests read it.
type rec struct {
	file string // base name
	line int
	raw  []byte
	m    map[string]any
}

func (r rec) event() string { s, _ := r.m["event"].(string); return s }
func (r rec) seq() uint64   { f, _ := r.m["seq"].(float64); return uint64(f) }
func (r rec) str(k string) string {
	var v any = r.m
	for _, p := range strings.Split(k, ".") {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return fmt.Sprint(uint64(x))
	}
	return ""
}

// readLog reads every record of the log whose live file is path, in chain
// order.
func readLog(t testing.TB, path string) []rec {
	t.Helper()
	files, err := LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by retention since it was listed
		}
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range bytes.SplitAfter(b, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			r := rec{file: filepath.Base(f), line: i + 1, raw: line}
			if err := json.Unmarshal(line, &r.m); err != nil {
				t.Fatalf("%s:%d: %v", f, i+1, err)
			}
			out = append(out, r)
		}
	}
	return out
}

// signedBytesFromDoc builds the signed bytes as doc.go defines them, apart
// from the package's own code.
func signedBytesFromDoc(r rec) []byte {
	return []byte("interlock-audit-checkpoint-v1\n" +
		"gateway=" + r.str("gateway") + "\n" +
		"seq=" + r.str("checkpoint.seq") + "\n" +
		"hash=" + r.str("checkpoint.hash") + "\n" +
		"time=" + r.str("checkpoint.time") + "\n" +
		"boot_id=" + r.str("checkpoint.boot_id") + "\n" +
		"key_id=" + r.str("checkpoint.key_id") + "\n" +
		"reason=" + r.str("checkpoint.reason") + "\n" +
		"every=" + r.str("checkpoint.every") + "\n" +
		"interval_ms=" + r.str("checkpoint.interval_ms") + "\n")
}

func TestCheckpointSignedBytes(t *testing.T) {
	c := Checkpoint{Gateway: "site-a-gw1", Seq: 1000, Hash: strings.Repeat("ab", 32), Time: "2026-11-26T02:14:27.123456789Z",
		BootID: "b00t", KeyID: "0123456789abcdef", Reason: CheckpointCount, Every: 1000, IntervalMS: 60000}
	want := "interlock-audit-checkpoint-v1\ngateway=site-a-gw1\nseq=1000\nhash=" + strings.Repeat("ab", 32) +
		"\ntime=2026-11-26T02:14:27.123456789Z\nboot_id=b00t\nkey_id=0123456789abcdef\nreason=count\nevery=1000\ninterval_ms=60000\n"
	if got := string(c.SignedBytes(nil)); got != want {
		t.Errorf("signed bytes:\n%s\nwant\n%s", got, want)
	}
}

// Every checkpoint verifies with the public key over the bytes the package
// doc defines, covers the record before it, and no more than every records
// follow one unsigned.
func TestCheckpointEveryRecords(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointEvery = 5
	w := l.open(t)
	writeSome(t, w, 12)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs := readLog(t, l.path)
	var events []string
	for _, r := range recs {
		e := r.event()
		if e == EventCheckpoint {
			e = "cp:" + r.str("checkpoint.reason")
		}
		events = append(events, e)
	}
	want := "cp:open call call call call call cp:count call call call call call cp:count call call cp:shutdown"
	if got := strings.Join(events, " "); got != want {
		t.Fatalf("records:\n%s\nwant\n%s", got, want)
	}
	prevHash := GenesisPrev
	for _, r := range recs {
		if r.event() == EventCheckpoint {
			if r.str("checkpoint.seq") != fmt.Sprint(r.seq()-1) || r.str("checkpoint.hash") != prevHash || r.str("prev") != prevHash {
				t.Errorf("seq %d: checkpoint covers seq %s hash %s; the record before it is seq %d hash %s",
					r.seq(), r.str("checkpoint.seq"), r.str("checkpoint.hash"), r.seq()-1, prevHash)
			}
			if r.str("checkpoint.time") != r.str("time") || r.str("checkpoint.key_id") != KeyID(pub) || r.str("checkpoint.boot_id") != "boot-1" {
				t.Errorf("seq %d: checkpoint %s", r.seq(), r.raw)
			}
			sig, err := base64.StdEncoding.DecodeString(r.str("signature"))
			if err != nil || !ed25519.Verify(pub, signedBytesFromDoc(r), sig) {
				t.Errorf("seq %d: the signature does not verify over the documented bytes (%v)", r.seq(), err)
			}
		}
		prevHash = r.str("hash")
	}
	rep, err := VerifyLog([]string{l.path}, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checkpoints != 4 || rep.Unsigned != 0 || rep.KeyID != KeyID(pub) || rep.LastCheckpoint != 16 {
		t.Errorf("report %+v", rep)
	}
	if st := w.Stats(); st.Checkpoints != 4 || st.LastCheckpointSeq != 16 || st.Unsigned != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An idle log is signed by the timer within the interval.
func TestCheckpointIntervalTimer(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointInterval = 30 * time.Millisecond
	w := l.open(t)
	writeSome(t, w, 2)
	deadline := time.Now().Add(5 * time.Second)
	for w.Stats().Unsigned != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint within 5s of an interval of 30ms: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	n := w.Stats().Checkpoints
	time.Sleep(100 * time.Millisecond)
	if m := w.Stats().Checkpoints; m != n {
		t.Errorf("%d checkpoints of an idle log that is already signed", m-n)
	}
	recs := readLog(t, l.path)
	if r := recs[3]; r.event() != EventCheckpoint || r.str("checkpoint.reason") != CheckpointInterval {
		t.Errorf("record 4 is %s", r.raw)
	}
	if _, err := VerifyLog([]string{l.path}, VerifyOptions{Key: pub}); err != nil {
		t.Fatal(err)
	}
}

// A record written more than the interval after the first unsigned record
// is preceded by a checkpoint, whatever the timer does.
func TestCheckpointIntervalBeforeRecord(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	clock := newFakeClock()
	l.opts.now = clock.now
	l.opts.CheckpointInterval = time.Hour // the timer's period too: it stays quiet
	w := l.open(t)
	writeSome(t, w, 2)
	clock.add(time.Hour) // exactly the interval: still allowed
	writeSome(t, w, 1)
	clock.add(time.Nanosecond)
	writeSome(t, w, 1)
	w.Close()
	var events []string
	for _, r := range readLog(t, l.path) {
		events = append(events, r.event()+"/"+r.str("checkpoint.reason"))
	}
	want := "audit.checkpoint/open call/ call/ call/ audit.checkpoint/interval call/ audit.checkpoint/shutdown"
	if got := strings.Join(events, " "); got != want {
		t.Fatalf("records:\n%s\nwant\n%s", got, want)
	}
	if _, err := VerifyLog([]string{l.path}, VerifyOptions{Key: pub}); err != nil {
		t.Fatal(err)
	}
}

// A checkpoint that is due and cannot be written fails the record, so the
// bound on unsigned records holds; when space returns, both go out.
func TestCheckpointDueFailsRecord(t *testing.T) {
	l := newTestLog(t).withFaults()
	pub := l.signed(t)
	l.opts.CheckpointEvery = 3
	w := l.open(t)
	writeSome(t, w, 3)
	l.ff.set(func(f *faultFile) { f.limit = fileSize(t, l.path) + 100 })
	if err := w.Record("x.event", false, nil); err == nil {
		t.Fatal("a record was written while its checkpoint could not be")
	}
	l.ff.set(func(f *faultFile) { f.limit = -1 })
	if err := w.Record("x.event", false, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, err := VerifyLog([]string{l.path}, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != 8 { // open, 3 calls, count, x.event, write_failed, shutdown
		t.Errorf("report %+v", rep)
	}
}

func TestNoKeyNoCheckpoints(t *testing.T) {
	l := newTestLog(t)
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()
	for _, r := range readLog(t, l.path) {
		if r.event() == EventCheckpoint {
			t.Fatalf("a checkpoint without a key: %s", r.raw)
		}
	}
	rep, err := VerifyLog([]string{l.path}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || rep.Notes[0].Kind != NoteNotSigned {
		t.Errorf("notes %+v, want one saying the log is not signed", rep.Notes)
	}
}

func TestCheckpointOptions(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	for _, o := range []Options{
		{Path: "x", Gateway: "gw", SigningKey: priv},                        // no boot id
		{Path: "x", Gateway: "gw\nforged=1", SigningKey: priv, BootID: "b"}, // a line break in a signed value
		{Path: "x", Gateway: "gw", SigningKey: priv[:10], BootID: "b"},
	} {
		if err := o.CheckAndSetDefaults(); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
}

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	id, privPath, pubPath, err := GenerateSigningKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{privPath: 0o600, pubPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v (%v)", path, fi.Mode().Perm(), mode, err)
		}
	}
	priv, err := LoadSigningKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadVerifyKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) || KeyID(pub) != id || len(id) != 16 {
		t.Errorf("key id %s, public key does not match the private key", id)
	}
	if _, _, _, err := GenerateSigningKey(dir); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second keygen into the same directory: %v", err)
	}
	if err := os.Chmod(privPath, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigningKey(privPath); err == nil || !strings.Contains(err.Error(), privPath) || !strings.Contains(err.Error(), "0640") {
		t.Errorf("a key readable by the group: %v", err)
	}
	if _, err := LoadVerifyKey(privPath); err == nil {
		t.Error("a private key was taken as the public key")
	}
}

func TestParseCheckpointRefuses(t *testing.T) {
	l := newTestLog(t)
	l.signed(t)
	w := l.open(t)
	writeSome(t, w, 1)
	w.Close()
	line := readLog(t, l.path)[2].raw // the shutdown checkpoint
	if _, err := ParseCheckpoint(line); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string][2]string{
		"covers another seq": {`"checkpoint":{"seq":2`, `"checkpoint":{"seq":1`},
		"another time":       {`"time":"2026`, `"time":"2025`},
		"short signature":    {`"signature":"`, `"signature":"AA`},
	} {
		bad := bytes.Replace(line, []byte(edit[0]), []byte(edit[1]), 1)
		if bytes.Equal(bad, line) {
			t.Fatalf("%s: edit not applied to %s", name, line)
		}
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
