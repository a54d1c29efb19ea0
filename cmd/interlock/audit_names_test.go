package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/audit/ship"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/policy"
)

// The events --event accepts are the events of README.md's table, and
// include those other packages name.
func TestEventsAreTheDocumentedOnes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(b), "| event | when | key fields |")
	table, _, _ = strings.Cut(table, "\n\n")
	var documented []string
	for _, row := range strings.Split(table, "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(row, "| "), " |"); ok {
			for _, m := range regexp.MustCompile("`([a-z_.]+)`").FindAllStringSubmatch(first, -1) {
				documented = append(documented, m[1])
			}
		}
	}
	got := slices.Sorted(slices.Values(query.Events))
	slices.Sort(documented)
	if len(documented) < 20 || !slices.Equal(got, documented) {
		t.Errorf("query.Events:\n%v\nREADME's events:\n%v", got, documented)
	}
	for _, e := range []string{policy.TicketOpen, policy.TicketApprove, policy.TicketClose, policy.TicketLoad,
		ship.EventSkipped, ship.EventStopped, query.EventTicketRefused, query.EventAuthFailed} {
		if !slices.Contains(query.Events, e) {
			t.Errorf("%s is not in query.Events", e)
		}
	}
}

// Every Modbus function name the engine defines is one --function knows.
func TestModbusFunctionsAreKnown(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, "gateway", "modbus", "function.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Function") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				n++
				if !slices.Contains(modbusFunctions, v) {
					t.Errorf("modbus.%s (%q) is not in modbusFunctions", name.Name, v)
				}
			}
		}
	}
	if n != len(modbusFunctions) {
		t.Errorf("%d Function constants in gateway/modbus/function.go, %d in modbusFunctions", n, len(modbusFunctions))
	}
}

// Every OPC UA function name the engine writes is one --function knows:
// the names its source gives a call, those of docs/opcua.md, and the name
// of every service of gopcua's ua package (a request refused whole is
// recorded under its service's name).
func TestOPCUAFunctionsAreKnown(t *testing.T) {
	var names []string
	files, _ := filepath.Glob(filepath.Join(repoRoot, "gateway", "opcua", "*.go"))
	call := regexp.MustCompile(`(?:\b(?:op|nodeCall|attributeCall|subCall|itemCall|programCall)\(|programItems\([^"\n]*|refuse\(ctx, h, |const fn = |Function:\s*)"([a-z_]+)"`)
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			names = append(names, m[1])
		}
	}
	if len(names) < 20 {
		t.Fatalf("found %d function names in gateway/opcua: %v", len(names), names)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "opcua.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(doc), "| service | function | access | fields |")
	table, _, _ = strings.Cut(table, "\n\n")
	for _, row := range strings.Split(table, "\n") {
		if cols := strings.Split(row, " | "); len(cols) > 2 {
			for _, w := range regexp.MustCompile(`[a-z][a-z_]+`).FindAllString(cols[1], -1) {
				names = append(names, w)
			}
		}
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gopcua/opcua").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/gopcua/opcua: %v", err)
	}
	pkgs, err := parser.ParseDir(token.NewFileSet(), filepath.Join(strings.TrimSpace(string(out)), "ua"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	services := 0
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok || !strings.HasSuffix(ts.Name.Name, "Request") {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return true
				}
				for _, fld := range st.Fields.List {
					if len(fld.Names) == 1 && fld.Names[0].Name == "RequestHeader" { // a service, not a part of one
						services++
						names = append(names, opcua.ServiceFunction(strings.TrimSuffix(ts.Name.Name, "Request")))
					}
				}
				return true
			})
		}
	}
	if services < 30 {
		t.Fatalf("found %d services in gopcua's ua package", services)
	}
	for _, n := range names {
		if n != "" && !slices.Contains(opcuaFunctions, n) {
			t.Errorf("%q is not in opcuaFunctions", n)
		}
	}
}
