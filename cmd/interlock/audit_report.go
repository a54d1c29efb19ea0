package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/audit/report"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

const reportSynopsis = "audit report (--log PATH | --audit FILE… | --config FILE) --out report.html [--from T] [--to T] [--key PUB] [--title T] [--pdf FILE] [--max-rows N]"

func init() {
	register(command{group: "audit", name: "report", run: cmdAuditReport,
		synopsis: strings.TrimPrefix(reportSynopsis, "audit report "),
		help:     "write a self-contained HTML evidence report of an audit log (and a PDF with Chromium)"})
}

const reportHelp = `Writes one HTML file that an auditor can read without the tool: a summary
of the period (calls, denials, alerts, state-changing calls, sessions, who and
what), charts (calls over time by decision, calls per user and target, top
functions) and tables: every state-changing call, every denial and alert with
its reasons, calls outside maintenance windows, values first seen, policy
revisions and when they changed, change tickets, sessions, malformed requests,
the result of the hash chain and checkpoint verification, and the listeners
that saw no traffic. The page fetches nothing and runs none of the log's text;
it prints, and reads the same with scripts off.

The log is read once, in chain order, with bounded memory: tables keep their
first --max-rows rows and give the exact total. The chain is verified over the
whole log as 'interlock audit verify' does (with --key, the checkpoint
signatures too); --from and --to choose the period reported on.

--config adds what the log alone cannot tell: the maintenance windows of the
policy data (maintenance_windows), the listeners (to find those that saw no
traffic), and the log itself when neither --log nor --audit is given.

--pdf prints the report with headless Chromium (Debian's chromium package;
INTERLOCK_CHROMIUM names another binary).

A file that is not an audit log (its first line is not an audit record) is
refused before anything is written. A later line of a log that is not a
record is counted, named in the report and left out of it.

Exit status: 0 when the report is written and the chain holds; 1 when the
chain is broken or could not be verified, or lines of the log are not
records (the report is still written, and says where), or on an error; 2 on
a usage error.

Flags:
`

func cmdAuditReport(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit report", reportSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: interlock %s\n\n%s", reportSynopsis, reportHelp)
		fs.PrintDefaults()
	}
	logPath := fs.String("log", "", "the live file of a log (audit.path): its rotated files are read first, in chain order")
	var audits stringList
	fs.Var(&audits, "audit", "audit log `FILE`, in chain order; repeat it, or list more files after the flags")
	out := fs.String("out", "", "the HTML `FILE` to write (required)")
	from := fs.String("from", "", "period start `T`: RFC 3339 (2026-11-26T02:00:00Z), a date (2026-11-26, UTC), now, or an offset (-7d)")
	to := fs.String("to", "", "period end `T`, exclusive (same forms as --from)")
	keyPath := fs.String("key", "", "public key `PUB` (PEM, from 'interlock audit keygen') the checkpoints must be signed with")
	cfgPath := fs.String("config", "", "gateway configuration `FILE`: maintenance windows from its policy data, its listeners, its audit log")
	title := fs.String("title", "", "the report's title (default: Interlock audit evidence report)")
	pdf := fs.String("pdf", "", "also print the report to this PDF `FILE` with headless Chromium")
	maxRows := fs.Int("max-rows", report.DefaultMaxRows, "rows kept per table; the totals stay exact")
	if err := parse(fs, args); err != nil {
		return err
	}
	audits = append(audits, fs.Args()...)
	switch {
	case *out == "":
		return usageErr("audit report: --out FILE is required")
	case *logPath != "" && len(audits) > 0:
		return usageErr("audit report: give --log PATH or audit files, not both")
	case *logPath == "" && len(audits) == 0 && *cfgPath == "":
		return usageErr("audit report: name the log: --log PATH, --audit FILE…, or --config FILE (its audit.path)")
	case *maxRows <= 0:
		return usageErr("audit report: --max-rows must be positive")
	}
	now := time.Now().UTC()
	opts := report.Options{Title: *title, MaxRows: *maxRows, Version: versionString(), Config: *cfgPath}
	var err error
	if *from != "" {
		if opts.From, err = query.ParseTime(*from, now); err != nil {
			return usageErr("audit report: --from: %v", err)
		}
	}
	if *to != "" {
		if opts.To, err = query.ParseTime(*to, now); err != nil {
			return usageErr("audit report: --to: %v", err)
		}
	}
	if !opts.From.IsZero() && !opts.To.IsZero() && !opts.From.Before(opts.To) {
		return usageErr("audit report: --from %s is not before --to %s", *from, *to)
	}
	var cfg *config.Config
	if *cfgPath != "" {
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
		reportConfig(cfg, &opts)
	} else {
		opts.WindowsNote = "no configuration given (--config), so no policy data"
	}
	if *logPath == "" && len(audits) == 0 {
		*logPath = cfg.Audit.Path
	}
	if *logPath != "" {
		if opts.Files, err = audit.LogFilesWithGzip(*logPath); err != nil {
			return err
		}
		if len(opts.Files) == 0 {
			return fmt.Errorf("audit report: no audit log at %s (neither the file nor rotated files beside it)", *logPath)
		}
	} else {
		opts.Files = audits
	}
	for flag, path := range map[string]string{"--out": *out, "--pdf": *pdf} {
		if path == "" {
			continue
		}
		if err := outOverInput("audit report", flag, path, append(slices.Clone(opts.Files), *logPath)); err != nil {
			return err
		}
	}
	// Before anything is written: a file of another kind (notes, another
	// JSON file) is refused whole, as audit query and export refuse it, not
	// reported on as a log whose every line is unreadable.
	if err := query.CheckFiles(opts.Files...); err != nil {
		return &exitError{code: 1, msg: "audit report: " + err.Error()}
	}
	var vopts audit.VerifyOptions
	if *keyPath != "" {
		if vopts.Key, err = audit.LoadVerifyKey(*keyPath); err != nil {
			return fmt.Errorf("audit report: --key: %w", err)
		}
	}
	opts.Verify = report.ChainVerifier(vopts)

	rep, err := report.Build(context.Background(), opts)
	if err != nil {
		return err
	}
	if err := writeReport(rep, *out); err != nil {
		return err
	}
	s := rep.Summary()
	chain := "chain ok"
	switch {
	case !rep.Verify.OK() && rep.Verify.Err != "":
		chain = "chain NOT VERIFIED: " + rep.Verify.Err
	case !rep.Verify.OK() && rep.Verify.Break != nil:
		chain = "chain BROKEN: " + rep.Verify.Break.Message
	}
	fmt.Fprintf(stdout, "%s: records read %d in %s; in the period: calls %d, denied %d, alerts %d, state-changing %d; %s\n",
		*out, s.Records, rep.Elapsed.Round(time.Millisecond), s.Calls, s.Denied, s.Alerts, s.StateChanging, chain)
	if *pdf != "" {
		if err := report.PrintPDF(context.Background(), *out, *pdf); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: printed\n", *pdf)
	}
	// Lines of a log that are not records are a damaged log: the report is
	// written (it is most needed then) and names them, and the exit is 1
	// so that nobody takes it for a report of the whole log.
	for _, f := range rep.Files {
		if f.Unreadable > 0 {
			them := audit.Noun(f.Unreadable, "it", "them")
			fmt.Fprintf(stderr, "audit report: %s: %s: the report names %s (FILE:LINE) and leaves %s out\n", f.Name, notRecords(f.Unreadable), them, them)
		}
	}
	var failed []string
	if !rep.Verify.OK() {
		// The report is written either way; a script sees the chain's
		// state in the exit status, as with audit verify.
		failed = append(failed, "the "+chain)
	}
	if s.Unreadable > 0 {
		failed = append(failed, fmt.Sprintf("%s and %s left out of it", notRecords(s.Unreadable), audit.Noun(s.Unreadable, "is", "are")))
	}
	if len(failed) > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("audit report: %s is written, but %s", *out, strings.Join(failed, "; and "))}
	}
	return nil
}

// reportConfig takes the listeners and the maintenance windows of the
// configuration.
func reportConfig(cfg *config.Config, opts *report.Options) {
	opts.Listeners = []report.Listener{}
	for _, l := range cfg.Listeners {
		opts.Listeners = append(opts.Listeners, report.Listener{Name: l.Name, Protocol: l.Protocol, Listen: l.Listen, Upstream: l.Upstream})
	}
	p := cfg.Policy.Path
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		opts.WindowsNote = "the policy comes from a bundle server (" + p + "), which the report does not fetch"
		return
	}
	ws, err := report.LoadWindows(p)
	switch {
	case err != nil:
		opts.WindowsNote = err.Error()
	case ws == nil:
		opts.WindowsNote = "the policy data in " + p + " has no maintenance_windows"
	default:
		opts.Windows = ws
	}
}

// writeReport writes the page to a temporary file beside path and renames
// it, so that a failed run never leaves half a report. Errors name path, the
// file the user asked for, never the temporary one.
func writeReport(rep *report.Report, path string) error {
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return fmt.Errorf("audit report: cannot write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*.html")
	if err != nil {
		return fail(err)
	}
	werr := rep.WriteHTML(f)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return fail(err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fail(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fail(err)
	}
	return nil
}
