package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// checkRotatedLog asserts the shape of a rotated log: each file after the
// first begins with audit.rotated naming the file before it and continuing
// its chain; each rotated file ends with a rotation checkpoint (signed);
// seq runs from 1 without a gap. It returns the records.
func checkRotatedLog(t *testing.T, path string, signed bool) []rec {
	t.Helper()
	recs := readLog(t, path)
	for i, r := range recs {
		if r.seq() != uint64(i+1) {
			t.Fatalf("%s:%d: seq %d, want %d", r.file, r.line, r.seq(), i+1)
		}
		if i == 0 || r.file == recs[i-1].file {
			continue
		}
		prev := recs[i-1]
		if r.line != 1 || r.event() != EventRotated || r.str("previous_file") != prev.file ||
			r.str("previous_last_seq") != fmt.Sprint(prev.seq()) || r.str("prev") != prev.str("hash") {
			t.Errorf("%s:%d does not continue %s (last seq %d): %s", r.file, r.line, prev.file, prev.seq(), r.raw)
		}
		if signed && (prev.event() != EventCheckpoint || prev.str("checkpoint.reason") != CheckpointRotation) {
			t.Errorf("%s ends with %s, not a rotation checkpoint", prev.file, prev.raw)
		}
	}
	return recs
}

func TestRotateBySize(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointEvery = 7
	l.opts.RotateSize = 4 << 10
	w := l.open(t)
	writeSome(t, w, 60)
	w.Close()
	files, err := LogFiles(l.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 || files[len(files)-1] != l.path {
		t.Fatalf("files %v", files)
	}
	for _, f := range files[:len(files)-1] {
		if fi, _ := os.Stat(f); fi.Size() > 4<<10+3000 {
			t.Errorf("%s holds %d bytes with rotate size 4 KiB", f, fi.Size())
		}
	}
	recs := checkRotatedLog(t, l.path, true)
	calls := 0
	for _, r := range recs {
		if r.event() == EventCall {
			calls++
		}
	}
	if calls != 60 {
		t.Errorf("%d call records across the files, want 60", calls)
	}
	rep, err := VerifyLog(files, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != len(files) || rep.Records != uint64(len(recs)) {
		t.Errorf("report %+v", rep)
	}
	if st := w.Stats(); st.Rotations != uint64(len(files)-1) {
		t.Errorf("stats %+v, want %d rotations", st, len(files)-1)
	}
}

func TestRotateByTime(t *testing.T) {
	l := newTestLog(t)
	clock := newFakeClock()
	l.opts.now = clock.now
	l.opts.RotateInterval = time.Hour
	w := l.open(t)
	writeSome(t, w, 3)
	clock.add(time.Hour)
	first := clock.now()
	writeSome(t, w, 1) // rotated first: the file is an hour old
	// Idle: the housekeeping rotates it without a record.
	clock.add(2 * time.Hour)
	w.timedRotation()
	// A file that holds nothing but its first record is not rotated again.
	clock.add(5 * time.Hour)
	w.timedRotation()
	writeSome(t, w, 1)
	w.Close()
	files, _ := LogFiles(l.path)
	if len(files) != 3 {
		t.Fatalf("files %v, want 2 rotated and the live one", files)
	}
	if want := RotatedName(l.path, first, 1); files[0] != want {
		t.Errorf("first rotated file %s, want %s", files[0], want)
	}
	recs := checkRotatedLog(t, l.path, false)
	for _, r := range recs {
		if r.event() == EventRotated && r.str("reason") != RotateTime {
			t.Errorf("rotation reason %s", r.raw)
		}
	}
	if _, err := VerifyLog(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Rotation under concurrent writers loses and reorders nothing, and durable
// records stay durable across it.
func TestRotateConcurrent(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointEvery = 50
	l.opts.RotateSize = 8 << 10
	w := l.open(t)
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			s := testSession()
			s.ID = fmt.Sprintf("s%d", g)
			for i := range each {
				c := readCall(fmt.Sprintf("c%d-%d", g, i))
				if i%3 == 0 {
					c = writeCall(c.ID)
				}
				if err := w.Call(context.Background(), s, c, allow()); err != nil {
					t.Error(err)
					return
				}
				w.Result(context.Background(), s, c, &gateway.Result{Status: gateway.StatusOK})
			}
		})
	}
	wg.Wait()
	w.Close()
	recs := checkRotatedLog(t, l.path, true)
	seen := map[string]int{}
	for _, r := range recs {
		if id := r.str("call_id"); id != "" {
			seen[id+"/"+r.event()]++
		}
	}
	for g := range writers {
		for i := range each {
			for _, ev := range []string{"call", "result"} {
				if n := seen[fmt.Sprintf("c%d-%d/%s", g, i, ev)]; n != 1 {
					t.Fatalf("c%d-%d: %d %s records", g, i, n, ev)
				}
			}
		}
	}
	files, _ := LogFiles(l.path)
	if _, err := VerifyLog(files, VerifyOptions{Key: pub}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records in %d files", len(recs), len(files))
}

// A restart continues the chain of a rotated log; verify reports the
// restart as clean.
func TestRotateAcrossRestart(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.RotateSize = 3 << 10
	w := l.open(t)
	writeSome(t, w, 20)
	w.Close()
	l.opts.BootID = "boot-2"
	w = l.open(t)
	writeSome(t, w, 20)
	w.Close()
	checkRotatedLog(t, l.path, true)
	files, _ := LogFiles(l.path)
	rep, err := VerifyLog(files, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Boots != 2 || len(rep.Notes) != 1 || rep.Notes[0].Kind != NoteRestart ||
		!strings.Contains(rep.Notes[0].Message, "boot boot-2 began") || !strings.Contains(rep.Notes[0].Message, "stopped cleanly (shutdown checkpoint") {
		t.Errorf("report %+v", rep)
	}
}

// A crash between a rotation's two renames leaves the new file under its
// next name and no live file: Open completes the rotation, and the chain
// holds. A live file found empty beside rotated files was deleted or
// emptied: Open continues the last rotated file with a record that says so,
// and verify reports the loss.
func TestOpenAfterRotation(t *testing.T) {
	setup := func(t *testing.T) (*testLog, ed25519.PublicKey, []rec) {
		l := newTestLog(t)
		pub := l.signed(t)
		l.opts.RotateSize = 2 << 10
		w := l.open(t)
		writeSome(t, w, 12)
		w.Close()
		return l, pub, readLog(t, l.path)
	}
	t.Run("crash between the renames", func(t *testing.T) {
		l, pub, before := setup(t)
		if err := os.Rename(l.path, l.path+nextSuffix); err != nil {
			t.Fatal(err)
		}
		l.opts.BootID = "boot-2"
		w := l.open(t)
		writeSome(t, w, 2)
		w.Close()
		if _, err := os.Stat(l.path + nextSuffix); err == nil {
			t.Error("the next file is still there")
		}
		after := readLog(t, l.path)
		if len(after) <= len(before) || string(after[len(before)-1].raw) != string(before[len(before)-1].raw) {
			t.Errorf("the log before the crash is not the start of the log after it")
		}
		if _, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a leftover next file", func(t *testing.T) {
		l, pub, _ := setup(t)
		if err := os.WriteFile(l.path+nextSuffix, []byte("left over\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		l.opts.BootID = "boot-2"
		w := l.open(t)
		w.Close()
		if _, err := os.Stat(l.path + nextSuffix); err == nil {
			t.Error("the next file is still there")
		}
		if _, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub}); err != nil {
			t.Fatal(err)
		}
	})
	for _, gone := range []string{"deleted", "emptied"} {
		t.Run("live file "+gone, func(t *testing.T) {
			l, pub, before := setup(t)
			files := mustLogFiles(t, l.path)
			if len(files) < 2 {
				t.Fatalf("no rotation: %v", files)
			}
			live := filepath.Base(l.path)
			var lastSeq uint64
			for _, r := range before {
				if r.file != live {
					lastSeq = r.seq()
				}
			}
			var err error
			if gone == "deleted" {
				err = os.Remove(l.path)
			} else {
				err = os.WriteFile(l.path, nil, 0o640)
			}
			if err != nil {
				t.Fatal(err)
			}
			l.opts.BootID = "boot-2"
			w := l.open(t)
			writeSome(t, w, 2)
			w.Close()
			var first rec
			for _, r := range readLog(t, l.path) {
				if r.file == live {
					first = r
					break
				}
			}
			if first.event() != EventRotated || first.str("reason") != RotateMissing || first.seq() != lastSeq+1 {
				t.Errorf("the new live file begins with %s", first.raw)
			}
			_, err = VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
			var br *Break
			if !errors.As(err, &br) || br.Kind != BreakMissingFile || br.Seq != lastSeq+1 || !strings.Contains(br.Message, "are gone") {
				t.Errorf("verify: %v, want the loss of the live file (%d records before it) reported", err, len(before))
			}
		})
	}
}

func mustLogFiles(t testing.TB, path string) []string {
	t.Helper()
	files, err := LogFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestRetentionBySize(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.RotateSize = 2 << 10
	l.opts.RetainBytes = 8 << 10
	w := l.open(t)
	var before []rec
	for range 6 {
		writeSome(t, w, 5)
		before = append(before, readLog(t, l.path)...) // every record ever seen, by seq below
	}
	writeSome(t, w, 20)
	w.retain() // what the maintenance loop may not have got to yet
	w.Close()
	byFile := map[string]rec{} // the last record of each file ever seen
	for _, r := range before {
		if old, ok := byFile[r.file]; !ok || r.seq() > old.seq() {
			byFile[r.file] = r
		}
	}
	files := mustLogFiles(t, l.path)
	var total int64
	for _, f := range files {
		total += fileSize(t, f)
	}
	if total > 8<<10+3<<10 || files[len(files)-1] != l.path {
		t.Errorf("%d bytes in %v after retention of 8 KiB", total, files)
	}
	recs := readLog(t, l.path)
	var deleted []rec
	for _, r := range recs {
		if r.event() == EventRetention {
			deleted = append(deleted, r)
		}
	}
	// Retention records in files that retention deleted later are gone too.
	if len(deleted) == 0 || w.Stats().RetentionDeletes < uint64(len(deleted)) {
		t.Fatalf("%d retention records, stats %+v", len(deleted), w.Stats())
	}
	if last := deleted[len(deleted)-1]; fmt.Sprint(atoi(last.str("last_seq"))+1) != fmt.Sprint(recs[0].seq()) ||
		last.str("last_hash") != recs[0].str("prev") || last.str("reason") != "size" {
		t.Errorf("the last retention record %s does not describe the file before the first remaining one (%s)", last.raw, recs[0].raw)
	}
	for i, d := range deleted {
		if _, err := os.Stat(filepath.Join(filepath.Dir(l.path), d.str("file"))); err == nil {
			t.Errorf("%s is still there", d.str("file"))
		}
		if i > 0 && d.str("first_seq") != fmt.Sprint(atoi(deleted[i-1].str("last_seq"))+1) {
			t.Errorf("retention record %s does not follow %s: not the oldest file", d.raw, deleted[i-1].raw)
		}
		if last, ok := byFile[d.str("file")]; ok && (last.str("hash") != d.str("last_hash") || fmt.Sprint(last.seq()) != d.str("last_seq")) {
			t.Errorf("retention record %s: the file ended with seq %d hash %s", d.raw, last.seq(), last.str("hash"))
		}
	}
	rep, err := VerifyLog(files, VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Notes) != 1 || rep.Notes[0].Kind != NoteRetention || !strings.Contains(rep.Notes[0].Message, "deleted by retention") {
		t.Errorf("notes %+v", rep.Notes)
	}
	// The oldest remaining file deleted by hand: no record says why.
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	_, err = VerifyLog(files[1:], VerifyOptions{Key: pub})
	if br, ok := err.(*Break); !ok || br.Kind != BreakMissingStart || br.File != files[1] || br.Line != 1 {
		t.Errorf("after deleting the oldest file by hand: %v", err)
	}
}

func atoi(s string) int {
	var n int
	fmt.Sscan(s, &n)
	return n
}

func TestRetentionByAge(t *testing.T) {
	l := newTestLog(t)
	clock := newFakeClock()
	l.opts.now = clock.now
	l.opts.RotateInterval = time.Hour
	l.opts.RetainDays = 2
	w := l.open(t)
	for range 5 {
		writeSome(t, w, 2)
		clock.add(24 * time.Hour)
	}
	writeSome(t, w, 1)
	w.retain()
	files := mustLogFiles(t, l.path)
	// Rotated at day 1, 2, 3, 4, 5 (now): those rotated two days ago or more go.
	if len(files) != 3 {
		t.Fatalf("files %v", files)
	}
	for _, f := range files[:len(files)-1] {
		if at, ok := rotatedTime(f); !ok || clock.now().Sub(at) >= 48*time.Hour {
			t.Errorf("%s kept (%v)", f, at)
		}
	}
	w.Close()
	rep, err := VerifyLog(files, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Notes[0].Kind != NoteRetention {
		t.Errorf("notes %+v", rep.Notes)
	}
	for _, r := range readLog(t, l.path) {
		if r.event() == EventRetention && (r.str("reason") != "age" || r.str("retain_days") != "2") {
			t.Errorf("retention record %s", r.raw)
		}
	}
}

// A live file deleted, renamed away or emptied in place (logrotate's
// copytruncate) while the gateway writes it. Cut between the writer's last
// look at the file and its next write, that write's durable record goes
// with the file: its call fails (is denied), and a new live file, which
// says so, takes the rest. When the writer's own round notices the cut
// first, no record is at stake and every later call succeeds. Either way
// every record acknowledged after the cut is in the new live file, and
// verify reports the loss.
func TestLiveFileTakenAway(t *testing.T) {
	for _, how := range []string{"deleted", "renamed", "emptied in place"} {
		for _, when := range []string{"before the next write", "noticed first"} {
			t.Run(how+"/"+when, func(t *testing.T) {
				testLiveFileTakenAway(t, how, when == "noticed first")
			})
		}
	}
}

func testLiveFileTakenAway(t *testing.T, how string, noticedFirst bool) {
	l := newTestLog(t).withFaults()
	l.opts.SyncInterval = 10 * time.Millisecond
	w := l.open(t)
	s := testSession()
	ctx := context.Background()
	// More records before the cut than after it: what a cut file held past
	// the new records' end would show.
	writeCalls(t, w, s, 8)
	cut := func() error {
		switch how {
		case "deleted":
			return os.Remove(l.path)
		case "renamed":
			return os.Rename(l.path, l.path+".1")
		default: // logrotate's copytruncate
			return os.Truncate(l.path, 0)
		}
	}
	const gone = "deleted, renamed, replaced or cut while the gateway wrote it"
	var cutErr error
	if noticedFirst {
		cutErr = cut()
		// The writer's round (every SyncInterval) notices it with no record
		// written since; waiting for that, not for a time, keeps the order.
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(l.log.String(), gone) {
			if cutErr != nil || time.Now().After(deadline) {
				t.Fatalf("the cut (%v) was not noticed: %s", cutErr, l.log.String())
			}
			time.Sleep(time.Millisecond)
		}
	} else {
		l.ff.set(func(f *faultFile) { f.beforeWrite = func() { cutErr = cut() } })
	}
	var failed, taken []string
	for i := range 5 {
		id := fmt.Sprint("b", i)
		if err := w.Call(ctx, s, writeCall(id), allow()); err != nil {
			failed = append(failed, id)
			if !strings.Contains(err.Error(), "deleted, renamed, replaced or cut") {
				t.Errorf("write %s: %v", id, err)
			}
		} else {
			taken = append(taken, id)
		}
	}
	if cutErr != nil {
		t.Fatal(cutErr)
	}
	want := "[b0]"
	if noticedFirst {
		want = "[]"
	}
	if got := fmt.Sprint(failed); got != want {
		t.Errorf("durable writes failed: %s, want %s", got, want)
	}
	w.Close()
	if b, _ := os.ReadFile(l.path); bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("the live file holds NUL bytes: a hole before the records written after the cut")
	}
	recs := readLog(t, l.path)
	if len(recs) == 0 || recs[0].event() != EventRotated || recs[0].str("reason") != RotateMissing {
		t.Fatalf("the new live file: %v", recs)
	}
	// No record lost: every call taken is in the new live file, in order;
	// the rotated record names every record before it as gone, the failed
	// one too.
	var inLive []string
	for _, r := range recs[1:] {
		if r.event() == EventCall {
			inLive = append(inLive, r.str("call_id"))
		}
	}
	if fmt.Sprint(inLive) != fmt.Sprint(taken) {
		t.Errorf("calls in the new live file %v, calls taken %v", inLive, taken)
	}
	if last := recs[0].str(FieldPreviousLastSeq); last != fmt.Sprint(recs[0].seq()-1) {
		t.Errorf("rotated record: previous_last_seq %s, seq %d", last, recs[0].seq())
	}
	_, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{})
	var br *Break
	if !errors.As(err, &br) || br.Kind != BreakMissingFile || !strings.Contains(br.Message, "the records it held, seq 1 to ") {
		t.Errorf("verify: %v, want the loss reported", err)
	}
	if !strings.Contains(l.log.String(), gone) {
		t.Errorf("operational log: %s", l.log.String())
	}
	if kept, _ := filepath.Glob(l.path + ".cut-*"); len(kept) != 0 {
		t.Errorf("files kept aside %v: nothing was left to keep", kept)
	}
}

// A live file cut short in place (not emptied) under the writer, and
// written past since by a record that waits for no fsync: the writer's
// next round finds the zeros the cut left where the records it had seen
// ended, its durable record fails, and a new live file takes the rest.
func TestLiveFileCutShortThenWritten(t *testing.T) {
	l := newTestLog(t) // SyncInterval is an hour: only durable records start a round
	w := l.open(t)
	s := testSession()
	ctx := context.Background()
	writeCalls(t, w, s, 8) // each one's round looked at the file
	before, err := os.ReadFile(l.path)
	if err != nil {
		t.Fatal(err)
	}
	half := len(before) / 2
	if err := os.Truncate(l.path, int64(half)); err != nil {
		t.Fatal(err)
	}
	if err := w.Call(ctx, s, readCall("r0"), allow()); err != nil {
		t.Fatal(err) // written at the writer's offset, past a hole
	}
	if err := w.Call(ctx, s, writeCall("d0"), allow()); err == nil || !strings.Contains(err.Error(), "deleted, renamed, replaced or cut") {
		t.Fatalf("the durable record after the cut: %v, want it to fail with the file", err)
	}
	if err := w.Call(ctx, s, writeCall("d1"), allow()); err != nil {
		t.Fatalf("the next durable record: %v", err)
	}
	w.Close()
	if b, _ := os.ReadFile(l.path); bytes.IndexByte(b, 0) >= 0 {
		t.Error("the live file holds NUL bytes: the hole the cut left")
	}
	recs := readLog(t, l.path)
	if len(recs) < 2 || recs[0].event() != EventRotated || recs[0].str("reason") != RotateMissing || recs[len(recs)-1].str("call_id") != "d1" {
		t.Fatalf("the new live file: %v, want audit.rotated live_file_missing, then d1", recs)
	}
	// What the cut left is kept aside, outside the log's files.
	kept, _ := filepath.Glob(l.path + ".cut-*")
	if len(kept) != 1 {
		t.Fatalf("files kept aside: %v, want the one cut short", kept)
	}
	if b, _ := os.ReadFile(kept[0]); !bytes.HasPrefix(b, before[:half]) {
		t.Errorf("%s does not hold what the cut left of the live file", kept[0])
	}
	if files := mustLogFiles(t, l.path); slices.Contains(files, kept[0]) {
		t.Errorf("the file kept aside is among the log's files %v", files)
	}
}

// A live file cut inside the records written since the last fsync round,
// and written past before the next: the round reads what was written since
// and finds the zeros of the hole, where the records it had seen still end
// in place.
func TestLiveFileCutInsideRecordsSinceTheLastRound(t *testing.T) {
	l := newTestLog(t) // SyncInterval is an hour: only durable records start a round
	w := l.open(t)
	s := testSession()
	ctx := context.Background()
	writeCalls(t, w, s, 4) // the last one's round looked at the file
	seen := w.Stats().Size
	for i := range 8 {
		if err := w.Call(ctx, s, readCall(fmt.Sprint("r", i)), allow()); err != nil {
			t.Fatal(err)
		}
	}
	size := w.Stats().Size
	if err := os.Truncate(l.path, seen+(size-seen)/2); err != nil {
		t.Fatal(err)
	}
	if err := w.Call(ctx, s, readCall("past"), allow()); err != nil {
		t.Fatal(err) // written at the writer's offset, past the hole
	}
	if err := w.Call(ctx, s, writeCall("d0"), allow()); err == nil || !strings.Contains(err.Error(), "deleted, renamed, replaced or cut") {
		t.Fatalf("the durable record after the cut: %v, want it to fail with the file", err)
	}
	if err := w.Call(ctx, s, writeCall("d1"), allow()); err != nil {
		t.Fatalf("the next durable record: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(l.path); bytes.IndexByte(b, 0) >= 0 {
		t.Error("the live file holds NUL bytes: the hole the cut left")
	}
	recs := readLog(t, l.path)
	if len(recs) < 2 || recs[0].event() != EventRotated || recs[0].str("reason") != RotateMissing || recs[len(recs)-1].str("call_id") != "d1" {
		t.Fatalf("the new live file: %v, want audit.rotated live_file_missing, then d1", recs)
	}
	if kept, _ := filepath.Glob(l.path + ".cut-*"); len(kept) != 1 {
		t.Errorf("files kept aside: %v, want the one cut short", kept)
	}
}

// Close tells when records went with the live file: taken away or cut
// before Close's own round (with or without records since the last), or
// cut between that round's look and its fsync.
func TestCloseTellsRecordsGoneWithTheLiveFile(t *testing.T) {
	for _, how := range []string{"deleted", "deleted, nothing written since the last fsync", "cut short and written past", "cut before the last fsync"} {
		t.Run(how, func(t *testing.T) {
			l := newTestLog(t).withFaults()
			w := l.open(t)
			s := testSession()
			ctx := context.Background()
			writeCalls(t, w, s, 4)
			for i := range 4 {
				if how == "deleted, nothing written since the last fsync" {
					break
				}
				if err := w.Call(ctx, s, readCall(fmt.Sprint("r", i)), allow()); err != nil {
					t.Fatal(err)
				}
			}
			var cutErr error
			switch how {
			case "deleted", "deleted, nothing written since the last fsync":
				cutErr = os.Remove(l.path)
			case "cut short and written past":
				if cutErr = os.Truncate(l.path, w.Stats().Size-10); cutErr == nil {
					cutErr = w.Call(ctx, s, readCall("past"), allow())
				}
			case "cut before the last fsync":
				l.ff.set(func(f *faultFile) {
					f.beforeSync = func() {
						if cutErr == nil {
							cutErr = os.Truncate(l.path, w.Stats().Size/2)
						}
					}
				})
			}
			if cutErr != nil {
				t.Fatal(cutErr)
			}
			if err := w.Close(); err == nil || !strings.Contains(err.Error(), "deleted, renamed, replaced or cut") {
				t.Errorf("Close: %v, want the records since the last round reported gone with the live file", err)
			}
		})
	}
}

// A live file taken away or cut after the fsync round's check, before its
// fsync (the writer's lock is free then): the round's durable record went
// with the file, so its call fails, and the next round begins a new live
// file that takes the later records and says what went. A rotation of the
// writer's own in that window keeps the record, in the rotated file.
func TestLiveFileTakenAwayBeforeFsync(t *testing.T) {
	for _, how := range []string{"deleted", "renamed", "emptied in place", "cut short", "emptied in place, then written", "rotated by the gateway"} {
		t.Run(how, func(t *testing.T) { testLiveFileTakenAwayBeforeFsync(t, how) })
	}
}

func testLiveFileTakenAwayBeforeFsync(t *testing.T, how string) {
	l := newTestLog(t).withFaults()
	l.opts.RotateSize = 16 << 10 // SyncInterval is an hour: only durable records start a round
	w := l.open(t)
	s := testSession()
	ctx := context.Background()
	writeCalls(t, w, s, 8)
	var cutErr error
	l.ff.set(func(f *faultFile) {
		f.beforeSync = func() {
			switch how {
			case "deleted":
				cutErr = os.Remove(l.path)
			case "renamed":
				cutErr = os.Rename(l.path, l.path+".1")
			case "emptied in place":
				cutErr = os.Truncate(l.path, 0)
			case "cut short":
				cutErr = os.Truncate(l.path, w.Stats().Size/2)
			case "emptied in place, then written":
				// The file's size is past the round's records again, with
				// zeros where they were.
				if cutErr = os.Truncate(l.path, 0); cutErr == nil {
					cutErr = w.Call(ctx, s, readCall("r"), allow())
				}
			case "rotated by the gateway":
				for i := 0; w.Stats().Rotations == 0 && cutErr == nil; i++ {
					if i == 1000 {
						cutErr = errors.New("no rotation")
					} else {
						cutErr = w.Call(ctx, s, readCall(fmt.Sprint("r", i)), allow())
					}
				}
			}
		}
	})
	err := w.Call(ctx, s, writeCall("b0"), allow())
	if cutErr != nil {
		t.Fatal(cutErr)
	}
	if how == "rotated by the gateway" {
		if err != nil {
			t.Fatalf("a durable write in a file the gateway rotated out: %v", err)
		}
		w.Close()
		var in []string
		for _, r := range checkRotatedLog(t, l.path, false) {
			if r.str("call_id") == "b0" {
				in = append(in, r.file)
			}
		}
		if len(in) != 1 || in[0] == filepath.Base(l.path) {
			t.Errorf("the call b0 is in %v, want a rotated file", in)
		}
		if _, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{}); err != nil {
			t.Errorf("verify: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "deleted, renamed, replaced or cut") {
		t.Fatalf("the durable write whose file was %s before its fsync: %v, want it failed", how, err)
	}
	// The failed round starts the next one at once, which begins again.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.log.String(), "a new live file continues the chain") {
		if time.Now().After(deadline) {
			t.Fatalf("the live file was not begun again: %s", l.log.String())
		}
		time.Sleep(time.Millisecond)
	}
	for i := range 3 {
		if err := w.Call(ctx, s, writeCall(fmt.Sprint("c", i)), allow()); err != nil {
			t.Errorf("write c%d after the new live file began: %v", i, err)
		}
	}
	w.Close()
	if b, _ := os.ReadFile(l.path); bytes.IndexByte(b, 0) >= 0 {
		t.Errorf("the live file holds NUL bytes")
	}
	recs := readLog(t, l.path)
	if len(recs) == 0 || recs[0].event() != EventRotated || recs[0].str("reason") != RotateMissing ||
		recs[0].str(FieldPreviousLastSeq) != fmt.Sprint(recs[0].seq()-1) {
		t.Fatalf("the new live file: %v", recs)
	}
	var inLive []string
	for _, r := range recs[1:] {
		if r.event() == EventCall {
			inLive = append(inLive, r.str("call_id"))
		}
	}
	if got := fmt.Sprint(inLive); got != "[c0 c1 c2]" {
		t.Errorf("calls in the new live file %s, want [c0 c1 c2]", got)
	}
	_, err = VerifyLog(mustLogFiles(t, l.path), VerifyOptions{})
	var br *Break
	if !errors.As(err, &br) || br.Kind != BreakMissingFile || !strings.Contains(br.Message, "the records it held, seq 1 to ") {
		t.Errorf("verify: %v, want the loss reported", err)
	}
}

// A live name taken by another file that is not empty is left alone: every
// durable record fails (its call is denied) until an operator moves it.
func TestLiveFileReplacedByAnother(t *testing.T) {
	l := newTestLog(t)
	l.opts.SyncInterval = 10 * time.Millisecond
	l.opts.RotateSize = 2 << 10
	w := l.open(t)
	s := testSession()
	ctx := context.Background()
	if err := w.Call(ctx, s, writeCall("a"), allow()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.path, []byte("another program's file\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := w.Call(ctx, s, writeCall(fmt.Sprint("b", i)), allow()); err == nil {
			t.Errorf("write %d was taken while the live name is another file", i)
		}
	}
	// Reads too, however many: no record goes into a file nobody will read,
	// and no rotation makes the other file one of the log's.
	for i := range 50 {
		if err := w.Call(ctx, s, readCall(fmt.Sprint("r", i)), allow()); err == nil {
			t.Errorf("read %d was taken while the live name is another file", i)
		}
	}
	if b, _ := os.ReadFile(l.path); string(b) != "another program's file\n" {
		t.Errorf("the other file was written: %q", b)
	}
	files, _ := LogFiles(l.path)
	if len(files) != 1 {
		t.Errorf("files %v: the other file was rotated into the log", files)
	}
	// Once it is moved away, the log goes on.
	if err := os.Rename(l.path, l.path+".other"); err != nil {
		t.Fatal(err)
	}
	// The writer's round (every SyncInterval) begins the live file again;
	// it logs so once writes are taken again.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(l.log.String(), "a new live file continues the chain") {
		if time.Now().After(deadline) {
			t.Fatalf("the live file was not begun again: %s", l.log.String())
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Call(ctx, s, writeCall("c"), allow()); err != nil {
		t.Errorf("a write after the other file was moved away: %v", err)
	}
	if !strings.Contains(l.log.String(), "cannot be made again") {
		t.Errorf("operational log: %s", l.log.String())
	}
}

// A live file that ends with a rotation's checkpoint is a rotation a crash
// cut short before the rename: with the live file named (verify --log) it
// is a note; a rotated file ending so is a missing live file.
func TestVerifyLiveFileEndingWithRotationCheckpoint(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.RotateSize = 2 << 10
	w := l.open(t)
	writeSome(t, w, 12)
	w.Close()
	files := mustLogFiles(t, l.path)
	if len(files) < 3 {
		t.Fatalf("files %v", files)
	}
	// As a crash leaves it: the newest rotation's checkpoint written, the
	// file not yet renamed, nothing after it.
	last := files[len(files)-2]
	if err := os.Remove(l.path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(last, l.path); err != nil {
		t.Fatal(err)
	}
	cut := append(files[:len(files)-2:len(files)-2], l.path)
	rep, err := VerifyLog(cut, VerifyOptions{Key: pub, Live: l.path})
	if err != nil {
		t.Fatalf("with the live file named: %v", err)
	}
	if !slices.ContainsFunc(rep.Notes, func(n Note) bool { return strings.Contains(n.Message, "a crash cut short") }) {
		t.Errorf("notes %+v", rep.Notes)
	}
	_, err = VerifyLog(cut, VerifyOptions{Key: pub})
	var br *Break
	if !errors.As(err, &br) || br.Kind != BreakMissingFile {
		t.Errorf("without the live file named: %v, want %s", err, BreakMissingFile)
	}
}

// Rotated files an operator compressed with gzip (the real gzip, in place)
// count toward retain_bytes and are deleted oldest first like the others,
// each after a retention record of what it held, and the log verifies.
func TestRetentionDeletesGzippedFiles(t *testing.T) {
	gz, err := exec.LookPath("gzip")
	if err != nil {
		t.Fatalf("gzip is needed (Debian package gzip): %v", err)
	}
	l := newTestLog(t)
	l.opts.RotateSize = 2 << 10
	w := l.open(t)
	for range 8 {
		writeSome(t, w, 5)
	}
	w.Close()
	rotated := mustLogFiles(t, l.path)
	rotated = rotated[:len(rotated)-1]
	if len(rotated) < 4 {
		t.Fatalf("%d rotated files, want at least 4", len(rotated))
	}
	tails := map[string]*rotatedTail{}
	for _, f := range rotated {
		rt, err := describeRotated(f)
		if err != nil {
			t.Fatal(err)
		}
		tails[filepath.Base(f)+".gz"] = rt
		if out, err := exec.Command(gz, f).CombinedOutput(); err != nil {
			t.Fatalf("gzip %s: %v: %s", f, err, out)
		}
	}
	if left := mustLogFiles(t, l.path); len(left) != 1 {
		t.Fatalf("after gzip, LogFiles lists %v, want the live file alone", left)
	}
	var onDisk int64
	all, err := LogFilesWithGzip(l.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		onDisk += fileSize(t, f)
	}
	l.opts.RetainBytes = onDisk / 2 // some of the compressed files must go
	w = l.open(t)
	w.retain()
	w.Close()
	var deleted []rec
	for _, r := range readLog(t, l.path) {
		if r.event() == EventRetention {
			deleted = append(deleted, r)
		}
	}
	// The compressed files deleted are the oldest ones, and each retention
	// record still in the log says what its file held.
	gone := 0
	for _, f := range rotated {
		if _, err := os.Stat(f + ".gz"); err == nil {
			break
		}
		gone++
	}
	for _, f := range rotated[gone:] {
		if _, err := os.Stat(f + ".gz"); err != nil {
			t.Errorf("%s.gz deleted, though older compressed files were kept: %v", f, err)
		}
	}
	if gone == 0 {
		t.Fatalf("no compressed file deleted: %d bytes on disk, retain_bytes %d", onDisk, l.opts.RetainBytes)
	}
	checked := 0
	for _, d := range deleted {
		want, ok := tails[d.str("file")]
		if !ok {
			continue // a file rotated out after the compression
		}
		checked++
		if d.str("first_seq") != fmt.Sprint(want.firstSeq) || d.str("last_seq") != fmt.Sprint(want.lastSeq) ||
			d.str("last_hash") != hex.EncodeToString(want.lastHash[:]) {
			t.Errorf("retention record %s; the file held seq %d..%d ending with hash %x", d.raw, want.firstSeq, want.lastSeq, want.lastHash)
		}
	}
	if checked == 0 {
		t.Errorf("no retention record of a compressed file among %d", len(deleted))
	}
	left, err := LogFilesWithGzip(l.path)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, f := range left {
		size += fileSize(t, f)
	}
	if size > l.opts.RetainBytes+3<<10 {
		t.Errorf("%d bytes left in %v after retention of %d", size, left, l.opts.RetainBytes)
	}
	if _, err := VerifyLog(left, VerifyOptions{}); err != nil {
		t.Errorf("verify after retention of compressed files: %v", err)
	}
}

// writeCalls writes n durable call records, a0 to a(n-1).
func writeCalls(t *testing.T, w *Writer, s *gateway.Session, n int) {
	t.Helper()
	for i := range n {
		if err := w.Call(context.Background(), s, writeCall(fmt.Sprint("a", i)), allow()); err != nil {
			t.Fatal(err)
		}
	}
}
