package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/admin"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/policy"
)

// adminSynopsis names the gateway every ticket command talks to.
const adminSynopsis = "(--config FILE | --socket PATH)"

func init() {
	register(command{group: "ticket", name: "open", run: cmdTicketOpen,
		synopsis: adminSynopsis + " --user U --target T --access A --for D --reason R [--id ID] [--json]",
		help:     "open a change ticket on the running gateway"})
	register(command{group: "ticket", name: "list", synopsis: adminSynopsis + " [--json]", run: cmdTicketList, help: "list the open change tickets"})
	register(command{group: "ticket", name: "approve", synopsis: adminSynopsis + " [--json] ID", run: cmdTicketApprove,
		help: "approve a ticket (a second person: the opener cannot)"})
	register(command{group: "ticket", name: "close", synopsis: adminSynopsis + " [--json] ID", run: cmdTicketClose,
		help: "close a ticket before it expires"})
}

// listFlag collects a repeatable or comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// adminFlags adds --config and --socket, and returns the client they name.
// Without either it names both, with an example: there is no default path,
// so a command never reaches a gateway the caller did not name.
func adminFlags(fs *flag.FlagSet) func() (*admin.Client, error) {
	cfgPath := fs.String("config", "", "the gateway's configuration (its admin.socket is used)")
	socket := fs.String("socket", "", "the gateway's admin socket (instead of --config)")
	return func() (*admin.Client, error) {
		switch {
		case *socket != "":
			return admin.NewClient(*socket), nil
		case *cfgPath == "":
			return nil, usageErr("%s: which gateway? give --config FILE (the gateway's configuration; its admin.socket is used) "+
				"or --socket PATH (the admin socket itself), e.g. interlock %s --config /etc/interlock/interlock.yaml …", fs.Name(), fs.Name())
		}
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return nil, fmt.Errorf("%w (to reach a running gateway anyway, give its admin socket with --socket PATH)", err)
		}
		if cfg.Admin.Socket == "" {
			return nil, fmt.Errorf("%s: admin.socket is not set: the gateway has no admin interface", cfg.File)
		}
		return admin.NewClient(cfg.Admin.Socket), nil
	}
}

func cmdTicketOpen(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("ticket open", "ticket open "+adminSynopsis+" --user U --target T --access A --for D --reason R [--id ID] [--json]", stderr)
	client := adminFlags(fs)
	user := fs.String("user", "", "the user the ticket lets act (principal.user)")
	var targets, access listFlag
	fs.Var(&targets, "target", "target (listener or route name); repeat or comma-separate for several")
	fs.Var(&access, "access", "access kinds: write, execute, program, diagnostic, …; repeat or comma-separate")
	forArg := fs.String("for", "", "how long the ticket stays open: a duration such as 2h, 90m or 2d (at most 168h, 7d), or the time it ends, in RFC 3339 such as 2026-12-01T18:00:00Z")
	reason := fs.String("reason", "", "why: the change request, such as CHG-1234")
	id := fs.String("id", "", "ticket id (default: generated)")
	asJSON := fs.Bool("json", false, "print the ticket as JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var missing []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"--user", *user != ""}, {"--target", len(targets) > 0}, {"--access", len(access) > 0}, {"--for", *forArg != ""}, {"--reason", *reason != ""}} {
		if !f.set {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fs.Usage()
		return usageErr("ticket open: missing %s (--user, --target, --access, --for and --reason are all required)", strings.Join(missing, ", "))
	}
	dur, err := parseTicketFor(*forArg, time.Now())
	if err != nil {
		return usageErr("ticket open: --for %q: %v", *forArg, err)
	}
	c, err := client()
	if err != nil {
		return err
	}
	t, err := c.Open(admin.OpenRequest{ID: *id, User: *user, Targets: targets, Access: access, Reason: *reason, Duration: dur.String()})
	return ticketDone("open", stdout, t, *asJSON, err)
}

// ticketForForms are the forms --for takes, for its errors.
const ticketForForms = "want how long, such as 2h, 90m, 1h30m or 2d (at most 168h, 7d), or when the ticket ends, in RFC 3339 such as 2026-12-01T18:00:00Z"

// parseTicketFor reads --for: a Go duration, a number of days (2d), or the
// time the ticket ends (RFC 3339), as the duration from now.
func parseTicketFor(v string, now time.Time) (time.Duration, error) {
	var d time.Duration
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		if !t.After(now) {
			return 0, fmt.Errorf("%s is past (now %s): %s", t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ticketForForms)
		}
		return t.Sub(now).Round(time.Second), nil
	}
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		switch {
		case err != nil:
			return 0, errors.New(ticketForForms)
		case days > 10000: // a time.Duration holds 106751 days
			return 0, fmt.Errorf("far over the 168h (7d) a ticket may last: %s", ticketForForms)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New(ticketForForms)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("not a positive duration: %s", ticketForForms)
	}
	return d, nil
}

// ticketDone prints the ticket a change made, or why it failed; a change
// that took effect with a fault (the ticket file not saved) prints the
// ticket and fails with the fault.
func ticketDone(verb string, stdout io.Writer, t policy.Ticket, asJSON bool, err error) error {
	var warn *admin.Warning
	if err != nil && !errors.As(err, &warn) {
		return fmt.Errorf("ticket %s: %w", verb, err)
	}
	if perr := printTicket(stdout, t, asJSON, verb); perr != nil {
		return perr
	}
	if warn != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("ticket %s: done and in force, but: %s", verb, warn.Msg)}
	}
	return nil
}

func cmdTicketList(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("ticket list", "ticket list "+adminSynopsis+" [--json]", stderr)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	ts, err := c.List()
	if err != nil {
		return fmt.Errorf("ticket list: %w", err)
	}
	if *asJSON {
		if ts == nil {
			ts = []policy.Ticket{} // a list, also when empty: scripts read an array
		}
		return json.NewEncoder(stdout).Encode(ts)
	}
	if len(ts) == 0 {
		fmt.Fprintln(stdout, "no open tickets")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tTARGETS\tACCESS\tEXPIRES\tOPENED BY\tAPPROVED BY\tREASON")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (in %s)\t%s\t%s\t%s\n", t.ID, t.User, strings.Join(t.Targets, ","),
			strings.Join(t.Access, ","), t.Expires.UTC().Format(time.RFC3339), time.Until(t.Expires).Round(time.Second),
			t.OpenedBy, strings.Join(t.Approvals, ","), t.Reason)
	}
	return tw.Flush()
}

func cmdTicketApprove(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	return ticketByID("approve", args, stdout, stderr, (*admin.Client).Approve)
}

func cmdTicketClose(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	return ticketByID("close", args, stdout, stderr, (*admin.Client).Close)
}

func ticketByID(verb string, args []string, stdout, stderr io.Writer, do func(*admin.Client, string) (policy.Ticket, error)) error {
	fs := newFlags("ticket "+verb, "ticket "+verb+" "+adminSynopsis+" [--json] ID", stderr)
	client := adminFlags(fs)
	asJSON := fs.Bool("json", false, "print the ticket as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageErr("ticket %s: name one ticket id", verb)
	}
	c, err := client()
	if err != nil {
		return err
	}
	t, err := do(c, fs.Arg(0))
	return ticketDone(verb, stdout, t, *asJSON, err)
}

// printTicket prints a ticket after a change (verb: open, approve, close).
func printTicket(w io.Writer, t policy.Ticket, asJSON bool, verb string) error {
	if asJSON {
		return json.NewEncoder(w).Encode(t)
	}
	if verb == "close" {
		fmt.Fprintf(w, "ticket %s closed: %s may no longer %s on %s (%s; it was open until %s, approved by: %s)\n", t.ID, t.User,
			strings.Join(t.Access, ","), strings.Join(t.Targets, ","), t.Reason, t.Expires.UTC().Format(time.RFC3339),
			orNone(t.Approvals))
		return nil
	}
	what := map[string]string{"open": "opened", "approve": "approved"}[verb]
	fmt.Fprintf(w, "ticket %s %s: %s may %s on %s until %s (%s); approved by: %s\n", t.ID, what, t.User,
		strings.Join(t.Access, ","), strings.Join(t.Targets, ","), t.Expires.UTC().Format(time.RFC3339), t.Reason,
		orNone(t.Approvals))
	return nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "nobody yet"
	}
	return strings.Join(s, ", ")
}
