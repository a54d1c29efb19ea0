package main

import (
	"fmt"
	"io"

	"github.com/interlock-ics/interlock/audit"
)

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	verb, rest, err := subcommand("audit", args, map[string]string{
		"verify": "check the hash chain of FILE…, in order; exit 1 at the first break",
	}, stdout)
	if err != nil {
		return err
	}
	_ = verb
	fs := newFlags("audit verify", "audit verify FILE…", stderr)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("audit verify: name at least one audit log file")
	}
	rep, err := audit.VerifyFiles(fs.Args()...)
	if err != nil {
		return &exitError{code: 1, msg: err.Error()}
	}
	fmt.Fprintf(stdout, "ok: %s\n", rep)
	return nil
}
