package audit

import (
	"bufio"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// BreakKind says how the chain is broken.
type BreakKind string

// Kinds of Break.
const (
	BreakHashMismatch BreakKind = "hash_mismatch" // a record's bytes were changed
	BreakPrevMismatch BreakKind = "prev_mismatch" // a record does not link to the one before it
	BreakSeqGap       BreakKind = "seq_gap"       // records are missing
	BreakSeqReorder   BreakKind = "seq_reorder"   // records are out of order or repeated
	BreakMalformed    BreakKind = "malformed"     // a line is not an audit record
	BreakTruncated    BreakKind = "truncated"     // the last line was cut mid-record
	BreakMissingFile  BreakKind = "missing_file"  // a rotated file is missing from the middle of the log
	BreakMissingStart BreakKind = "missing_start" // the log does not begin at its first record, and no retention record says why

	// Checkpoints (with VerifyLog).
	BreakCheckpoint   BreakKind = "checkpoint_mismatch" // a checkpoint does not cover the record before it, or is malformed
	BreakWrongKey     BreakKind = "wrong_key"           // a checkpoint names another key
	BreakBadSignature BreakKind = "bad_signature"       // a checkpoint's signature does not verify
	BreakNotSigned    BreakKind = "not_signed"          // a key was given, but the log holds no checkpoint
	BreakUnsignedTail BreakKind = "unsigned_tail"       // more records follow the last checkpoint than its writer allows
	BreakCutOff       BreakKind = "cut_off"             // the log ends before a checkpoint kept off the gateway
	BreakRewritten    BreakKind = "rewritten"           // a record is not the one a checkpoint kept off the gateway covers
	BreakEmpty        BreakKind = "empty"               // the log holds no record at all
	BreakAfterStop    BreakKind = "after_shutdown"      // a record follows a shutdown checkpoint that no gateway with the key wrote
)

// Break is the first place where the chain does not hold. It is also the
// error Verify returns.
type Break struct {
	File    string    `json:"file,omitempty"` // as given to VerifyFiles; empty for Verify
	Line    int       `json:"line"`           // 1-based line number in File
	Offset  int64     `json:"offset"`         // byte offset of the line in File
	Seq     uint64    `json:"seq,omitempty"`  // seq of the record, when it could be read
	Kind    BreakKind `json:"kind"`
	Message string    `json:"message"` // one line, such as "audit.jsonl:57 (seq 57): hash does not match the record: the record was changed"
}

func (b *Break) Error() string { return b.Message }

// NoteKind says what a Note is about.
type NoteKind string

// Kinds of Note: facts about the log that are not tampering.
const (
	NoteRestart     NoteKind = "restart"       // a new boot after a clean stop
	NoteUncleanStop NoteKind = "unclean_stop"  // a new boot after a stop without gateway.stop or shutdown checkpoint
	NoteOpenEnd     NoteKind = "open_end"      // the log ends without a clean stop: running, crashed or cut
	NoteRetention   NoteKind = "retention"     // the log begins after files deleted by retention
	NoteNotSigned   NoteKind = "not_signed"    // no checkpoints: the log is not signed
	NoteUnchecked   NoteKind = "unchecked"     // checkpoints whose signatures were not checked (no key)
	NoteOffBox      NoteKind = "off_box"       // checkpoints kept off the gateway that cover records before the log
	NoteUnsigned    NoteKind = "unsigned_boot" // a start without the signing key after a signed clean stop
)

// Note is something VerifyLog found worth saying that is not tampering.
type Note struct {
	File    string   `json:"file,omitempty"`
	Line    int      `json:"line,omitempty"`
	Seq     uint64   `json:"seq,omitempty"`
	Kind    NoteKind `json:"kind"`
	Message string   `json:"message"`
}

// Report is what Verify checked.
type Report struct {
	Files    int    `json:"files"`
	Records  uint64 `json:"records"` // records that passed, up to the first break
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// FirstPrev is prev of the first record: 64 zeros for the start of a
	// log, otherwise the LastHash of the file rotated out before it.
	FirstPrev string `json:"first_prev"`
	LastHash  string `json:"last_hash"`
	Break     *Break `json:"break,omitempty"` // nil when the whole chain holds

	Checkpoints    int    `json:"checkpoints"`
	KeyID          string `json:"key_id,omitempty"`          // of the key the signatures were checked with
	LastCheckpoint uint64 `json:"last_checkpoint,omitempty"` // seq of the last checkpoint record
	Unsigned       uint64 `json:"unsigned"`                  // records after it (all records when there is none)
	Boots          int    `json:"boots"`                     // gateway starts seen (by boot_id)
	Notes          []Note `json:"notes,omitempty"`
}

// String summarizes the report on one line, for `interlock audit verify`.
func (r Report) String() string {
	if r.Records == 0 {
		s := "no records in " + Plural(r.Files, "file")
		if r.Break != nil {
			s += "; " + r.Break.Message
		}
		return s
	}
	s := fmt.Sprintf("%s in %s, seq %d to %d, last hash %s", Plural(r.Records, "record"), Plural(r.Files, "file"), r.FirstSeq, r.LastSeq, r.LastHash)
	if r.FirstPrev != GenesisPrev {
		s += ", continuing a log whose last hash is " + r.FirstPrev
	}
	if r.Checkpoints > 0 {
		signed := "signatures not checked"
		if r.KeyID != "" {
			signed = "signed by key id " + r.KeyID
		}
		s += fmt.Sprintf("; %s, %s, the last at seq %d with %s after it", Plural(r.Checkpoints, "checkpoint"), signed, r.LastCheckpoint, Plural(r.Unsigned, "record"))
	}
	if r.Boots > 1 {
		s += fmt.Sprintf("; %d gateway starts", r.Boots)
	}
	if r.Break != nil {
		s += "; then " + r.Break.Message
	}
	return s
}

// The values of VerifyOptions.MaxUnsigned and MaxUnsignedAge that turn
// their check off. Only these: another negative is more likely a typo (-5m
// for 5m) than a wish to check nothing, so VerifyLog refuses it.
const (
	NoUnsignedLimit    = -1
	NoUnsignedAgeLimit = -time.Second
)

// VerifyOptions say what VerifyLog checks beyond the hash chain.
type VerifyOptions struct {
	// Key is the public key checkpoints must be signed with. Without it the
	// place of each checkpoint in the chain is checked, its signature not.
	Key ed25519.PublicKey
	// MaxUnsigned bounds the records after the last checkpoint: 0 takes
	// the every of that checkpoint (its writer's checkpoint_every),
	// NoUnsignedLimit (-1) turns the check off; VerifyLog refuses any
	// other negative.
	MaxUnsigned int
	// MaxUnsignedAge bounds the time from the first record after the last
	// checkpoint to the log's last record: 0 takes that checkpoint's
	// interval, NoUnsignedAgeLimit (-1s) turns the check off; VerifyLog
	// refuses any other negative.
	MaxUnsignedAge time.Duration
	// After is the hash of the record the first file continues. Empty: the
	// log begins at seq 1, or right after files that an audit.retention
	// record in the log says retention deleted.
	After string
	// Checkpoints were kept off the gateway (a SIEM's copy): each must
	// verify with Key and cover a record of the log with the same hash; one
	// past the log's end means its end was cut off.
	Checkpoints []Checkpoint

	// Live is the log's live file as given (the last file), when known:
	// a live file that ends with a rotation's checkpoint is a rotation a
	// crash cut short before the rename, which the gateway's next start
	// completes, not a missing file.
	Live string

	piece bool // VerifyFiles: the chain only, of any piece of a log
}

// Verify checks the hash chain of one log read from r: every line is a record
// whose hash matches its canonical bytes, links by prev to the record before
// it, and carries the next seq. The first record may start at any seq (a
// rotated file); its prev is in Report.FirstPrev. It stops at the first break
// and returns it as a *Break error.
func Verify(r io.Reader) (Report, error) {
	v := verifier{opts: VerifyOptions{piece: true}}
	err := v.stream("", r)
	return v.rep, err
}

// VerifyFiles verifies files in order as one chain, so that each file must
// continue the one before it. Like Verify it checks the chain of any piece
// of a log; VerifyLog checks a whole log.
func VerifyFiles(paths ...string) (Report, error) {
	return verifyFiles(paths, VerifyOptions{piece: true})
}

// VerifyLog verifies a whole log, its files in chain order (LogFiles): the
// hash chain across files, checkpoints and their signatures, the start of
// the log, the records after the last checkpoint, and the checkpoints kept
// off the gateway. It stops at the first break; Report.Notes tells of
// restarts, retention and what could not be checked.
func VerifyLog(paths []string, opts VerifyOptions) (Report, error) {
	opts.piece = false
	if opts.MaxUnsigned < 0 && opts.MaxUnsigned != NoUnsignedLimit {
		return Report{}, fmt.Errorf("audit: VerifyOptions.MaxUnsigned %d: want a count, 0 (the last checkpoint's own checkpoint_every) or -1 (no limit)", opts.MaxUnsigned)
	}
	if opts.MaxUnsignedAge < 0 && opts.MaxUnsignedAge != NoUnsignedAgeLimit {
		return Report{}, fmt.Errorf("audit: VerifyOptions.MaxUnsignedAge %s: want a duration, 0 (the last checkpoint's own checkpoint_interval) or -1s (no limit)", opts.MaxUnsignedAge)
	}
	if len(opts.Checkpoints) > 0 && opts.Key == nil {
		return Report{}, errors.New("audit: checkpoints kept off the gateway need the key to check them")
	}
	for i := range opts.Checkpoints {
		c := &opts.Checkpoints[i]
		if err := c.VerifySignature(opts.Key); err != nil {
			return Report{}, fmt.Errorf("audit: the checkpoint kept off the gateway for seq %d (signed at %s): %v", c.Seq, c.Time, err)
		}
	}
	return verifyFiles(paths, opts)
}

func verifyFiles(paths []string, opts VerifyOptions) (Report, error) {
	v := verifier{opts: opts, given: map[string]bool{}}
	if opts.Key != nil {
		v.rep.KeyID = KeyID(opts.Key)
	}
	for _, p := range paths {
		v.given[strings.TrimSuffix(filepath.Base(p), ".gz")] = true
	}
	for _, p := range paths {
		f, err := OpenLogFile(p) // a .gz file is verified decompressed
		if err != nil {
			return v.rep, fmt.Errorf("audit: %w", err)
		}
		err = v.stream(p, f)
		f.Close()
		if err != nil {
			return v.rep, err
		}
	}
	if opts.piece {
		return v.rep, nil
	}
	return v.rep, v.finish()
}

// place is a record's position, for messages.
type place struct {
	file string
	line int
	off  int64
	seq  uint64
	time time.Time
}

func (p place) String() string {
	if p.file == "" {
		return fmt.Sprintf("line %d (seq %d)", p.line, p.seq)
	}
	return fmt.Sprintf("%s:%d (seq %d)", p.file, p.line, p.seq)
}

// lastCheckpoint is the latest checkpoint seen.
type lastCheckpoint struct {
	at       place
	every    uint64
	interval time.Duration
	reason   string
}

// boot is a gateway start seen in the log.
type boot struct {
	id    string
	clean string // what ended it cleanly (gateway.stop or a shutdown checkpoint), "" for none yet
}

// retained is an audit.retention record.
type retained struct {
	at       place
	file     string
	firstSeq uint64
	lastSeq  uint64
}

type verifier struct {
	opts VerifyOptions
	rep  Report
	have bool // last holds a verified record
	last head
	lr   lineReader

	lastAt    place // of the last verified record
	firstAt   place
	firstRot  *rotatedRecord // the first record, when it is audit.rotated
	prevFile  string         // the file before the current one
	checkCP   *lastCheckpoint
	unsigned  place // the first record after the last checkpoint
	overCount place // the first record past the count allowed after it
	overAge   place // the first record past the time allowed after it
	boot      boot
	retained  map[string]retained // by last hash
	offBox    map[uint64]*Checkpoint
	given     map[string]bool // base names of the files, without .gz
	// unsignedBoot: since the last checkpoint, a shutdown one, a gateway
	// started without the signing key.
	unsignedBoot bool
	// pendingStart is the first of the records a start writes before its
	// gateway.start, after a shutdown checkpoint, until that gateway.start
	// comes.
	pendingStart place
	pendingEvent string
	// beforeStart is the record before the run of records a start writes
	// before its gateway.start (inStart while in such a run): the last
	// record of the boot before, for a restart's note.
	beforeStart place
	inStart     bool
	// keylessNoted is the boot id of the last start without the signing
	// key that was noted.
	keylessNoted string
}

// keylessStart notes a start without the signing key in a log that was
// signed (after a crash, or after another such start): its records are
// unsigned from here, so the unsigned records before it — the crashed
// run's last ones, and those this start wrote before its gateway.start —
// are not held to the last checkpoint's limits either.
func (v *verifier) keylessStart(at place, id, event string) {
	v.unsignedBoot = true
	if v.inStart {
		for _, p := range []*place{&v.overAge, &v.overCount} {
			if p.line > 0 && p.seq > v.beforeStart.seq {
				*p = place{}
			}
		}
	}
	if v.keylessNoted == id {
		return
	}
	v.keylessNoted = id
	what := "started"
	if event == EventGatewayStartFailed {
		what = "failed to start"
	}
	v.note(at, NoteUnsigned, fmt.Sprintf(
		"boot %s %s without a signing key after the last checkpoint at %s: no checkpoint signs its records, "+
			"which the chain alone cannot tell from records added to the log", id, what, v.checkCP.at))
}

// startEvents are the records a start writes before its gateway.start.
func startEvent(event string) bool {
	switch event {
	case EventRotated, EventRetention, EventCapacity, EventRecovered, EventWriteFailed,
		"policy.load", "policy.load_failed", "ticket.load", "ticket.load_refused":
		return true
	}
	return false
}

// rotatedRecord is what VerifyLog reads of an audit.rotated record.
type rotatedRecord struct {
	Reason           string `json:"reason"`
	PreviousFile     string `json:"previous_file"`
	PreviousFirstSeq uint64 `json:"previous_first_seq"`
	PreviousLastSeq  uint64 `json:"previous_last_seq"`
}

func (v *verifier) stream(name string, r io.Reader) error {
	v.rep.Files++
	v.lr.reset(r)
	if v.offBox == nil && len(v.opts.Checkpoints) > 0 {
		v.offBox = map[uint64]*Checkpoint{}
		for i := range v.opts.Checkpoints {
			c := &v.opts.Checkpoints[i]
			v.offBox[c.Seq] = c
		}
	}
	for lineNo := 1; ; lineNo++ {
		line, off, end, err := v.lr.next()
		if err == io.EOF {
			if v.have {
				v.prevFile = name
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit: reading %s: %w", displayName(name), err)
		}
		switch end {
		case lineTooLong:
			return v.fail(name, lineNo, off, line, nil, BreakMalformed,
				fmt.Sprintf("line is longer than %d bytes", maxRecordSize))
		case lineCut:
			return v.fail(name, lineNo, off, line, nil, BreakTruncated,
				fmt.Sprintf("the last line ends without a newline after %d bytes: the log was cut mid-record", len(line)))
		}
		h, f := parseRecord(line)
		if f != nil {
			return v.fail(name, lineNo, off, line, nil, f.kind, f.msg)
		}
		at := place{file: name, line: lineNo, off: off, seq: h.seq, time: h.time}
		var rot *rotatedRecord
		if h.event == EventRotated {
			rot = new(rotatedRecord)
			if err := json.Unmarshal(line, rot); err != nil {
				return v.fail(name, lineNo, off, line, &h, BreakMalformed, "audit.rotated: "+err.Error())
			}
		}
		if rot != nil && rot.Reason == RotateMissing && !v.opts.piece {
			gone := fmt.Sprintf("the records it held after seq %d are gone", rot.PreviousLastSeq)
			if rot.PreviousFile == strings.TrimSuffix(filepath.Base(name), ".gz") && rot.PreviousFirstSeq > 0 {
				// Taken away while the gateway ran: it knew what the file held.
				gone = fmt.Sprintf("the records it held, seq %d to %d, are not in these files (a file renamed away still holds them)",
					rot.PreviousFirstSeq, rot.PreviousLastSeq)
			}
			return v.fail(name, lineNo, off, line, &h, BreakMissingFile, fmt.Sprintf(
				"the gateway began this file because the live file was missing, emptied or replaced (audit.rotated %s): "+
					"it was deleted or changed outside the gateway, and %s", RotateMissing, gone))
		}
		if v.have {
			if lineNo == 1 && rot != nil && h.seq > v.last.seq+1 {
				return v.missingFile(at, line, &h, rot)
			}
			if err := v.link(name, lineNo, off, line, &h); err != nil {
				return err
			}
		} else {
			v.rep.FirstSeq = h.seq
			v.rep.FirstPrev = hex.EncodeToString(h.prev[:])
			v.firstAt, v.firstRot = at, rot
		}
		if err := v.record(at, line, &h); err != nil {
			return err
		}
		v.have, v.last, v.lastAt = true, h, at
		v.rep.Records++
		v.rep.LastSeq = h.seq
		v.rep.LastHash = hex.EncodeToString(h.hash[:])
	}
}

// missingFile reports the first record of a file, an audit.rotated record,
// that does not follow the file before it.
func (v *verifier) missingFile(at place, line []byte, h *head, rot *rotatedRecord) error {
	prev := strings.TrimSuffix(filepath.Base(v.prevFile), ".gz") // a rotated file gzipped later keeps its name inside
	if rot.PreviousFile == prev {
		return v.fail(at.file, at.line, at.off, line, h, BreakSeqGap, fmt.Sprintf(
			"this file continues %s from seq %d, but %s ends at seq %d: records %d to %d were cut off its end",
			prev, rot.PreviousLastSeq, prev, v.last.seq, v.last.seq+1, rot.PreviousLastSeq))
	}
	if v.given[rot.PreviousFile] {
		return v.fail(at.file, at.line, at.off, line, h, BreakSeqReorder, fmt.Sprintf(
			"this file continues %s (seq %d to %d), which is among the files but not right before this one: "+
				"the files are out of order (renamed?); the file before it, %s, ends at seq %d",
			rot.PreviousFile, rot.PreviousFirstSeq, rot.PreviousLastSeq, prev, v.last.seq))
	}
	return v.fail(at.file, at.line, at.off, line, h, BreakMissingFile, fmt.Sprintf(
		"this file continues %s (seq %d to %d), which is missing: the file before it, %s, ends at seq %d",
		rot.PreviousFile, rot.PreviousFirstSeq, rot.PreviousLastSeq, prev, v.last.seq))
}

// record checks what a record says about the log beyond the chain:
// checkpoints, boots, retention, checkpoints kept off the gateway.
func (v *verifier) record(at place, line []byte, h *head) error {
	if c, ok := v.offBox[h.seq]; ok && c.Hash != hex.EncodeToString(h.hash[:]) {
		return v.fail(at.file, at.line, at.off, line, h, BreakRewritten, fmt.Sprintf(
			"the checkpoint kept off the gateway (seq %d, signed at %s) covers another record with this seq: the log was rewritten",
			c.RecordSeq, c.Time))
	}
	if c := v.checkCP; c != nil && c.reason == CheckpointShutdown && !v.opts.piece && v.opts.MaxUnsigned >= 0 && !v.unsignedBoot {
		if err := v.afterShutdown(at, line, h, c); err != nil {
			return err
		}
	}
	switch {
	case startEvent(h.event):
		if !v.inStart {
			v.inStart, v.beforeStart = true, v.lastAt
		}
	case h.event != EventGatewayStart && h.event != EventGatewayStartFailed:
		v.inStart = false
	}
	switch h.event {
	case EventCheckpoint:
		return v.checkpoint(at, line, h)
	case EventGatewayStart, EventGatewayStop, EventGatewayStartFailed:
		var b struct {
			BootID string `json:"boot_id"`
			KeyID  string `json:"key_id"`
		}
		if json.Unmarshal(line, &b) == nil && b.BootID != "" {
			newBoot := b.BootID != v.boot.id
			v.bootSeen(at, b.BootID)
			if newBoot && h.event != EventGatewayStop && b.KeyID == "" && v.checkCP != nil && !v.opts.piece {
				v.keylessStart(at, b.BootID, h.event)
			}
			switch h.event {
			case EventGatewayStop:
				v.boot.clean = fmt.Sprintf("gateway.stop at seq %d", h.seq)
			case EventGatewayStartFailed:
				v.boot.clean = fmt.Sprintf("gateway.start_failed at seq %d", h.seq)
			}
		}
		v.inStart = false
	case EventRetention:
		var r struct {
			File     string `json:"file"`
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
			LastHash string `json:"last_hash"`
		}
		if json.Unmarshal(line, &r) == nil && r.LastHash != "" {
			if v.retained == nil {
				v.retained = map[string]retained{}
			}
			v.retained[r.LastHash] = retained{at: at, file: r.File, firstSeq: r.FirstSeq, lastSeq: r.LastSeq}
		}
	}
	v.countUnsigned(at)
	return nil
}

// afterShutdown checks a record that follows a shutdown checkpoint. A
// gateway that signs writes nothing after it, and its next start begins
// with a checkpoint of its own. A start without the key (audit.signing_key
// taken out) writes a few records (policy.load, ticket.load …) and then
// gateway.start with a new boot id; from there its records are unsigned,
// as the note says. Those first records count only once that gateway.start
// follows them: before a checkpoint, before any other record, or at the
// end of the log they were added to it.
func (v *verifier) afterShutdown(at place, line []byte, h *head, c *lastCheckpoint) error {
	switch h.event {
	case EventRotated:
		return nil
	case EventCheckpoint:
		if v.pendingStart.line == 0 {
			return nil
		}
	case EventRetention, EventCapacity, "policy.load", "policy.load_failed", "ticket.load", "ticket.load_refused":
		if v.pendingStart.line == 0 {
			v.pendingStart, v.pendingEvent = at, h.event
		}
		return nil
	case EventGatewayStart, EventGatewayStartFailed:
		var b struct {
			BootID string `json:"boot_id"`
			KeyID  string `json:"key_id"`
		}
		if json.Unmarshal(line, &b) == nil && b.BootID != "" && b.BootID != v.boot.id && b.KeyID == "" {
			v.unsignedBoot, v.pendingStart = true, place{}
			what := "started"
			if h.event == EventGatewayStartFailed {
				what = "failed to start"
			}
			v.keylessNoted = b.BootID
			v.note(at, NoteUnsigned, fmt.Sprintf(
				"boot %s %s without a signing key after the clean stop at %s: no checkpoint signs its records, "+
					"which the chain alone cannot tell from records added to the log", b.BootID, what, c.at))
			return nil
		}
	}
	if v.pendingStart.line > 0 {
		return v.failAt(v.pendingStart, BreakAfterStop, v.afterStopMsg(v.pendingEvent, c))
	}
	return v.fail(at.file, at.line, at.off, line, h, BreakAfterStop, v.afterStopMsg(h.event, c))
}

func (v *verifier) afterStopMsg(event string, c *lastCheckpoint) string {
	return fmt.Sprintf("a %s record follows the shutdown checkpoint at %s, with which boot %s ended the log cleanly: a gateway that signs "+
		"writes nothing after it, and its next start begins with a checkpoint of its own (one without the key, with "+
		"gateway.start after its first records); so no gateway wrote this record there: it was added to the log (--max-unsigned -1 lets it pass)",
		event, c.at, v.boot.id)
}

// countUnsigned notes where the records after the last checkpoint first
// exceed what its writer allows.
func (v *verifier) countUnsigned(at place) {
	v.rep.Unsigned++
	if v.rep.Unsigned == 1 {
		v.unsigned = at
	}
	limit, maxAge := v.limits()
	if limit > 0 && v.rep.Unsigned == uint64(limit)+1 {
		v.overCount = at
	}
	if maxAge > 0 && v.overAge.line == 0 && at.time.Sub(v.unsigned.time) > maxAge {
		v.overAge = at
	}
}

// limits are the records and the time allowed after the last checkpoint.
func (v *verifier) limits() (int, time.Duration) {
	limit, maxAge := v.opts.MaxUnsigned, v.opts.MaxUnsignedAge
	if v.unsignedBoot {
		return limit, maxAge // a start without the key: its checkpoint settings are not the last checkpoint's
	}
	if c := v.checkCP; c != nil {
		if limit == 0 {
			limit = int(c.every)
		}
		if maxAge == 0 {
			maxAge = c.interval
		}
	}
	return limit, maxAge
}

// checkpoint checks a checkpoint record: its shape, that it covers the
// record before it, and its signature.
func (v *verifier) checkpoint(at place, line []byte, h *head) error {
	c, err := ParseCheckpoint(line)
	if err != nil {
		return v.fail(at.file, at.line, at.off, line, h, BreakCheckpoint, "a forged or damaged checkpoint: "+err.Error())
	}
	if want := hex.EncodeToString(h.prev[:]); c.Hash != want {
		return v.fail(at.file, at.line, at.off, line, h, BreakCheckpoint, fmt.Sprintf(
			"the checkpoint covers hash %s, but the record before it (seq %d) has hash %s: a forged or misplaced checkpoint",
			c.Hash, c.Seq, want))
	}
	if v.opts.Key != nil {
		if err := c.VerifySignature(v.opts.Key); err != nil {
			kind := BreakBadSignature
			if c.KeyID != v.rep.KeyID {
				kind = BreakWrongKey
			}
			return v.fail(at.file, at.line, at.off, line, h, kind, "a forged checkpoint: "+err.Error())
		}
	}
	v.rep.Checkpoints++
	v.rep.LastCheckpoint = h.seq
	v.rep.Unsigned = 0
	v.unsigned, v.overCount, v.overAge = place{}, place{}, place{}
	v.checkCP = &lastCheckpoint{at: at, every: c.Every, interval: c.Interval(), reason: c.Reason}
	v.unsignedBoot = false
	v.bootSeen(at, c.BootID)
	if c.Reason == CheckpointShutdown {
		v.boot.clean = fmt.Sprintf("shutdown checkpoint at seq %d", h.seq)
	}
	return nil
}

// bootSeen notes the boot a record names; a new one is a restart.
func (v *verifier) bootSeen(at place, id string) {
	if id == "" || id == v.boot.id {
		return
	}
	prev := v.boot
	v.boot = boot{id: id}
	v.rep.Boots++
	if prev.id == "" || v.opts.piece {
		return
	}
	before := v.lastAt
	if v.inStart {
		before = v.beforeStart // the new boot's own first records came after it
	}
	if prev.clean != "" {
		v.note(at, NoteRestart, fmt.Sprintf("restart: boot %s began at %s; boot %s before it stopped cleanly (%s)",
			id, at.time.Format(time.RFC3339), prev.id, prev.clean))
		return
	}
	v.note(at, NoteUncleanStop, fmt.Sprintf(
		"restart after an unclean stop: boot %s began at %s; boot %s before it ended without gateway.stop or a shutdown checkpoint "+
			"(the record before: seq %d at %s): it crashed, was killed or lost power",
		id, at.time.Format(time.RFC3339), prev.id, before.seq, before.time.Format(time.RFC3339Nano)))
}

func (v *verifier) note(at place, kind NoteKind, msg string) {
	n := Note{File: at.file, Line: at.line, Seq: at.seq, Kind: kind, Message: msg}
	if at.line > 0 {
		n.Message = at.String() + ": " + msg
	}
	v.rep.Notes = append(v.rep.Notes, n)
}

// finish checks what only the whole log tells: where it begins, the
// checkpoints kept off the gateway, and the records after the last
// checkpoint.
func (v *verifier) finish() error {
	if v.rep.Records == 0 {
		// The gateway begins a log with its first record (gateway.start)
		// and a rotated-in file with audit.rotated: no file of a log it
		// wrote is empty.
		b := &Break{Kind: BreakEmpty, Message: fmt.Sprintf(
			"no records in %s: a log the gateway wrote begins with its first record; the log was emptied, or this is not an audit log", Plural(v.rep.Files, "file"))}
		v.rep.Break = b
		return b
	}
	if err := v.checkStart(); err != nil {
		return err
	}
	if c := v.checkCP; c != nil && v.pendingStart.line > 0 {
		return v.failAt(v.pendingStart, BreakAfterStop, v.afterStopMsg(v.pendingEvent, c))
	}
	if c := v.checkCP; c != nil && c.reason == CheckpointRotation && c.at.seq == v.rep.LastSeq {
		if v.opts.Live == "" || c.at.file != v.opts.Live {
			return v.failAt(c.at, BreakMissingFile,
				"the log ends with the checkpoint the gateway writes at the end of a file it rotates out: the file after it (the live file, beginning with audit.rotated) is missing, or was emptied")
		}
		v.note(c.at, NoteOpenEnd, "the live file ends with the checkpoint of a rotation a crash cut short before the file was renamed: "+
			"the gateway completes the rotation at its next start")
	}
	for i := range v.opts.Checkpoints {
		c := &v.opts.Checkpoints[i]
		switch {
		case c.Seq > v.rep.LastSeq:
			return v.failAt(v.lastAt, BreakCutOff, fmt.Sprintf(
				"the log ends here, but a checkpoint kept off the gateway (seq %d, signed at %s) covers seq %d: records %d to %d were cut off its end",
				c.RecordSeq, c.Time, c.Seq, v.rep.LastSeq+1, max(c.Seq, c.RecordSeq)))
		case c.RecordSeq < v.rep.FirstSeq:
			v.note(place{}, NoteOffBox, fmt.Sprintf("a checkpoint kept off the gateway covers seq %d, before the first record here (seq %d)",
				c.Seq, v.rep.FirstSeq))
		}
	}
	if v.rep.Checkpoints == 0 {
		if v.opts.Key != nil {
			return v.failAt(v.firstAt, BreakNotSigned, fmt.Sprintf(
				"a key was given, but %s an audit.checkpoint: nothing in the log is signed (were the checkpoints removed?)",
				Noun(v.rep.Records, "the log's only record is not", fmt.Sprintf("none of the log's %d records is", v.rep.Records))))
		}
		v.note(place{}, NoteNotSigned, "no checkpoints: the log is not signed (audit.signing_key is not set), "+
			"so a log rewritten from some record on, or cut short, cannot be told from a genuine one")
	} else if v.opts.Key == nil {
		v.note(place{}, NoteUnchecked, fmt.Sprintf("%s not checked: give the public key (--key) to check %s",
			Plural(v.rep.Checkpoints, "checkpoint"), Noun(v.rep.Checkpoints, "its signature", "their signatures")))
	}
	if v.rep.Unsigned > 0 {
		limit, maxAge := v.limits()
		from := "the start of the log" // no checkpoint: limits given as options apply from there
		if c := v.checkCP; c != nil {
			from = "the last checkpoint (" + c.at.String() + ")"
		}
		switch {
		case v.overCount.line > 0:
			return v.failAt(v.overCount, BreakUnsignedTail, fmt.Sprintf(
				"%d records follow %s unsigned, more than the %d allowed: checkpoints after it were removed, or the records after it rewritten or added",
				v.rep.Unsigned, from, limit))
		case v.overAge.line > 0:
			d := v.overAge.time.Sub(v.unsigned.time)
			if d > time.Second {
				d = d.Round(time.Millisecond)
			}
			return v.failAt(v.overAge, BreakUnsignedTail, fmt.Sprintf(
				"written %s after seq %d, the first record after %s, and still unsigned: more than the %s allowed; checkpoints after it were removed, or the records after it rewritten or added",
				d, v.unsigned.seq, from, maxAge))
		}
	}
	if v.boot.id != "" && v.boot.clean == "" {
		v.note(v.lastAt, NoteOpenEnd, "the log ends without gateway.stop or a shutdown checkpoint: the gateway is still running, "+
			"stopped uncleanly, or the end of the log was cut off (checkpoints kept off the gateway tell: --checkpoints)")
	}
	return nil
}

// checkStart checks that the log begins at its first record, where After
// says, or right after files that retention deleted.
func (v *verifier) checkStart() error {
	if v.opts.After != "" {
		if v.rep.FirstPrev != v.opts.After {
			return v.failAt(v.firstAt, BreakMissingStart, fmt.Sprintf("the first record follows %s, not the --after hash %s",
				v.rep.FirstPrev, v.opts.After))
		}
		return nil
	}
	if v.rep.FirstSeq == 1 && v.rep.FirstPrev == GenesisPrev {
		return nil
	}
	if r, ok := v.retained[v.rep.FirstPrev]; ok && r.lastSeq+1 == v.rep.FirstSeq {
		first, files := r.firstSeq, 1
		for {
			var earlier *retained
			for _, o := range v.retained {
				if o.lastSeq+1 == first {
					earlier = &o
					break
				}
			}
			if earlier == nil {
				break
			}
			first, files = earlier.firstSeq, files+1
		}
		msg := fmt.Sprintf("the log begins here: seq %d to %d were deleted by retention, in %s (the last, %s, by audit.retention at %s)",
			first, r.lastSeq, Plural(files, "file"), r.file, r.at)
		if first > 1 {
			msg += fmt.Sprintf(", and seq 1 to %d before them, whose retention records went with files deleted later", first-1)
		}
		v.note(v.firstAt, NoteRetention, msg)
		return nil
	}
	msg := "the log does not start at seq 1: records before it are missing"
	if rot := v.firstRot; rot != nil {
		msg = fmt.Sprintf("the log begins with a file that continues %s (seq %d to %d), which is missing, and no audit.retention record says retention deleted it",
			rot.PreviousFile, rot.PreviousFirstSeq, rot.PreviousLastSeq)
	}
	return v.failAt(v.firstAt, BreakMissingStart, msg)
}

// failAt reports a break at a record already verified.
func (v *verifier) failAt(at place, kind BreakKind, msg string) error {
	b := &Break{File: at.file, Line: at.line, Offset: at.off, Seq: at.seq, Kind: kind, Message: at.String() + ": " + msg}
	v.rep.Break = b
	return b
}

// link checks that h follows the last verified record.
func (v *verifier) link(name string, lineNo int, off int64, line []byte, h *head) error {
	want := v.last.seq + 1
	switch {
	case h.seq > want:
		// A swap also starts with a jump ahead; the missing seq turning up
		// later tells it from a deletion.
		if seq, ahead, ok := v.lr.findSeq(want, h.seq); ok {
			return v.fail(name, lineNo, off, line, h, BreakSeqReorder, fmt.Sprintf(
				"seq %d where %d was expected, and seq %d comes %s later: records are out of order",
				h.seq, want, seq, Plural(ahead, "line")))
		}
		missing := h.seq - want
		what := fmt.Sprintf("%d records (seq %d to %d) missing", missing, want, h.seq-1)
		if missing == 1 {
			what = fmt.Sprintf("1 record (seq %d) missing", want)
		}
		return v.fail(name, lineNo, off, line, h, BreakSeqGap,
			fmt.Sprintf("seq %d follows seq %d: %s: records were deleted", h.seq, v.last.seq, what))
	case h.seq < want:
		return v.fail(name, lineNo, off, line, h, BreakSeqReorder,
			fmt.Sprintf("seq %d follows seq %d: records are out of order or repeated", h.seq, v.last.seq))
	case h.prev != v.last.hash:
		return v.fail(name, lineNo, off, line, h, BreakPrevMismatch, fmt.Sprintf(
			"prev does not match the hash of seq %d before it: a record was replaced, or the files are not in order",
			v.last.seq))
	}
	return nil
}

func (v *verifier) fail(name string, lineNo int, off int64, line []byte, h *head, kind BreakKind, msg string) error {
	b := &Break{File: name, Line: lineNo, Offset: off, Kind: kind}
	where := fmt.Sprintf("%s:%d", name, lineNo)
	if name == "" {
		where = fmt.Sprintf("line %d", lineNo)
	}
	seq, ok := uint64(0), false
	if h != nil {
		seq, ok = h.seq, true
	} else {
		seq, ok = peekSeq(line)
	}
	if ok {
		b.Seq = seq
		where += fmt.Sprintf(" (seq %d)", seq)
	}
	b.Message = where + ": " + msg
	v.rep.Break = b
	return b
}

func displayName(name string) string {
	if name == "" {
		return "audit log"
	}
	return name
}

// How a line read by lineReader ends.
const (
	lineEnded   = iota // with a newline
	lineCut            // at the end of input, without a newline
	lineTooLong        // over maxRecordSize; the rest is not read
)

// lineReader reads lines of at most maxRecordSize into one reused buffer.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	off int64 // offset of the next line
}

func (l *lineReader) reset(r io.Reader) {
	if l.r == nil {
		l.r = bufio.NewReaderSize(r, 64<<10)
	} else {
		l.r.Reset(r)
	}
	l.off = 0
}

// next returns the next line without its newline, and its offset. The line
// is valid until the next call. err is io.EOF only when no bytes are left.
func (l *lineReader) next() (line []byte, off int64, end int, err error) {
	l.buf, off = l.buf[:0], l.off
	for {
		chunk, err := l.r.ReadSlice('\n')
		l.off += int64(len(chunk))
		l.buf = append(l.buf, chunk...)
		switch {
		case err == nil:
			return l.buf[:len(l.buf)-1], off, lineEnded, nil
		case len(l.buf) > maxRecordSize:
			return l.buf, off, lineTooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(l.buf) == 0 {
				return nil, off, lineEnded, io.EOF
			}
			return l.buf, off, lineCut, nil
		default:
			return nil, off, lineEnded, err
		}
	}
}

// findSeq reads on and reports the first record whose seq is in [lo, hi),
// and how many lines after the current one it is. The reader is spent.
func (l *lineReader) findSeq(lo, hi uint64) (seq uint64, ahead int, ok bool) {
	for ahead = 1; ; ahead++ {
		line, _, end, err := l.next()
		if err != nil {
			return 0, 0, false
		}
		if s, ok := peekSeq(line); ok && s >= lo && s < hi {
			return s, ahead, true
		}
		if end != lineEnded {
			return 0, 0, false
		}
	}
}
