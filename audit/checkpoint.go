package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Why a checkpoint was written (its reason field).
const (
	CheckpointCount    = "count"    // checkpoint_every records since the last one
	CheckpointInterval = "interval" // checkpoint_interval passed with records unsigned
	CheckpointRotation = "rotation" // the last record of a file rotated out
	CheckpointOpen     = "open"     // the gateway opened the log: it vouches for what it found
	CheckpointShutdown = "shutdown" // Close: the log ends here cleanly
)

// Defaults of Options.
const (
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
)

// checkpointDomain starts the signed bytes, so that a checkpoint signature
// can never be mistaken for a signature over anything else.
const checkpointDomain = "interlock-audit-checkpoint-v1\n"

// Checkpoint is a signed statement that the log, up to and including the
// record Seq whose hash is Hash, is as the gateway wrote it (doc.go,
// "Checkpoints").
type Checkpoint struct {
	Gateway    string `json:"gateway"`
	Seq        uint64 `json:"seq"`  // of the record it covers, the one before the checkpoint record
	Hash       string `json:"hash"` // of that record, 64 lowercase hex
	Time       string `json:"time"` // of the checkpoint record, exactly as written
	BootID     string `json:"boot_id"`
	KeyID      string `json:"key_id"`
	Reason     string `json:"reason"`
	Every      uint64 `json:"every"`       // the writer's checkpoint_every
	IntervalMS int64  `json:"interval_ms"` // the writer's checkpoint_interval
	Signature  []byte `json:"-"`           // Ed25519 over SignedBytes

	RecordSeq uint64 `json:"-"` // seq of the checkpoint record itself
}

// SignedBytes appends the canonical bytes the signature is over to dst.
func (c *Checkpoint) SignedBytes(dst []byte) []byte {
	dst = append(dst, checkpointDomain...)
	dst = appendLine(dst, "gateway", c.Gateway)
	dst = appendLine(dst, "seq", strconv.FormatUint(c.Seq, 10))
	dst = appendLine(dst, "hash", c.Hash)
	dst = appendLine(dst, "time", c.Time)
	dst = appendLine(dst, "boot_id", c.BootID)
	dst = appendLine(dst, "key_id", c.KeyID)
	dst = appendLine(dst, "reason", c.Reason)
	dst = appendLine(dst, "every", strconv.FormatUint(c.Every, 10))
	return appendLine(dst, "interval_ms", strconv.FormatInt(c.IntervalMS, 10))
}

// appendLine appends one `key=value` line of the signed bytes.
func appendLine(dst []byte, key, value string) []byte {
	dst = append(dst, key...)
	dst = append(dst, '=')
	dst = append(dst, value...)
	return append(dst, '\n')
}

// Interval is the writer's checkpoint_interval.
func (c *Checkpoint) Interval() time.Duration { return time.Duration(c.IntervalMS) * time.Millisecond }

// VerifySignature checks the signature with pub, and that the key id is
// pub's.
func (c *Checkpoint) VerifySignature(pub ed25519.PublicKey) error {
	if want := KeyID(pub); c.KeyID != want {
		return fmt.Errorf("signed with key id %s, not with the given key (key id %s)", c.KeyID, want)
	}
	if !ed25519.Verify(pub, c.SignedBytes(nil), c.Signature) {
		return errors.New("the signature does not verify with the given key")
	}
	return nil
}

// checkSignable refuses values that the line-per-field signed bytes could
// not carry unambiguously.
func checkSignable(name, v string) error {
	if strings.ContainsAny(v, "\n\r") {
		return fmt.Errorf("audit: %s %q holds a line break, which checkpoints cannot sign", name, v)
	}
	return nil
}

// checkpointObject writes the checkpoint object of an audit.checkpoint record.
type checkpointObject struct{ c *Checkpoint }

func (o checkpointObject) MarshalZerologObject(e *zerolog.Event) {
	e.Uint64(FieldSeq, o.c.Seq).
		Str(FieldHash, o.c.Hash).
		Str(FieldTime, o.c.Time).
		Str(FieldBootID, o.c.BootID).
		Str(FieldKeyID, o.c.KeyID).
		Str(FieldReason, o.c.Reason).
		Uint64(FieldEvery, o.c.Every).
		Int64(FieldIntervalMS, o.c.IntervalMS)
}

// checkpointRecord is an audit.checkpoint record as JSON.
type checkpointRecord struct {
	Seq        uint64 `json:"seq"`
	Time       string `json:"time"`
	Event      string `json:"event"`
	Gateway    string `json:"gateway"`
	Checkpoint *struct {
		Seq        *uint64 `json:"seq"`
		Hash       string  `json:"hash"`
		Time       string  `json:"time"`
		BootID     string  `json:"boot_id"`
		KeyID      string  `json:"key_id"`
		Reason     string  `json:"reason"`
		Every      uint64  `json:"every"`
		IntervalMS int64   `json:"interval_ms"`
	} `json:"checkpoint"`
	Signature string `json:"signature"`
}

// ParseCheckpoint reads an audit.checkpoint record (one line of the log, or
// the record as a SIEM kept it). It checks the shape, not the signature.
func ParseCheckpoint(line []byte) (Checkpoint, error) {
	var r checkpointRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return Checkpoint{}, fmt.Errorf("not a JSON object: %v", err)
	}
	if r.Event != EventCheckpoint {
		return Checkpoint{}, fmt.Errorf("event %q is not %s", r.Event, EventCheckpoint)
	}
	k := r.Checkpoint
	if k == nil || k.Seq == nil {
		return Checkpoint{}, errors.New("no checkpoint object with a seq")
	}
	c := Checkpoint{
		Gateway: r.Gateway, Seq: *k.Seq, Hash: k.Hash, Time: k.Time, BootID: k.BootID, KeyID: k.KeyID,
		Reason: k.Reason, Every: k.Every, IntervalMS: k.IntervalMS, RecordSeq: r.Seq,
	}
	switch {
	case c.Seq+1 != c.RecordSeq:
		return c, fmt.Errorf("it covers seq %d, but is seq %d: a checkpoint covers the record right before it", c.Seq, c.RecordSeq)
	case c.Time != r.Time:
		return c, fmt.Errorf("checkpoint.time %q is not the record's time %q", c.Time, r.Time)
	}
	if _, ok := decodeHex([]byte(c.Hash)); !ok {
		return c, errors.New("checkpoint.hash is not 64 lowercase hex digits")
	}
	for _, kv := range [][2]string{{"gateway", c.Gateway}, {"boot_id", c.BootID}, {"key_id", c.KeyID}, {"reason", c.Reason}} {
		if err := checkSignable(kv[0], kv[1]); err != nil {
			return c, err
		}
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return c, fmt.Errorf("signature is not %d bytes of base64", ed25519.SignatureSize)
	}
	c.Signature = sig
	return c, nil
}

// signer signs checkpoints for a Writer.
type signer struct {
	key   ed25519.PrivateKey
	keyID string
	buf   []byte // signed bytes, reused
}

func newSigner(key ed25519.PrivateKey) *signer {
	return &signer{key: key, keyID: KeyID(key.Public().(ed25519.PublicKey))}
}

// sign fills in the key id and returns the base64 signature.
func (s *signer) sign(c *Checkpoint, dst []byte) []byte {
	c.KeyID = s.keyID
	s.buf = c.SignedBytes(s.buf[:0])
	sig := ed25519.Sign(s.key, s.buf)
	n := base64.StdEncoding.EncodedLen(len(sig))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	base64.StdEncoding.Encode(dst, sig)
	return dst
}
