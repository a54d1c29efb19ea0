// Command interlock is the Interlock gateway: it stands between engineering
// workstations and PLCs, decides every Modbus call with an embedded OPA
// policy, audits it, and forwards only what the policy allows.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

// command is one command line verb: `run`, `policy test`, `audit verify` …
// Each lives in its own file and registers itself in init.
type command struct {
	group    string // "" for a top-level verb, else policy, audit, sim …
	name     string
	synopsis string // flags and arguments, for the usage text
	help     string // one line
	run      func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands []command

func register(c command) { commands = append(commands, c) }

// usage lists every command, generated from the registry.
func usage() string {
	var b strings.Builder
	b.WriteString("interlock: an inline Modbus TCP and OPC UA enforcement point with an embedded OPA policy\n" +
		"and a tamper-evident audit log.\n\nUsage:\n  interlock <command> [flags]\n\nCommands:\n")
	sorted := slices.Clone(commands)
	slices.SortStableFunc(sorted, func(a, b command) int {
		return strings.Compare(a.group+" "+a.name, b.group+" "+b.name)
	})
	for _, c := range sorted {
		line := strings.TrimSpace(c.group + " " + c.name + " " + c.synopsis)
		if len(line) <= 38 {
			fmt.Fprintf(&b, "  %-38s %s\n", line, c.help)
		} else {
			fmt.Fprintf(&b, "  %s\n  %-38s %s\n", line, "", c.help)
		}
	}
	b.WriteString("\nRun 'interlock <command> --help' for the flags of a command.\n" +
		"Configuration reference and a quickstart: README.md.\n")
	return b.String()
}

// exitError carries an exit code for a message already printed (or none).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command and returns the process exit code: 0 success,
// 1 failure (bad config, failed check, broken audit chain, failing tests),
// 2 usage error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[0] == "help" {
		// interlock help ticket open: the help of that command
		args = append(args[1:], "--help")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage())
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	err := dispatch(args, stdin, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "interlock:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "interlock:", err)
	return 1
}

// dispatch finds the command of args and runs it.
func dispatch(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	name, rest := args[0], args[1:]
	if name == "--version" {
		name = "version"
	}
	var group []command
	for _, c := range commands {
		switch {
		case c.group == "" && c.name == name:
			return c.run(rest, stdin, stdout, stderr)
		case c.group == name:
			group = append(group, c)
		}
	}
	if len(group) == 0 {
		fmt.Fprintf(stderr, "interlock: unknown command %q\n\n%s", name, usage())
		return &exitError{code: 2}
	}
	verbs := map[string]string{}
	for _, c := range group {
		verbs[c.name] = c.help
	}
	verb, rest, err := subcommand(name, rest, verbs, stdout)
	if err != nil {
		return err
	}
	for _, c := range group {
		if c.name == verb {
			return c.run(rest, stdin, stdout, stderr)
		}
	}
	return nil
}

func init() {
	register(command{name: "version", help: "print the version",
		run: func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
			if err := parseNoArgs(newFlags("version", "version", stderr), args); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "interlock", versionString())
			return nil
		}})
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// newFlags returns a flag set whose --help prints the command's synopsis.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: interlock %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; a usage error exits 2.
// parse parses flags anywhere among the arguments, as the synopses show
// them ("ticket close ID --config FILE"); after "--" everything is an
// argument. fs.Args() holds the arguments, in order.
func parse(fs *flag.FlagSet, args []string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return &exitError{code: 2}
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if consumed := len(args) - len(left); consumed > 0 && args[consumed-1] == "--" {
			rest = append(rest, left...)
			break
		}
		rest, args = append(rest, left[0]), left[1:]
	}
	return fs.Parse(append([]string{"--"}, rest...)) // leaves fs.Args() = rest
}

// parseNoArgs is parse for a command that takes no arguments but flags.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("%s: unexpected argument %q (every option is a --flag)", fs.Name(), fs.Arg(0))
	}
	return nil
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, a...)}
}

// subcommand splits "policy test …" into its verb, printing help when asked.
func subcommand(group string, args []string, verbs map[string]string, stdout io.Writer) (string, []string, error) {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: interlock %s <command>\n\nCommands:\n", group)
		var names []string
		for v := range verbs {
			names = append(names, v)
		}
		slices.Sort(names)
		for _, v := range names {
			fmt.Fprintf(w, "  %-8s %s\n", v, verbs[v])
		}
	}
	if len(args) == 0 {
		help(stdout)
		return "", nil, &exitError{code: 2}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		help(stdout)
		return "", nil, flag.ErrHelp
	}
	if _, ok := verbs[args[0]]; !ok {
		return "", nil, usageErr("unknown command %q for %q (known: %s)", args[0], group, strings.Join(keys(verbs), ", "))
	}
	return args[0], args[1:], nil
}

func keys(m map[string]string) []string {
	var k []string
	for v := range m {
		k = append(k, v)
	}
	slices.Sort(k)
	return k
}
