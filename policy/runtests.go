package policy

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// TestOptions configure RunTests.
type TestOptions struct {
	Verbose bool      // print every test, with notes and failure traces, like opa test -v
	JSON    bool      // print results as JSON, like opa test --format json
	Out     io.Writer // os.Stdout when nil
	// Coverage reports which lines of the policy (test files excluded) the
	// tests evaluated; with JSON, the report is the coverage document.
	Coverage bool
	// MinCoverage fails the run (ErrCoverage) below this percentage.
	MinCoverage float64
	// Timeout bounds one test (DefaultTestTimeout when 0).
	Timeout time.Duration
}

// ErrCoverage is returned when coverage is below TestOptions.MinCoverage.
var ErrCoverage = errors.New("policy coverage below the minimum")

// DefaultTestTimeout bounds one test, as opa test does by default.
const DefaultTestTimeout = 5 * time.Second

// RunTests runs the Rego unit tests (test_ rules, usually in *_test.rego) in
// dirs with their data files, as opa test does, and reports to opts.Out.
// Builtin errors fail a test, as they deny a call at run time. An error
// means the tests could not run: nothing found, or a file that does not
// load or compile (the error names it).
func RunTests(ctx context.Context, dirs []string, opts TestOptions) (passed, failed int, err error) {
	if len(dirs) == 0 {
		dirs = []string{"."}
	}
	out := opts.Out
	if out == nil {
		out = os.Stdout
	}
	modules, store, err := tester.LoadWithParserOptions(dirs, skipHidden,
		ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return 0, 0, err
	}
	if len(modules) == 0 {
		return 0, 0, fmt.Errorf("no .rego files in %s", strings.Join(dirs, ", "))
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return 0, 0, err
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		WithBuiltins(compilerBuiltins()).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithUseTypeCheckAnnotations(true)
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		AddCustomBuiltins(testerBuiltins()).
		CapturePrintOutput(true).
		EnableTracing(opts.Verbose).
		RaiseBuiltinErrors(true).
		SetTimeout(cmp.Or(opts.Timeout, DefaultTestTimeout))
	var cov *cover.Cover
	if opts.Coverage || opts.MinCoverage > 0 {
		cov = cover.New()
		runner.SetCoverageQueryTracer(cov)
	}
	compileMu.Lock() // RunTests compiles before it returns; the tests run after
	ch, err := runner.RunTests(ctx, txn)
	compileMu.Unlock()
	if err != nil {
		return 0, 0, err
	}

	var reporter tester.Reporter = tester.PrettyReporter{Output: out, Verbose: opts.Verbose}
	switch {
	case opts.JSON && cov != nil:
		reporter = discardReporter{} // the coverage document is the JSON output
	case opts.JSON:
		reporter = tester.JSONReporter{Output: out}
	}
	counted := make(chan *tester.Result)
	ran := 0
	go func() {
		defer close(counted)
		for r := range ch {
			ran++
			switch {
			case r.Pass():
				passed++
			case !r.Skip:
				failed++
			}
			if r.Error != nil && !opts.JSON {
				// The tester marks a test whose builtin raised an error
				// failed too (it has no result), and its line then says
				// FAIL where the summary counts an ERROR.
				r.Fail = false
			}
			r.Trace = notesAndFails(r.Trace)
			counted <- r
		}
	}()
	err = reporter.Report(counted)
	for range counted { // a reporter that stopped early must not strand the counter
	}
	if err != nil {
		return passed, failed, err
	}
	if ran == 0 {
		return 0, 0, errors.New("no tests found (want test_ rules, usually in *_test.rego files) in " + strings.Join(dirs, ", "))
	}
	if cov != nil {
		rep := policyCoverage(cov, modules)
		if err := printCoverage(out, rep, opts.JSON); err != nil {
			return passed, failed, err
		}
		if opts.MinCoverage > 0 && rep.Coverage < opts.MinCoverage {
			return passed, failed, fmt.Errorf("%w: %.1f%% < %.1f%%", ErrCoverage, rep.Coverage, opts.MinCoverage)
		}
	}
	return passed, failed, nil
}

// policyCoverage is the coverage of the policy files: test files are left
// out, their lines are not policy.
func policyCoverage(cov *cover.Cover, modules map[string]*ast.Module) cover.Report {
	policyOnly := map[string]*ast.Module{}
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			policyOnly[name] = m
		}
	}
	rep := cov.Report(policyOnly)
	rep.CoveredLines, rep.NotCoveredLines = 0, 0
	for name, f := range rep.Files {
		if strings.HasSuffix(name, "_test.rego") {
			delete(rep.Files, name) // covered ranges are kept for every file the tests ran
			continue
		}
		rep.CoveredLines += f.CoveredLines
		rep.NotCoveredLines += f.NotCoveredLines
	}
	if total := rep.CoveredLines + rep.NotCoveredLines; total > 0 {
		rep.Coverage = 100 * float64(rep.CoveredLines) / float64(total)
	}
	return rep
}

func printCoverage(w io.Writer, rep cover.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	names := make([]string, 0, len(rep.Files))
	for n := range rep.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintf(w, "coverage: %.1f%% of policy lines (%d of %d)\n", rep.Coverage, rep.CoveredLines, rep.CoveredLines+rep.NotCoveredLines)
	for _, n := range names {
		f := rep.Files[n]
		var gaps []string
		for _, r := range f.NotCovered {
			g := strconv.Itoa(r.Start.Row)
			if r.Start.Row != r.End.Row {
				g = fmt.Sprintf("%d-%d", r.Start.Row, r.End.Row)
			}
			if len(gaps) == 0 || gaps[len(gaps)-1] != g {
				gaps = append(gaps, g)
			}
		}
		line := fmt.Sprintf("  %5.1f%%  %s", f.Coverage, n)
		if len(gaps) > 0 {
			line += "  not covered: lines " + strings.Join(gaps, ", ")
		}
		fmt.Fprintln(w, line)
	}
	return nil
}

// discardReporter drains results without printing them.
type discardReporter struct{}

func (discardReporter) Report(ch chan *tester.Result) error {
	for range ch {
	}
	return nil
}

// notesAndFails keeps what opa test -v shows by default: trace notes and the
// expressions that failed.
func notesAndFails(trace []*topdown.Event) []*topdown.Event {
	if len(trace) == 0 {
		return nil
	}
	return lineage.Filter(trace, func(e *topdown.Event) bool {
		return e.Op == topdown.NoteOp || e.Op == topdown.FailOp
	})
}

// skipHidden leaves out hidden files and directories, as the runtime
// policy does.
func skipHidden(_ string, info fs.FileInfo, depth int) bool {
	return depth > 0 && strings.HasPrefix(info.Name(), ".")
}
