package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/policy"
)

const replaySynopsis = "policy replay --config FILE (--audit FILE… | --log PATH) [--policy DIR] [--format text|json|markdown] [--fail-on newly-denied|any-change]"

func init() {
	register(command{group: "policy", name: "replay", run: cmdPolicyReplay,
		synopsis: strings.TrimPrefix(replaySynopsis, "policy replay "),
		help:     "re-decide recorded calls under a (new) policy; print what changes"})
}

const replayHelp = `Decides every call and session open recorded in the audit logs again under
the candidate policy (--policy, else the configuration's policy.path), at the
time it was recorded and with the change tickets open at that time, and
reports what changes: calls newly denied, newly allowed, alerts switched on or
off, and calls the policy fails on (a deny). Changes are grouped by user,
source, target, function and new reasons, with counts and examples.

Logs are read in the order given (a name ending in .gz is decompressed);
other records are skipped. A last line cut short by a crash (or being
written) is skipped with a note; any other line that is not a JSON record
is an error naming file:line. The hash chain is not checked here: run
'interlock audit verify' when the log's integrity matters.

Each evaluation may take ten times policy.timeout (at least 1s); past that
the call counts as a policy error (policy_timeout).

Exit status: 0 after the report, 1 when --fail-on is met or on an error (such
as a line that is not JSON, named by file:line), 2 on a usage error.

Flags:
`

// stringList is a repeatable flag.
type stringList []string

var _ flag.Value = (*stringList)(nil)

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func cmdPolicyReplay(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("policy replay", replaySynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: interlock %s\n\n%s", replaySynopsis, replayHelp)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "configuration `FILE` (required): gateway id, policy path and timeout, bundle keys")
	var audits stringList
	fs.Var(&audits, "audit", "audit log `FILE` (JSONL) to replay; repeat it, or list more files after the flags")
	logPath := fs.String("log", "", "the live file of an audit log: replay it with its rotated files (.gz too), oldest first")
	dir := fs.String("policy", "", "candidate policy: a `DIR`, bundle file or bundle URL (default: the configuration's policy.path)")
	format := fs.String("format", "text", "output: text, json or markdown (for a pull request)")
	failOn := fs.String("fail-on", "", "exit 1 when a call is newly-denied (or fails to evaluate), or on any-change")
	if err := parse(fs, args); err != nil {
		return err
	}
	audits = append(audits, fs.Args()...)
	if *cfgPath == "" {
		return usageErr("policy replay: --config is required")
	}
	audits, err := auditInputs("policy replay", audits, *logPath, stderr)
	if err != nil {
		return err
	}
	if *dir != "" {
		if err := checkPath("policy replay", "--policy", *dir, aPolicy); err != nil {
			return err
		}
	}
	switch {
	case len(audits) == 0:
		return usageErr("policy replay: give at least one --audit FILE, or --log PATH")
	case *format != "text" && *format != "json" && *format != "markdown":
		return usageErr("policy replay: --format %q: want text, json or markdown", *format)
	case *failOn != "" && *failOn != "newly-denied" && *failOn != "any-change":
		return usageErr("policy replay: --fail-on %q: want newly-denied or any-change", *failOn)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	// Loaded as the gateway loads it (a bundle is verified with the
	// configured key); only the candidate's path may differ.
	candidate := *cfg
	if *dir != "" {
		candidate.Policy.Path = *dir
	}
	path := candidate.Policy.Path
	pol, err := newPolicy(&candidate, zerolog.Nop(), nil, nil, nil)
	if err != nil {
		return err
	}
	lazyGC()
	rep, err := policy.Replay(context.Background(), pol, policy.AuditFiles(audits...),
		policy.ReplayOptions{Gateway: cfg.Gateway.ID, Timeout: replayTimeout(cfg.Policy.Timeout)})
	if err != nil {
		return err
	}
	rep.Files = audits // the files given, whether or not they held a line
	for _, at := range rep.CutLines {
		fmt.Fprintf(stderr, "policy replay: %s: the last line has no end (a record cut short by a crash, or being written): skipped\n", at)
	}
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(struct {
			Policy string `json:"policy"`
			*policy.ReplayReport
		}{path, rep})
	case "markdown":
		err = replayMarkdown(stdout, rep, path)
	default:
		err = replayText(stdout, rep, path)
	}
	if err != nil {
		return err
	}
	t := &rep.Totals
	switch {
	case *failOn == "newly-denied" && t.NewlyDenied+t.Failed > 0:
		return &exitError{code: 1, msg: fmt.Sprintf("policy replay: %d newly denied and %d failed to evaluate, of %d recorded decisions (--fail-on newly-denied)",
			t.NewlyDenied, t.Failed, t.Replayed)}
	case *failOn == "any-change" && t.Changed() > 0:
		return &exitError{code: 1, msg: fmt.Sprintf("policy replay: %d of %d recorded decisions change (--fail-on any-change)",
			t.Changed(), t.Replayed)}
	}
	return nil
}

// replayTimeout bounds one evaluation: a policy that runs away is reported
// as policy_timeout, but a busy CI machine must not make a change appear.
func replayTimeout(policyTimeout time.Duration) time.Duration {
	return max(10*policyTimeout, time.Second)
}

// replayLabel names a change for people.
var replayLabel = map[policy.Change]string{
	policy.NewlyDenied:  "newly denied",
	policy.NewlyAllowed: "newly allowed",
	policy.AlertChanged: "alert changed",
	policy.Failed:       "policy error (deny)",
}

// maxReplayGroups keeps text and markdown readable; json lists every group.
const maxReplayGroups = 50

func replaySpan(rep *policy.ReplayReport) string {
	if rep.Totals.Replayed == 0 {
		return "no recorded decisions"
	}
	const layout = "2006-01-02 15:04:05Z07:00"
	return fmt.Sprintf("%s from %s to %s", audit.Plural(rep.Totals.Replayed, "recorded decision"),
		rep.From.UTC().Format(layout), rep.To.UTC().Format(layout))
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// shortRevision shortens a policy directory's revision (a hash) and keeps
// a bundle's (bundle:v2.3.1-rc7), which its builder chose to be read.
func shortRevision(rev string) string {
	if strings.HasPrefix(rev, policy.BundleRevisionPrefix) {
		return rev
	}
	return shortID(rev)
}

func verdictString(v policy.Verdict) string {
	s := "deny"
	if v.Allow {
		s = "allow"
	}
	if v.Alert {
		s += "+alert"
	}
	s += " [" + strings.Join(v.Reasons, ", ") + "]"
	if v.Ticket != "" {
		s += " ticket " + v.Ticket
	}
	return s
}

// exampleString is one changed call on one line.
func exampleString(ex policy.ReplayExample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s call %s", ex.CallTime.UTC().Format("2006-01-02 15:04:05.000Z07:00"), shortID(ex.CallID))
	switch {
	case ex.Address != nil && ex.Quantity > 1:
		fmt.Fprintf(&b, " addr %d..%d", *ex.Address, *ex.Address+ex.Quantity-1)
	case ex.Address != nil:
		fmt.Fprintf(&b, " addr %d", *ex.Address)
	case ex.NodeID != "":
		fmt.Fprintf(&b, " node %s", ex.NodeID)
	}
	fmt.Fprintf(&b, ": %s → %s", verdictString(ex.Old), verdictString(ex.New))
	return b.String()
}

func replayNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func replayText(w io.Writer, rep *policy.ReplayReport, path string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "policy replay: %s in %s\ncandidate policy %s (revision %s)\n\n",
		replaySpan(rep), audit.Plural(len(rep.Files), "file"), path, shortRevision(rep.PolicyRevision))
	for _, ch := range policy.Changes {
		fmt.Fprintf(&b, "  %-20s %6d\n", replayLabel[ch], rep.Totals.Of(ch))
	}
	fmt.Fprintf(&b, "  %-20s %6d\n", "unchanged", rep.Totals.Unchanged)
	for _, ch := range policy.Changes {
		groups := rep.Groups[ch]
		if len(groups) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n%s: %d in %s\n", replayLabel[ch], rep.Totals.Of(ch), audit.Plural(len(groups), "group"))
		for i, g := range groups {
			if i == maxReplayGroups {
				fmt.Fprintf(&b, "  … %s (--format json lists them all)\n", audit.Plural(len(groups)-i, "more group"))
				break
			}
			fmt.Fprintf(&b, "  %5d× user %s, source %s → %s %s, now [%s]\n", g.Count, replayNone(g.User), replayNone(g.Source),
				g.Target, g.Function, strings.Join(g.Reasons, ", "))
			for _, ex := range g.Examples {
				fmt.Fprintf(&b, "          %s\n", exampleString(ex))
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdCell makes s safe inside a table cell.
func mdCell(s string) string {
	s = strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;").Replace(s)
	if s == "" {
		return "(none)"
	}
	return s
}

func replayMarkdown(w io.Writer, rep *policy.ReplayReport, path string) error {
	var b strings.Builder
	t := &rep.Totals
	title := "no change"
	if t.Changed() > 0 {
		var parts []string
		for _, ch := range policy.Changes {
			if n := t.Of(ch); n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, replayLabel[ch]))
			}
		}
		title = strings.Join(parts, ", ")
	}
	fmt.Fprintf(&b, "### Policy replay: %s\n\n", title)
	fmt.Fprintf(&b, "%s in %s, decided again under `%s` (revision `%s`).\n\n",
		replaySpan(rep), audit.Plural(len(rep.Files), "audit log"), mdCell(path), shortRevision(rep.PolicyRevision))
	b.WriteString("| decisions | count |\n| --- | ---: |\n")
	for _, ch := range policy.Changes {
		fmt.Fprintf(&b, "| %s | %d |\n", replayLabel[ch], t.Of(ch))
	}
	fmt.Fprintf(&b, "| unchanged | %d |\n", t.Unchanged)
	for _, ch := range policy.Changes {
		groups := rep.Groups[ch]
		if len(groups) == 0 {
			continue
		}
		label := replayLabel[ch]
		fmt.Fprintf(&b, "\n#### %s%s (%d)\n\n", strings.ToUpper(label[:1]), label[1:], t.Of(ch))
		b.WriteString("| calls | user | source | target | function | new reasons | examples |\n" +
			"| ---: | --- | --- | --- | --- | --- | --- |\n")
		for i, g := range groups {
			if i == maxReplayGroups {
				fmt.Fprintf(&b, "\n… %s (`--format json` lists them all).\n", audit.Plural(len(groups)-i, "more group"))
				break
			}
			var exs []string
			for _, ex := range g.Examples {
				exs = append(exs, mdCell(exampleString(ex)))
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s |\n", g.Count, mdCell(g.User), mdCell(g.Source),
				mdCell(g.Target), mdCell(g.Function), mdCell(strings.Join(g.Reasons, ", ")), strings.Join(exs, "<br>"))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
