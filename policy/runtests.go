package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
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
}

// testTimeout bounds one test, as opa test does by default.
const testTimeout = 5 * time.Second

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
		SetTimeout(testTimeout)
	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		return 0, 0, err
	}

	var reporter tester.Reporter = tester.PrettyReporter{Output: out, Verbose: opts.Verbose}
	if opts.JSON {
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
	return passed, failed, nil
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
