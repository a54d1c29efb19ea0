package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// evidenceLog is a log with everything verify looks at: checkpoints every
// 5 records, rotation every 3 KiB, a clean restart and an unclean one.
type evidenceLog struct {
	live string
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
	cps  []Checkpoint // every checkpoint, as kept off the gateway
}

func newEvidenceLog(t *testing.T) *evidenceLog {
	t.Helper()
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointEvery = 5
	l.opts.RotateSize = 3 << 10
	w := l.open(t)
	writeSome(t, w, 20)
	w.Close()

	l.opts.BootID = "boot-2"
	w = l.open(t)
	writeSome(t, w, 12)
	// boot-2 dies here: its files as they are now are what boot-3 finds.
	crashed := filepath.Join(t.TempDir(), "audit", "audit.jsonl")
	copyDir(t, filepath.Dir(l.path), filepath.Dir(crashed))
	w.Close()

	l.opts.Path, l.path, l.opts.BootID = crashed, crashed, "boot-3"
	w = l.open(t)
	writeSome(t, w, 20)
	w.Close()
	e := &evidenceLog{live: crashed, pub: pub, priv: l.opts.SigningKey}
	for _, r := range readLog(t, crashed) {
		if r.event() == EventCheckpoint {
			c, err := ParseCheckpoint(r.raw)
			if err != nil {
				t.Fatal(err)
			}
			e.cps = append(e.cps, c)
		}
	}
	return e
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o750); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// logCopy is a copy of a log to tamper with, line by line.
type logCopy struct {
	live  string
	files []string
	lines [][][]byte // per file
}

func (e *evidenceLog) copy(t *testing.T) *logCopy {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	copyDir(t, filepath.Dir(e.live), dir)
	c := &logCopy{live: filepath.Join(dir, filepath.Base(e.live))}
	c.files = mustLogFiles(t, c.live)
	for _, f := range c.files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ls := bytes.SplitAfter(b, []byte("\n"))
		c.lines = append(c.lines, ls[:len(ls)-1])
	}
	return c
}

// find returns the file and line index of the first record for which match
// holds, from file index fromFile on.
func (c *logCopy) find(t *testing.T, fromFile int, match func(line []byte) bool) (int, int) {
	t.Helper()
	for fi := fromFile; fi < len(c.files); fi++ {
		for li, line := range c.lines[fi] {
			if match(line) {
				return fi, li
			}
		}
	}
	t.Fatal("no such record")
	return 0, 0
}

func isEvent(ev string) func([]byte) bool {
	return func(line []byte) bool { return bytes.Contains(line, []byte(`"event":"`+ev+`"`)) }
}

// reseal recomputes prev and hash of every record from file fi, line li on,
// as a forger would; resign, when set, re-signs each checkpoint on the way.
func (c *logCopy) reseal(fi, li int, resign func(line []byte, prev string) []byte) {
	prev := GenesisPrev
	if li > 0 {
		prev = lineHash(c.lines[fi][li-1])
	} else if fi > 0 {
		prev = lineHash(c.lines[fi-1][len(c.lines[fi-1])-1])
	}
	for ; fi < len(c.lines); fi, li = fi+1, 0 {
		for ; li < len(c.lines[fi]); li++ {
			line := c.lines[fi][li]
			body := bytes.TrimSuffix(line, []byte("\n"))
			body = clone(body[:len(body)-hashFieldLen])
			copy(body[len(body)-hashHexLen-1:], prev)
			if resign != nil && bytes.Contains(body, []byte(`"event":"audit.checkpoint"`)) {
				body = resign(body, string(body[len(body)-hashHexLen-1:len(body)-1]))
			}
			sum := sha256.Sum256(append(clone(body), '}'))
			prev = hex.EncodeToString(sum[:])
			c.lines[fi][li] = []byte(string(body) + `,"hash":"` + prev + `"}` + "\n")
		}
	}
}

func lineHash(line []byte) string {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return string(line[len(line)-hashHexLen-2 : len(line)-2])
}

// resignWith returns a re-signer that makes each checkpoint cover its new
// prev and signs it with priv under keyID.
func resignWith(priv ed25519.PrivateKey, keyID string) func([]byte, string) []byte {
	return func(body []byte, prev string) []byte {
		cp, err := ParseCheckpoint(append(clone(body), `,"hash":"`+strings.Repeat("0", 64)+`"}`...))
		if err != nil {
			panic(err)
		}
		oldHash, oldKey, oldSig := cp.Hash, cp.KeyID, base64.StdEncoding.EncodeToString(cp.Signature)
		cp.Hash, cp.KeyID = prev, keyID
		sig := base64.StdEncoding.EncodeToString(ed25519.Sign(priv, cp.SignedBytes(nil)))
		s := strings.Replace(string(body), `"checkpoint":{"seq":`, "\x00", 1)
		s = strings.Replace(s, `"hash":"`+oldHash+`"`, `"hash":"`+prev+`"`, 1)
		s = strings.Replace(s, "\x00", `"checkpoint":{"seq":`, 1)
		s = strings.Replace(s, `"key_id":"`+oldKey+`"`, `"key_id":"`+keyID+`"`, 1)
		s = strings.Replace(s, `"signature":"`+oldSig+`"`, `"signature":"`+sig+`"`, 1)
		return []byte(s)
	}
}

// write writes the tampered files back; a file with no lines is deleted.
func (c *logCopy) write(t *testing.T) []string {
	t.Helper()
	var files []string
	for i, f := range c.files {
		if c.lines[i] == nil {
			os.Remove(f)
			continue
		}
		if err := os.WriteFile(f, bytes.Join(c.lines[i], nil), 0o640); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	got := mustLogFiles(t, c.live)
	if strings.Join(got, " ") != strings.Join(files, " ") {
		t.Fatalf("LogFiles %v, want %v", got, files)
	}
	return files
}

// renumber gives the records consecutive seqs again after records were
// removed, and fixes what audit.rotated says of the file before, as a
// forger would; then the chain must be resealed.
func (c *logCopy) renumber() {
	var seq uint64 = 0 // the first record gets 1
	prevFirst, prevLast := uint64(0), uint64(0)
	for fi := range c.lines {
		first := uint64(0)
		for li, line := range c.lines[fi] {
			old, _ := peekSeq(line)
			seq++
			if first == 0 {
				first = seq
			}
			s := strings.Replace(string(line), fmt.Sprintf(`{"seq":%d,`, old), fmt.Sprintf(`{"seq":%d,`, seq), 1)
			if li == 0 && strings.Contains(s, `"event":"audit.rotated"`) {
				s = regexp.MustCompile(`"previous_first_seq":\d+,"previous_last_seq":\d+`).
					ReplaceAllString(s, fmt.Sprintf(`"previous_first_seq":%d,"previous_last_seq":%d`, prevFirst, prevLast))
			}
			c.lines[fi][li] = []byte(s)
		}
		prevFirst, prevLast = first, seq
	}
}

func (c *logCopy) remove(fi, li int) {
	c.lines[fi] = append(c.lines[fi][:li:li], c.lines[fi][li+1:]...)
}

func TestVerifyLogIntact(t *testing.T) {
	e := newEvidenceLog(t)
	files := mustLogFiles(t, e.live)
	if len(files) < 5 {
		t.Fatalf("only %d files", len(files))
	}
	rep, err := VerifyLog(files, VerifyOptions{Key: e.pub, Checkpoints: e.cps})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Boots != 3 || rep.Unsigned != 0 || rep.Checkpoints != len(e.cps) || rep.FirstSeq != 1 || rep.Files != len(files) {
		t.Errorf("report %+v", rep)
	}
	var kinds []string
	for _, n := range rep.Notes {
		kinds = append(kinds, string(n.Kind))
	}
	if got := strings.Join(kinds, " "); got != "restart unclean_stop" {
		t.Fatalf("notes %+v", rep.Notes)
	}
	for _, want := range []string{"boot boot-2 began", "boot boot-1 before it stopped cleanly (shutdown checkpoint at seq"} {
		if !strings.Contains(rep.Notes[0].Message, want) {
			t.Errorf("restart note %q lacks %q", rep.Notes[0].Message, want)
		}
	}
	for _, want := range []string{"boot boot-3 began", "boot boot-2 before it ended without gateway.stop or a shutdown checkpoint"} {
		if !strings.Contains(rep.Notes[1].Message, want) {
			t.Errorf("unclean stop note %q lacks %q", rep.Notes[1].Message, want)
		}
	}
	if !strings.Contains(rep.String(), "signed by key id "+KeyID(e.pub)) || !strings.Contains(rep.String(), "3 gateway starts") {
		t.Errorf("summary %s", rep)
	}
	// Without the key: the same chain, the signatures not checked.
	rep, err = VerifyLog(files, VerifyOptions{})
	if err != nil || rep.Notes[len(rep.Notes)-1].Kind != NoteUnchecked {
		t.Errorf("without a key: %v %+v", err, rep.Notes)
	}
}

// Each kind of tampering is found and named by file, line and seq.
func TestVerifyLogTampering(t *testing.T) {
	e := newEvidenceLog(t)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	otherID := KeyID(otherPriv.Public().(ed25519.PublicKey))
	call := isEvent(EventCall)

	type result struct {
		kind BreakKind
		fi   int // file index in the untampered log (-1: the live file)
		li   int // 0-based line
		opts *VerifyOptions
		msg  string // part of the message
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, c *logCopy) result
	}{
		{"one byte changed", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.lines[fi][li] = bytes.Replace(c.lines[fi][li], []byte(`"quantity":10`), []byte(`"quantity":11`), 1)
			return result{kind: BreakHashMismatch, fi: fi, li: li, msg: "the record was changed"}
		}},
		{"record deleted", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.remove(fi, li)
			return result{kind: BreakSeqGap, fi: fi, li: li, msg: "records were deleted"}
		}},
		{"rotated file deleted from the middle", func(t *testing.T, c *logCopy) result {
			c.lines[2] = nil
			return result{kind: BreakMissingFile, fi: 3, li: 0, msg: filepath.Base(c.files[2]) + " (seq "}
		}},
		{"two rotated files' contents swapped (their names swapped)", func(t *testing.T, c *logCopy) result {
			c.lines[1], c.lines[2] = c.lines[2], c.lines[1]
			return result{kind: BreakSeqReorder, fi: 1, li: 0, msg: "the files are out of order"}
		}},
		{"end of a rotated file cut off", func(t *testing.T, c *logCopy) result {
			c.lines[2] = c.lines[2][:len(c.lines[2])-2]
			return result{kind: BreakSeqGap, fi: 3, li: 0, msg: "were cut off its end"}
		}},
		{"live file deleted", func(t *testing.T, c *logCopy) result {
			n := len(c.lines) - 1
			c.lines[n] = nil
			return result{kind: BreakMissingFile, fi: n - 1, li: len(c.lines[n-1]) - 1, msg: "the file after it (the live file"}
		}},
		{"live file emptied", func(t *testing.T, c *logCopy) result {
			n := len(c.lines) - 1
			c.lines[n] = [][]byte{}
			return result{kind: BreakMissingFile, fi: n - 1, li: len(c.lines[n-1]) - 1, msg: "is missing, or was emptied"}
		}},
		{"oldest file deleted", func(t *testing.T, c *logCopy) result {
			c.lines[0] = nil
			return result{kind: BreakMissingStart, fi: 1, li: 0, msg: "no audit.retention record"}
		}},
		{"live file cut at a record, checkpoints kept off the gateway", func(t *testing.T, c *logCopy) result {
			n := len(c.lines) - 1
			c.lines[n] = c.lines[n][:len(c.lines[n])-4]
			return result{kind: BreakCutOff, fi: -1, li: len(c.lines[n]) - 1, opts: &VerifyOptions{Key: e.pub, Checkpoints: e.cps},
				msg: "were cut off its end"}
		}},
		{"live file cut mid-record", func(t *testing.T, c *logCopy) result {
			n := len(c.lines) - 1
			last := c.lines[n][len(c.lines[n])-1]
			c.lines[n][len(c.lines[n])-1] = last[:len(last)/2]
			return result{kind: BreakTruncated, fi: -1, li: len(c.lines[n]) - 1, msg: "cut mid-record"}
		}},
		{"two records swapped", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.lines[fi][li], c.lines[fi][li+1] = c.lines[fi][li+1], c.lines[fi][li]
			return result{kind: BreakSeqReorder, fi: fi, li: li, msg: "out of order"}
		}},
		{"record changed, chain resealed", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.lines[fi][li] = bytes.Replace(c.lines[fi][li], []byte(`"quantity":10`), []byte(`"quantity":11`), 1)
			c.reseal(fi, li, nil)
			cfi, cli := c.findAfter(t, fi, li, isEvent(EventCheckpoint))
			return result{kind: BreakCheckpoint, fi: cfi, li: cli, msg: "a forged or misplaced checkpoint"}
		}},
		{"checkpoints forged with another key", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.lines[fi][li] = bytes.Replace(c.lines[fi][li], []byte(`"quantity":10`), []byte(`"quantity":11`), 1)
			c.reseal(fi, li, resignWith(otherPriv, otherID))
			cfi, cli := c.findAfter(t, fi, li, isEvent(EventCheckpoint))
			return result{kind: BreakWrongKey, fi: cfi, li: cli, msg: "signed with key id " + otherID}
		}},
		{"checkpoints forged under the real key id", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, call)
			c.lines[fi][li] = bytes.Replace(c.lines[fi][li], []byte(`"quantity":10`), []byte(`"quantity":11`), 1)
			c.reseal(fi, li, resignWith(otherPriv, KeyID(e.pub)))
			cfi, cli := c.findAfter(t, fi, li, isEvent(EventCheckpoint))
			return result{kind: BreakBadSignature, fi: cfi, li: cli, msg: "does not verify"}
		}},
		{"checkpoint moved one record back", func(t *testing.T, c *logCopy) result {
			fi, li := c.find(t, 2, isEvent(EventCheckpoint))
			c.lines[fi][li], c.lines[fi][li-1] = c.lines[fi][li-1], c.lines[fi][li]
			c.renumber()
			c.reseal(fi, li-1, nil)
			return result{kind: BreakCheckpoint, fi: fi, li: li - 1, msg: "covers seq"}
		}},
		{"checkpoints removed from the end, chain resealed", func(t *testing.T, c *logCopy) result {
			// From the checkpoint boot-3 opened with, every later checkpoint
			// goes; the 6th record after it is one more than checkpoint_every
			// allows.
			fi, li := c.findLast(t, func(line []byte) bool { return bytes.Contains(line, []byte(`"reason":"open"`)) })
			var at [2]int
			n := 0
			for f := fi; f < len(c.lines); f++ {
				var kept [][]byte
				for l, line := range c.lines[f] {
					if (f > fi || l > li) && isEvent(EventCheckpoint)(line) {
						continue
					}
					kept = append(kept, line)
					if f > fi || l > li {
						if n++; n == 6 {
							at = [2]int{f, len(kept) - 1}
						}
					}
				}
				c.lines[f] = kept
			}
			c.renumber()
			c.reseal(fi, li+1, nil)
			return result{kind: BreakUnsignedTail, fi: at[0], li: at[1], msg: "more than the 5 allowed"}
		}},
		{"last checkpoint removed, records older than allowed", func(t *testing.T, c *logCopy) result {
			n := len(c.lines) - 1
			c.lines[n] = c.lines[n][:len(c.lines[n])-1] // the shutdown checkpoint
			fi, li := c.findLast(t, isEvent(EventCheckpoint))
			// The first record written later than the first unsigned one.
			first := recordTime(t, c.lines[fi][li])
			for {
				if li++; li == len(c.lines[fi]) {
					fi, li = fi+1, 0
				}
				if recordTime(t, c.lines[fi][li]).After(first) {
					break
				}
			}
			return result{kind: BreakUnsignedTail, fi: fi, li: li,
				opts: &VerifyOptions{Key: e.pub, MaxUnsigned: -1, MaxUnsignedAge: time.Nanosecond}, msg: "more than the 1ns allowed"}
		}},
		{"every checkpoint removed", func(t *testing.T, c *logCopy) result {
			for fi := range c.lines {
				var kept [][]byte
				for _, line := range c.lines[fi] {
					if !isEvent(EventCheckpoint)(line) {
						kept = append(kept, line)
					}
				}
				c.lines[fi] = kept
			}
			c.renumber()
			c.reseal(0, 0, nil)
			return result{kind: BreakNotSigned, fi: 0, li: 0, msg: "nothing in the log is signed"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.copy(t)
			want := tc.tamper(t, c)
			names := append([]string(nil), c.files...)
			files := c.write(t)
			opts := VerifyOptions{Key: e.pub}
			if want.opts != nil {
				opts = *want.opts
			}
			rep, err := VerifyLog(files, opts)
			var br *Break
			if !errors.As(err, &br) {
				t.Fatalf("not detected: %v\n%s", err, rep)
			}
			file := c.live
			if want.fi >= 0 {
				file = names[want.fi]
			}
			if br.Kind != want.kind || br.File != file || br.Line != want.li+1 || !strings.Contains(br.Message, want.msg) ||
				!strings.HasPrefix(br.Message, file+":") || br.Seq == 0 {
				t.Errorf("break %s at %s:%d (seq %d): %s\nwant %s at %s:%d, message with %q",
					br.Kind, filepath.Base(br.File), br.Line, br.Seq, br.Message, want.kind, filepath.Base(file), want.li+1, want.msg)
			}
		})
	}
}

func (c *logCopy) findAfter(t *testing.T, fi, li int, match func([]byte) bool) (int, int) {
	t.Helper()
	for ; fi < len(c.lines); fi, li = fi+1, -1 {
		for j := li + 1; j < len(c.lines[fi]); j++ {
			if match(c.lines[fi][j]) {
				return fi, j
			}
		}
	}
	t.Fatal("no such record")
	return 0, 0
}

func (c *logCopy) findLast(t *testing.T, match func([]byte) bool) (int, int) {
	t.Helper()
	for fi := len(c.lines) - 1; fi >= 0; fi-- {
		for li := len(c.lines[fi]) - 1; li >= 0; li-- {
			if match(c.lines[fi][li]) {
				return fi, li
			}
		}
	}
	t.Fatal("no such record")
	return 0, 0
}

// The live file cut at a record boundary looks like an unclean stop
// without checkpoints kept off the gateway: verify says so, and passes.
// No file of a log the gateway wrote is empty: an emptied log is a break,
// with or without a key and the checkpoints kept off the gateway.
func TestVerifyLogEmpty(t *testing.T) {
	e := newEvidenceLog(t)
	empty := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(empty, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, opts := range []VerifyOptions{{}, {Key: e.pub}, {Key: e.pub, Checkpoints: e.cps}} {
		rep, err := VerifyLog([]string{empty}, opts)
		var br *Break
		if !errors.As(err, &br) || br.Kind != BreakEmpty || rep.Break != br || !strings.Contains(br.Message, "no records in 1 file:") {
			t.Errorf("an empty log (key %v, %d checkpoints): %v, report %+v", opts.Key != nil, len(opts.Checkpoints), err, rep)
		}
	}
	// A piece of a log may be empty: Verify checks only the chain.
	if _, err := VerifyFiles(empty); err != nil {
		t.Errorf("VerifyFiles of an empty file: %v", err)
	}
}

func TestVerifyLogOpenEnd(t *testing.T) {
	e := newEvidenceLog(t)
	c := e.copy(t)
	n := len(c.lines) - 1
	c.lines[n] = c.lines[n][:len(c.lines[n])-2]
	rep, err := VerifyLog(c.write(t), VerifyOptions{Key: e.pub})
	if err != nil {
		t.Fatal(err)
	}
	last := rep.Notes[len(rep.Notes)-1]
	if last.Kind != NoteOpenEnd || last.File != c.live || !strings.Contains(last.Message, "--checkpoints") {
		t.Errorf("notes %+v", rep.Notes)
	}
}

func TestVerifyLogOffBoxCheckpointRefused(t *testing.T) {
	e := newEvidenceLog(t)
	cps := append([]Checkpoint(nil), e.cps...)
	cps[3].Hash = strings.Repeat("0", 64)
	if _, err := VerifyLog(mustLogFiles(t, e.live), VerifyOptions{Key: e.pub, Checkpoints: cps}); err == nil ||
		!strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a forged off-box checkpoint: %v", err)
	}
	if _, err := VerifyLog(mustLogFiles(t, e.live), VerifyOptions{Checkpoints: e.cps}); err == nil {
		t.Error("off-box checkpoints without a key")
	}
}

// --after lets a piece of a log verify as the continuation of a known hash.
func TestVerifyLogAfter(t *testing.T) {
	e := newEvidenceLog(t)
	files := mustLogFiles(t, e.live)
	first, _ := VerifyFiles(files[0])
	rep, err := VerifyLog(files[1:], VerifyOptions{Key: e.pub, After: first.LastHash})
	if err != nil || rep.FirstPrev != first.LastHash {
		t.Fatalf("%v %+v", err, rep)
	}
	_, err = VerifyLog(files[1:], VerifyOptions{Key: e.pub, After: strings.Repeat("1", 64)})
	var br *Break
	if !errors.As(err, &br) || br.Kind != BreakMissingStart {
		t.Errorf("wrong --after: %v", err)
	}
}

func recordTime(t *testing.T, line []byte) time.Time {
	t.Helper()
	h, f := parseRecord(bytes.TrimSuffix(clone(line), []byte("\n")))
	if f != nil {
		t.Fatal(f.msg)
	}
	return h.time
}

// A record added after a clean stop's shutdown checkpoint is refused, also
// once the next start's checkpoint covers it: that checkpoint vouches only
// for the log as the gateway found it, and no gateway that signs writes
// anything between its shutdown checkpoint and the next start's.
func TestVerifyLogRecordAfterShutdown(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()
	recs := readLog(t, l.path)
	last := recs[len(recs)-1]
	if last.event() != EventCheckpoint || !strings.Contains(string(last.raw), `"reason":"shutdown"`) {
		t.Fatalf("the log does not end with the shutdown checkpoint: %s", last.raw)
	}
	appendForged(t, l.path, last, `"time":"2019-01-01T00:00:00Z","event":"call","gateway":"site-a-gw1","principal":{"user":"mallory"}`)

	check := func(when string) {
		t.Helper()
		_, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
		var br *Break
		if !errors.As(err, &br) || br.Kind != BreakAfterStop || br.Seq != last.seq()+1 ||
			!strings.Contains(br.Message, "follows the shutdown checkpoint") {
			t.Errorf("%s: %v, want %s at seq %d", when, err, BreakAfterStop, last.seq()+1)
		}
		if _, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub, MaxUnsigned: -1}); err != nil {
			t.Errorf("%s, --max-unsigned -1: %v", when, err)
		}
	}
	check("the forged record last")
	l.opts.BootID = "boot-2"
	w = l.open(t) // checkpoints (reason open) over what it found
	writeSome(t, w, 2)
	w.Close()
	check("after the next start's checkpoint")
}

// A start without the signing key after a signed clean stop is a genuine
// log: verify notes that its records are unsigned, and a signed start after
// it checks as before.
func TestVerifyLogUnsignedStartAfterSignedStop(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	key := l.opts.SigningKey
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()

	l.opts.SigningKey, l.opts.BootID = nil, "boot-2"
	w = l.open(t)
	writeStart(t, w, "boot-2", EventGatewayStart)
	writeSome(t, w, 1200) // more than the signed run's checkpoint_every: no checkpoint limits an unsigned run
	if err := w.Record(EventGatewayStop, true, func(e *zerolog.Event) { e.Str(FieldBootID, "boot-2") }); err != nil {
		t.Fatal(err)
	}
	w.Close()

	l.opts.SigningKey, l.opts.BootID = key, "boot-3"
	w = l.open(t)
	writeSome(t, w, 2)
	w.Close()
	rep, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Notes, func(n Note) bool {
		return n.Kind == NoteUnsigned && strings.Contains(n.Message, "boot boot-2 started without a signing key")
	}) {
		t.Errorf("notes %+v", rep.Notes)
	}
}

// The records a start without the key writes before its gateway.start do
// not pass on their own: added after a clean stop (a forged ticket.load),
// at the end of the log or before the next signed start's checkpoint,
// they are after_shutdown.
func TestVerifyLogStartRecordsAfterShutdownWithoutAStart(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()
	recs := readLog(t, l.path)
	last := recs[len(recs)-1]
	appendForged(t, l.path, last,
		`"time":"2026-11-27T22:00:00Z","event":"ticket.load","gateway":"site-a-gw1","ticket_id":"EVIL"`,
		`"time":"2026-11-27T22:00:00Z","event":"policy.load","gateway":"site-a-gw1"`)
	check := func(when string) {
		t.Helper()
		_, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
		var br *Break
		if !errors.As(err, &br) || br.Kind != BreakAfterStop || br.Seq != last.seq()+1 || !strings.Contains(br.Message, "a ticket.load record follows") {
			t.Errorf("%s: %v, want %s at the forged ticket.load", when, err, BreakAfterStop)
		}
	}
	check("at the end of the log")
	l.opts.BootID = "boot-2"
	w = l.open(t)
	writeSome(t, w, 2)
	w.Close()
	check("before the next signed start's checkpoint")
}

// appendForged appends records to the log at path after last, as a forger
// who knows the format would: each body (the fields between seq and prev)
// gets the next seq, the hash of the record before as prev, and its own hash.
func appendForged(t *testing.T, path string, last rec, bodies ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	prev, seq := lineHash(last.raw), last.seq()
	for _, body := range bodies {
		seq++
		line := reseal([]byte(fmt.Sprintf(`{"seq":%d,%s,"prev":"%s","hash":"%s"}`+"\n", seq, body, prev, strings.Repeat("0", 64))))
		if _, err := f.Write(line); err != nil {
			t.Fatal(err)
		}
		prev = lineHash(line)
	}
}

// A restart's note names the last record of the boot before, not the
// records the new start wrote before its gateway.start (policy.load …).
func TestVerifyLogRestartNoteNamesTheBootBefore(t *testing.T) {
	l := newTestLog(t)
	w := l.open(t)
	if err := w.Record(EventGatewayStart, true, func(e *zerolog.Event) { e.Str(FieldBootID, "boot-1") }); err != nil {
		t.Fatal(err)
	}
	writeSome(t, w, 3)
	w.Close() // without gateway.stop: an unclean end
	last := uint64(len(l.lines(t)))

	w = l.open(t)
	writeStart(t, w, "boot-2", EventGatewayStart)
	w.Close()
	rep, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("(the record before: seq %d at ", last)
	if !slices.ContainsFunc(rep.Notes, func(n Note) bool { return n.Kind == NoteUncleanStop && strings.Contains(n.Message, want) }) {
		t.Errorf("notes %+v; want the unclean stop's note to name seq %d, boot-1's last record", rep.Notes, last)
	}
}

// A start that failed after the log was opened ends with
// gateway.start_failed: after a signed clean stop, a keyless start that
// failed passes as one that started (noted unsigned), and the boot counts
// as ended cleanly.
func TestVerifyLogStartFailedAfterShutdown(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.BootID = "boot-1"
	w := l.open(t)
	writeSome(t, w, 3)
	w.Close()

	l.opts.SigningKey, l.opts.BootID = nil, "boot-2"
	w = l.open(t)
	if err := w.Record("policy.load", true, func(*zerolog.Event) {}); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(EventGatewayStartFailed, true, func(e *zerolog.Event) {
		e.Str(FieldBootID, "boot-2").Str("error", "listen tcp 127.0.0.1:5020: bind: address already in use")
	}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	rep, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !slices.ContainsFunc(rep.Notes, func(n Note) bool {
		return n.Kind == NoteUnsigned && strings.Contains(n.Message, "boot boot-2 failed to start without a signing key")
	}) {
		t.Errorf("notes %+v", rep.Notes)
	}
	if slices.ContainsFunc(rep.Notes, func(n Note) bool { return n.Kind == NoteOpenEnd }) {
		t.Errorf("a failed start noted as an open end: %+v", rep.Notes)
	}
}

// A start without the signing key after a crash of a signing gateway (the
// last checkpoint is no shutdown one): its records and the crashed run's
// last ones are unsigned, noted, and not held to the last checkpoint's
// interval however long the gateway was down; each keyless boot is noted.
func TestVerifyLogKeylessStartsAfterACrash(t *testing.T) {
	l := newTestLog(t)
	pub := l.signed(t)
	l.opts.CheckpointInterval = time.Minute
	w := l.open(t)
	if err := w.Record(EventGatewayStart, true, func(e *zerolog.Event) { e.Str(FieldBootID, "boot-1").Str(FieldKeyID, KeyID(pub)) }); err != nil {
		t.Fatal(err)
	}
	writeSome(t, w, 3)
	w.Close()
	// the crash: the shutdown checkpoint was never written
	b, err := os.ReadFile(l.path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	if !strings.Contains(lines[len(lines)-1], `"reason":"shutdown"`) {
		t.Fatalf("the last record is not the shutdown checkpoint: %s", lines[len(lines)-1])
	}
	if err := os.WriteFile(l.path, []byte(strings.Join(lines[:len(lines)-1], "")), 0o640); err != nil {
		t.Fatal(err)
	}

	later := time.Now().Add(5 * time.Minute) // down for longer than the checkpoint interval
	l.opts.SigningKey, l.opts.Clock = nil, func() time.Time { return later }
	for _, boot := range []struct {
		id    string
		event string
	}{{"boot-2", EventGatewayStartFailed}, {"boot-3", EventGatewayStart}} {
		l.opts.BootID = boot.id
		w = l.open(t)
		writeStart(t, w, boot.id, boot.event)
		writeSome(t, w, 2)
		w.Close()
	}
	rep, err := VerifyLog(mustLogFiles(t, l.path), VerifyOptions{Key: pub})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	for _, want := range []string{"boot boot-2 failed to start without a signing key after the last checkpoint",
		"boot boot-3 started without a signing key after the last checkpoint"} {
		if !slices.ContainsFunc(rep.Notes, func(n Note) bool { return n.Kind == NoteUnsigned && strings.Contains(n.Message, want) }) {
			t.Errorf("no note %q in %+v", want, rep.Notes)
		}
	}
}

// writeStart writes what a start writes: policy.load, ticket.load, then
// event (gateway.start or gateway.start_failed) of boot.
func writeStart(t *testing.T, w *Writer, boot, event string) {
	t.Helper()
	for _, ev := range []string{"policy.load", "ticket.load"} {
		if err := w.Record(ev, true, func(*zerolog.Event) {}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Record(event, true, func(e *zerolog.Event) { e.Str(FieldBootID, boot) }); err != nil {
		t.Fatal(err)
	}
}

// Only NoUnsignedLimit and NoUnsignedAgeLimit turn the checks of the
// unsigned tail off; another negative (-5m typed for 5m) is refused,
// naming the option, rather than checking nothing.
func TestVerifyLogUnsignedLimitOptions(t *testing.T) {
	e := newEvidenceLog(t)
	c := e.copy(t)
	n := len(c.lines) - 1
	c.lines[n] = c.lines[n][:len(c.lines[n])-1] // the shutdown checkpoint: the records before it are an unsigned tail
	files := c.write(t)
	var br *Break
	if _, err := VerifyLog(files, VerifyOptions{Key: e.pub, MaxUnsigned: NoUnsignedLimit, MaxUnsignedAge: time.Nanosecond}); !errors.As(err, &br) || br.Kind != BreakUnsignedTail {
		t.Fatalf("an unsigned tail older than 1ns: %v, want %s", err, BreakUnsignedTail)
	}
	if _, err := VerifyLog(files, VerifyOptions{Key: e.pub, MaxUnsigned: NoUnsignedLimit, MaxUnsignedAge: NoUnsignedAgeLimit}); err != nil {
		t.Errorf("with no limits (-1, -1s): %v", err)
	}
	for _, age := range []time.Duration{-time.Nanosecond, -2 * time.Second, -5 * time.Minute} {
		_, err := VerifyLog(files, VerifyOptions{Key: e.pub, MaxUnsigned: NoUnsignedLimit, MaxUnsignedAge: age})
		if want := "audit: VerifyOptions.MaxUnsignedAge " + age.String() + ": want a duration, 0 (the last checkpoint's own checkpoint_interval) or -1s (no limit)"; err == nil || err.Error() != want || errors.As(err, &br) {
			t.Errorf("MaxUnsignedAge %s: %v, want %q", age, err, want)
		}
	}
	_, err := VerifyLog(files, VerifyOptions{Key: e.pub, MaxUnsigned: -2})
	if want := "audit: VerifyOptions.MaxUnsigned -2: want a count, 0 (the last checkpoint's own checkpoint_every) or -1 (no limit)"; err == nil || err.Error() != want {
		t.Errorf("MaxUnsigned -2: %v, want %q", err, want)
	}
}

// The notes and the summary say "1 checkpoint", "2 records", never
// "checkpoint(s)".
func TestVerifyLogWordsSingularPlural(t *testing.T) {
	e := newEvidenceLog(t)
	rep, err := VerifyLog(mustLogFiles(t, e.live), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last := rep.Notes[len(rep.Notes)-1]
	if want := fmt.Sprintf("%d checkpoints not checked: give the public key (--key) to check their signatures", rep.Checkpoints); last.Kind != NoteUnchecked || last.Message != want {
		t.Errorf("note %q, want %q", last.Message, want)
	}
	if s := rep.String(); strings.Contains(s, "(s)") || !strings.Contains(s, fmt.Sprintf("%d records in %d files", rep.Records, rep.Files)) {
		t.Errorf("summary %q", s)
	}
	// A log of one record and the shutdown checkpoint after it, unchecked.
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := Open(Options{Path: path, Gateway: "gw-one", SigningKey: e.priv, BootID: "boot-one"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record("x.y", false, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// Keep the log up to its first checkpoint: a prefix of a chain is a chain.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	keep := slices.IndexFunc(lines, isEvent(EventCheckpoint))
	if keep < 0 {
		t.Fatalf("no checkpoint in %s", data)
	}
	if err := os.WriteFile(path, bytes.Join(lines[:keep+1], nil), 0o640); err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyLog(mustLogFiles(t, path), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rep.Notes, func(n Note) bool { return n.Kind == NoteUnchecked })
	if want := "1 checkpoint not checked: give the public key (--key) to check its signature"; i < 0 || rep.Notes[i].Message != want {
		t.Errorf("notes %+v, want %q", rep.Notes, want)
	}
	one := Report{Files: 1, Records: 1, FirstSeq: 1, LastSeq: 1, LastHash: "h", FirstPrev: GenesisPrev, Checkpoints: 1, KeyID: "k", LastCheckpoint: 1, Unsigned: 1}
	if got, want := one.String(), "1 record in 1 file, seq 1 to 1, last hash h; 1 checkpoint, signed by key id k, the last at seq 1 with 1 record after it"; got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	one.Records, one.Files, one.Checkpoints, one.Unsigned = 3, 2, 2, 0
	if got, want := one.String(), "3 records in 2 files, seq 1 to 1, last hash h; 2 checkpoints, signed by key id k, the last at seq 1 with 0 records after it"; got != want {
		t.Errorf("summary\n got %q\nwant %q", got, want)
	}
	if got, want := (Report{Files: 1}).String(), "no records in 1 file"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}
