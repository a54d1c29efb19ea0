package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/policy"
)

const policyCheckSynopsis = "(--config FILE | --policy DIR) [--input FILE…] [--timeout D] [--verbose]"

func init() {
	register(command{group: "policy", name: "check", synopsis: policyCheckSynopsis, run: cmdPolicyCheck,
		help: "compile, decide sample inputs, refuse network builtins on the decision path"})
}

func cmdPolicyCheck(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("policy check", "policy check "+policyCheckSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file; its policy.path is checked")
	dir := fs.String("policy", "", "policy directory (instead of --config)")
	var inputs listFlag
	fs.Var(&inputs, "input", "a policy input (JSON) to decide besides the built-in samples; repeat for several")
	verbose := fs.Bool("verbose", false, "print the decision for every sample")
	timeout := fs.Duration("timeout", 0, "the most one decision may take (default: the configuration's policy.timeout, else 100ms)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if (*cfgPath == "") == (*dir == "") {
		fs.Usage()
		return usageErr("policy check: give one of --config or --policy")
	}
	if *timeout < 0 {
		return usageErr("policy check: --timeout %v: want a positive duration", *timeout)
	}
	if *dir != "" {
		if fi, err := os.Stat(*dir); err == nil && !fi.IsDir() {
			return fmt.Errorf("policy check: --policy %s: not a directory: policy check takes a policy directory (check the directory a bundle is built from)", *dir)
		}
		if err := checkPath("policy check", "--policy", *dir, aDirectory); err != nil {
			return err
		}
	}
	for _, in := range inputs {
		if err := checkPath("policy check", "--input", in, aFile); err != nil {
			return err
		}
	}
	path := *dir
	if *cfgPath != "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return err
		}
		path = cfg.Policy.Path
		if *timeout == 0 {
			*timeout = cfg.Policy.Timeout
		}
	}
	extra := map[string]ast.Value{}
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		v, err := ast.ValueFromReader(bytes.NewReader(b))
		if err != nil {
			return fmt.Errorf("%s: not a JSON document: %v", in, err)
		}
		if _, ok := v.(ast.Object); !ok {
			return fmt.Errorf("%s: the input is a JSON %s; the gateway's input is an object", in, ast.ValueName(v))
		}
		extra[filepath.Base(in)] = v
	}
	rep, err := policy.Check(context.Background(), path, extra, *timeout)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	var allowed, denied, failed int
	for _, s := range rep.Samples {
		switch {
		case s.Err != nil:
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", s.Name, s.Err)
		case s.Decision.Allow:
			allowed++
		default:
			denied++
		}
		if *verbose && s.Err == nil {
			fmt.Fprintf(stdout, "     %s: allow %v, alert %v, reasons %v\n", s.Name, s.Decision.Allow, s.Decision.Alert, s.Decision.Reasons)
		}
	}
	for _, n := range rep.Network {
		fmt.Fprintf(stdout, "FAIL %s: a network builtin on the decision path (every call would wait on the network; it cannot be cached or replayed)\n", n)
	}
	if !rep.OK() {
		return &exitError{code: 1, msg: fmt.Sprintf("policy check: %s (revision %s) failed: %s without a valid decision, %s",
			path, rep.Revision, audit.Plural(failed, "sample"), audit.Plural(len(rep.Network), "network call"))}
	}
	fmt.Fprintf(stdout, "%s: ok: revision %s; %d sample inputs decided (%d allowed, %d denied); no network builtins on the decision path\n",
		path, rep.Revision, len(rep.Samples), allowed, denied)
	return nil
}
