package ship

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// testLog writes a hash-chained log the way the audit writer does, so that
// tests can rotate, cut and damage it at will.
type testLog struct {
	t     testing.TB
	path  string
	seq   uint64
	prev  string
	first uint64 // seq of the live file's first record
	lines map[uint64]string
}

func newTestLog(t testing.TB) *testLog {
	t.Helper()
	dir := t.TempDir()
	return &testLog{t: t, path: filepath.Join(dir, "audit.jsonl"), prev: audit.GenesisPrev, lines: map[uint64]string{}}
}

// line builds the record seq with the given event and extra fields.
func (l *testLog) line(event, extra string) string {
	l.seq++
	body := fmt.Sprintf(`{"seq":%d,"time":"%s","event":%q,"gateway":"gw1"%s,"prev":"%s"}`,
		l.seq, time.Now().UTC().Format("2006-01-02T15:04:05.000000000Z"), event, extra, l.prev)
	sum := sha256.Sum256([]byte(body))
	h := hex.EncodeToString(sum[:])
	l.prev = h
	line := body[:len(body)-1] + `,"hash":"` + h + `"}`
	l.lines[l.seq] = line
	return line
}

// add appends n records to the live file.
func (l *testLog) add(n int, event, extra string) {
	l.t.Helper()
	var b strings.Builder
	for range n {
		if _, err := os.Stat(l.path); err != nil && b.Len() == 0 {
			l.first = l.seq + 1
		}
		b.WriteString(l.line(event, extra))
		b.WriteByte('\n')
	}
	l.write(b.String())
}

func (l *testLog) write(s string) {
	l.t.Helper()
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		l.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		l.t.Fatal(err)
	}
}

// rotate renames the live file out; the next add starts a new one.
func (l *testLog) rotate() string {
	l.t.Helper()
	to := audit.RotatedName(l.path, time.Now(), l.first)
	if err := os.Rename(l.path, to); err != nil {
		l.t.Fatal(err)
	}
	return to
}

// collect is a sink that keeps copies of what it took and can be told to
// fail.
type collect struct {
	mu    sync.Mutex
	lines []string
	seqs  []uint64
	fail  func(recs []Record) error // nil: take everything
	sends int
}

func (c *collect) Send(_ context.Context, recs []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sends++
	if c.fail != nil {
		if err := c.fail(recs); err != nil {
			return err
		}
	}
	for _, r := range recs {
		c.lines = append(c.lines, string(r.Line))
		c.seqs = append(c.seqs, r.Seq)
	}
	return nil
}

func (c *collect) Close(context.Context) error { return nil }

func (c *collect) got() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.seqs...)
}

func (c *collect) setFail(f func([]Record) error) {
	c.mu.Lock()
	c.fail = f
	c.mu.Unlock()
}

// startShipper starts a shipper with short test timings.
func startShipper(t *testing.T, l *testLog, sink Sink, edit func(*Options)) *Shipper {
	t.Helper()
	opts := Options{
		Name: "test", Path: l.path, Sink: sink,
		Poll: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, ConfirmAfter: 50 * time.Millisecond,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
	if edit != nil {
		edit(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopShipper(s) })
	return s
}

func stopShipper(s *Shipper) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(ctx)
}

// waitFor polls cond until it holds or fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s; last: %s", what, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// seqRange is from..to.
func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waitSeqs waits until the sink took exactly want, in order.
func waitSeqs(t *testing.T, c *collect, want []uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("records 1..%d shipped", len(want)), func() (bool, string) {
		got := c.got()
		return equalSeqs(got, want), summarize(got)
	})
}

func summarize(s []uint64) string {
	if len(s) <= 12 {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%d records: %v … %v", len(s), s[:6], s[len(s)-6:])
}
