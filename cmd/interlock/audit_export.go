package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit/export"
	"github.com/interlock-ics/interlock/audit/query"
)

const exportSynopsis = "audit export --format ocsf|cef|csv|jsonl [--log PATH | FILE…] [--from T] [--to T] [filters] [--limit N] [--out FILE]"

func init() {
	register(command{group: "audit", name: "export", synopsis: strings.TrimPrefix(exportSynopsis, "audit export "), run: cmdAuditExport,
		help: "convert audit logs for a SIEM or a spreadsheet: OCSF, CEF, CSV or JSONL"})
}

func cmdAuditExport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("audit export", exportSynopsis, stderr)
	format := fs.String("format", "", "output `format`: ocsf (OCSF 1.x API Activity, class 6003; docs/ocsf-mapping.md), cef (ArcSight CEF), csv (RFC 4180, one row per call) or jsonl (the records as written, in the log's order); required")
	out := fs.String("out", "", "write to `FILE` (replaced only when the export succeeds) instead of standard output")
	limit := fs.Int("limit", 0, "stop after `N` matches (a call and its result are one); 0 for all")
	in := addQueryFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: interlock %s

Converts the records of audit logs that match the filters (the filters of
'interlock audit query'): one OCSF event, CEF line or CSV row per call with its
result joined, and one per other record (session.open, request.rejected,
policy.load …); jsonl writes the records as they are, in the log's order (a
call's result where it was written), so that an export of a whole log
verifies with 'interlock audit verify'. The product version in
OCSF and CEF is the gateway's, from its gateway.start record (this binary's
when the log does not say). A summary goes to stderr. Records more than 10
minutes before --from or after --to are passed over without being decoded;
every file is still read to its end (a gateway restarted with its clock set
back writes earlier times after later ones).

A file whose first line is not an audit record is refused (exit 1); later
lines that are not records are named (FILE:LINE), left out, and make the
exit 1 once the rest is written. The hash chain is not checked here: run
'interlock audit verify' for that.

%s
Examples:
  interlock audit export --format ocsf --log audit/audit.jsonl --out audit.ocsf.jsonl
  interlock audit export --format cef --log audit/audit.jsonl --from -24h --decision deny,alert
  interlock audit export --format csv --log audit/audit.jsonl --access write,program --out writes.csv
`, exportSynopsis, flagsText(fs))
	}
	files, err := parseWithFiles(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *format == "":
		fs.Usage()
		return usageErr("audit export: --format is required: one of %s", strings.Join(export.Formats, ", "))
	case *limit < 0:
		return usageErr("audit export: --limit %d: want 0 or more", *limit)
	}
	q, paths, err := in.query("audit export", files, time.Now())
	if err != nil {
		return err
	}
	q.Limit = *limit
	q.LogOrder = *format == "jsonl"
	lazyGC()

	if *out != "" {
		if err := outOverInput("audit export", "--out", *out, paths); err != nil {
			return err
		}
	}
	w := stdout
	var tmp *os.File
	if *out != "" {
		// Written beside the target and renamed: a failed export leaves no
		// half file where a complete one is expected.
		tmp, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return &exitError{code: 1, msg: fmt.Sprintf("audit export: --out %s: %v", *out, err)}
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		w = tmp
	}
	enc, err := export.NewEncoder(w, *format, versionString())
	if err != nil {
		return usageErr("audit export: --format %q: want one of %s", *format, strings.Join(export.Formats, ", "))
	}
	// Formatting runs beside the reading, on the other core.
	pipe := export.NewPipeline(enc)
	q.Observe = pipe.Observe

	r := query.NewReader(paths...)
	r.Stdin = stdin
	r.Warn = &linePrefixer{w: stderr, prefix: "audit export: "}
	st, err := q.Run(r, pipe.Write)
	r.Close()
	if cerr := pipe.Close(); err == nil {
		err = cerr
	}
	if err == nil && tmp != nil {
		err = commitExportFile(tmp, *out)
	}
	line := "audit export: " + queryStatsLine(st, "exported")
	if *out != "" && err == nil {
		line += " to " + *out
	}
	fmt.Fprintln(stderr, line)
	if err != nil {
		return &exitError{code: 1, msg: "audit export: " + err.Error()}
	}
	return badLinesErr("audit export", st)
}

// commitExportFile makes the finished temporary file the output file.
func commitExportFile(tmp *os.File, path string) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
