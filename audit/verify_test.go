package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fiveRecords writes a log of five call records and returns its lines.
func fiveRecords(t *testing.T) [][]byte {
	t.Helper()
	l := newTestLog(t)
	w := l.open(t)
	writeSome(t, w, 5)
	w.Close()
	return l.lines(t)
}

func join(lines ...[]byte) []byte { return bytes.Join(lines, nil) }

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// reseal recomputes a changed line's hash, as a forger would.
func reseal(line []byte) []byte {
	body := bytes.TrimSuffix(line, []byte("\n"))
	canonical := append(clone(body[:len(body)-hashFieldLen]), '}')
	sum := sha256.Sum256(canonical)
	return []byte(string(canonical[:len(canonical)-1]) + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}` + "\n")
}

func verifyBytes(t *testing.T, name string, b []byte) (Report, *Break) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFiles(path)
	if err == nil {
		return rep, nil
	}
	var br *Break
	if !errors.As(err, &br) {
		t.Fatalf("VerifyFiles: %v, want a *Break", err)
	}
	if rep.Break != br {
		t.Errorf("Report.Break is not the returned break")
	}
	if br.File != path || !strings.HasPrefix(br.Message, path+":") || strings.Contains(br.Message, "\n") {
		t.Errorf("message %q should be one line starting with %s:", br.Message, path)
	}
	br.Message = strings.TrimPrefix(br.Message, filepath.Dir(path)+"/")
	return rep, br
}

func TestVerifyIntact(t *testing.T) {
	lines := fiveRecords(t)
	rep, br := verifyBytes(t, "audit.jsonl", join(lines...))
	if br != nil {
		t.Fatal(br)
	}
	if rep.Records != 5 || rep.FirstSeq != 1 || rep.LastSeq != 5 || rep.FirstPrev != GenesisPrev || len(rep.LastHash) != 64 {
		t.Errorf("report = %+v", rep)
	}
	if got, want := rep.String(), "5 records in 1 file, seq 1 to 5, last hash "+rep.LastHash; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !bytes.Contains(lines[4], []byte(`"hash":"`+rep.LastHash+`"`)) {
		t.Errorf("LastHash %s is not the last record's", rep.LastHash)
	}
	if rep, err := Verify(strings.NewReader("")); err != nil || rep.Records != 0 {
		t.Errorf("empty log: %+v %v", rep, err)
	}
}

// A file whose line endings were converted to CR LF says so.
func TestVerifyCRLF(t *testing.T) {
	lines := fiveRecords(t)
	crlf := bytes.ReplaceAll(join(lines...), []byte("\n"), []byte("\r\n"))
	_, br := verifyBytes(t, "audit.jsonl", crlf)
	if br == nil || br.Kind != BreakMalformed || br.Line != 1 || !strings.Contains(br.Message, "carriage return (CR LF)") {
		t.Errorf("CR LF: %v", br)
	}
}

func TestVerifyTampering(t *testing.T) {
	lines := fiveRecords(t)
	changed := clone(lines[2])
	i := bytes.Index(changed, []byte(`"quantity":10`))
	changed[i+len(`"quantity":1`)] = '1' // quantity 10 → 11

	for _, tc := range []struct {
		name    string
		log     []byte
		kind    BreakKind
		line    int
		seq     uint64
		message string
		good    uint64 // records before the break
	}{
		{"one byte changed", join(lines[0], lines[1], changed, lines[3], lines[4]),
			BreakHashMismatch, 3, 3, "audit.jsonl:3 (seq 3): hash does not match the record: the record was changed", 2},
		{"changed and resealed", join(lines[0], lines[1], reseal(changed), lines[3], lines[4]),
			BreakPrevMismatch, 4, 4, "audit.jsonl:4 (seq 4): prev does not match the hash of seq 3 before it: a record was replaced, or the files are not in order", 3},
		{"record deleted", join(lines[0], lines[1], lines[3], lines[4]),
			BreakSeqGap, 3, 4, "audit.jsonl:3 (seq 4): seq 4 follows seq 2: 1 record (seq 3) missing: records were deleted", 2},
		{"two records deleted", join(lines[0], lines[3], lines[4]),
			BreakSeqGap, 2, 4, "audit.jsonl:2 (seq 4): seq 4 follows seq 1: 2 records (seq 2 to 3) missing: records were deleted", 1},
		{"two records swapped", join(lines[0], lines[2], lines[1], lines[3], lines[4]),
			BreakSeqReorder, 2, 3, "audit.jsonl:2 (seq 3): seq 3 where 2 was expected, and seq 2 comes 1 line later: records are out of order", 1},
		{"record moved back", join(lines[0], lines[2], lines[3], lines[1], lines[4]),
			BreakSeqReorder, 2, 3, "audit.jsonl:2 (seq 3): seq 3 where 2 was expected, and seq 2 comes 2 lines later: records are out of order", 1},
		{"record repeated", join(lines[0], lines[1], lines[2], lines[2], lines[3], lines[4]),
			BreakSeqReorder, 4, 3, "audit.jsonl:4 (seq 3): seq 3 follows seq 3: records are out of order or repeated", 3},
		{"last line cut", join(lines[0], lines[1], lines[2], lines[3], lines[4][:40]),
			BreakTruncated, 5, 5, "audit.jsonl:5 (seq 5): the last line ends without a newline after 40 bytes: the log was cut mid-record", 4},
		{"foreign line", join(lines[0], lines[1], []byte("hello\n"), lines[2]),
			BreakMalformed, 3, 0, "audit.jsonl:3: not an audit record: it does not start with {\"seq\":", 2},
		{"empty line", join(lines[0], []byte("\n"), lines[1]),
			BreakMalformed, 2, 0, "audit.jsonl:2: not an audit record: it does not start with {\"seq\":", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, br := verifyBytes(t, "audit.jsonl", tc.log)
			if br == nil {
				t.Fatal("tampering not detected")
			}
			if br.Kind != tc.kind || br.Line != tc.line || br.Seq != tc.seq || br.Message != tc.message {
				t.Errorf("break = %s line %d seq %d %q\nwant    %s line %d seq %d %q",
					br.Kind, br.Line, br.Seq, br.Message, tc.kind, tc.line, tc.seq, tc.message)
			}
			if off := int64(len(join(bytesBefore(tc.log, tc.line)...))); br.Offset != off {
				t.Errorf("offset = %d, want %d", br.Offset, off)
			}
			if rep.Records != tc.good {
				t.Errorf("%d records passed, want %d", rep.Records, tc.good)
			}
		})
	}
}

// bytesBefore returns the lines of log before line n (1-based).
func bytesBefore(log []byte, n int) [][]byte {
	return bytes.SplitAfter(log, []byte("\n"))[:n-1]
}

// TestVerifyEveryByte flips each byte of the middle record in turn: each
// change must break the chain at that record.
func TestVerifyEveryByte(t *testing.T) {
	lines := fiveRecords(t)
	for i := range lines[2] {
		mid := clone(lines[2])
		mid[i] ^= 0x01
		_, err := Verify(bytes.NewReader(join(lines[0], lines[1], mid, lines[3], lines[4])))
		var br *Break
		if !errors.As(err, &br) {
			t.Fatalf("byte %d (%q) flipped: not detected", i, lines[2][i])
		}
		inBody := i >= len(recordPrefix) && i < len(lines[2])-1-hashFieldLen
		if br.Line != 3 || (inBody && br.Kind != BreakHashMismatch) ||
			(br.Kind != BreakHashMismatch && br.Kind != BreakMalformed) {
			t.Fatalf("byte %d (%q) flipped: %s", i, lines[2][i], br.Message)
		}
	}
}

func TestVerifyFilesRotation(t *testing.T) {
	lines := fiveRecords(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "audit-1.jsonl"), filepath.Join(dir, "audit-2.jsonl")
	os.WriteFile(a, join(lines[:3]...), 0o640)
	os.WriteFile(b, join(lines[3:]...), 0o640)

	rep, err := VerifyFiles(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 2 || rep.Records != 5 || rep.FirstSeq != 1 || rep.LastSeq != 5 || rep.FirstPrev != GenesisPrev {
		t.Errorf("report = %+v", rep)
	}

	// The second file alone verifies and links back to the first.
	repA, _ := VerifyFiles(a)
	repB, err := VerifyFiles(b)
	if err != nil {
		t.Fatal(err)
	}
	if repB.FirstSeq != 4 || repB.FirstPrev != repA.LastHash {
		t.Errorf("rotated file: first seq %d prev %s, want 4 and %s", repB.FirstSeq, repB.FirstPrev, repA.LastHash)
	}

	// Out of order.
	_, err = VerifyFiles(b, a)
	var br *Break
	if !errors.As(err, &br) || br.File != a || br.Line != 1 || br.Kind != BreakSeqReorder {
		t.Errorf("files out of order: %v", err)
	}

	if _, err := VerifyFiles(filepath.Join(dir, "missing.jsonl")); err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}

func TestVerifyReader(t *testing.T) {
	lines := fiveRecords(t)
	_, err := Verify(bytes.NewReader(join(lines[0], lines[2])))
	if err == nil || err.Error() != "line 2 (seq 3): seq 3 follows seq 1: 1 record (seq 2) missing: records were deleted" {
		t.Errorf("Verify = %v", err)
	}
}
