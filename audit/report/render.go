package report

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var pageTemplate string

//go:embed report.css
var pageCSS string

//go:embed report.js
var pageJS string

var pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":    groupDigits,
	"ts":     fmtTime,
	"tsfull": fmtTimeFull,
	"pct":    pct,
	"dur":    humanDuration,
	"per":    perWidth,
	"n":      func(n any, one string, many ...string) string { return plural(count(n), one, many...) },
	"pl":     func(n any, one string, many ...string) string { return word(count(n), one, many...) },
	"were":   func(n any) string { return were(count(n)) },
	"ms":     func(ms int64) string { return humanDuration(time.Duration(ms) * time.Millisecond) },
	"join":   strings.Join,
	"short":  shortRev,
	"f":      func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"u64":    func(v uint64) int64 { return int64(v) },
	"deref":  func(p *int) int { return *p },
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
}).Parse(pageTemplate))

// csp allows the report's own style and script, by hash, and nothing
// else: no fetch of any kind, and no script that came in with the log.
var csp = "default-src 'none'; style-src '" + cspHash(pageCSS) + "'; script-src '" + cspHash(pageJS) +
	"'; img-src data:; base-uri 'none'; form-action 'none'"

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	return pageTmpl.Execute(w, r.view())
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

func fmtTimeFull(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func pct(part, whole int64) string {
	if whole == 0 {
		return "0%"
	}
	p := float64(part) / float64(whole) * 100
	switch {
	case p == 0:
		return "0%"
	case p < 0.1:
		return "<0.1%"
	case p == 100:
		return "100%"
	}
	return strconv.FormatFloat(p, 'f', 1, 64) + "%"
}

func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 s"
	case d < time.Millisecond:
		return "under 1 ms"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return oneDecimal(d.Seconds()) + " s"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return oneDecimal(d.Hours()) + " h"
	case d%(7*24*time.Hour) == 0:
		if d == 7*24*time.Hour {
			return "week"
		}
		return fmt.Sprintf("%d weeks", d/(7*24*time.Hour))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// oneDecimal formats v with at most one decimal: 1, 1.5.
func oneDecimal(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// shortRev shortens a long revision (a content hash) for a table cell; the
// full revision is in the cell's title.
func shortRev(s string) string {
	if len(s) > 20 {
		return s[:16] + "…"
	}
	return s
}

// ---- the page's view ----

type kpi struct {
	Key   string // data-k, for tests and tools reading the page
	Label string
	Value int64
	Note  string
	Class string
}

type countRow struct {
	Key   string
	Label string
	Count int64
	Share string
}

type tableCap struct {
	Shown int
	Total int64
	More  int64
}

func capOf[T any](c *capped[T]) tableCap {
	return tableCap{Shown: len(c.Rows), Total: c.Total, More: c.More()}
}

type heatCell struct {
	Count int64
	Class string
	Title string
}

type heatRow struct {
	Label string
	Cells []heatCell
	Total int64
}

type heat struct {
	Cols      []string
	Rows      []heatRow
	ColTotals []int64
	Total     int64
	MoreUsers int
	MoreTgts  int
}

type fnRow struct {
	Function string
	Access   string
	Counts   [numClasses]int64
	Total    int64
}

type seenTable struct {
	Title string
	What  string
	Rows  []*seen
	Total int
	New   int
	More  int
	Over  bool
}

type revRow struct {
	*revision
	AtStart bool
}

type listenerRow struct {
	Listener
	Use        listenerUse
	Configured bool
	Silent     bool
}

type page struct {
	Title     string
	CSP       string
	CSS       template.CSS
	JS        template.JS
	Generated time.Time
	Version   string
	Elapsed   time.Duration
	Config    string

	From, To                  time.Time
	PeriodGiven               bool
	LogFirst, LogLast         time.Time
	LogFirstSeq, LogLastSeq   uint64
	Records, PeriodRecords    int64
	PFirstSeq, PLastSeq       uint64
	PFirst, PLast             time.Time
	Gateways                  []kv
	KPIs                      []kpi
	Findings                  []string
	Files                     []FileInfo
	Unreadable                int64
	BadLines                  []string
	Verify                    Verification
	VerifyBreakInPeriod       bool
	Checkpoints               []checkpointRow
	CheckpointsCap            tableCap
	CheckpointsAll            int64
	LastCheckpoint            *checkpointRow
	AfterCheckpoint           int64
	Recovered                 []eventRow
	RecoveredCap              tableCap
	Chart                     chart
	ChartWidth                time.Duration
	Buckets                   []bucket
	Heat                      heat
	FnChart                   chart
	Functions                 []fnRow
	FunctionsMore             int
	Accesses                  []kv
	Calls, Denied, Alerted    int64
	Allowed, AlertAllowed     int64
	MonitorFwd, Cached        int64
	State, StateAllowed       int64
	StateDenied, StateAlert   int64
	Outcomes, StateOutcomes   []countRow
	NoResult, StateNoResult   int64
	StateRows                 []*callRow
	StateCap                  tableCap
	DenyRows                  []*callRow
	DenyCap                   tableCap
	Reasons                   []reasonRow
	ReasonsOver               bool
	Windows                   *Windows
	WindowsNote               string
	Outside, OutsideAllowed   int64
	OutsideDenied, InsideWin  int64
	OutsideRows               []*callRow
	OutsideCap                tableCap
	Seen                      []seenTable
	SeenBefore                bool // the log has records before the period, so "new" means something
	RevAtStart                string
	RevFirst                  bool // RevAtStart is the first revision of the log, in force from its start
	RevChanges                []revChange
	RevChangesCap             tableCap
	Revisions                 []revRow
	LoadFails                 []eventRow
	LoadFailsCap              tableCap
	UsersLoads                []usersLoad
	UsersLoadsCap             tableCap
	UsersFails                []usersLoad
	UsersFailsCap             tableCap
	TLSLoads                  []tlsLoad
	TLSLoadsCap               tableCap
	TLSFails                  []tlsLoad
	TLSFailsCap               tableCap
	TLSEnded                  int64 // sessions ended by the tls.load records in the period
	UpTLSLoads                []upTLSLoad
	UpTLSLoadsCap             tableCap
	UpTLSFails                []upTLSLoad
	UpTLSFailsCap             tableCap
	UpTLSClosed               int64 // connections closed by the upstream_tls.load records in the period
	PKILoads                  []pkiLoad
	PKILoadsCap               tableCap
	PKIFails                  []pkiLoad
	PKIFailsCap               tableCap
	PKIEnded                  int64 // sessions ended by the pki.load records in the period
	PKIChanged, PKIRechecked  int64 // pki.load records in the period whose trust lists changed, and the rest
	Tickets                   []ticketRow
	TicketsMore               int
	TicketsOverflow           bool
	TicketRefused             []eventRow
	TicketRefusedCap          tableCap
	AdminRefused              []eventRow
	AdminRefusedCap           tableCap
	StartFails                []eventRow
	StartFailsCap             tableCap
	TicketCalls               int64
	SessOpened, SessRefused   int64
	SessResumed               int64
	SessAuthFailed, SessClose int64
	SessAlert                 int64
	DurCount, DurAvgMS        int64
	DurMaxMS                  int64
	DurHist                   []countRow
	RefuseReasons             []countRow
	AuthReasons               []countRow
	CloseErrors               []countRow
	SessByUser                []countRow
	SessRows                  []sessionRow
	SessCap                   tableCap
	Rejected                  int64
	RejectedCounted           int64 // of Rejected, counted in request.rejected_suppressed records
	RejectReasons             []countRow
	RejectSources             []countRow
	RejectRows                []rejectRow
	RejectCap                 tableCap
	HaveListeners             bool
	Listeners                 []listenerRow
	SilentListeners           int
	Starts                    []start
	StartsCap                 tableCap
	Unclean, Stops            int64
	Rotations                 []eventRow
	Capacity                  []eventRow
	CapacityCap               tableCap
	CapWarnings               int64
	RotationsCap              tableCap
	Others                    []*otherEvent
	OthersTotal               int64
	MaxRows                   int
	Classes                   [numClasses]struct{ Name, CSS string }
}

type reasonRow struct {
	Reason  string
	Denied  int64
	Alerted int64
}

// topN is how many users, targets and functions the charts show.
const (
	topUsers     = 15
	topTargets   = 10
	topFunctions = 15
	topCounts    = 25
	maxBars      = 96
)

func countRows(t *tally, n int, whole int64, empty string) []countRow {
	var out []countRow
	for _, e := range t.Top(n) {
		label := e.Key
		if label == "" {
			label = empty
		}
		out = append(out, countRow{Key: e.Key, Label: label, Count: e.Count, Share: pct(e.Count, whole)})
	}
	if rest := whole - sumRows(out); rest > 0 && len(out) > 0 {
		out = append(out, countRow{Label: "all others", Count: rest, Share: pct(rest, whole)})
	}
	return out
}

func sumRows(rs []countRow) int64 {
	var s int64
	for _, r := range rs {
		s += r.Count
	}
	return s
}

func (r *Report) view() *page {
	a := r.agg
	o := &r.opts
	p := &page{
		Title: o.Title, CSP: csp, CSS: template.CSS(pageCSS), JS: template.JS(pageJS),
		Generated: r.Generated, Version: o.Version, Elapsed: r.Elapsed, Config: o.Config,
		From: o.From, To: o.To, PeriodGiven: !o.From.IsZero() || !o.To.IsZero(),
		LogFirst: a.logFirst, LogLast: a.logLast, LogFirstSeq: a.logFirstSq, LogLastSeq: a.logLastSq,
		Records: a.records, PeriodRecords: a.periodRecords,
		PFirst: a.periodFirst, PLast: a.periodLast, PFirstSeq: a.periodFirstSq, PLastSeq: a.periodLastSq,
		Gateways: a.gateways.Top(0), Files: r.Files, Unreadable: a.unreadable, BadLines: a.badLines.Rows,
		Verify: r.Verify, CheckpointsAll: a.checkpointsAll, LastCheckpoint: a.lastCheckpoint,
		Checkpoints: a.checkpoints.Rows, CheckpointsCap: capOf(&a.checkpoints),
		Recovered: a.recovered.Rows, RecoveredCap: capOf(&a.recovered),
		Calls: a.calls, Denied: a.denied, Alerted: a.alerted, Allowed: a.allowed, AlertAllowed: a.alertAllowed,
		MonitorFwd: a.monitorFwd, Cached: a.cached,
		State: a.state, StateAllowed: a.stateAllowed, StateDenied: a.stateDenied, StateAlert: a.stateAlerted,
		StateRows: a.stateRows.Rows, StateCap: capOf(&a.stateRows),
		DenyRows: a.denyRows.Rows, DenyCap: capOf(&a.denyRows),
		Windows: o.Windows, WindowsNote: o.WindowsNote,
		Outside: a.outside, OutsideAllowed: a.outsideAllowed, OutsideDenied: a.outsideDenied, InsideWin: a.insideWindow,
		OutsideRows: a.outsideRows.Rows, OutsideCap: capOf(&a.outsideRows),
		RevAtStart: a.revAtStart, RevFirst: a.revAtStart == "" && len(a.revOrder) > 0, RevChanges: a.revChanges.Rows, RevChangesCap: capOf(&a.revChanges),
		LoadFails: a.loadFails.Rows, LoadFailsCap: capOf(&a.loadFails), TicketCalls: a.ticketCalls,
		UsersLoads: a.usersLoads.Rows, UsersLoadsCap: capOf(&a.usersLoads), UsersFails: a.usersFails.Rows, UsersFailsCap: capOf(&a.usersFails),
		TLSLoads: a.tlsLoads.Rows, TLSLoadsCap: capOf(&a.tlsLoads), TLSFails: a.tlsFails.Rows, TLSFailsCap: capOf(&a.tlsFails), TLSEnded: a.tlsEnded,
		UpTLSLoads: a.upLoads.Rows, UpTLSLoadsCap: capOf(&a.upLoads), UpTLSFails: a.upFails.Rows, UpTLSFailsCap: capOf(&a.upFails), UpTLSClosed: a.upClosed,
		PKILoads: a.pkiLoads.Rows, PKILoadsCap: capOf(&a.pkiLoads), PKIFails: a.pkiFails.Rows, PKIFailsCap: capOf(&a.pkiFails), PKIEnded: a.pkiEnded,
		PKIChanged: a.pkiChanged, PKIRechecked: a.pkiLoads.Total - a.pkiChanged,
		TicketRefused: a.ticketRefused.Rows, TicketRefusedCap: capOf(&a.ticketRefused), TicketsOverflow: a.ticketOverflow,
		AdminRefused: a.adminRefused.Rows, AdminRefusedCap: capOf(&a.adminRefused),
		StartFails: a.startFails.Rows, StartFailsCap: capOf(&a.startFails),
		SessOpened: a.sessOpened, SessResumed: a.sessResumed, SessRefused: a.sessRefused, SessAuthFailed: a.sessAuthFailed, SessClose: a.sessClosed,
		SessAlert: a.sessAlert, DurCount: a.durCount, DurMaxMS: a.durMaxMS,
		SessRows: a.sessRows.Rows, SessCap: capOf(&a.sessRows),
		Rejected: a.rejected, RejectedCounted: a.rejectedCounted, RejectRows: a.rejectRows.Rows, RejectCap: capOf(&a.rejectRows),
		Starts: a.starts.Rows, StartsCap: capOf(&a.starts), Unclean: a.unclean, Stops: a.stops,
		Rotations: a.rotations.Rows, RotationsCap: capOf(&a.rotations), OthersTotal: a.othersTotal,
		Capacity: a.capacity.Rows, CapacityCap: capOf(&a.capacity), CapWarnings: a.capWarnings,
		MaxRows: o.MaxRows, Classes: classInfo,
	}
	if p.RevFirst {
		p.RevAtStart = a.revOrder[0]
	}
	if a.lastCheckpoint != nil && a.logLastSq > a.lastCheckpoint.Seq {
		p.AfterCheckpoint = int64(a.logLastSq - a.lastCheckpoint.Seq)
	}
	if b := r.Verify.Break; b != nil && b.Seq != 0 {
		p.VerifyBreakInPeriod = a.periodLastSq == 0 || b.Seq <= a.periodLastSq
	}
	if a.durCount > 0 {
		p.DurAvgMS = a.durSumMS / a.durCount
	}
	for i, b := range durationBuckets {
		p.DurHist = append(p.DurHist, countRow{Label: b.Label, Count: a.durHist[i], Share: pct(a.durHist[i], a.durCount)})
	}
	p.Outcomes = countRows(&a.outcomes, 0, a.outcomes.Sum(), "(none)")
	p.StateOutcomes = countRows(&a.stateOutcomes, 0, a.stateOutcomes.Sum(), "(none)")
	p.NoResult = a.calls - a.outcomes.Sum()
	p.StateNoResult = a.state - a.stateOutcomes.Sum()
	p.RefuseReasons = countRows(&a.refuseReasons, topCounts, a.sessRefused, "(none)")
	p.AuthReasons = countRows(&a.authReasons, topCounts, a.sessAuthFailed, "(none)")
	p.CloseErrors = countRows(&a.closeErrors, topCounts, a.closeErrors.Sum(), "(none)")
	p.SessByUser = countRows(&a.sessByUser, topCounts, a.sessOpened, "(no user: unidentified source)")
	p.RejectReasons = countRows(&a.rejectReasons, topCounts, a.rejected, "(none)")
	p.RejectSources = countRows(&a.rejectSources, topCounts, a.rejected, "(no address)")
	p.Accesses = a.accesses.Top(0)

	r.viewTime(p)
	r.viewHeat(p)
	r.viewFunctions(p)
	r.viewReasons(p)
	p.SeenBefore = a.records > a.periodRecords && a.logFirstSq != a.periodFirstSq
	r.viewSeen(p)
	r.viewRevisions(p)
	r.viewTickets(p)
	r.viewListeners(p)
	r.viewOthers(p)
	p.KPIs = r.kpis(p)
	p.Findings = r.findings(p)
	return p
}

func (r *Report) viewTime(p *page) {
	a := r.agg
	from, to := r.opts.From, r.opts.To
	if from.IsZero() || (a.periodFirst.After(from) && !a.periodFirst.IsZero()) {
		from = a.periodFirst
	}
	if to.IsZero() || (a.periodLast.Before(to) && !a.periodLast.IsZero()) {
		to = a.periodLast.Add(time.Nanosecond)
	}
	p.Buckets, p.ChartWidth = a.timeline.view(from, to, maxBars)
	p.Chart = timeChart(p.Buckets, p.ChartWidth)
}

func userLabel(u string) string {
	if u == "" {
		return "(no user)"
	}
	return u
}

func (r *Report) viewHeat(p *page) {
	a := r.agg
	users := a.users.Top(topUsers)
	targets := a.targets.Top(topTargets)
	h := heat{MoreUsers: a.users.Len() - len(users), MoreTgts: a.targets.Len() - len(targets)}
	userIdx, tgtIdx := map[string]int{}, map[string]int{}
	for i, u := range users {
		userIdx[u.Key] = i
		h.Rows = append(h.Rows, heatRow{Label: userLabel(u.Key)})
	}
	for i, t := range targets {
		tgtIdx[t.Key] = i
		h.Cols = append(h.Cols, nonEmpty(t.Key, "(no target)"))
	}
	otherRow, otherCol := len(users), len(targets)
	if h.MoreUsers > 0 || a.users.Overflow {
		h.Rows = append(h.Rows, heatRow{Label: "all other users"})
	}
	if h.MoreTgts > 0 || a.targets.Overflow {
		h.Cols = append(h.Cols, "all other targets")
	}
	grid := make([][]int64, len(h.Rows))
	for i := range grid {
		grid[i] = make([]int64, len(h.Cols))
	}
	place := func(user, target string, n int64) {
		i, ok := userIdx[user]
		if !ok {
			i = otherRow
		}
		j, ok := tgtIdx[target]
		if !ok {
			j = otherCol
		}
		if i < len(grid) && j < len(grid[i]) {
			grid[i][j] += n
		}
	}
	for k, n := range a.userTarget.m {
		u, t, _ := strings.Cut(k, "\x00")
		place(u, t, n)
	}
	if a.userTarget.Other > 0 && otherRow < len(grid) && otherCol < len(grid[otherRow]) {
		grid[otherRow][otherCol] += a.userTarget.Other
	}
	var peak int64
	for _, row := range grid {
		for _, n := range row {
			peak = max(peak, n)
		}
	}
	h.ColTotals = make([]int64, len(h.Cols))
	for i := range h.Rows {
		for j, n := range grid[i] {
			h.Rows[i].Cells = append(h.Rows[i].Cells, heatCell{Count: n, Class: heatClass(n, peak),
				Title: fmt.Sprintf("%s on %s: %s", h.Rows[i].Label, h.Cols[j], plural(n, "call"))})
			h.Rows[i].Total += n
			h.ColTotals[j] += n
			h.Total += n
		}
	}
	p.Heat = h
}

// heatClass shades a cell on a log scale from q0 (none) to q5 (the peak).
func heatClass(n, peak int64) string {
	if n == 0 || peak == 0 {
		return "q0"
	}
	l := math.Log1p(float64(n)) / math.Log1p(float64(peak))
	return "q" + strconv.Itoa(1+int(math.Min(4, math.Floor(l*5))))
}

func (r *Report) viewFunctions(p *page) {
	a := r.agg
	var rows []fnRow
	access := map[string]string{}
	for k, s := range a.seenFunctions.m {
		access[k] = s.Label
	}
	for k, c := range a.functions.m {
		rows = append(rows, fnRow{Function: k, Access: access[k], Counts: *c, Total: c[0] + c[1] + c[2]})
	}
	slices.SortFunc(rows, func(x, y fnRow) int {
		if c := cmp.Compare(y.Total, x.Total); c != 0 {
			return c
		}
		return cmp.Compare(x.Function, y.Function)
	})
	var bars []barRow
	for i, f := range rows {
		if i == topFunctions {
			var rest barRow
			rest.Label = plural(int64(len(rows)-topFunctions), "other function")
			for _, g := range rows[topFunctions:] {
				for k := range numClasses {
					rest.Counts[k] += g.Counts[k]
				}
			}
			bars = append(bars, rest)
			break
		}
		bars = append(bars, barRow{Label: nonEmpty(f.Function, "(no function)"), Counts: f.Counts})
	}
	if o := a.funcOther; o[0]+o[1]+o[2] > 0 {
		rows = append(rows, fnRow{Function: "(functions past the tracking limit)", Counts: o, Total: o[0] + o[1] + o[2]})
	}
	p.FnChart = barChart("Top functions by calls", bars)
	if len(rows) > p.MaxRows {
		p.FunctionsMore = len(rows) - p.MaxRows
		rows = rows[:p.MaxRows]
	}
	p.Functions = rows
}

func (r *Report) viewReasons(p *page) {
	a := r.agg
	for k, c := range a.reasons.m {
		p.Reasons = append(p.Reasons, reasonRow{Reason: k, Denied: c[0], Alerted: c[1]})
	}
	slices.SortFunc(p.Reasons, func(x, y reasonRow) int {
		if c := cmp.Compare(y.Denied+y.Alerted, x.Denied+x.Alerted); c != 0 {
			return c
		}
		return cmp.Compare(x.Reason, y.Reason)
	})
	if o := a.reasonsOth; o[0]+o[1] > 0 {
		p.Reasons = append(p.Reasons, reasonRow{Reason: "(reasons past the tracking limit)", Denied: o[0], Alerted: o[1]})
		p.ReasonsOver = true
	}
}

func (r *Report) viewSeen(p *page) {
	a := r.agg
	for _, s := range []struct {
		title, what string
		k           *keyed[seen]
	}{
		{"Sources", "source address (inventory name)", &a.seenSources},
		{"Users", "user (authentication)", &a.seenUsers},
		{"Targets", "target (upstream)", &a.seenTargets},
		{"Functions", "function (access)", &a.seenFunctions},
	} {
		t := seenTable{Title: s.title, What: s.what, Over: s.k.Overflow}
		for _, v := range s.k.m {
			if v.InPeriod {
				t.Rows = append(t.Rows, v)
				if v.FirstInRange {
					t.New++
				}
			}
		}
		t.Total = len(t.Rows)
		slices.SortFunc(t.Rows, func(x, y *seen) int {
			if x.FirstInRange != y.FirstInRange {
				if x.FirstInRange {
					return -1
				}
				return 1
			}
			if c := x.First.Compare(y.First); c != 0 {
				return c
			}
			return cmp.Compare(x.Key, y.Key)
		})
		if len(t.Rows) > p.MaxRows {
			t.More = len(t.Rows) - p.MaxRows
			t.Rows = t.Rows[:p.MaxRows]
		}
		p.Seen = append(p.Seen, t)
	}
}

func (r *Report) viewRevisions(p *page) {
	a := r.agg
	for _, k := range a.revOrder {
		v := a.revs.m[k]
		if v.Decisions == 0 && k != p.RevAtStart && !r.loadedInPeriod(k) {
			continue
		}
		p.Revisions = append(p.Revisions, revRow{revision: v, AtStart: k == p.RevAtStart})
	}
	if len(p.Revisions) > p.MaxRows {
		p.Revisions = p.Revisions[:p.MaxRows]
	}
}

func (r *Report) loadedInPeriod(rev string) bool {
	for _, c := range r.agg.revChanges.Rows {
		if c.To == rev {
			return true
		}
	}
	return false
}

// ticketRow is a ticket as the table shows it: Expired when it was not
// closed before its expiry and the expiry has passed.
type ticketRow struct {
	*ticket
	Expired bool
}

func (r *Report) viewTickets(p *page) {
	a := r.agg
	from, to := r.opts.From, r.opts.To
	now := r.opts.Now()
	for _, t := range a.tickets {
		end := t.Expires
		if !t.Closed.IsZero() && (end.IsZero() || t.Closed.Before(end)) {
			end = t.Closed
		}
		if (!to.IsZero() && !t.Opened.IsZero() && !t.Opened.Before(to)) || (!from.IsZero() && !end.IsZero() && end.Before(from)) {
			continue
		}
		expired := !t.Expires.IsZero() && !t.Expires.After(now) && (t.Closed.IsZero() || !t.Closed.Before(t.Expires))
		p.Tickets = append(p.Tickets, ticketRow{ticket: t, Expired: expired})
	}
	if len(p.Tickets) > p.MaxRows {
		p.TicketsMore = len(p.Tickets) - p.MaxRows
		p.Tickets = p.Tickets[:p.MaxRows]
	}
}

func (r *Report) viewListeners(p *page) {
	a := r.agg
	p.HaveListeners = r.opts.Listeners != nil
	known := map[string]bool{}
	for _, l := range r.opts.Listeners {
		known[l.Name] = true
		row := listenerRow{Listener: l, Configured: true}
		if u := a.listeners.m[l.Name]; u != nil {
			row.Use = *u
		}
		row.Silent = row.Use.Calls == 0 && row.Use.Sessions == 0 && row.Use.Rejected == 0
		if row.Silent {
			p.SilentListeners++
		}
		p.Listeners = append(p.Listeners, row)
	}
	for _, name := range a.listenerOrder {
		if known[name] {
			continue
		}
		u := a.listeners.m[name]
		p.Listeners = append(p.Listeners, listenerRow{Listener: Listener{Name: name}, Use: *u})
	}
}

func (r *Report) viewOthers(p *page) {
	for _, o := range r.agg.others.m {
		p.Others = append(p.Others, o)
	}
	slices.SortFunc(p.Others, func(x, y *otherEvent) int { return cmp.Compare(x.Name, y.Name) })
}

func (r *Report) kpis(p *page) []kpi {
	a := r.agg
	distinct := func(k *keyed[seen]) (int64, string) {
		var n int64
		for _, s := range k.m {
			if s.InPeriod {
				n++
			}
		}
		if k.Overflow {
			return n, "at least: more than the report tracks"
		}
		return n, ""
	}
	users, un := distinct(&a.seenUsers)
	if n := a.users.m[""]; un == "" && n > 0 {
		un = plural(n, "call") + " from no identified user"
	}
	sources, sn := distinct(&a.seenSources)
	targets, tn := distinct(&a.seenTargets)
	funcs, fn := distinct(&a.seenFunctions)
	denyNote := ""
	if a.monitorFwd > 0 {
		denyNote = groupDigits(a.monitorFwd) + " forwarded anyway in monitor mode"
	}
	return []kpi{
		{Key: "calls", Label: "Calls", Value: a.calls},
		{Key: "allowed", Label: "Allowed", Value: a.allowed, Note: pct(a.allowed, a.calls), Class: "k-allow"},
		{Key: "denied", Label: "Denied", Value: a.denied, Note: nonEmpty(denyNote, pct(a.denied, a.calls)), Class: "k-deny"},
		{Key: "alerts", Label: "Alerts", Value: a.alerted, Note: "calls whose decision raised an alert", Class: "k-alert"},
		{Key: "state_changing", Label: "State-changing calls", Value: a.state,
			Note: fmt.Sprintf("%s allowed, %s denied", groupDigits(a.stateAllowed), groupDigits(a.stateDenied))},
		{Key: "sessions", Label: "Sessions opened", Value: a.sessOpened},
		{Key: "sessions_refused", Label: "Sessions refused", Value: a.sessRefused},
		{Key: "auth_failed", Label: "Authentication failures", Value: a.sessAuthFailed},
		{Key: "rejected", Label: "Malformed requests", Value: a.rejected, Note: rejectedNote(a.rejectedCounted)},
		{Key: "users", Label: "Distinct users", Value: users, Note: un},
		{Key: "sources", Label: "Distinct sources", Value: sources, Note: sn},
		{Key: "targets", Label: "Distinct targets", Value: targets, Note: tn},
		{Key: "functions", Label: "Distinct functions", Value: funcs, Note: fn},
	}
}

// findings are the facts an auditor should look at first.
func (r *Report) findings(p *page) []string {
	a := r.agg
	var f []string
	v := &r.Verify
	switch {
	case !v.Ran:
		f = append(f, "The hash chain was not verified.")
	case v.Err != "":
		f = append(f, "The hash chain could not be verified: "+v.Err)
	case v.Break != nil:
		f = append(f, "The hash chain is BROKEN: "+v.Break.Message)
	case !v.Genesis():
		f = append(f, fmt.Sprintf("The log does not start at its first record: it begins at seq %d; earlier records are not in the files given.", v.FirstSeq))
	}
	if a.unreadable > 0 {
		f = append(f, word(a.unreadable, "1 line is not an audit record.", groupDigits(a.unreadable)+" lines are not audit records."))
	}
	if a.calls == 0 {
		f = append(f, "No calls were recorded in the period.")
	}
	if a.stateDenied > 0 {
		f = append(f, fmt.Sprintf("%s %s denied.", plural(a.stateDenied, "state-changing call"), were(a.stateDenied)))
	}
	if a.opts.Windows != nil && a.outside > 0 {
		f = append(f, fmt.Sprintf("%s %s made outside every maintenance window: %s allowed, %s denied.",
			plural(a.outside, "state-changing call"), were(a.outside), groupDigits(a.outsideAllowed), groupDigits(a.outsideDenied)))
	}
	if a.monitorFwd > 0 {
		f = append(f, fmt.Sprintf("%s the policy denied %s forwarded in monitor mode.", plural(a.monitorFwd, "call"), were(a.monitorFwd)))
	}
	if p.SeenBefore {
		for _, t := range p.Seen {
			if t.New > 0 {
				f = append(f, fmt.Sprintf("%s first seen in the period: %d.", t.Title, t.New))
			}
		}
	}
	if a.revChanges.Total > 0 {
		f = append(f, fmt.Sprintf("The policy changed %s in the period.", times(a.revChanges.Total)))
	}
	if a.loadFails.Total > 0 {
		f = append(f, plural(a.loadFails.Total, "policy load")+" failed.")
	}
	if a.usersLoads.Total > 0 {
		f = append(f, fmt.Sprintf("The OPC UA users changed %s in the period (users.load).", times(a.usersLoads.Total)))
	}
	if a.usersFails.Total > 0 {
		f = append(f, fmt.Sprintf("%s failed; the users in force stayed (users.load_failed).", plural(a.usersFails.Total, "OPC UA users-file load")))
	}
	if n := a.tlsLoads.Total; n > 0 {
		s := fmt.Sprintf("The Modbus/TCP Security certificates or trust changed %s in the period (tls.load)", times(n))
		s += endedByTrust(a.tlsEnded)
		f = append(f, s+".")
	}
	if a.tlsFails.Total > 0 {
		f = append(f, fmt.Sprintf("%s failed; the certificate and trust in force stayed (tls.load_failed).", plural(a.tlsFails.Total, "Modbus/TCP Security file load")))
	}
	if n := a.upLoads.Total; n > 0 {
		s := fmt.Sprintf("The gateway's client certificate, CAs or CRLs toward its Modbus/TCP Security PLCs changed %s in the period (upstream_tls.load)", times(n))
		if c := a.upClosed; c > 0 {
			s += fmt.Sprintf("; %s to the PLCs %s closed to use them", plural(c, "connection"), were(c))
		}
		f = append(f, s+".")
	}
	if a.upFails.Total > 0 {
		f = append(f, fmt.Sprintf("%s failed; the certificate, CAs and CRLs in force stayed (upstream_tls.load_failed).", plural(a.upFails.Total, "upstream_tls file load")))
	}
	if n := a.pkiLoads.Total; n > 0 {
		s := "The OPC UA trust lists " + pkiChecks(a.pkiChanged, n-a.pkiChanged) + " in the period (pki.load)"
		s += endedByTrust(a.pkiEnded)
		if d := a.pkiDropped; d > 0 {
			s += fmt.Sprintf("; the server's certificate no longer passed %s, and %s to the server %s closed",
				times(a.pkiUpFails), plural(d, "connection"), were(d))
		}
		f = append(f, s+".")
	}
	if a.pkiFails.Total > 0 {
		f = append(f, fmt.Sprintf("%s failed; open sessions were not checked again (pki.load_failed).", plural(a.pkiFails.Total, "OPC UA trust-list read")))
	}
	var unverified []string
	for _, row := range p.Revisions {
		if s := row.Signature; s != "" && s != "verified" && row.Decisions > 0 {
			unverified = append(unverified, row.Rev+" ("+s+")")
		}
	}
	if len(unverified) > 0 {
		f = append(f, fmt.Sprintf("Calls were decided under policy bundles whose signature was not verified: %s.", strings.Join(unverified, ", ")))
	}
	if a.capWarnings > 0 {
		f = append(f, fmt.Sprintf("The audit filesystem crossed its warning fill level %s.", times(a.capWarnings)))
	}
	if a.unclean > 0 {
		f = append(f, fmt.Sprintf("%s followed a run that never recorded its stop (a crash or a kill).", plural(a.unclean, "gateway start")))
	}
	if a.startFails.Total > 0 {
		f = append(f, fmt.Sprintf("%s failed after the audit log was opened (gateway.start_failed).", plural(a.startFails.Total, "gateway start")))
	}
	if a.adminRefused.Total > 0 {
		f = append(f, fmt.Sprintf("%s %s refused at the admin socket (ticket.refused).", plural(a.adminRefused.Total, "ticket request"), were(a.adminRefused.Total)))
	}
	if a.recovered.Total > 0 {
		f = append(f, fmt.Sprintf("%s cut by a crash %s removed at start (audit.recovered).", plural(a.recovered.Total, "record"), were(a.recovered.Total)))
	}
	if p.SilentListeners > 0 {
		f = append(f, fmt.Sprintf("%s saw no traffic in the period: a blind spot or an unused path.", plural(int64(p.SilentListeners), "configured listener")))
	}
	if a.sessAuthFailed > 0 {
		f = append(f, plural(a.sessAuthFailed, "authentication failure")+".")
	}
	if a.othersTotal > 0 {
		f = append(f, plural(a.othersTotal, "record")+" of events this report does not interpret (listed under Gateway events).")
	}
	return f
}

// rejectedNote says what the malformed requests' count is made of.
func rejectedNote(counted int64) string {
	if counted == 0 {
		return "request.rejected"
	}
	return fmt.Sprintf("request.rejected; %s counted in request.rejected_suppressed", groupDigits(counted))
}

// pkiChecks says how often the trust lists changed and how often they
// were checked again without a change (a certificate expired since).
func pkiChecks(changed, rechecked int64) string {
	re := "were re-checked without a change " + times(rechecked)
	switch {
	case rechecked == 0:
		return "changed " + times(changed)
	case changed == 0:
		return re
	}
	return "changed " + times(changed) + " and " + re
}

// endedByTrust is the clause of a tls.load or pki.load finding that counts
// the sessions a trust change ended; "" when it ended none.
func endedByTrust(n int64) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf("; %s %s ended because %s certificate no longer passed", plural(n, "session"), were(n), word(n, "its", "their"))
}
