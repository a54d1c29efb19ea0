package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/audit/export"
	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/gateway"
)

const querySynopsis = "audit query [--log PATH | FILE…] [--from T] [--to T] [filters] [--format table|jsonl] [--limit N]"

func init() {
	register(command{group: "audit", name: "query", synopsis: strings.TrimPrefix(querySynopsis, "audit query "), run: cmdAuditQuery,
		help: "find calls and events in audit logs: who called what, where, when, and the outcome"})
}

func cmdAuditQuery(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit query", querySynopsis, stderr)
	in := addQueryFlags(fs)
	format := fs.String("format", "table", "`format`: table (one aligned row per call or event) or jsonl (the matching records as written, in the log's order)")
	limit := fs.Int("limit", 0, "stop after `N` matches (a call and its result are one); 0 for all")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: interlock %s

Reads audit logs in order and prints the records that match every filter
given. A filter given twice, or with values separated by commas, matches any
of its values; --user, --source and --node-id take each value whole (a name
or node id may hold a comma): give them once per value. A call and its result record are one match: the table shows
them on one row (status, code and latency from the result), jsonl writes both
records in the log's order (the result where it was written, after the
records written in between). A summary (records read, matched, records/s) goes to stderr.
Records more than 10 minutes before --from or after --to are passed over
without being decoded; every file is still read to its end, since a gateway
restarted with its clock set back writes earlier times after later ones.

A file whose first line is not an audit record is refused (exit 1); later
lines that are not records are named (FILE:LINE), left out, and make the
exit 1 once the rest is written. The hash chain is not checked here: run
'interlock audit verify' for that.

%s
Examples:
  interlock audit query --log audit/audit.jsonl --from -2h --decision deny
  interlock audit query --log audit/audit.jsonl --user alice --access write --status ok
  interlock audit query audit-*.jsonl audit.jsonl --target plc1 --address 100-199 --format jsonl
  interlock audit query --log audit/audit.jsonl --source 10.0.5.0/24 --event 'session.*'
`, querySynopsis, flagsText(fs))
	}
	files, err := parseWithFiles(fs, args)
	if err != nil {
		return err
	}
	if *format != "table" && *format != "jsonl" {
		return usageErr("audit query: --format %q: want table or jsonl", *format)
	}
	if *limit < 0 {
		return usageErr("audit query: --limit %d: want 0 or more", *limit)
	}
	q, paths, err := in.query("audit query", files, time.Now())
	if err != nil {
		return err
	}
	q.Limit = *limit
	lazyGC()

	r := query.NewReader(paths...)
	r.Stdin = stdin
	r.Warn = &linePrefixer{w: stderr, prefix: "audit query: "}
	var emit func(*query.Record) error
	var finish func() error
	if *format == "table" {
		t := query.NewTable(stdout)
		emit, finish = t.Write, t.Flush
	} else {
		enc, err := export.NewEncoder(stdout, "jsonl", "")
		if err != nil {
			return err
		}
		q.LogOrder = true
		emit, finish = enc.Write, enc.Close
	}
	st, err := q.Run(r, emit)
	r.Close()
	var nl *query.NotLogError
	if !errors.As(err, &nl) || st.Matched > 0 { // no table header over standard input that is no log
		if ferr := finish(); err == nil {
			err = ferr
		}
	}
	fmt.Fprintln(stderr, "audit query: "+queryStatsLine(st, "matched"))
	if err != nil {
		return &exitError{code: 1, msg: "audit query: " + err.Error()}
	}
	return badLinesErr("audit query", st)
}

// badLinesErr fails a query or export that passed over whole lines that
// are not audit records: the output is all the rest, but the log is
// damaged or holds something else, and an auditor must not take the output
// for the whole log. (A last line cut short is a record being written, or
// one a crash cut: noted, not a failure.)
func badLinesErr(cmd string, st query.Stats) error {
	if st.BadLines == 0 {
		return nil
	}
	return &exitError{code: 1, msg: fmt.Sprintf("%s: %s (FILE:LINE above) and %s left out of the output; "+
		"run 'interlock audit verify' on the same files to see whether the log was changed", cmd, notRecords(st.BadLines), audit.Noun(st.BadLines, "is", "are"))}
}

// notRecords counts the lines of a log that are not audit records, in a
// sentence: "1 line is not an audit record", "2 lines are not audit records".
func notRecords[N ~int | ~int64](n N) string {
	return audit.Plural(n, "line") + audit.Noun(n, " is not an audit record", " are not audit records")
}

// lazyGC makes garbage collection rarer unless GOGC says otherwise, for the
// batch commands: a replay and an audit scan make many short-lived values
// (OPA's evaluation values, a string per record) and keep few, so the
// default target collects every few megabytes of a small heap for nothing.
// At 400 the heap may grow to five times what is live, tens of megabytes
// for these. Measured: a scan reads about 1.5x the records per second, a
// replay saves a fifth of its CPU. The gateway (interlock run) keeps Go's
// default, which holds its memory per session lower (BENCHMARKS.md, the
// policy section, has both sides of that trade).
func lazyGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

// queryStatsLine is the stderr line after a query or export.
func queryStatsLine(st query.Stats, verb string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s read from %s (%.1f MB) in %s (%.0f records/s); %d %s: %s with %s, %s",
		audit.Plural(st.Records, "record"), audit.Plural(st.Files, "file"), float64(st.Bytes)/1e6, st.Elapsed.Round(time.Millisecond),
		st.RecordsPerSecond(), st.Matched, verb, audit.Plural(st.Calls, "call"), audit.Noun(st.Calls, "its result", "their results"),
		audit.Plural(st.Items-st.Calls, "other record"))
	if st.PassedOver > 0 {
		fmt.Fprintf(&b, "; %s well outside --from/--to passed over", audit.Plural(st.PassedOver, "record"))
	}
	if st.BadLines > 0 {
		fmt.Fprintf(&b, "; %s that %s left out", audit.Plural(st.BadLines, "line"), audit.Noun(st.BadLines, "is not an audit record", "are not audit records"))
	}
	if cut := st.SkippedLines - st.BadLines; cut > 0 {
		fmt.Fprintf(&b, "; %s cut short skipped", audit.Plural(cut, "last line"))
	}
	if st.Unjoined > 0 {
		fmt.Fprintf(&b, "; %s without a result record", audit.Plural(st.Unjoined, "call"))
	}
	return b.String()
}

// queryFlags are the files and filters shared by audit query and export.
type queryFlags struct {
	logs, nodeIDs, users, sources                      repeatFlag // may hold commas
	targets, protocols, functions, accesses, decisions listFlag
	statuses, addresses, events, callIDs               listFlag
	from, to                                           string
}

func addQueryFlags(fs *flag.FlagSet) *queryFlags {
	in := &queryFlags{}
	fs.Var(&in.logs, "log", "the live file `PATH` of a log (audit.path): its rotated files (…jsonl, or gzipped …jsonl.gz) are read first, in chain order; may be repeated")
	fs.StringVar(&in.from, "from", "", "records at or after `T`: RFC 3339 (2026-11-26T02:00:00Z), a date (2026-11-26), now, or an offset (-2h, -7d)")
	fs.StringVar(&in.to, "to", "", "records before `T` (same forms as --from)")
	fs.Var(&in.users, "user", "principal `user` (ticket records: who changed the ticket, or whom it is for); * matches any run of characters; repeat for several (commas are part of the name)")
	fs.Var(&in.sources, "source", "source inventory `name`, IP address or CIDR block (10.0.5.0/24); repeat for several (commas are part of the name)")
	fs.Var(&in.targets, "target", "`target` name (a listener or route), * globs")
	fs.Var(&in.protocols, "protocol", "`protocol`: "+strings.Join(gateway.Protocols(), ", "))
	fs.Var(&in.functions, "function", "operation `function` (write_single_register, write_*) or function code (16)")
	fs.Var(&in.accesses, "access", "`access`: "+strings.Join(query.Accesses, ", "))
	fs.Var(&in.decisions, "decision", "`decision`: allow (no alert), alert (allowed or not), deny")
	fs.Var(&in.statuses, "status", "result `status` of a call: ok, denied, exception, error")
	fs.Var(&in.nodeIDs, "node-id", "OPC UA node `id`, * globs; repeat for several (commas are part of the id)")
	fs.Var(&in.addresses, "address", "register `N` or range N-M: calls whose registers [address, address+quantity) overlap it")
	fs.Var(&in.events, "event", "record `event` (call, session.open, request.rejected, policy.load …), * globs; a call with its result is both call and result")
	fs.Var(&in.callIDs, "call-id", "call `id`")
	return in
}

// query builds the query and the list of files: --log files first, then
// the FILE arguments.
func (in *queryFlags) query(cmd string, files []string, now time.Time) (*query.Query, []string, error) {
	var paths []string
	for _, l := range in.logs {
		fs, err := audit.LogFilesWithGzip(l)
		if err != nil {
			return nil, nil, &exitError{code: 1, msg: fmt.Sprintf("%s: --log %s: %v", cmd, l, err)}
		}
		if len(fs) == 0 {
			return nil, nil, &exitError{code: 1, msg: fmt.Sprintf("%s: --log %s: no such log (neither the file nor rotated files beside it)", cmd, l)}
		}
		paths = append(paths, fs...)
	}
	for _, p := range files {
		if p == "-" {
			continue
		}
		if _, err := os.Stat(p); err != nil { // before any output: no header over an error
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, nil, &exitError{code: 1, msg: fmt.Sprintf("%s: %s: %v", cmd, p, err)}
		}
	}
	paths = append(paths, files...)
	if len(paths) == 0 {
		return nil, nil, usageErr("%s: name a log (--log PATH) or audit files (FILE…)", cmd)
	}
	// Before any output: a file of another kind is refused whole.
	if err := query.CheckFiles(paths...); err != nil {
		return nil, nil, &exitError{code: 1, msg: fmt.Sprintf("%s: %v", cmd, err)}
	}
	var f query.Filter
	var err error
	if in.from != "" {
		if f.From, err = query.ParseTime(in.from, now); err != nil {
			return nil, nil, usageErr("%s: --from: %v", cmd, err)
		}
	}
	if in.to != "" {
		if f.To, err = query.ParseTime(in.to, now); err != nil {
			return nil, nil, usageErr("%s: --to: %v", cmd, err)
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return nil, nil, usageErr("%s: --from %s is not before --to %s", cmd, in.from, in.to)
	}
	for _, u := range in.users {
		if u == "" {
			return nil, nil, usageErr("%s: --user: empty user name", cmd)
		}
	}
	f.Users = in.users
	f.Targets = in.targets
	f.Protocols = in.protocols
	f.Functions = in.functions
	f.Events = in.events
	f.CallIDs = in.callIDs
	f.NodeIDs = in.nodeIDs
	f.Accesses = in.accesses
	f.Decisions = in.decisions
	f.Statuses = in.statuses
	for name, check := range map[string]struct {
		values, allowed []string
	}{
		"access":   {f.Accesses, query.Accesses},
		"decision": {f.Decisions, query.Verdicts},
		"status":   {f.Statuses, query.Statuses},
		"protocol": {f.Protocols, gateway.Protocols()},
	} {
		for _, v := range check.values {
			if !slices.Contains(check.allowed, v) {
				return nil, nil, usageErr("%s: --%s %q: want one of %s", cmd, name, v, strings.Join(check.allowed, ", "))
			}
		}
	}
	if err := checkEvents(cmd, f.Events); err != nil {
		return nil, nil, err
	}
	if err := checkFunctions(cmd, f.Functions); err != nil {
		return nil, nil, err
	}
	for _, v := range in.sources {
		m, err := query.ParseSource(v)
		if err != nil {
			return nil, nil, usageErr("%s: --source: %v", cmd, err)
		}
		f.Sources = append(f.Sources, m)
	}
	for _, v := range in.addresses {
		s, err := query.ParseSpan(v)
		if err != nil {
			return nil, nil, usageErr("%s: --address: %v", cmd, err)
		}
		f.Addresses = append(f.Addresses, s)
	}
	return &query.Query{Filter: f}, paths, nil
}

// repeatFlag collects a flag given more than once, each value whole.
type repeatFlag []string

func (l *repeatFlag) String() string { return strings.Join(*l, " ") }

func (l *repeatFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseWithFiles parses flags that may come before, between and after the
// file arguments (`audit query audit.jsonl --user alice`); after "--"
// everything is a file.
func parseWithFiles(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

// flagsText is PrintDefaults as a string.
func flagsText(fs *flag.FlagSet) string {
	var b bytes.Buffer
	out := fs.Output()
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(out)
	return "Flags:\n" + b.String()
}

// linePrefixer prefixes each line written to it, for the reader's notes on stderr.
type linePrefixer struct {
	w      io.Writer
	prefix string
}

func (n *linePrefixer) Write(p []byte) (int, error) {
	for _, line := range bytes.SplitAfter(p, []byte{'\n'}) {
		if len(line) > 0 {
			if _, err := fmt.Fprintf(n.w, "%s%s", n.prefix, line); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}
