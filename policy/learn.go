package policy

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// Files Learn writes: the baseline (data.baseline), the rules that compare a
// call with it, and Rego tests generated from both.
const (
	LearnedBaselineFile = "baseline.json"
	LearnedRegoFile     = "learned.rego"
	LearnedTestFile     = "learned_test.rego"
)

//go:embed learn_template.rego.tmpl
var learnRegoText string

//go:embed learn_template_test.rego.tmpl
var learnTestText string

var (
	learnRegoTemplate = template.Must(template.New(LearnedRegoFile).Parse(learnRegoText))
	learnTestTemplate = template.Must(template.New(LearnedTestFile).Parse(learnTestText))
)

// LearnOptions configure Learn.
type LearnOptions struct {
	// Window is how far back from the newest call record calls are learned;
	// 0 learns from every record.
	Window time.Duration
	// Package is the Rego package of the rules; "interlock" when empty.
	Package string
	// Enforce makes the rules deny a deviation instead of forwarding it with
	// an alert.
	Enforce bool
}

// LearnStats count what Learn read and learned.
type LearnStats struct {
	Calls     int // call records read
	Learned   int // forwarded calls inside the window: what the baseline holds
	Denied    int // calls the gateway did not forward, left out
	Older     int // forwarded calls before the window, left out
	Cut       int // last lines cut by a crash, skipped
	Workflows int
	Sources   int
	Users     int // distinct user names
	Targets   int
}

// Learned is what Learn proposes.
type Learned struct {
	Baseline Baseline
	Stats    LearnStats
	Files    []LearnedFile // baseline.json, learned.rego, learned_test.rego
}

// LearnedFile is one file of the proposal.
type LearnedFile struct {
	Name string
	Data []byte
}

// Baseline is the data document data.baseline: the normal API workflows.
// Sources are keyed by inventory name, or by address when the inventory did
// not know them; functions by learnFunction.
type Baseline struct {
	Learned   BaselineSpan                         `json:"learned"`
	Sources   map[string]BaselineSource            `json:"sources"`
	Targets   map[string]BaselineTarget            `json:"targets"`
	Workflows map[string]BaselineWorkflow          `json:"workflows"` // key: WorkflowKey
	Ranges    map[string]map[string]BaselineRanges `json:"ranges"`    // target → function → ranges
	Hours     map[string]map[string][]int          `json:"hours"`     // source → mon…sun → UTC hours, widened by one each side
}

// BaselineSpan says what the baseline was learned from.
type BaselineSpan struct {
	Calls     int    `json:"calls"`
	FirstCall string `json:"first_call"`
	LastCall  string `json:"last_call"`
	Window    string `json:"window"`
}

// BaselineSource lists the accounts seen from one caller system.
type BaselineSource struct {
	Accounts []BaselineAccount `json:"accounts"`
}

// BaselineAccount is a user ("" when none was identified) and how it was
// identified (principal.auth).
type BaselineAccount struct {
	User string `json:"user"`
	Auth string `json:"auth"`
}

// BaselineTarget lists the unit ids called on a target (empty for protocols
// without one).
type BaselineTarget struct {
	UnitIDs []int `json:"unit_ids"`
}

// BaselineWorkflow is one caller (source and user) using one function on
// one target and unit, as often as Calls.
type BaselineWorkflow struct {
	Access string `json:"access"`
	Calls  int    `json:"calls"`
}

// WorkflowKey names a workflow in data.baseline.workflows as the rules look
// it up: source|user|target/unit|function, each name query-escaped so that
// no name can forge the separators ("hmi-1||plc1/1|read_input_registers"
// has no user; a target without unit ids has no "/unit").
func WorkflowKey(source, user, target string, unit int, function string) string {
	t := url.QueryEscape(target)
	if unit >= 0 {
		t += "/" + strconv.Itoa(unit)
	}
	return url.QueryEscape(source) + "|" + url.QueryEscape(user) + "|" + t + "|" + function
}

// BaselineRanges are the first and last register seen for a function on a target:
// its address range, and for FC 23 its read range too.
type BaselineRanges struct {
	Address     *[2]int64 `json:"address,omitempty"`
	ReadAddress *[2]int64 `json:"read_address,omitempty"`
}

var learnPackageRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

// Learn reads the call records of the audit logs at paths and proposes a
// policy that allows exactly the calls the gateway forwarded (decision.allow,
// or mode monitor) within opts.Window of the newest call record, and flags
// every deviation from them. The files are checked before they are returned:
// they load and pass their own tests. Learn applies nothing.
func Learn(ctx context.Context, paths []string, opts LearnOptions) (*Learned, error) {
	if opts.Package == "" {
		opts.Package = "interlock"
	}
	if !learnPackageRe.MatchString(opts.Package) {
		return nil, fmt.Errorf("package %q is not a Rego package name such as interlock or interlock.learned", opts.Package)
	}
	if len(paths) == 0 {
		return nil, errors.New("no audit log to learn from")
	}
	// Two passes: the window ends at the newest record of all the logs.
	var newest time.Time
	for _, p := range paths {
		if _, err := learnScan(p, func(r *learnRecord) error {
			if r.at.After(newest) {
				newest = r.at
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	l := newLearner()
	var cutoff time.Time
	if opts.Window > 0 {
		cutoff = newest.Add(-opts.Window)
	}
	for _, p := range paths {
		cut, err := learnScan(p, func(r *learnRecord) error {
			l.stats.Calls++
			switch {
			case !r.Decision.Allow && r.Decision.Mode != "monitor":
				l.stats.Denied++
			case r.at.Before(cutoff):
				l.stats.Older++
			default:
				l.add(r)
			}
			return nil
		})
		l.stats.Cut += cut
		if err != nil {
			return nil, err
		}
	}
	if l.stats.Learned == 0 {
		return nil, fmt.Errorf("no forwarded calls to learn from (%d call records read, %d denied, %d before the window)",
			l.stats.Calls, l.stats.Denied, l.stats.Older)
	}
	out := &Learned{Baseline: l.baseline(opts.Window)}
	out.Stats = l.stats
	out.Stats.Workflows = len(out.Baseline.Workflows)
	out.Stats.Sources = len(out.Baseline.Sources)
	out.Stats.Targets = len(out.Baseline.Targets)
	users := map[string]bool{}
	for _, s := range out.Baseline.Sources {
		for _, a := range s.Accounts {
			if a.User != "" {
				users[a.User] = true
			}
		}
	}
	out.Stats.Users = len(users)

	var rego, tests bytes.Buffer
	if err := learnRegoTemplate.Execute(&rego, opts); err != nil {
		return nil, err
	}
	if err := learnTestTemplate.Execute(&tests, l.tests(&out.Baseline, opts)); err != nil {
		return nil, err
	}
	out.Files = []LearnedFile{
		{LearnedBaselineFile, out.Baseline.document()},
		{LearnedRegoFile, rego.Bytes()},
		{LearnedTestFile, tests.Bytes()},
	}
	if err := out.check(ctx, opts.Package); err != nil {
		return nil, fmt.Errorf("the generated policy does not hold up (a bug in learn): %w", err)
	}
	return out, nil
}

// WriteDir writes the files into dir, creating it. Existing files are
// replaced only when force is set; each file is written whole or not at all.
func (l *Learned) WriteDir(dir string, force bool) error {
	if !force {
		var exist []string
		for _, f := range l.Files {
			p := filepath.Join(dir, f.Name)
			if _, err := os.Lstat(p); err == nil {
				exist = append(exist, p)
			}
		}
		if len(exist) > 0 {
			return fmt.Errorf("%s already exist: not overwritten (--force replaces them)", strings.Join(exist, ", "))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range l.Files {
		if err := learnWriteFile(filepath.Join(dir, f.Name), f.Data); err != nil {
			return err
		}
	}
	return nil
}

func learnWriteFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// check loads the files alone in a scratch directory, as the gateway would,
// and runs their tests.
func (l *Learned) check(ctx context.Context, pkg string) error {
	dir, err := os.MkdirTemp("", "interlock-learn-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := l.WriteDir(dir, true); err != nil {
		return err
	}
	if _, err := New(Options{Path: dir, Query: "data." + pkg + ".decision", NoCache: true, Log: zerolog.Nop()}); err != nil {
		return err
	}
	var out bytes.Buffer
	_, failed, err := RunTests(ctx, []string{dir}, TestOptions{Out: &out})
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d generated tests fail:\n%s", failed, out.String())
	}
	return nil
}

// ---- reading the audit log ----

// learnRecord is what learn reads of a call record (audit/fields.go).
type learnRecord struct {
	Event    string `json:"event"`
	CallTime string `json:"call_time"`
	Source   struct {
		IP   string `json:"ip"`
		Name string `json:"name"`
	} `json:"source"`
	Principal struct {
		User string `json:"user"`
		Auth string `json:"auth"`
	} `json:"principal"`
	Target struct {
		Name   string `json:"name"`
		UnitID *int   `json:"unit_id"`
	} `json:"target"`
	Protocol  string         `json:"protocol"`
	Operation learnOperation `json:"operation"`
	Decision  struct {
		Allow bool   `json:"allow"`
		Mode  string `json:"mode"`
	} `json:"decision"`

	at time.Time
}

// learnOperation holds the operation fields the baseline is made of.
type learnOperation struct {
	Function     string `json:"function"`
	Access       string `json:"access"`
	Code         *int64 `json:"code,omitempty"`
	SubFunction  *int64 `json:"sub_function,omitempty"`
	Address      *int64 `json:"address,omitempty"`
	Quantity     *int64 `json:"quantity,omitempty"`
	ReadAddress  *int64 `json:"read_address,omitempty"`
	ReadQuantity *int64 `json:"read_quantity,omitempty"`
}

var learnCallEvent = []byte(`"event":"call"`)

// learnScan calls fn for every call record of the log at path, in order,
// read as replay reads it (AuditFiles: .gz decompressed). It does not check
// the hash chain (audit verify does); a last line cut by a crash is skipped
// and counted, and any other line that is not a JSON record is an error
// naming file:line.
func learnScan(path string, fn func(*learnRecord) error) (cut int, err error) {
	for l, err := range AuditFiles(path) {
		if errors.Is(err, ErrCutLine) {
			return cut + 1, nil
		}
		if err != nil {
			return cut, err
		}
		if !bytes.Contains(l.Data, learnCallEvent) {
			if !json.Valid(l.Data) {
				return cut, fmt.Errorf("%s:%d: not a JSON record", l.File, l.Line)
			}
			continue
		}
		var r learnRecord
		if err := json.Unmarshal(l.Data, &r); err != nil {
			return cut, fmt.Errorf("%s:%d: not an audit record: %v", l.File, l.Line, err)
		}
		if r.Event != "call" {
			continue
		}
		if r.at, err = time.Parse(time.RFC3339Nano, r.CallTime); err != nil {
			return cut, fmt.Errorf("%s:%d: call_time %q is not RFC 3339", l.File, l.Line, r.CallTime)
		}
		r.at = r.at.UTC()
		if err := fn(&r); err != nil {
			return cut, err
		}
	}
	return cut, nil
}

// ---- learning ----

type learnWorkflowKey struct {
	source, user, target string
	unit                 int // -1: none
	function             string
}

type learnWorkflowAgg struct {
	access string
	calls  int
	sample *learnRecord // the earliest call: the generated test replays it
}

type learner struct {
	stats     LearnStats
	first     time.Time
	last      time.Time
	sources   map[string]map[BaselineAccount]bool
	targets   map[string]map[int]bool
	workflows map[learnWorkflowKey]*learnWorkflowAgg
	ranges    map[string]map[string]*BaselineRanges
	order     []learnWorkflowKey // the workflows in the order of their keys
	hours     map[string]*[learnHoursPerWeek]bool
}

const learnHoursPerWeek = 7 * 24

var learnWeekdays = [7]string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

func newLearner() *learner {
	return &learner{
		sources:   map[string]map[BaselineAccount]bool{},
		targets:   map[string]map[int]bool{},
		workflows: map[learnWorkflowKey]*learnWorkflowAgg{},
		ranges:    map[string]map[string]*BaselineRanges{},
		hours:     map[string]*[learnHoursPerWeek]bool{},
	}
}

// learnSourceKey names the caller system as the rules do: the inventory name,
// else the address.
func learnSourceKey(r *learnRecord) string {
	if r.Source.Name != "" {
		return r.Source.Name
	}
	return r.Source.IP
}

func learnAuth(r *learnRecord) string {
	if r.Principal.Auth == "" {
		return gateway.AuthNone
	}
	return r.Principal.Auth
}

// learnFunction is the function as the rules tell functions apart: an
// unknown code and a diagnostics sub-function each do something different.
func learnFunction(op *learnOperation) string {
	switch {
	case op.Function == "unknown" && op.Code != nil:
		return fmt.Sprintf("%s/%d", op.Function, *op.Code)
	case op.Function == "diagnostics" && op.SubFunction != nil:
		return fmt.Sprintf("%s/%d", op.Function, *op.SubFunction)
	}
	return op.Function
}

// learnHourOfWeek is t's hour of the week in UTC, Monday 00:00 being 0.
func learnHourOfWeek(t time.Time) int {
	t = t.UTC()
	return (int(t.Weekday())+6)%7*24 + t.Hour()
}

func learnSpan(addr, qty *int64) *[2]int64 {
	if addr == nil {
		return nil
	}
	q := int64(1)
	if qty != nil {
		q = *qty
	}
	return &[2]int64{*addr, *addr + q - 1}
}

func learnWiden(r **[2]int64, s *[2]int64) {
	switch {
	case s == nil:
	case *r == nil:
		c := *s
		*r = &c
	default:
		(*r)[0] = min((*r)[0], s[0])
		(*r)[1] = max((*r)[1], s[1])
	}
}

func (l *learner) add(r *learnRecord) {
	l.stats.Learned++
	if l.first.IsZero() || r.at.Before(l.first) {
		l.first = r.at
	}
	if r.at.After(l.last) {
		l.last = r.at
	}
	src := learnSourceKey(r)
	if l.sources[src] == nil {
		l.sources[src] = map[BaselineAccount]bool{}
	}
	l.sources[src][BaselineAccount{User: r.Principal.User, Auth: learnAuth(r)}] = true

	unit := -1
	if r.Target.UnitID != nil {
		unit = *r.Target.UnitID
	}
	if l.targets[r.Target.Name] == nil {
		l.targets[r.Target.Name] = map[int]bool{}
	}
	if unit >= 0 {
		l.targets[r.Target.Name][unit] = true
	}

	fn := learnFunction(&r.Operation)
	k := learnWorkflowKey{src, r.Principal.User, r.Target.Name, unit, fn}
	w := l.workflows[k]
	if w == nil {
		w = &learnWorkflowAgg{access: r.Operation.Access}
		l.workflows[k] = w
	}
	w.calls++
	if w.sample == nil || r.at.Before(w.sample.at) {
		c := *r
		w.sample = &c
	}

	a, ra := learnSpan(r.Operation.Address, r.Operation.Quantity), learnSpan(r.Operation.ReadAddress, r.Operation.ReadQuantity)
	if a != nil || ra != nil {
		if l.ranges[r.Target.Name] == nil {
			l.ranges[r.Target.Name] = map[string]*BaselineRanges{}
		}
		rg := l.ranges[r.Target.Name][fn]
		if rg == nil {
			rg = &BaselineRanges{}
			l.ranges[r.Target.Name][fn] = rg
		}
		learnWiden(&rg.Address, a)
		learnWiden(&rg.ReadAddress, ra)
	}

	h := l.hours[src]
	if h == nil {
		h = new([learnHoursPerWeek]bool)
		l.hours[src] = h
	}
	h[learnHourOfWeek(r.at)] = true
}

func (l *learner) baseline(window time.Duration) Baseline {
	b := Baseline{
		Learned: BaselineSpan{
			Calls:     l.stats.Learned,
			FirstCall: l.first.Format(time.RFC3339Nano),
			LastCall:  l.last.Format(time.RFC3339Nano),
			Window:    FormatLearnWindow(window),
		},
		Sources:   map[string]BaselineSource{},
		Targets:   map[string]BaselineTarget{},
		Workflows: map[string]BaselineWorkflow{},
		Ranges:    map[string]map[string]BaselineRanges{},
		Hours:     map[string]map[string][]int{},
	}
	for src, accts := range l.sources {
		var s BaselineSource
		for a := range accts {
			s.Accounts = append(s.Accounts, a)
		}
		slices.SortFunc(s.Accounts, func(x, y BaselineAccount) int {
			return learnCompare(x.User, y.User, x.Auth, y.Auth)
		})
		b.Sources[src] = s
	}
	for name, units := range l.targets {
		t := BaselineTarget{UnitIDs: []int{}}
		for u := range units {
			t.UnitIDs = append(t.UnitIDs, u)
		}
		slices.Sort(t.UnitIDs)
		b.Targets[name] = t
	}
	l.order = l.order[:0]
	for k, w := range l.workflows {
		b.Workflows[k.String()] = BaselineWorkflow{Access: w.access, Calls: w.calls}
		l.order = append(l.order, k)
	}
	slices.SortFunc(l.order, func(a, b learnWorkflowKey) int { return strings.Compare(a.String(), b.String()) })
	for target, fns := range l.ranges {
		b.Ranges[target] = map[string]BaselineRanges{}
		for fn, r := range fns {
			b.Ranges[target][fn] = *r
		}
	}
	for src, h := range l.hours {
		days := map[string][]int{}
		for i := range learnHoursPerWeek {
			// Widened by an hour each side, across midnight and the week's end.
			if h[i] || h[(i+1)%learnHoursPerWeek] || h[(i+learnHoursPerWeek-1)%learnHoursPerWeek] {
				d := learnWeekdays[i/24]
				days[d] = append(days[d], i%24)
			}
		}
		b.Hours[src] = days
	}
	return b
}

func learnCompare(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

func (k learnWorkflowKey) String() string {
	return WorkflowKey(k.source, k.user, k.target, k.unit, k.function)
}

// FormatLearnWindow writes a learning window as ParseLearnWindow reads it.
func FormatLearnWindow(d time.Duration) string {
	switch {
	case d <= 0:
		return "all"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// ParseLearnWindow reads a learning window: a number of days (14d), weeks (2w),
// a Go duration (36h, 90m), or "all" (or 0) for every record.
func ParseLearnWindow(s string) (time.Duration, error) {
	if s == "all" || s == "0" {
		return 0, nil
	}
	var n int
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err == nil && n > 0 && (unit == "d" || unit == "w") {
		d := time.Duration(n) * 24 * time.Hour
		if unit == "w" {
			d *= 7
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("window %q: want days (14d), weeks (2w), a duration (36h) or all", s)
	}
	return d, nil
}

// ---- baseline.json ----

// document writes the baseline for review in a diff: keys sorted, one
// source, target, workflow, range and weekday per line.
func (b *Baseline) document() []byte {
	var w bytes.Buffer
	w.WriteString("{\n  \"baseline\": {\n")
	fmt.Fprintf(&w, "    \"learned\": %s,\n", learnJSON(b.Learned))

	w.WriteString(`    "sources": `)
	learnLines(&w, "    ", learnKeys(b.Sources), func(k string) string { return learnJSON(k) + ": " + learnJSON(b.Sources[k]) }, "{", "}")
	w.WriteString(",\n    \"targets\": ")
	learnLines(&w, "    ", learnKeys(b.Targets), func(k string) string { return learnJSON(k) + ": " + learnJSON(b.Targets[k]) }, "{", "}")
	w.WriteString(",\n    \"workflows\": ")
	learnLines(&w, "    ", learnKeys(b.Workflows), func(k string) string { return learnJSON(k) + ": " + learnJSON(b.Workflows[k]) }, "{", "}")
	w.WriteString(",\n    \"ranges\": ")
	learnLines(&w, "    ", learnKeys(b.Ranges), func(target string) string {
		var inner bytes.Buffer
		inner.WriteString(learnJSON(target) + ": ")
		fns := b.Ranges[target]
		learnLines(&inner, "      ", learnKeys(fns), func(fn string) string { return learnJSON(fn) + ": " + learnJSON(fns[fn]) }, "{", "}")
		return inner.String()
	}, "{", "}")
	w.WriteString(",\n    \"hours\": ")
	learnLines(&w, "    ", learnKeys(b.Hours), func(src string) string {
		var inner bytes.Buffer
		inner.WriteString(learnJSON(src) + ": ")
		days := b.Hours[src]
		var present []string
		for _, d := range learnWeekdays { // in week order, not alphabetical
			if _, ok := days[d]; ok {
				present = append(present, d)
			}
		}
		learnLines(&inner, "      ", present, func(d string) string { return learnJSON(d) + ": " + learnJSON(days[d]) }, "{", "}")
		return inner.String()
	}, "{", "}")
	w.WriteString("\n  }\n}\n")
	return w.Bytes()
}

// learnLines writes open, one item per line indented below indent, close.
func learnLines(w *bytes.Buffer, indent string, items []string, line func(string) string, open, close string) {
	w.WriteString(open)
	if len(items) == 0 {
		w.WriteString(close)
		return
	}
	for i, it := range items {
		w.WriteString("\n" + indent + "  " + line(it))
		if i < len(items)-1 {
			w.WriteString(",")
		}
	}
	w.WriteString("\n" + indent + close)
}

func learnKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// learnJSON is v as one line of JSON with a space after each colon and
// comma, for reading; no HTML escaping (names may hold < or &).
func learnJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only plain data types reach here
	}
	raw := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	out := make([]byte, 0, len(raw)+len(raw)/4)
	inString, escaped := false, false
	for _, c := range raw {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ':' || c == ','):
			out = append(out, ' ')
		}
	}
	return string(out)
}

// ---- learned_test.rego ----

type learnTestCase struct {
	Name, Comment string
	Input         string
	Now           int64
	Reason        string
	Skip          string
}

type learnTestData struct {
	LearnOptions
	Workflows  []learnTestCase
	Deviations []learnTestCase
}

// learnInput is the policy input of a recorded call with the fields the
// rules read, in the contract's order.
type learnInput struct {
	Time   string `json:"time"`
	Source struct {
		IP   string `json:"ip"`
		Name string `json:"name,omitempty"`
	} `json:"source"`
	Principal struct {
		User string `json:"user,omitempty"`
		Auth string `json:"auth"`
	} `json:"principal"`
	Target struct {
		Name   string `json:"name"`
		UnitID *int   `json:"unit_id,omitempty"`
	} `json:"target"`
	Protocol  string         `json:"protocol"`
	Operation learnOperation `json:"operation"`
}

func learnTestInput(r *learnRecord) learnInput {
	in := learnInput{Time: r.at.Format(time.RFC3339Nano), Protocol: r.Protocol, Operation: r.Operation}
	in.Source.IP, in.Source.Name = r.Source.IP, r.Source.Name
	in.Principal.User, in.Principal.Auth = r.Principal.User, learnAuth(r)
	in.Target.Name, in.Target.UnitID = r.Target.Name, r.Target.UnitID
	return in
}

func learnPlural(n int, one string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %ss", n, one)
}

func (l *learner) tests(b *Baseline, opts LearnOptions) learnTestData {
	td := learnTestData{LearnOptions: opts}
	var samples []*learnRecord
	for i, k := range l.order {
		agg := l.workflows[k]
		samples = append(samples, agg.sample)
		td.Workflows = append(td.Workflows, learnTestCase{
			Name:    fmt.Sprintf("workflow_%d", i+1),
			Comment: fmt.Sprintf("%s: %s", k, learnPlural(agg.calls, "call")),
			Input:   learnJSON(learnTestInput(agg.sample)),
			Now:     agg.sample.at.UnixNano(),
		})
	}

	base := samples[0]
	dev := func(kind, comment string, r *learnRecord, skip string) {
		c := learnTestCase{Name: "deviation_" + kind, Reason: "deviation:" + kind, Comment: comment, Skip: skip}
		if r != nil {
			c.Input = learnJSON(learnTestInput(r))
			c.Now = r.at.UnixNano()
		}
		td.Deviations = append(td.Deviations, c)
	}

	r := *base
	r.Source.Name = ""
	r.Source.IP = learnUnused("192.0.2.", func(s string) bool { _, ok := b.Sources[s]; return ok })
	r.Principal.User, r.Principal.Auth = "", gateway.AuthNone
	dev("unusual_source", "a caller system never seen, not in the inventory", &r, "")

	r = *base
	r.Principal.User = learnUnused("unexpected-user-", func(s string) bool {
		return slices.ContainsFunc(b.Sources[learnSourceKey(base)].Accounts, func(a BaselineAccount) bool { return a.User == s })
	})
	dev("unexpected_account", "a user never seen from "+learnSourceKey(base), &r, "")

	r = *base
	r.Target.Name = learnUnused("unseen-target-", func(s string) bool { _, ok := b.Targets[s]; return ok })
	dev("unusual_target", "a target never called", &r, "")

	r = *base
	seen := func(fn string) bool {
		k := l.order[0]
		k.function = fn
		_, ok := l.workflows[k]
		return ok
	}
	if i := slices.IndexFunc(learnProbes, func(p learnProbe) bool { return !seen(p.function) }); i >= 0 {
		p := learnProbes[i]
		code, addr, qty := p.code, int64(0), int64(1)
		if rg, ok := b.Ranges[base.Target.Name][p.function]; ok && rg.Address != nil {
			addr = rg.Address[0]
		}
		r.Operation = learnOperation{Function: p.function, Access: p.access, Code: &code, Address: &addr, Quantity: &qty}
		dev("function_not_seen", fmt.Sprintf("%s, never used by this caller on this target", p.function), &r, "")
	} else {
		dev("function_not_seen", "a function never used by this caller on this target", nil,
			"the caller used every function there is to probe with")
	}

	addrDone := false
	for i, k := range l.order {
		rg, ok := b.Ranges[k.target][k.function]
		s := samples[i]
		if !ok || rg.Address == nil || s.Operation.Address == nil {
			continue
		}
		var a int64
		switch {
		case rg.Address[1] < 65535:
			a = rg.Address[1] + 1
		case rg.Address[0] > 0:
			a = rg.Address[0] - 1
		default:
			continue
		}
		r = *s
		one := int64(1)
		r.Operation.Address, r.Operation.Quantity = &a, &one
		dev("address_out_of_range", fmt.Sprintf("%s at %d, outside %d..%d", k.function, a, rg.Address[0], rg.Address[1]), &r, "")
		addrDone = true
		break
	}
	if !addrDone {
		dev("address_out_of_range", "an address outside the learned range", nil, "no learned function has an address range with room outside it")
	}

	hours := b.Hours[learnSourceKey(base)]
	r = *base
	found := false
	for k := 1; k < learnHoursPerWeek; k++ {
		t := base.at.Add(time.Duration(k) * time.Hour)
		if !slices.Contains(hours[learnWeekdays[learnHourOfWeek(t)/24]], t.Hour()) {
			r.at, found = t, true
			break
		}
	}
	if found {
		dev("outside_hours", fmt.Sprintf("a call from %s on %s at %02d:00 UTC", learnSourceKey(base), learnWeekdays[learnHourOfWeek(r.at)/24], r.at.Hour()), &r, "")
	} else {
		dev("outside_hours", "a call at an unusual hour", nil, learnSourceKey(base)+" was seen at every hour of the week")
	}
	return td
}

// learnUnused returns prefix followed by the first number n ≥ 1 that taken
// does not report.
func learnUnused(prefix string, taken func(string) bool) string {
	for n := 1; ; n++ {
		if s := fmt.Sprintf("%s%d", prefix, n); !taken(s) {
			return s
		}
	}
}

type learnProbe struct {
	function, access string
	code             int64
}

// learnProbes are tried in order for the function_not_seen test: the
// first the caller never used is the probe.
var learnProbes = []learnProbe{
	{"write_multiple_registers", "write", 16},
	{"write_single_register", "write", 6},
	{"write_multiple_coils", "write", 15},
	{"write_single_coil", "write", 5},
	{"read_holding_registers", "read", 3},
	{"read_input_registers", "read", 4},
	{"read_coils", "read", 1},
	{"read_discrete_inputs", "read", 2},
}
