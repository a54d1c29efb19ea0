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

const usage = `interlock: an inline Modbus TCP enforcement point with an embedded OPA policy
and a tamper-evident audit log.

Usage:
  interlock <command> [flags]

Commands:
  run     --config FILE                  run the gateway in the foreground
                                         (SIGHUP or a policy file change reloads the policy)
  check   --config FILE                  check the configuration and compile the policy
  policy test [DIR…]                     run the Rego unit tests (*_test.rego, test_ rules)
  policy eval --config FILE --input FILE|-
                                         print the decision for one policy input as JSON
  audit verify FILE…                     check the audit log's hash chain; exit 1 at the first break
  sim modbus --listen ADDR               run a Modbus TCP PLC simulator (demos and tests)
  version                                print the version

Run 'interlock <command> --help' for the flags of a command.
Configuration reference and a quickstart: README.md.
`

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
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(rest, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "policy":
		err = cmdPolicy(rest, stdin, stdout, stderr)
	case "audit":
		err = cmdAudit(rest, stdout, stderr)
	case "sim":
		err = cmdSim(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "interlock", versionString())
	default:
		fmt.Fprintf(stderr, "interlock: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
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
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &exitError{code: 2}
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
