package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/policy"
)

const (
	policyTestSynopsis = "[--verbose] [--format pretty|json] [--coverage] [--min-coverage P] [--timeout D] [DIR…]"
	policyEvalSynopsis = "(--config FILE | --policy DIR) --input FILE|- [--timeout D]"
)

func init() {
	register(command{group: "policy", name: "test", synopsis: policyTestSynopsis, run: cmdPolicyTest,
		help: "run the Rego unit tests (*_test.rego, test_ rules) of the DIRs (default: the current directory)"})
	register(command{group: "policy", name: "eval", synopsis: policyEvalSynopsis, run: cmdPolicyEval,
		help: "print the decision for one policy input as JSON"})
}

func cmdPolicyTest(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("policy test", "policy test "+policyTestSynopsis, stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: interlock policy test %s\n\nRuns the Rego unit tests (*_test.rego, test_ rules) of each policy DIR;\nwithout a DIR, of the current directory (and every file below it).\n\n",
			policyTestSynopsis)
		fs.PrintDefaults()
	}
	verbose := fs.Bool("verbose", false, "print every test, not only failures")
	fs.BoolVar(verbose, "v", false, "short for --verbose")
	format := fs.String("format", "pretty", "output: pretty or json")
	coverage := fs.Bool("coverage", false, "report which policy lines the tests evaluated (with --format json: the coverage document)")
	minCoverage := fs.Float64("min-coverage", 0, "fail when coverage is below this percentage (0..100)")
	timeout := fs.Duration("timeout", policy.DefaultTestTimeout, "the most one test may take (as opa test --timeout)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageErr("policy test: --timeout %v: want a positive duration", *timeout)
	}
	if *format != "pretty" && *format != "json" {
		return usageErr("policy test: --format %q: want pretty or json", *format)
	}
	if *minCoverage < 0 || *minCoverage > 100 {
		return usageErr("policy test: --min-coverage %v: want a percentage, 0..100", *minCoverage)
	}
	dirs := fs.Args()
	for _, d := range dirs {
		if err := checkPath("policy test", "", d, aDirectory); err != nil {
			return err
		}
	}
	where := ""
	if len(dirs) == 0 {
		dirs = []string{"."}
		where = "no DIR given, tested the current directory: "
	}
	passed, failed, err := policy.RunTests(context.Background(), dirs, policy.TestOptions{
		Verbose: *verbose, JSON: *format == "json", Out: stdout, Coverage: *coverage, MinCoverage: *minCoverage,
		Timeout: *timeout,
	})
	if errors.Is(err, policy.ErrCoverage) && failed == 0 {
		return &exitError{code: 1, msg: "policy test: " + err.Error()}
	}
	if err != nil {
		if *format == "json" && passed+failed == 0 {
			// the policy did not load: a CI step reading stdout gets why
			_ = json.NewEncoder(stdout).Encode(map[string]string{"error": err.Error()})
		}
		return fmt.Errorf("policy test: %s%w", where, err)
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("policy test: %d of %d tests failed", failed, passed+failed)}
	}
	return nil
}

func cmdPolicyEval(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("policy eval", "policy eval "+policyEvalSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file; its policy.path is evaluated")
	dir := fs.String("policy", "", "policy directory (instead of --config)")
	inPath := fs.String("input", "", "policy input as JSON (a file, or - for stdin)")
	timeout := fs.Duration("timeout", 0, "the most the decision may take, as at run time (default: the configuration's policy.timeout, else 100ms)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *inPath == "" || (*cfgPath == "") == (*dir == "") {
		return usageErr("policy eval: give --input and one of --config or --policy")
	}
	if *timeout < 0 {
		return usageErr("policy eval: --timeout %v: want a positive duration", *timeout)
	}
	if *dir != "" {
		if err := checkPath("policy eval", "--policy", *dir, aPolicy); err != nil {
			return err
		}
	}
	if *inPath != "-" {
		if err := checkPath("policy eval", "--input", *inPath, aFile); err != nil {
			return err
		}
	}
	opts := policy.Options{Path: *dir, Log: zerolog.Nop()}
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		opts.Path, opts.Gateway = cfg.Policy.Path, cfg.Gateway.ID
		if *timeout == 0 {
			*timeout = cfg.Policy.Timeout
		}
	}
	if *timeout == 0 {
		*timeout = gateway.DefaultDecisionTimeout
	}
	pol, err := policy.New(opts)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	var r io.Reader = stdin
	if *inPath != "-" {
		f, err := os.Open(*inPath)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	input, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%s: not a JSON document: %v", *inPath, err)
	}
	if dec := json.NewDecoder(bytes.NewReader(raw)); dec.Decode(new(json.RawMessage)) == nil {
		if _, err := dec.Token(); err != io.EOF {
			return fmt.Errorf("%s: more than one JSON document (the input is one object)", *inPath)
		}
	}
	at := time.Now().UTC()
	var probe struct {
		Time string `json:"time"`
	}
	if json.Unmarshal(raw, &probe) == nil && probe.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, probe.Time)
		if err != nil {
			return fmt.Errorf("%s: time %q is not RFC 3339: %v", *inPath, probe.Time, err)
		}
		at = t
	}
	if _, ok := input.(ast.Object); !ok {
		return fmt.Errorf("%s: the input is a JSON %s; the gateway's input is an object", *inPath, ast.ValueName(input))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	d, evalErr := pol.Eval(ctx, input, at)
	cancel()
	out := decisionJSON(d, evalErr)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	if evalErr != nil {
		return &exitError{code: 1, msg: "policy eval: " + evalErr.Error()}
	}
	return nil
}

type decisionOut struct {
	Allow      bool     `json:"allow"`
	Alert      bool     `json:"alert"`
	Reasons    []string `json:"reasons"`
	Revision   string   `json:"policy_revision"`
	DecisionID string   `json:"decision_id"`
	Ticket     string   `json:"ticket,omitempty"`
	Error      string   `json:"error,omitempty"`
}

func decisionJSON(d gateway.Decision, err error) decisionOut {
	out := decisionOut{Allow: d.Allow, Alert: d.Alert, Reasons: d.Reasons, Revision: d.Revision, DecisionID: d.ID, Ticket: d.Ticket}
	if out.Reasons == nil {
		out.Reasons = []string{}
	}
	if err != nil {
		// what the gateway records for the call
		d = gateway.ErrorDecision(d, err)
		out.Allow, out.Alert, out.Reasons, out.DecisionID = d.Allow, d.Alert, d.Reasons, d.ID
		out.Error = err.Error()
	}
	return out
}
