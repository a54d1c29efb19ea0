package audit

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

func testSession() *gateway.Session {
	return &gateway.Session{
		ID:       "5e55", // short ids keep expected lines readable
		Started:  time.Date(2026, 11, 26, 2, 14, 0, 123456789, time.UTC),
		Gateway:  "site-a-gw1",
		Listener: "plc1",
		Protocol: "modbus",
		Source: gateway.Source{
			IP: netip.MustParseAddr("10.0.0.5"), Port: 50123, Name: "ews-1", Owner: "controls team",
		},
		Principal: gateway.Principal{User: "alice", Auth: gateway.AuthInventory, Roles: []string{"engineer"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 1},
	}
}

// writeCall is a Modbus write of two registers: state-changing, durable.
func writeCall(id string) *gateway.Call {
	c := &gateway.Call{
		ID:     id,
		Time:   time.Date(2026, 11, 26, 2, 14, 27, 123456789, time.UTC),
		Target: gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 1},
		Operation: gateway.Operation{
			Function: "write_multiple_registers", Access: gateway.AccessWrite,
		},
	}
	c.Operation.Int(gateway.KeyCode, 16)
	c.Operation.Int(gateway.KeyAddress, 100)
	c.Operation.Int(gateway.KeyQuantity, 2)
	c.Operation.Ints(gateway.KeyValues, []int64{1, 2})
	return c
}

// readCall is a Modbus read: not durable on return.
func readCall(id string) *gateway.Call {
	c := &gateway.Call{
		ID:     id,
		Time:   time.Date(2026, 11, 26, 2, 14, 28, 0, time.UTC),
		Target: gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: 1},
		Operation: gateway.Operation{
			Function: "read_holding_registers", Access: gateway.AccessRead,
		},
	}
	c.Operation.Int(gateway.KeyCode, 3)
	c.Operation.Int(gateway.KeyAddress, 0)
	c.Operation.Int(gateway.KeyQuantity, 10)
	return c
}

func allow() gateway.Decision {
	return gateway.Decision{Allow: true, Reasons: []string{"engineer_in_window"}, Revision: "r42", ID: "d1", Mode: "enforce"}
}

// faultFile is an *os.File whose writes, truncations and fsyncs can fail
// or be slowed down.
type faultFile struct {
	*os.File
	mu            sync.Mutex
	limit         int64 // writes ending past this offset fail with ENOSPC after writing up to it; -1 for none
	failTruncates int   // how many Truncate calls fail
	syncDelay     time.Duration
	syncErr       error
	syncs         atomic.Int64
	// beforeWrite runs once, at the next write, before it: the writer holds
	// its lock, so nothing of the writer's runs between the two.
	beforeWrite func()
	// beforeSync runs once, at the next fsync, before it: in the sync
	// loop, after it let go of the writer's lock.
	beforeSync func()
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	limit, before := f.limit, f.beforeWrite
	f.beforeWrite = nil
	f.mu.Unlock()
	if before != nil {
		before()
	}
	if limit >= 0 && off+int64(len(p)) > limit {
		n := 0
		if limit > off { // a partial write, the worst case for the chain
			n, _ = f.File.WriteAt(p[:limit-off], off)
		}
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Truncate(size int64) error {
	f.mu.Lock()
	fail := f.failTruncates > 0
	if fail {
		f.failTruncates--
	}
	f.mu.Unlock()
	if fail {
		return &os.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}

func (f *faultFile) Sync() error {
	f.syncs.Add(1)
	f.mu.Lock()
	delay, err, before := f.syncDelay, f.syncErr, f.beforeSync
	f.beforeSync = nil
	f.mu.Unlock()
	if before != nil {
		before()
	}
	time.Sleep(delay)
	if err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) set(fn func(f *faultFile)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
}

// syncBuffer is an operational log that the test and the writer's
// goroutines share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testLog struct {
	path string
	opts Options
	ff   *faultFile // set when opened through faults
	log  *syncBuffer
}

func newTestLog(t testing.TB) *testLog {
	t.Helper()
	l := &testLog{path: filepath.Join(t.TempDir(), "audit", "audit.jsonl"), log: &syncBuffer{}}
	l.opts = Options{Path: l.path, Gateway: "site-a-gw1", SyncInterval: time.Hour, Log: zerolog.New(l.log)}
	return l
}

// withFaults makes the next Open go through a faultFile.
func (l *testLog) withFaults() *testLog {
	l.opts.openFile = func(path string) (file, error) {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			return nil, err
		}
		l.ff = &faultFile{File: f, limit: -1}
		return l.ff, nil
	}
	return l
}

func (l *testLog) open(t testing.TB) *Writer {
	t.Helper()
	w, err := Open(l.opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func (l *testLog) lines(t testing.TB) [][]byte {
	t.Helper()
	b, err := os.ReadFile(l.path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// verify checks the whole file and that it holds want records.
func (l *testLog) verify(t testing.TB, want uint64) Report {
	t.Helper()
	rep, err := VerifyFiles(l.path)
	if err != nil {
		t.Fatalf("VerifyFiles: %v", err)
	}
	if rep.Records != want || rep.LastSeq != rep.FirstSeq+want-1 {
		t.Fatalf("verified %d records, seq %d..%d; want %d", rep.Records, rep.FirstSeq, rep.LastSeq, want)
	}
	return rep
}

// writeSome writes n call records (reads) and fails the test on error.
func writeSome(t testing.TB, w *Writer, n int) {
	t.Helper()
	s := testSession()
	for i := range n {
		if err := w.Call(context.Background(), s, readCall("c"+string(rune('a'+i%26))), allow()); err != nil {
			t.Fatal(err)
		}
	}
}
