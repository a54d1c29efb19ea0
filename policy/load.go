package policy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
)

// policyFile is one file of the policy directory, read once: the revision,
// the parser and the compiler all see the same bytes.
type policyFile struct {
	rel  string // slash-separated path under the policy directory
	name string // path as opened, used in error messages
	data []byte
}

// snapshot is one policy as read by one load attempt, from a directory or
// from a bundle: its modules and data, and the revision that names it.
type snapshot struct {
	source string       // the directory, bundle file or URL it came from
	files  []policyFile // directory: the runtime files, sorted by rel, parsed when compiled
	// modules and data come parsed (and verified) by the bundle reader.
	modules map[string]*ast.Module
	data    map[string]any
	bundle  *bundleInfo // nil for a directory
	names   []string    // the files of the policy, for logs and the audit log
	rev     string      // carried by every decision
	// key names the content: a load that finds the key in force is a no-op.
	// It is rev for a directory; a bundle may keep its revision and change.
	key string
	sig [32]byte // stat signature (directory, bundle file)
}

// source is where the policy comes from: a directory, a bundle file or a
// bundle server.
type source interface {
	String() string
	// read reads the whole policy. It returns nil and no error when the
	// source itself says nothing changed since the last read (HTTP 304).
	read(ctx context.Context) (*snapshot, error)
}

// statSource is a source with a cheap change check: Watch reads it only
// when its stat signature changes.
type statSource interface {
	source
	statSignature() ([32]byte, error)
}

// dirSource is a policy directory in OPA layout.
type dirSource struct{ dir string }

func (d dirSource) String() string                          { return d.dir }
func (d dirSource) read(context.Context) (*snapshot, error) { return readSnapshot(d.dir) }

// statSignature fails as read does, so a poll and a reload report a
// missing directory alike.
func (d dirSource) statSignature() ([32]byte, error) {
	sig, err := statSignature(d.dir)
	if err != nil {
		return sig, fmt.Errorf("policy %s: %w", d.dir, err)
	}
	return sig, nil
}

// runtimeFile reports whether a file belongs to the runtime policy: Rego
// (without its tests) and data. Hidden names are skipped so editor files,
// .git and Kubernetes' ..data directories are never loaded.
func runtimeFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch path.Ext(name) {
	case ".rego":
		return !strings.HasSuffix(name, "_test.rego")
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// walkPolicy calls fn for every runtime file under dir, with its stat
// (symbolic links followed).
func walkPolicy(dir string, fn func(rel, name string, info fs.FileInfo) error) error {
	root, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !root.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name == dir {
			return nil
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !runtimeFile(d.Name()) {
			return nil
		}
		info, err := os.Stat(name)
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil // a link to a directory: not followed, to stay clear of cycles
		}
		rel, err := filepath.Rel(dir, name)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), name, info)
	})
}

// sigWriter folds one file's stat into a signature.
func sigWriter(h hash.Hash, rel string, info fs.FileInfo) {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(info.Size()))
	binary.BigEndian.PutUint64(b[8:], uint64(info.ModTime().UnixNano()))
	_, _ = h.Write([]byte(rel))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(b[:])
}

// statSignature is the cheap change detector of Watch: names, sizes and
// modification times of the runtime files.
func statSignature(dir string) ([32]byte, error) {
	h := sha256.New()
	err := walkPolicy(dir, func(rel, _ string, info fs.FileInfo) error {
		sigWriter(h, rel, info)
		return nil
	})
	var sig [32]byte
	h.Sum(sig[:0])
	return sig, err
}

// readSnapshot reads every runtime file of dir. The stat signature is taken
// before each read, so a file changed after its stat is seen by the next poll.
func readSnapshot(dir string) (*snapshot, error) {
	s := &snapshot{source: dir}
	sh := sha256.New()
	err := walkPolicy(dir, func(rel, name string, info fs.FileInfo) error {
		sigWriter(sh, rel, info)
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		s.files = append(s.files, policyFile{rel: rel, name: name, data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", dir, err)
	}
	sh.Sum(s.sig[:0])
	slices.SortFunc(s.files, func(a, b policyFile) int { return strings.Compare(a.rel, b.rel) })

	// The revision covers names and contents, length-prefixed so that no two
	// different directories hash alike.
	h := sha256.New()
	for _, f := range s.files {
		var n [8]byte
		_, _ = h.Write([]byte(f.rel))
		binary.BigEndian.PutUint64(n[:], uint64(len(f.data)))
		_, _ = h.Write(n[:])
		_, _ = h.Write(f.data)
	}
	s.rev = hex.EncodeToString(h.Sum(nil))[:16]
	s.key = s.rev
	s.names = make([]string, len(s.files))
	for i, f := range s.files {
		s.names[i] = f.rel
	}
	return s, nil
}

// prepare parses, compiles and prepares the decision query of a snapshot.
func prepare(ctx context.Context, s *snapshot, query string) (*prepared, error) {
	p, err := compileSnapshot(ctx, s, query)
	if err != nil {
		if s.bundle != nil {
			return nil, loadError("bundle "+s.source, true, err)
		}
		return nil, loadError(s.source, false, err)
	}
	return p, nil
}

// loadError makes one line of a load or compile error: the first problem as
// file:line: code: message, and how many more there are. Rego errors carry
// their file; others, and all of a bundle's (whose files are paths inside
// it), are prefixed with where.
func loadError(where string, inBundle bool, err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		return fmt.Errorf("%s: %s", where, strings.ReplaceAll(err.Error(), "\n", " "))
	}
	e := errs[0]
	msg := e.Code + ": " + e.Message
	if e.Location != nil && e.Location.File != "" {
		msg = fmt.Sprintf("%s:%d: %s", e.Location.File, e.Location.Row, msg)
		if inBundle {
			msg = where + ": " + msg
		}
	} else {
		msg = where + ": " + msg
	}
	if len(errs) > 1 {
		msg += fmt.Sprintf(" (and %d more)", len(errs)-1)
	}
	if i := regoV0Syntax(errs); i >= 0 {
		what := "the file"
		if i > 0 && errs[i].Location != nil && errs[i].Location.File != "" {
			what = errs[i].Location.File
		}
		msg += fmt.Sprintf("; %s looks like Rego v0, which Interlock does not load: rewrite it in Rego v1 (opa fmt --write --v0-v1)", what)
	}
	return &oneLineError{msg: msg, err: err}
}

// regoV0Syntax returns the index of the first parse error that only Rego
// v1 makes (a rule body without `if`, a partial set rule without
// `contains`), whose file is most likely Rego v0; -1 when there is none.
func regoV0Syntax(errs ast.Errors) int {
	for i, e := range errs {
		if e.Code == ast.ParseErr && (strings.HasPrefix(e.Message, "`if` keyword is required before") ||
			strings.HasPrefix(e.Message, "`contains` keyword is required for partial set rules")) {
			return i
		}
	}
	return -1
}

// oneLineError is the one-line form of an error; it unwraps to the original.
type oneLineError struct {
	msg string
	err error
}

func (e *oneLineError) Error() string { return e.msg }
func (e *oneLineError) Unwrap() error { return e.err }

// parseFiles parses the runtime files of a directory into modules (keyed by
// the name they were opened by) and one data document.
func parseFiles(files []policyFile) (map[string]*ast.Module, map[string]any, error) {
	modules := map[string]*ast.Module{}
	docs := map[string]any{}
	var data []policyFile // merged into docs so far
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}
	for _, f := range files {
		if path.Ext(f.rel) == ".rego" {
			m, err := ast.ParseModuleWithOpts(f.name, string(f.data), popts)
			if err != nil {
				return nil, nil, err
			}
			modules[f.name] = m
			continue
		}
		if err := loadData(docs, f, data); err != nil {
			return nil, nil, err
		}
		data = append(data, f)
	}
	return modules, docs, nil
}

// compileSnapshot compiles a directory's or a bundle's policy the same way:
// custom builtins, strict builtin errors, the decision query prepared once.
func compileSnapshot(ctx context.Context, s *snapshot, query string) (*prepared, error) {
	modules, docs := s.modules, s.data
	if modules == nil {
		var err error
		if modules, docs, err = parseFiles(s.files); err != nil {
			return nil, err
		}
	}
	if docs == nil {
		docs = map[string]any{}
	}
	if len(modules) == 0 {
		return nil, errors.New("no .rego files (test files *_test.rego do not count)")
	}
	data, err := ast.InterfaceToValue(docs)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	store := inmem.NewFromASTObject(data.(ast.Object))

	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, err
	}
	defer store.Abort(ctx, txn)
	c := ast.NewCompiler().
		WithBuiltins(compilerBuiltins()).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(false)
	compileMu.Lock()
	c.Compile(modules)
	compileMu.Unlock()
	if c.Failed() {
		return nil, c.Errors
	}
	if err := checkDefined(c, query); err != nil {
		return nil, err
	}
	network := false
	for _, m := range c.Modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if call, ok := t.Value.(ast.Call); ok && len(call) > 0 && slices.Contains(NetworkBuiltins, call[0].String()) {
				network = true
			}
			return network
		})
		ast.WalkExprs(m, func(x *ast.Expr) bool {
			if x.IsCall() && slices.Contains(NetworkBuiltins, x.Operator().String()) {
				network = true
			}
			return network
		})
	}

	opts := append([]func(*rego.Rego){
		rego.Query(query),
		rego.Compiler(c),
		rego.Store(store),
		rego.StrictBuiltinErrors(true), // a builtin error denies instead of making a deny rule undefined
		rego.GenerateJSON(termValue),
	}, regoBuiltins()...)
	compileMu.Lock()
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	compileMu.Unlock()
	if err != nil {
		return nil, err
	}
	return &prepared{query: pq, rev: s.rev, key: s.key, files: s.names, network: network}, nil
}

// checkDefined refuses a policy in which no rule defines the decision: it
// would deny every call with policy_undefined.
func checkDefined(c *ast.Compiler, query string) error {
	body, err := ast.ParseBodyWithOpts(query, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return fmt.Errorf("decision query %q: %w", query, err)
	}
	if len(body) != 1 {
		return nil
	}
	t, ok := body[0].Terms.(*ast.Term)
	if !ok {
		return nil
	}
	ref, ok := t.Value.(ast.Ref)
	if !ok || !ref.HasPrefix(ast.DefaultRootRef) {
		return nil
	}
	if len(c.GetRules(ref.GroundPrefix())) == 0 {
		return fmt.Errorf("no rule defines %s (want a `decision` rule in package %s)",
			ref.GroundPrefix(), packageOf(ref))
	}
	return nil
}

func packageOf(ref ast.Ref) string {
	g := ref.GroundPrefix()
	if len(g) < 3 {
		return "interlock"
	}
	return g[1 : len(g)-1].String()
}

// loadData merges a data file into docs under its directory path, as the OPA
// loader does: policy/sites/a/data.json becomes data.sites.a. A path that
// an earlier data file (of merged) defines too is refused naming both.
func loadData(docs map[string]any, f policyFile, merged []policyFile) error {
	tree, depth, err := dataTree(f)
	if err != nil {
		return err
	}
	if at := mergeDoc(docs, tree, nil); at != nil {
		// docs shares maps with the earlier files' content: read them
		// again, apart, to find the one that defines the path too.
		earlier := make([]dataFile, 0, len(merged))
		for _, m := range merged {
			if t, d, err := dataTree(m); err == nil {
				earlier = append(earlier, dataFile{name: m.name, depth: d, tree: t})
			}
		}
		if err := collision(dataFile{name: f.name, depth: depth, tree: tree}, earlier); err != nil {
			return err
		}
		return fmt.Errorf("%s: data.%s is also defined by another data file", f.name, strings.Join(at, "."))
	}
	return nil
}

// dataTree decodes a data file of a policy directory and returns its
// content under its directory's path, and the depth of that path.
func dataTree(f policyFile) (map[string]any, int, error) {
	var v any
	var err error
	if path.Ext(f.rel) == ".json" {
		err = util.UnmarshalJSON(f.data, &v)
	} else {
		err = util.Unmarshal(f.data, &v)
	}
	if err != nil {
		// a JSON error knows its byte offset: name the line and column
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		off := int64(-1)
		switch {
		case errors.As(err, &se):
			off = se.Offset
		case errors.As(err, &te):
			off = te.Offset
		}
		if off >= 0 && off <= int64(len(f.data)) {
			before := f.data[:off]
			line := bytes.Count(before, []byte("\n")) + 1
			col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
			return nil, 0, fmt.Errorf("%s:%d:%d: %w", f.name, line, col, err)
		}
		if path.Ext(f.rel) == ".json" && (errors.Is(err, io.ErrUnexpectedEOF) || err.Error() == io.ErrUnexpectedEOF.Error()) {
			// the document is cut off: it ends on the last line
			return nil, 0, fmt.Errorf("%s:%d: unexpected end of the JSON document", f.name, lastLine(f.data))
		}
		if path.Ext(f.rel) != ".json" {
			if line, problem, ok := yamlErrorLine(f.data, err); ok {
				return nil, 0, fmt.Errorf("%s:%d: yaml: %s", f.name, line, problem)
			}
		}
		return nil, 0, fmt.Errorf("%s: %w", f.name, err)
	}
	dirs := strings.Split(path.Dir(f.rel), "/")
	if dirs[0] == "." {
		dirs = nil
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		v = map[string]any{dirs[i]: v}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, 0, fmt.Errorf("%s: a data file at the top of the policy directory must hold an object", f.name)
	}
	return obj, len(dirs), nil
}

// lastLine is the number of the last line of data that holds anything.
func lastLine(data []byte) int {
	return bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n")) + 1
}

// yamlLinePrefix is the position go.yaml.in/yaml/v3 (which OPA's
// util.Unmarshal parses YAML with) puts in a syntax error.
var yamlLinePrefix = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlParserProblems begin the problems go.yaml.in/yaml/v3 reports as
// parser errors, not scanner errors. Its marks count lines from 0 and its
// error message adds 1 to a scanner error's line only: a parser error's line
// is one short, and none is given when the error is on the first line.
var yamlParserProblems = []string{
	"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle",
}

// yamlErrorLine returns the line (counted from 1) of a YAML syntax error and
// the problem without its position; false when err names no position.
func yamlErrorLine(data []byte, err error) (int, string, bool) {
	msg := err.Error()
	problem, found := strings.CutPrefix(msg, "yaml: ")
	if !found {
		return 0, "", false
	}
	parserErr := false
	for _, p := range yamlParserProblems {
		parserErr = parserErr || strings.HasPrefix(yamlLinePrefix.ReplaceAllString(msg, ""), p)
	}
	line := 0
	if m := yamlLinePrefix.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		problem = msg[len(m[0]):]
		if parserErr {
			line++
		}
	} else if parserErr {
		line = 1
	} else {
		return 0, "", false
	}
	lines := strings.Split(string(data), "\n")
	if problem == "found a tab character that violates indentation" {
		// The line is that of the plain scalar the tab's line continues:
		// name the first line after it indented with a tab.
		for i := line; i < len(lines); i++ {
			indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
			if strings.Contains(indent, "\t") {
				line = i + 1
				break
			}
		}
	}
	return min(line, lastLine(data)), problem, true
}

// mergeDoc merges src into dst and returns the path of the first conflict
// (a key both define, where not both are objects), or nil.
func mergeDoc(dst, src map[string]any, at []string) []string {
	for k, sv := range src {
		dv, ok := dst[k]
		if !ok {
			dst[k] = sv
			continue
		}
		dm, dok := dv.(map[string]any)
		sm, sok := sv.(map[string]any)
		if !dok || !sok {
			return append(slices.Clone(at), k)
		}
		if c := mergeDoc(dm, sm, append(at, k)); c != nil {
			return c
		}
	}
	return nil
}
