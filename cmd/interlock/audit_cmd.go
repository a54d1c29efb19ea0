package main

import (
	"fmt"
	"io"

	"github.com/interlock-ics/interlock/audit"
)

func init() {
	register(command{group: "audit", name: "verify", synopsis: "[--after HASH] FILE…", run: cmdAuditVerify,
		help: "check the audit log's hash chain; exit 1 at the first break"})
}

func cmdAuditVerify(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit verify", "audit verify [--after HASH] FILE…", stderr)
	after := fs.String("after", "", "the files continue a log whose last record has this hash (a log kept in parts)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageErr("audit verify: name at least one audit log file")
	}
	rep, err := audit.VerifyFiles(fs.Args()...)
	if err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	// A log must begin at its first record (seq 1, prev of zeros), or where
	// --after says: otherwise records before the first are missing.
	switch {
	case *after != "" && rep.FirstPrev != *after:
		return &exitError{code: 1, msg: fmt.Sprintf("%s:1 (seq %d): the first record follows %s, not the --after hash %s",
			fs.Arg(0), rep.FirstSeq, rep.FirstPrev, *after)}
	case *after == "" && (rep.FirstSeq != 1 || rep.FirstPrev != audit.GenesisPrev):
		return &exitError{code: 1, msg: fmt.Sprintf("%s:1 (seq %d): the log does not start at seq 1: records before it are missing "+
			"(if the file continues another, give that file first, or --after with its last hash %s)",
			fs.Arg(0), rep.FirstSeq, rep.FirstPrev)}
	}
	fmt.Fprintf(stdout, "ok: %s\n", rep)
	return nil
}
