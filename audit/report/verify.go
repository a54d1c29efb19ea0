package report

import (
	"errors"
	"fmt"

	"github.com/interlock-ics/interlock/audit"
)

// Verification is what the audit verifier found over the files the report
// read. The verifier reads the files itself, beside the report's own pass.
type Verification struct {
	Ran       bool   // false: no verifier was run
	Err       string // the verifier could not read the files
	Records   uint64 // records that passed, up to the first break
	FirstSeq  uint64
	LastSeq   uint64
	FirstPrev string // 64 zeros at the start of a log
	LastHash  string
	Break     *audit.Break // nil when the chain holds

	Checkpoints    int    // checkpoint records verified
	KeyID          string // of the key the signatures were checked with; "" when not checked
	LastCheckpoint uint64 // seq of the last checkpoint record
	Unsigned       uint64 // records after it
	Boots          int    // gateway starts seen
	// Signatures says in one line what was checked of the signed
	// checkpoints: with which key, or why not.
	Signatures string
	Notes      []string // the verifier's notes: restarts, retention, what it could not check
}

// OK reports whether the verifier ran and found the chain whole.
func (v *Verification) OK() bool { return v.Ran && v.Err == "" && v.Break == nil }

// Genesis reports whether the log starts at its first record.
func (v *Verification) Genesis() bool { return v.FirstPrev == audit.GenesisPrev && v.FirstSeq <= 1 }

// Verifier checks the chain of the files of a log, in chain order.
type Verifier func(files []string) Verification

// ChainVerifier runs audit.VerifyLog over the files as one whole log: the
// hash chain across rotated files, the checkpoints (their signatures when
// opts.Key is set), the start of the log and the records after the last
// checkpoint.
func ChainVerifier(opts audit.VerifyOptions) Verifier {
	return func(files []string) Verification {
		rep, err := audit.VerifyLog(files, opts)
		v := Verification{
			Ran: true, Records: rep.Records, FirstSeq: rep.FirstSeq, LastSeq: rep.LastSeq,
			FirstPrev: rep.FirstPrev, LastHash: rep.LastHash, Break: rep.Break,
			Checkpoints: rep.Checkpoints, KeyID: rep.KeyID, LastCheckpoint: rep.LastCheckpoint,
			Unsigned: rep.Unsigned, Boots: rep.Boots,
		}
		var b *audit.Break
		if err != nil && !errors.As(err, &b) {
			v.Err = err.Error()
		}
		for _, n := range rep.Notes {
			v.Notes = append(v.Notes, n.Message)
		}
		switch {
		case rep.Checkpoints == 0:
			v.Signatures = "none: the log holds no signed checkpoints"
		case opts.Key == nil:
			n := int64(rep.Checkpoints)
			v.Signatures = "not checked: no public key given (--key); " +
				word(n, "the 1 checkpoint sits where it belongs", plural(n, "checkpoint")+" sit where they belong") + " in the chain"
		case v.Break == nil:
			v.Signatures = fmt.Sprintf("checked: %s signed by key id %s", word(int64(rep.Checkpoints), "the 1 checkpoint is", "all "+plural(int64(rep.Checkpoints), "checkpoint")+" are"), rep.KeyID)
		default:
			v.Signatures = fmt.Sprintf("checked with key id %s up to the break: %s verified before it", rep.KeyID, plural(int64(rep.Checkpoints), "checkpoint"))
		}
		return v
	}
}
