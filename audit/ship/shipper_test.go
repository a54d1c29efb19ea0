package ship

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

func TestCursorPersistsAndResumes(t *testing.T) {
	l := newTestLog(t)
	l.add(100, "call", "")
	c := &collect{}
	s := startShipper(t, l, c, nil)
	waitSeqs(t, c, seqRange(1, 100))
	stopShipper(s)

	cur, ok, err := ReadCursor(CursorPath(l.path, "test"))
	if err != nil || !ok {
		t.Fatalf("cursor: %v %v", ok, err)
	}
	fi, _ := os.Stat(l.path)
	if cur.File != "audit.jsonl" || cur.Offset != fi.Size() || cur.Seq != 100 || cur.Hash != hashOf([]byte(l.lines[100])) {
		t.Fatalf("cursor = %+v, want audit.jsonl at %d, seq 100 with its hash", cur, fi.Size())
	}

	// A new shipper (a restart) goes on after the cursor: nothing twice.
	l.add(50, "result", "")
	c2 := &collect{}
	startShipper(t, l, c2, nil)
	waitSeqs(t, c2, seqRange(101, 150))
}

func TestPartialLineWaits(t *testing.T) {
	l := newTestLog(t)
	l.add(3, "call", "")
	next := l.line("call", "") + "\n"
	l.write(next[:40]) // the writer is half way through a record
	c := &collect{}
	s := startShipper(t, l, c, nil)
	waitSeqs(t, c, seqRange(1, 3))
	time.Sleep(50 * time.Millisecond)
	if got := c.got(); len(got) != 3 {
		t.Fatalf("shipped %v before the line was complete", got)
	}
	l.write(next[40:])
	waitSeqs(t, c, seqRange(1, 4))
	stopShipper(s)
	cur, _, _ := ReadCursor(CursorPath(l.path, "test"))
	if cur.Seq != 4 {
		t.Fatalf("cursor seq %d, want 4", cur.Seq)
	}
}

func TestFollowsRotation(t *testing.T) {
	l := newTestLog(t)
	l.add(100, "call", "")
	c := &collect{}
	startShipper(t, l, c, func(o *Options) { o.BatchRecords = 7 })
	waitSeqs(t, c, seqRange(1, 100))

	// The writer finishes the file, renames it out, and the next file
	// begins with audit.rotated.
	l.add(20, "call", "")
	rotated := l.rotate()
	l.add(1, "audit.rotated", `,"previous":"`+filepath.Base(rotated)+`"`)
	l.add(29, "call", "")
	waitSeqs(t, c, seqRange(1, 150))

	// Records written into the renamed file after the rename (before the
	// next file begins) are not lost either.
	l.add(10, "call", "")
	rotated2 := l.rotate()
	f, err := os.OpenFile(rotated2, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(l.line("audit.checkpoint", "") + "\n")
	f.Close()
	time.Sleep(30 * time.Millisecond)
	l.add(1, "audit.rotated", "")
	l.add(9, "call", "")
	waitSeqs(t, c, seqRange(1, 171))
}

func TestResumesAfterRotationWhileStopped(t *testing.T) {
	l := newTestLog(t)
	l.add(40, "call", "")
	c := &collect{}
	s := startShipper(t, l, c, nil)
	waitSeqs(t, c, seqRange(1, 40))
	stopShipper(s)

	// While the gateway is down the cursor's file is rotated out from
	// under it: the cursor still says audit.jsonl.
	l.add(10, "call", "")
	l.rotate()
	l.add(1, "audit.rotated", "")
	l.add(9, "call", "")
	c2 := &collect{}
	s2 := startShipper(t, l, c2, nil)
	waitSeqs(t, c2, seqRange(41, 60))
	stopShipper(s2)
	cur, _, _ := ReadCursor(CursorPath(l.path, "test"))
	if cur.File != "audit.jsonl" || cur.Seq != 60 {
		t.Fatalf("cursor %+v, want the new live file at seq 60", cur)
	}
	if st := s2.Stats(); st.Diverged != 0 || st.Gaps != 0 {
		t.Fatalf("stats %+v: a rotation is neither a divergence nor a gap", st)
	}
}

func TestRewrittenLogIsShippedAgain(t *testing.T) {
	l := newTestLog(t)
	l.add(30, "call", "")
	c := &collect{}
	s := startShipper(t, l, c, nil)
	waitSeqs(t, c, seqRange(1, 30))
	stopShipper(s)

	// The log is replaced by another one whose record 30 differs: the
	// shipper cannot know what the receiver has, so it sends the file again.
	os.Remove(l.path)
	l.seq, l.prev = 0, "0000000000000000000000000000000000000000000000000000000000000000"
	l.add(35, "session.open", "")
	c2 := &collect{}
	s2 := startShipper(t, l, c2, nil)
	waitSeqs(t, c2, seqRange(1, 35))
	if st := s2.Stats(); st.Diverged != 1 {
		t.Fatalf("Diverged = %d, want 1", st.Diverged)
	}
}

// The end of an outage is logged with its length in outage_ms, as README
// says.
func TestRetriesUntilTheSinkTakesThem(t *testing.T) {
	l := newTestLog(t)
	l.add(50, "call", "")
	c := &collect{}
	down := errors.New("connection refused")
	c.setFail(func([]Record) error { return down })
	var logs gatewaytest.LogBuffer
	s := startShipper(t, l, c, func(o *Options) { o.Log = zerolog.New(&logs) })
	waitFor(t, "failed attempts", func() (bool, string) {
		st := s.Stats()
		return st.Errors >= 3 && st.Down, st.LastError
	})
	if st := s.Stats(); st.LastError != "connection refused" || st.LagBytes == 0 {
		t.Fatalf("stats during the outage: %+v", st)
	}
	c.setFail(nil)
	waitSeqs(t, c, seqRange(1, 50))
	waitFor(t, "outage over", func() (bool, string) {
		st := s.Stats()
		return !st.Down && st.LagBytes == 0 && st.Seq == 50, ""
	})
	if !regexp.MustCompile(`"outage_ms":[0-9]+,"attempts":[0-9]+,.*"message":"ship: delivering audit records again"`).MatchString(logs.String()) {
		t.Errorf("the end of the outage is not logged with outage_ms (whole milliseconds) and attempts:\n%s", logs.String())
	}
}

func TestRotationDuringOutage(t *testing.T) {
	for _, shippedFirst := range []int{0, 5} {
		l := newTestLog(t)
		l.add(5, "call", "")
		c := &collect{}
		if shippedFirst == 0 {
			c.setFail(func([]Record) error { return errors.New("down") })
		}
		s := startShipper(t, l, c, nil)
		if shippedFirst > 0 {
			waitSeqs(t, c, seqRange(1, 5))
			c.setFail(func([]Record) error { return errors.New("down") })
		}
		// While the receiver is down the live file rotates, twice.
		l.add(20, "call", "")
		l.rotate()
		l.add(1, "audit.rotated", "")
		l.add(20, "call", "")
		l.rotate()
		l.add(1, "audit.rotated", "")
		l.add(3, "call", "")
		waitFor(t, "failed attempts", func() (bool, string) { return s.Stats().Errors >= 2, "" })
		c.setFail(nil)
		waitSeqs(t, c, seqRange(1, 50))
		stopShipper(s)
	}
}

func TestOldestNeeded(t *testing.T) {
	l := newTestLog(t)
	l.add(10, "call", "")
	r1 := l.rotate()
	l.add(10, "call", "")
	r2 := l.rotate()
	l.add(10, "call", "")

	names := []string{CursorPath(l.path, "a"), CursorPath(l.path, "b")}
	if got, _ := OldestNeeded(l.path, names); got != r1 {
		t.Fatalf("without cursors: %s, want the oldest file %s", got, r1)
	}
	write := func(name string, seq uint64) {
		if err := writeCursor(CursorPath(l.path, name), Cursor{File: "x", Offset: 1, Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	write("a", 25)
	write("b", 9)
	if got, _ := OldestNeeded(l.path, names); got != r1 {
		t.Fatalf("b at seq 9: %s, want %s (its record 10 is not shipped)", got, r1)
	}
	write("b", 10)
	if got, _ := OldestNeeded(l.path, names); got != r2 {
		t.Fatalf("b at seq 10: %s, want %s", got, r2)
	}
	write("b", 30)
	if got, _ := OldestNeeded(l.path, names); got != l.path {
		t.Fatalf("all shipped: %s, want the live file", got)
	}
	if got, _ := OldestNeeded(l.path, nil); got != "" {
		t.Fatalf("no shippers: %q, want none", got)
	}
}

// Retention may delete a rotated file once every record in it was
// delivered (OldestNeeded). A shipper whose cursor names the last record of
// that file goes on with the next file: nothing to report, nothing sent
// twice.
func TestResumesAfterRetentionDeletedTheCursorsFile(t *testing.T) {
	l := newTestLog(t)
	l.add(30, "call", "")
	c := &collect{}
	s := startShipper(t, l, c, nil)
	waitSeqs(t, c, seqRange(1, 30))
	stopShipper(s)

	rotated := l.rotate()
	l.add(1, "audit.rotated", "")
	l.add(9, "call", "")
	cursor := CursorPath(l.path, "test")
	if got, err := OldestNeeded(l.path, []string{cursor}); err != nil || got != l.path {
		t.Fatalf("OldestNeeded = %q, %v; want the live file: the rotated one is delivered", got, err)
	}
	if err := os.Remove(rotated); err != nil {
		t.Fatal(err)
	}
	c2 := &collect{}
	s2 := startShipper(t, l, c2, nil)
	waitSeqs(t, c2, seqRange(31, 40))
	if st := s2.Stats(); st.Diverged != 0 || st.Gaps != 0 {
		t.Fatalf("stats %+v: the log lost nothing that was not delivered", st)
	}

	// Retention that deleted records not delivered yet is a divergence:
	// the shipper says so and ships what is left.
	stopShipper(s2)
	if err := writeCursor(cursor, Cursor{File: filepath.Base(rotated), Offset: 10, Seq: 20, Hash: hashOf([]byte(l.lines[20]))}); err != nil {
		t.Fatal(err)
	}
	c3 := &collect{}
	s3 := startShipper(t, l, c3, nil)
	waitSeqs(t, c3, seqRange(31, 40))
	if st := s3.Stats(); st.Diverged != 1 {
		t.Fatalf("Diverged = %d, want 1: records 21..30 are gone", st.Diverged)
	}
}

// Stop of a shipper that never started returns at once.
func TestStopWithoutStart(t *testing.T) {
	s, err := New(Options{Name: "x", Path: filepath.Join(t.TempDir(), "audit.jsonl"), Sink: &collect{}})
	if err != nil {
		t.Fatal(err)
	}
	stopShipper(s)
}
