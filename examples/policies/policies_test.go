// Package policies_test checks the policy library in examples/policies: every
// directory's Rego tests pass, every directory loads as a runtime policy (its
// tests left out, as the gateway loads it) and decides sample calls with its
// shipped data as documented, the staged policy's modules are the library's
// own, and the modules combine into one policy as the README says.
package policies_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/policy"
)

// policyDirs are the directories of the library: every directory here that
// holds a .rego file.
func policyDirs(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if m, _ := filepath.Glob(filepath.Join(e.Name(), "*.rego")); len(m) > 0 {
			dirs = append(dirs, e.Name())
		}
	}
	want := []string{"accounts-and-sources", "change-tickets", "deny-unknown", "maintenance-windows",
		"modbus-ranges", "opcua-nodes", "staged", "two-person"}
	for _, w := range want {
		if !slices.Contains(dirs, w) {
			t.Fatalf("policy directory %s is missing (found %v)", w, dirs)
		}
	}
	return dirs
}

// TestRegoTests runs each directory's Rego tests as `interlock policy test`
// does and fails on any failing test.
func TestRegoTests(t *testing.T) {
	for _, dir := range policyDirs(t) {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			// The property tests take 1–2 s each alone; under -race on a
			// busy two-core machine more than opa test's 5 s (CI at 584e08e).
			passed, failed, err := policy.RunTests(context.Background(), []string{dir}, policy.TestOptions{Out: &out, Timeout: 2 * time.Minute})
			if err != nil {
				t.Fatalf("policy test %s: %v\n%s", dir, err, out.String())
			}
			if failed > 0 || passed == 0 {
				t.Fatalf("policy test %s: %d passed, %d failed\n%s", dir, passed, failed, out.String())
			}
			t.Logf("%s: %d tests passed", dir, passed)
		})
	}
}

// sample is one call decided by a runtime-loaded policy with its shipped data.
type sample struct {
	name    string
	at      string // the call's time, RFC 3339
	input   string // JSON
	allow   bool
	alert   bool
	reasons []string // nil: not checked
	ticket  string
}

const (
	aliceEWS = `"principal": {"user": "alice", "auth": "inventory", "roles": ["engineer"]},
		"source": {"ip": "10.0.5.7", "port": 50123, "name": "ews-alice", "owner": "alice"}`
	bobHMI = `"principal": {"user": "bob", "auth": "inventory", "roles": ["operator"]},
		"source": {"ip": "10.0.20.4", "port": 40001, "name": "hmi-line1"}`
	stranger = `"principal": {"auth": "none", "roles": []}, "source": {"ip": "10.9.9.9", "port": 40003}`
	plc1     = `"protocol": "modbus", "target": {"name": "plc1", "upstream": "tcp://10.0.0.20:502", "unit_id": 1}`
	line1    = `"protocol": "opcua", "target": {"name": "line1", "upstream": "opc.tcp://10.0.0.20:4840"}`
	write105 = `"operation": {"function": "write_multiple_registers", "code": 16, "access": "write",
		"address": 105, "quantity": 2, "values": [650, 700]}`
	read0    = `"operation": {"function": "read_holding_registers", "code": 3, "access": "read", "address": 0, "quantity": 10}`
	ticketT1 = `{"id": "T-1", "user": "alice", "targets": ["plc1"], "access": ["write", "program"], "reason": "CHG-1234",
		"opened_by": "alice", "opened": "2026-11-26T10:30:00Z", "expires": "2026-11-26T12:30:00Z", "approvals": %s}`
	umas = `"operation": {"function": "unknown", "code": 90, "access": "program", "data": "0028"}`
)

func call(parts ...string) string { return "{" + strings.Join(parts, ",") + "}" }

func tickets(approvals string) string {
	return `"tickets": [` + strings.Replace(ticketT1, "%s", approvals, 1) + `]`
}

const noTickets = `"tickets": []`

var samples = map[string][]sample{
	"accounts-and-sources": {
		{name: "engineer writes", input: call(aliceEWS, plc1, write105, noTickets), allow: true, reasons: []string{}},
		{name: "operator reads", input: call(bobHMI, plc1, read0, noTickets), allow: true},
		{name: "operator writes", input: call(bobHMI, plc1, write105, noTickets), alert: true,
			reasons: []string{"approved-account:enforced:account_not_approved:bob:plc1:write",
				"approved-source:enforced:source_not_approved:hmi-line1:plc1:write"}},
		{name: "unknown source reads", input: call(stranger, plc1, read0, noTickets), allow: true, alert: true,
			reasons: []string{"unknown-source-read:monitor:unknown_source:10.9.9.9:read"}},
	},
	"maintenance-windows": {
		{name: "write in the weekly window", at: "2026-12-12T06:30:00+01:00", input: call(aliceEWS, plc1, write105, noTickets),
			allow: true, reasons: []string{"maintenance-window:pass:weekly tuning"}},
		{name: "write outside", at: "2026-12-11T06:30:00+01:00", input: call(aliceEWS, plc1, write105, noTickets), alert: true,
			reasons: []string{"maintenance-window:enforced:outside_maintenance_window:plc1:write"}},
	},
	"change-tickets": {
		{name: "write under a ticket", input: call(aliceEWS, plc1, write105, tickets(`[]`)), allow: true, ticket: "T-1",
			reasons: []string{"change-ticket:pass:T-1"}},
		{name: "write without", input: call(aliceEWS, plc1, write105, noTickets), alert: true,
			reasons: []string{"change-ticket:enforced:no_matching_ticket:alice:plc1:write"}},
	},
	"modbus-ranges": {
		{name: "setpoints in limits", input: call(aliceEWS, plc1, write105, noTickets), allow: true, reasons: []string{}},
		{name: "setpoint over limit", input: call(aliceEWS, plc1, strings.Replace(write105, "700", "7000", 1), noTickets), alert: true,
			reasons: []string{"modbus-value:enforced:value_out_of_range:temperature_setpoints:106=7000:limit=0..1200"}},
	},
	"opcua-nodes": {
		{name: "dosing start", input: call(bobHMI, line1, `"operation": {"function": "call", "access": "execute",
			"object_id": "ns=2;s=Line1.Dosing", "method_id": "ns=2;s=Line1.Dosing.Start", "arguments": [12.5, 600]}`, noTickets),
			allow: true},
		{name: "dosing too fast", input: call(bobHMI, line1, `"operation": {"function": "call", "access": "execute",
			"object_id": "ns=2;s=Line1.Dosing", "method_id": "ns=2;s=Line1.Dosing.Start", "arguments": [75, 600]}`, noTickets),
			alert: true, reasons: []string{"opcua-method-arguments:enforced:argument_out_of_range:ns=2;s=Line1.Dosing.Start:0=75:limit=0..50"}},
	},
	"deny-unknown": {
		{name: "vendor code for engineers", input: call(aliceEWS, plc1, umas, noTickets), allow: true,
			reasons: []string{"unknown-function:pass:vendor_code:90:umas"}},
		{name: "vendor code for others", input: call(bobHMI, plc1, umas, noTickets), alert: true,
			reasons: []string{"unknown-function:enforced:unknown_function:90"}},
	},
	"two-person": {
		{name: "approved download", input: call(aliceEWS, plc1, umas, tickets(`["bob"]`)), allow: true, ticket: "T-1",
			reasons: []string{"two-person:pass:T-1:approved_by=bob"}},
		{name: "self-approved download", input: call(aliceEWS, plc1, umas, tickets(`["alice"]`)), alert: true,
			reasons: []string{"two-person:enforced:ticket_self_approved:T-1"}},
	},
	"staged": {
		{name: "monitor-only limit", input: call(aliceEWS, plc1, strings.Replace(write105, "700", "7000", 1), tickets(`[]`)),
			allow: true, alert: true, ticket: "T-1", reasons: []string{"change-ticket:pass:T-1",
				"modbus-value:monitor:value_out_of_range:temperature_setpoints:106=7000:limit=0..1200"}},
		{name: "enforced ticket rule", input: call(aliceEWS, plc1, write105, noTickets), alert: true,
			reasons: []string{"change-ticket:enforced:no_matching_ticket:alice:plc1:write"}},
	},
}

func loadPolicy(t testing.TB, dir string) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Options{Path: dir, Gateway: "test-gw", Log: zerolog.Nop(), NoCache: true})
	if err != nil {
		t.Fatalf("load %s as a runtime policy: %v", dir, err)
	}
	return e
}

func inputValue(t testing.TB, s string) ast.Value {
	t.Helper()
	var v any
	if err := util.UnmarshalJSON([]byte(s), &v); err != nil {
		t.Fatalf("sample input: %v\n%s", err, s)
	}
	val, err := ast.InterfaceToValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return val
}

func sampleTime(t testing.TB, s sample) time.Time {
	t.Helper()
	if s.at == "" {
		return time.Date(2026, 11, 26, 11, 0, 0, 0, time.UTC)
	}
	at, err := time.Parse(time.RFC3339, s.at)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// TestRuntimeLoad loads every directory as the gateway does (test files left
// out) and decides sample calls with the shipped data, so that a policy that
// works only under its tests' mocks is caught.
func TestRuntimeLoad(t *testing.T) {
	for _, dir := range policyDirs(t) {
		t.Run(dir, func(t *testing.T) {
			e := loadPolicy(t, dir)
			for _, f := range e.Files() {
				if strings.HasSuffix(f, "_test.rego") {
					t.Errorf("runtime policy loaded test file %s", f)
				}
			}
			ss := samples[dir]
			if len(ss) == 0 {
				t.Fatalf("no sample calls for %s", dir)
			}
			for _, s := range ss {
				d, err := e.Eval(context.Background(), inputValue(t, s.input), sampleTime(t, s))
				if err != nil {
					t.Errorf("%s: %v (reasons %v)", s.name, err, d.Reasons)
					continue
				}
				if d.Allow != s.allow || d.Alert != s.alert || d.Ticket != s.ticket ||
					(s.reasons != nil && !slices.Equal(d.Reasons, s.reasons)) {
					t.Errorf("%s: got allow=%v alert=%v ticket=%q reasons=%q; want allow=%v alert=%v ticket=%q reasons=%q",
						s.name, d.Allow, d.Alert, d.Ticket, d.Reasons, s.allow, s.alert, s.ticket, s.reasons)
				}
			}
		})
	}
}

// TestStagedModulesAreTheLibrarys: the staged policy is built from copies of
// library modules; they must not drift from the originals.
func TestStagedModulesAreTheLibrarys(t *testing.T) {
	for file, orig := range map[string]string{
		"change_tickets.rego": "change-tickets",
		"modbus_ranges.rego":  "modbus-ranges",
	} {
		a := readFile(t, filepath.Join("staged", file))
		b := readFile(t, filepath.Join(orig, file))
		if a != b {
			t.Errorf("staged/%s differs from %s/%s: copy it again", file, orig, file)
		}
	}
}

// TestDecisionTemplate: every decision.rego is the same template below its
// "modules" part.
func TestDecisionTemplate(t *testing.T) {
	var first, firstDir string
	for _, dir := range policyDirs(t) {
		tmpl := templatePart(t, readFile(t, filepath.Join(dir, "decision.rego")))
		if first == "" {
			first, firstDir = tmpl, dir
			continue
		}
		if tmpl != first {
			t.Errorf("%s/decision.rego: the template part differs from %s/decision.rego", dir, firstDir)
		}
	}
}

// referenceTemplate is the decision template as Rego rules, as the library
// had it before the interlock.decision builtin: the specification the
// builtin must meet.
const referenceTemplate = `# --- template (reference) ---

staging := {id | some id in data.staging}

monitored(v) if v.id in staging

monitored(v) if v.monitor == true

enforced contains v if {
	some v in violations
	not monitored(v)
}

status(v) := "monitor" if {
	monitored(v)
} else := "enforced"

reasons := sort(array.concat(
	[concat(":", [v.id, status(v), v.reason]) | some v in violations],
	[concat(":", [p.id, "pass", p.reason]) | some p in passes],
))

ticket_field(allowed) := {"ticket": min(tickets)} if {
	allowed
	count(tickets) > 0
} else := {}

decision := object.union(
	{"allow": count(enforced) == 0, "alert": count(violations) > 0, "reasons": reasons},
	ticket_field(count(enforced) == 0),
)
`

// stagedHalf stages about half of the library's rule ids, for decisions
// that mix enforced and monitor-only findings.
const stagedHalf = `{"staging": ["modbus-value", "change-ticket", "approved-source", "maintenance-window", "unknown-function",
	"opcua-node", "two-person", "known-application"]}`

// TestDecisionBuiltin: for every sample call of every directory and of the
// OPC UA example (clean calls, calls a rule passed on with and without a
// ticket, enforced, monitor-only and staged violations), with its shipped
// data and with half of the rules staged, the decision the template's
// interlock.decision gives is the one the reference rules give.
func TestDecisionBuiltin(t *testing.T) {
	for _, dir := range append(policyDirs(t), filepath.Join("..", "opcua", "policy")) {
		for _, staging := range []string{"", stagedHalf} {
			name := dir
			if staging != "" {
				name += "/staged-half"
			}
			t.Run(name, func(t *testing.T) {
				builtinDir, referenceDir := t.TempDir(), t.TempDir()
				copyPolicy(t, dir, builtinDir, staging)
				copyPolicy(t, dir, referenceDir, staging)
				decisionFile := "decision.rego"
				if _, err := os.Stat(filepath.Join(dir, decisionFile)); err != nil {
					decisionFile = "interlock.rego" // the OPC UA example keeps the template in its module
				}
				src := readFile(t, filepath.Join(dir, decisionFile))
				i := strings.Index(src, templateMark)
				if i < 0 {
					t.Fatalf("%s/%s has no %q line", dir, decisionFile, templateMark)
				}
				if !strings.Contains(src[i:], "interlock.decision(violations, passes, tickets, data.staging)") {
					t.Fatalf("%s/%s: the template part does not call interlock.decision", dir, decisionFile)
				}
				writeFile(t, filepath.Join(referenceDir, decisionFile), src[:i]+referenceTemplate)
				e, ref := loadPolicy(t, builtinDir), loadPolicy(t, referenceDir)
				var list []sample
				for _, ss := range samples {
					list = append(list, ss...)
				}
				for _, s := range append(list, decisionSamples...) {
					in, at := inputValue(t, s.input), sampleTime(t, s)
					d, err := e.Eval(context.Background(), in, at)
					if err != nil {
						t.Fatalf("%s: %v", s.name, err)
					}
					r, err := ref.Eval(context.Background(), in, at)
					if err != nil {
						t.Fatalf("%s, reference: %v", s.name, err)
					}
					if d.Allow != r.Allow || d.Alert != r.Alert || d.Ticket != r.Ticket || !slices.Equal(d.Reasons, r.Reasons) {
						t.Errorf("%s: got allow=%v alert=%v ticket=%q reasons=%q; the reference gives allow=%v alert=%v ticket=%q reasons=%q",
							s.name, d.Allow, d.Alert, d.Ticket, d.Reasons, r.Allow, r.Alert, r.Ticket, r.Reasons)
					}
				}
			})
		}
	}
}

// copyPolicy copies the policy files of dir (not its tests) to dst and, when
// staging is set, adds it as staging.json, unless the policy has its own
// staging list.
func copyPolicy(t testing.TB, dir, dst, staging string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, "_test.rego") || strings.HasSuffix(n, ".md") {
			continue
		}
		src := readFile(t, filepath.Join(dir, n))
		if !strings.HasSuffix(n, ".rego") && strings.Contains(src, `"staging"`) {
			staging = "" // data of its own names the staged rules
		}
		writeFile(t, filepath.Join(dst, n), src)
	}
	if staging != "" {
		writeFile(t, filepath.Join(dst, "staging.json"), staging)
	}
}

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// decisionSamples are decided by every directory in TestDecisionBuiltin, with
// the samples of every directory.
var decisionSamples = []sample{
	{name: "operator reads", input: call(bobHMI, plc1, read0, noTickets)},
	{name: "engineer writes", input: call(aliceEWS, plc1, write105, noTickets)},
	{name: "engineer writes under a ticket", input: call(aliceEWS, plc1, write105, tickets(`["bob"]`))},
	{name: "engineer writes over a limit", input: call(aliceEWS, plc1, strings.Replace(write105, "700", "7000", 1), tickets(`[]`))},
	{name: "engineer writes in the weekly window", at: "2026-12-12T06:30:00+01:00", input: call(aliceEWS, plc1, write105, noTickets)},
	{name: "unknown source reads", input: call(stranger, plc1, read0, noTickets)},
	{name: "unknown source writes", input: call(stranger, plc1, write105, noTickets)},
	{name: "vendor code", input: call(aliceEWS, plc1, umas, tickets(`["bob"]`))},
	{name: "vendor code, self-approved", input: call(aliceEWS, plc1, umas, tickets(`["alice"]`))},
	{name: "OPC UA read", input: call(bobHMI, line1, `"operation": {"function": "read", "access": "read", "node_id": "ns=2;s=Line1.Temperature"}`, noTickets)},
	{name: "OPC UA write", input: call(aliceEWS, line1, `"operation": {"function": "write", "access": "write", "node_id": "ns=2;s=Line1.Setpoints.Temperature",
		"browse_path": "/Objects/Line1/Setpoints/Temperature", "attribute": "Value", "value": 70, "data_type": "Double"}`, tickets(`["bob"]`))},
	{name: "OPC UA write of the example's setpoint", input: call(aliceEWS, line1, `"operation": {"function": "write", "access": "write", "node_id": "ns=1;s=Setpoint",
		"browse_path": "/Objects/PLC/Setpoint", "attribute": "Value", "value": 70, "data_type": "Double"}`, noTickets)},
}

const templateMark = "# --- template"

func templatePart(t testing.TB, src string) string {
	t.Helper()
	i := strings.Index(src, templateMark)
	if i < 0 {
		t.Fatalf("decision.rego has no %q line", templateMark)
	}
	return src[i:]
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// modules of the library: directory, package (and module file) name.
var modules = [][2]string{
	{"accounts-and-sources", "accounts_and_sources"},
	{"maintenance-windows", "maintenance_windows"},
	{"change-tickets", "change_tickets"},
	{"modbus-ranges", "modbus_ranges"},
	{"opcua-nodes", "opcua_nodes"},
	{"deny-unknown", "deny_unknown"},
	{"two-person", "two_person"},
}

// TestCombined follows the README's recipe: every module and its data file
// (renamed) in one directory, one decision from the template naming them all.
// The result must load (no package or data conflicts) and decide.
func TestCombined(t *testing.T) {
	dir := t.TempDir()
	var imports, violations, passes []string
	for _, m := range modules {
		src, pkg := m[0], m[1]
		copyFile(t, filepath.Join(src, pkg+".rego"), filepath.Join(dir, pkg+".rego"))
		for _, data := range []string{"data.json", "data.yaml"} {
			if _, err := os.Stat(filepath.Join(src, data)); err == nil {
				copyFile(t, filepath.Join(src, data), filepath.Join(dir, pkg+filepath.Ext(data)))
			}
		}
		imports = append(imports, "import data.interlock."+pkg)
		violations = append(violations, pkg+".violations")
		passes = append(passes, pkg+".passes")
	}
	tmpl := templatePart(t, readFile(t, filepath.Join("staged", "decision.rego")))
	decision := "package interlock\n\n" + strings.Join(imports, "\n") + "\n\n" +
		"violations := " + strings.Join(violations, " | ") + "\n\n" +
		"passes := " + strings.Join(passes, " | ") + "\n\n" +
		"tickets := {t | t := change_tickets.ticket} | {t | t := two_person.ticket}\n\n" + tmpl
	if err := os.WriteFile(filepath.Join(dir, "decision.rego"), []byte(decision), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "staging.json"), []byte(`{"staging": ["modbus-value"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e := loadPolicy(t, dir)
	at := time.Date(2026, 12, 12, 6, 30, 0, 0, time.FixedZone("CET", 3600)) // the weekly window
	for _, s := range []sample{
		{name: "engineer writes a setpoint in the window under a ticket", input: call(aliceEWS, plc1, write105, tickets(`[]`)),
			allow: true, ticket: "T-1", reasons: []string{"change-ticket:pass:T-1", "maintenance-window:pass:weekly tuning"}},
		{name: "and over its limit: monitor-only", input: call(aliceEWS, plc1, strings.Replace(write105, "700", "7000", 1), tickets(`[]`)),
			allow: true, alert: true, ticket: "T-1", reasons: []string{"change-ticket:pass:T-1", "maintenance-window:pass:weekly tuning",
				"modbus-value:monitor:value_out_of_range:temperature_setpoints:106=7000:limit=0..1200"}},
		{name: "operator reads", input: call(bobHMI, plc1, read0, noTickets), allow: true, reasons: []string{}},
		{name: "unknown source writes", input: call(stranger, plc1, write105, noTickets), alert: true},
	} {
		d, err := e.Eval(context.Background(), inputValue(t, s.input), at)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if d.Allow != s.allow || d.Alert != s.alert || d.Ticket != s.ticket ||
			(s.reasons != nil && !slices.Equal(d.Reasons, s.reasons)) {
			t.Errorf("%s: got allow=%v alert=%v ticket=%q reasons=%q; want allow=%v alert=%v ticket=%q reasons=%q",
				s.name, d.Allow, d.Alert, d.Ticket, d.Reasons, s.allow, s.alert, s.ticket, s.reasons)
		}
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, []byte(readFile(t, from)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkDecision measures one uncached decision per sample call of each
// policy (`go test -bench . ./examples/policies/`).
func BenchmarkDecision(b *testing.B) {
	for _, dir := range policyDirs(b) {
		e := loadPolicy(b, dir)
		for _, s := range samples[dir] {
			in, at := inputValue(b, s.input), sampleTime(b, s)
			b.Run(dir+"/"+strings.ReplaceAll(s.name, " ", "_"), func(b *testing.B) {
				for b.Loop() {
					if _, err := e.Eval(context.Background(), in, at); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
