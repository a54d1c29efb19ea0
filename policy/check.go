package policy

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// NetworkBuiltins are the builtins that reach the network. A per-call
// decision must not wait on the network: a slow DNS or HTTP server would
// stall every call, and a decision that depends on it cannot be cached or
// replayed.
var NetworkBuiltins = []string{"http.send", "net.lookup_ip_addr"}

// CheckReport is what Check found.
type CheckReport struct {
	Revision string
	Samples  []SampleResult
	// Network lists calls of network builtins reachable from the decision,
	// as "file:line: builtin (in rule)".
	Network []string
}

// SampleResult is the decision for one sample input.
type SampleResult struct {
	Name     string
	Decision gateway.Decision
	Err      error
}

// OK reports whether the policy passed: every sample decided without error
// and no network builtin is reachable from the decision.
func (r *CheckReport) OK() bool {
	if len(r.Network) > 0 {
		return false
	}
	for _, s := range r.Samples {
		if s.Err != nil {
			return false
		}
	}
	return true
}

// Check loads the policy in dir as the gateway would, looks for network
// builtins in the rules the decision depends on, and (when there are none)
// decides a set of sample inputs — every Modbus function and a session open,
// from a known engineer and from an unknown source — plus extra ones.
//
// Each sample is decided within timeout, as the gateway decides a call
// (gateway.DefaultDecisionTimeout when 0): a policy too slow for its
// policy.timeout fails the check with policy_timeout.
func Check(ctx context.Context, dir string, extra map[string]ast.Value, timeout time.Duration) (*CheckReport, error) {
	// The builtin scan reads the Rego sources: check the directory a bundle
	// is built from, not the bundle.
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s: policy check takes a policy directory (check the directory a bundle is built from)", dir)
	}
	e, err := New(Options{Path: dir, Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		return nil, err
	}
	rep := &CheckReport{Revision: e.Revision()}
	// Look for network builtins first: samples would wait on the network.
	if rep.Network, err = networkCalls(dir, DefaultQuery); err != nil || len(rep.Network) > 0 {
		return rep, err
	}
	at := time.Now().UTC()
	samples := SampleInputs("check", at)
	names := make([]string, 0, len(samples)+len(extra))
	for n := range samples {
		names = append(names, n)
	}
	slices.Sort(names)
	var extraNames []string
	for n := range extra {
		extraNames = append(extraNames, n)
	}
	slices.Sort(extraNames)
	if timeout <= 0 {
		timeout = gateway.DefaultDecisionTimeout
	}
	decide := func(name string, in ast.Value) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		d, err := e.Eval(ctx, in, at)
		rep.Samples = append(rep.Samples, SampleResult{Name: name, Decision: d, Err: err})
	}
	for _, n := range names {
		decide(n, samples[n])
	}
	for _, n := range extraNames {
		decide(n, extra[n])
	}
	return rep, nil
}

// SampleInputs returns policy inputs for every Modbus function the gateway
// decodes, from a known engineer and from an unknown source, and a session
// open of each, as the gateway builds them.
func SampleInputs(gatewayID string, at time.Time) map[string]ast.Value {
	known := &gateway.Session{ID: "sample-known", Started: at, Gateway: gatewayID, Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("10.0.5.7"), Port: 50123, Name: "ews-1", Owner: "controls"},
		Principal: gateway.Principal{User: "engineer1", Auth: gateway.AuthInventory, Roles: []string{"engineer"}},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: -1}}
	unknown := &gateway.Session{ID: "sample-unknown", Started: at, Gateway: gatewayID, Listener: "plc1", Protocol: "modbus",
		Source:    gateway.Source{IP: netip.MustParseAddr("192.0.2.66"), Port: 40000},
		Principal: gateway.Principal{Auth: gateway.AuthNone},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://127.0.0.1:502", UnitID: -1}}
	return SampleInputsFrom(gatewayID, at, map[string]*gateway.Session{"known engineer": known, "unknown source": unknown})
}

// SampleInputsFrom is SampleInputs for the sessions given (by a name for
// the sample's), on their targets: `interlock check` decides them for each
// workstation of the source inventory.
func SampleInputsFrom(gatewayID string, at time.Time, sessions map[string]*gateway.Session) map[string]ast.Value {
	out := map[string]ast.Value{}
	for who, s := range sessions {
		for _, op := range sampleOperations() {
			c := &gateway.Call{ID: "sample", Time: at, Target: gateway.Target{Name: s.Target.Name, Upstream: s.Target.Upstream, UnitID: 1}, Operation: op}
			out[op.Function+" from "+who] = Input(gatewayID, s, c)
		}
	}
	return out
}

// SampleInputsOf is the policy input of a session open and of each of ops
// in each of sessions (by a name for the sample's), on the session's
// target: the samples of a protocol other than Modbus, whose engine gives
// its operations (opcua.SampleOperations).
func SampleInputsOf(gatewayID string, at time.Time, sessions map[string]*gateway.Session, ops []gateway.Operation) map[string]ast.Value {
	out := map[string]ast.Value{}
	ops = append([]gateway.Operation{{Function: gateway.FunctionSessionOpen, Access: gateway.AccessSession}}, ops...)
	for who, s := range sessions {
		for _, op := range ops {
			c := &gateway.Call{ID: "sample", Time: at, Target: s.Target, Operation: op}
			out[op.Function+" from "+who] = Input(gatewayID, s, c)
		}
	}
	return out
}

func sampleOperations() []gateway.Operation {
	op := func(fn string, access gateway.Access, code int64, fields ...gateway.Field) gateway.Operation {
		o := gateway.Operation{Function: fn, Access: access}
		o.Int(gateway.KeyCode, code)
		o.Fields = append(o.Fields, fields...)
		return o
	}
	i := func(k string, v int64) gateway.Field { return gateway.Field{Key: k, Kind: gateway.KindInt, Int: v} }
	is := func(k string, v ...int64) gateway.Field {
		return gateway.Field{Key: k, Kind: gateway.KindInts, Ints: v}
	}
	s := func(k, v string) gateway.Field { return gateway.Field{Key: k, Kind: gateway.KindString, Str: v} }
	a := func(k string, v any) gateway.Field { return gateway.Field{Key: k, Kind: gateway.KindAny, Any: v} }
	return []gateway.Operation{
		{Function: gateway.FunctionSessionOpen, Access: gateway.AccessSession},
		op("read_coils", gateway.AccessRead, 1, i("address", 0), i("quantity", 8)),
		op("read_discrete_inputs", gateway.AccessRead, 2, i("address", 0), i("quantity", 8)),
		op("read_holding_registers", gateway.AccessRead, 3, i("address", 100), i("quantity", 2)),
		op("read_input_registers", gateway.AccessRead, 4, i("address", 100), i("quantity", 2)),
		op("write_single_coil", gateway.AccessWrite, 5, i("address", 10), is("values", 1)),
		op("write_single_register", gateway.AccessWrite, 6, i("address", 100), is("values", 1500)),
		op("read_exception_status", gateway.AccessDiagnostic, 7),
		op("diagnostics", gateway.AccessDiagnostic, 8, i("sub_function", 1), s("sub_function_name", "restart_communications"), is("values", 0)),
		op("get_comm_event_counter", gateway.AccessDiagnostic, 11),
		op("get_comm_event_log", gateway.AccessDiagnostic, 12),
		op("write_multiple_coils", gateway.AccessWrite, 15, i("address", 10), i("quantity", 3), is("values", 1, 0, 1)),
		op("write_multiple_registers", gateway.AccessWrite, 16, i("address", 100), i("quantity", 2), is("values", 1500, 42)),
		op("report_server_id", gateway.AccessDiagnostic, 17),
		op("read_file_record", gateway.AccessRead, 20, a("records", []any{map[string]any{"file": int64(1), "record": int64(0), "length": int64(2)}})),
		op("write_file_record", gateway.AccessWrite, 21, a("records", []any{map[string]any{"file": int64(1), "record": int64(0), "length": int64(1), "values": []any{int64(7)}}})),
		op("mask_write_register", gateway.AccessWrite, 22, i("address", 100), i("and_mask", 0xF2), i("or_mask", 0x25)),
		op("read_write_multiple_registers", gateway.AccessWrite, 23, i("address", 100), i("quantity", 1), is("values", 7), i("read_address", 0), i("read_quantity", 2)),
		op("read_fifo_queue", gateway.AccessRead, 24, i("address", 100)),
		op("read_device_identification", gateway.AccessDiagnostic, 43, i("mei_type", 14), i("read_device_id_code", 1), i("object_id", 0)),
		op("unknown", gateway.AccessProgram, 90, s("data", "0102")),
	}
}

// networkCalls finds network builtins in the rules data.interlock.decision
// depends on, directly or through other rules and functions.
func networkCalls(dir, query string) ([]string, error) {
	modules := map[string]*ast.Module{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != dir && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".rego") || strings.HasSuffix(name, "_test.rego") || strings.HasPrefix(name, ".") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		m, err := ast.ParseModuleWithOpts(p, string(b), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return err
		}
		modules[p] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	c := ast.NewCompiler().WithBuiltins(compilerBuiltins())
	compileMu.Lock()
	c.Compile(modules)
	compileMu.Unlock()
	if c.Failed() {
		return nil, c.Errors
	}
	ref, err := ast.ParseRef(query)
	if err != nil {
		return nil, err
	}
	var found []string
	seen := map[*ast.Rule]bool{}
	queue := c.GetRulesForVirtualDocument(ref)
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if seen[r] {
			continue
		}
		seen[r] = true
		// Calls are expressions after compilation; nested call terms are
		// looked at too, in case a stage leaves one.
		report := func(name string, loc *ast.Location) {
			if slices.Contains(NetworkBuiltins, name) {
				found = append(found, fmt.Sprintf("%s:%d: %s (in %s)", loc.File, loc.Row, name, r.Head.Ref()))
			}
		}
		var visit func(x any) bool
		visit = func(x any) bool {
			switch x := x.(type) {
			case *ast.Expr:
				if x.IsCall() {
					report(x.Operator().String(), x.Location)
				}
			case *ast.Term:
				if call, ok := x.Value.(ast.Call); ok && len(call) > 0 {
					report(call[0].String(), x.Location)
				}
			case *ast.With:
				// "f(x) with f as http.send" calls the builtin in f's
				// place; "with http.send as mock" (a test's mock) calls
				// none, so the target is not looked at.
				if ref, ok := x.Value.Value.(ast.Ref); ok {
					report(ref.String(), x.Location)
				}
				ast.NewGenericVisitor(visit).Walk(x.Value)
				return true
			}
			return false
		}
		ast.NewGenericVisitor(visit).Walk(r)
		for dep := range c.Graph.Dependencies(r) {
			if dr, ok := dep.(*ast.Rule); ok {
				queue = append(queue, dr)
			}
		}
	}
	slices.Sort(found)
	return slices.Compact(found), nil // a with modifier is met once per expression it is copied to
}
