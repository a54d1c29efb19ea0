package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/policy"
)

func init() {
	register(command{group: "policy", name: "learn", synopsis: strings.TrimPrefix(policyLearnSynopsis, "policy learn "), run: cmdPolicyLearn,
		help: "propose a baseline policy (data, Rego rules, tests) from recorded traffic"})
}

const policyLearnSynopsis = "policy learn (--audit FILE… | --log PATH) [--window 14d] [--out DIR] [--package interlock] [--enforce] [--force]"

const policyLearnHelp = `Reads the call records of audit logs and writes a proposed policy into
--out: baseline.json (data.baseline: who calls which function on which
target and unit, the register ranges per target and function, the hours of
the week in UTC), learned.rego (the rules: the baseline is allowed with no
alert; every deviation gets a reason such as deviation:unusual_source) and
learned_test.rego (a test per workflow and per kind of deviation).

Learns only from calls the gateway forwarded: decision.allow true, or mode
monitor (denied by the policy but forwarded). Calls it denied are left out;
calls forwarded with an alert are learned too, so review what they added.
The window ends at the newest call record of all the logs. Logs are read as
'policy replay' reads them: a name ending in .gz is decompressed, a last
line cut short by a crash is skipped and counted, and any other line that is
not a JSON record is an error naming file:line. The chain is not checked
here: run 'interlock audit verify' first.

Deviations are forwarded with an alert unless --enforce. The output is a
proposal: review and commit it; nothing is applied to any gateway.

`

// auditFiles is a repeatable --audit flag.
type auditFiles []string

func (a *auditFiles) String() string { return strings.Join(*a, ",") }

func (a *auditFiles) Set(v string) error {
	*a = append(*a, v)
	return nil
}

func cmdPolicyLearn(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("policy learn", policyLearnSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: interlock %s\n\n%s", policyLearnSynopsis, policyLearnHelp)
		fs.PrintDefaults()
	}
	var files auditFiles
	fs.Var(&files, "audit", "an audit log (JSONL) `FILE` to learn from; repeat it, or list more files after the flags")
	logPath := fs.String("log", "", "the live file of an audit log: learn from it with its rotated files (.gz too)")
	window := fs.String("window", "14d", "learn from the `SPAN` of traffic before the newest call record: 14d, 2w, 36h, or all")
	out := fs.String("out", "learned", "`DIR` to write baseline.json, learned.rego and learned_test.rego into")
	pkg := fs.String("package", "interlock", "Rego `PACKAGE` of the rules (the gateway decides with data.interlock.decision)")
	enforce := fs.Bool("enforce", false, "deny deviations instead of forwarding them with an alert")
	force := fs.Bool("force", false, "overwrite files of an earlier learn in --out")
	if err := parse(fs, args); err != nil {
		return err
	}
	files = append(files, fs.Args()...)
	all, err := auditInputs("policy learn", files, *logPath, stderr)
	if err != nil {
		return err
	}
	files = all
	if len(files) == 0 {
		return usageErr("policy learn: give the audit logs to learn from with --audit FILE, or --log PATH")
	}
	win, err := policy.ParseLearnWindow(*window)
	if err != nil {
		return usageErr("policy learn: --%v", err)
	}
	l, err := policy.Learn(context.Background(), files, policy.LearnOptions{Window: win, Package: *pkg, Enforce: *enforce})
	if err != nil {
		return fmt.Errorf("policy learn: %w", err)
	}
	if err := l.WriteDir(*out, *force); err != nil {
		return fmt.Errorf("policy learn: %w", err)
	}

	st, b := l.Stats, l.Baseline
	fmt.Fprintf(stdout, "read %s from %s: learned %d forwarded between %s and %s (window %s)",
		learnPlural(st.Calls, "call"), learnPlural(len(files), "audit log"), st.Learned,
		b.Learned.FirstCall, b.Learned.LastCall, b.Learned.Window)
	var left []string
	if st.Denied > 0 {
		left = append(left, fmt.Sprintf("%d denied", st.Denied))
	}
	if st.Older > 0 {
		left = append(left, fmt.Sprintf("%d before the window", st.Older))
	}
	if st.Cut > 0 {
		left = append(left, fmt.Sprintf("%d cut by a crash", st.Cut))
	}
	if len(left) > 0 {
		fmt.Fprintf(stdout, "; left out %s", strings.Join(left, ", "))
	}
	fmt.Fprintf(stdout, "\n%s: %s, %s, %s\n", learnPlural(st.Workflows, "workflow"), learnPlural(st.Sources, "source"),
		learnPlural(st.Users, "user"), learnPlural(st.Targets, "target"))
	stance := "deviations are forwarded with an alert"
	if *enforce {
		stance = "deviations are denied"
	}
	var names []string
	for _, f := range l.Files {
		names = append(names, filepath.Join(*out, f.Name))
	}
	fmt.Fprintf(stdout, "wrote %s (package %s; %s)\n", strings.Join(names, ", "), *pkg, stance)
	fmt.Fprintln(stdout, "review and commit; the output is not applied to any gateway")
	return nil
}

func learnPlural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

// auditInputs is the files a command reads: those given, or the whole log
// of --log. One file given alone that is the live file of a log with
// rotated files beside it is read as given, with a note that --log reads
// them all. --log of a log whose live file is missing reads its rotated
// files with a note saying so, and is an error when there are none.
func auditInputs(cmd string, files []string, logPath string, stderr io.Writer) ([]string, error) {
	if logPath != "" {
		if len(files) > 0 {
			return nil, usageErr("%s: give --audit FILE… or --log PATH, not both", cmd)
		}
		all, err := audit.LogFilesWithGzip(logPath)
		if err != nil {
			return nil, fmt.Errorf("%s: --log %s: %w", cmd, logPath, err)
		}
		switch {
		case len(all) == 0:
			return nil, fmt.Errorf("%s: --log %s: nothing to read: the live file is not there, nor any rotated file of it beside it", cmd, logPath)
		case all[len(all)-1] != logPath:
			// rotated files only: the log may have moved, or the live
			// file been removed; what is read ends before the newest records
			fmt.Fprintf(stderr, "%s: note: --log %s: the live file is not there; read %s only, %s to %s\n",
				cmd, logPath, audit.Plural(len(all), "rotated file"), all[0], all[len(all)-1])
		}
		return all, nil
	}
	for _, f := range files {
		if err := checkPath(cmd, "--audit", f, aFile); err != nil {
			return nil, err
		}
	}
	if len(files) == 1 {
		if all, err := audit.LogFilesWithGzip(files[0]); err == nil && len(all) > 1 {
			fmt.Fprintf(stderr, "%s: note: %s has %s beside it, not read; --log %s reads the whole log\n",
				cmd, files[0], audit.Plural(len(all)-1, "rotated file"), files[0])
		}
	}
	return files, nil
}
