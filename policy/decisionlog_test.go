package policy

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// eventV1 is OPA's decision log event as its decision log plugin uploads it
// (github.com/open-policy-agent/opa/v1/plugins/logs.EventV1 and the
// documented format, "Decision Logs" in OPA's management docs): the fields
// Interlock fills, with OPA's JSON names and types. Importing OPA's type
// here would pull its whole plugin tree into the module.
type eventV1 struct {
	Labels      map[string]string       `json:"labels"`
	DecisionID  string                  `json:"decision_id"`
	Bundles     map[string]bundleInfoV1 `json:"bundles,omitempty"`
	Path        string                  `json:"path,omitempty"`
	Input       *any                    `json:"input,omitempty"`
	Result      *any                    `json:"result,omitempty"`
	RequestedBy string                  `json:"requested_by,omitempty"`
	Timestamp   time.Time               `json:"timestamp"`
	Custom      map[string]any          `json:"custom,omitempty"`
}

type bundleInfoV1 struct {
	Revision string `json:"revision,omitempty"`
}

// logService is a decision log service: it decodes every upload the way a
// service for OPA's decision logs must (POST /logs, gzip, a JSON array of
// OPA's own EventV1) and keeps the events; fail makes it answer 503.
type logService struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	evs  []eventV1
	fail bool
	hold chan struct{} // when set, uploads wait for it to close
	auth []string
}

func newLogService(t *testing.T) *logService {
	ls := &logService{t: t}
	ls.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ls.mu.Lock()
		hold, fail := ls.hold, ls.fail
		ls.auth = append(ls.auth, r.Header.Get("Authorization"))
		ls.mu.Unlock()
		if hold != nil {
			<-hold
		}
		if fail {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/logs" || r.Header.Get("Content-Encoding") != "gzip" ||
			r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("upload %s %s, Content-Encoding %q, Content-Type %q: not OPA's decision log upload",
				r.Method, r.URL.Path, r.Header.Get("Content-Encoding"), r.Header.Get("Content-Type"))
			http.Error(w, "bad upload", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("upload is not gzip: %v", err)
			http.Error(w, "bad upload", http.StatusBadRequest)
			return
		}
		var evs []eventV1
		if err := json.NewDecoder(zr).Decode(&evs); err != nil {
			t.Errorf("upload is not a JSON array of OPA decision log events: %v", err)
			http.Error(w, "bad upload", http.StatusBadRequest)
			return
		}
		ls.mu.Lock()
		ls.evs = append(ls.evs, evs...)
		ls.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ls.srv.Close)
	return ls
}

func (ls *logService) events() []eventV1 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]eventV1(nil), ls.evs...)
}

func (ls *logService) set(fail bool, hold chan struct{}) {
	ls.mu.Lock()
	ls.fail, ls.hold = fail, hold
	ls.mu.Unlock()
}

func waitEvents(t *testing.T, ls *logService, n int) []eventV1 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs := ls.events()
		if len(evs) >= n || time.Now().After(deadline) {
			if len(evs) != n {
				t.Fatalf("decision log service has %d events, want %d", len(evs), n)
			}
			return evs
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startDecisionLog runs a decision log to url until the test ends.
func startDecisionLog(t *testing.T, o DecisionLogOptions) *DecisionLog {
	t.Helper()
	return startDecisionLogWith(t, o, zerolog.Nop())
}

// startDecisionLogWith is startDecisionLog logging to log.
func startDecisionLogWith(t *testing.T, o DecisionLogOptions, log zerolog.Logger) *DecisionLog {
	t.Helper()
	l, err := NewDecisionLog(o, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func logEngine(t *testing.T, l *DecisionLog, cache bool) *Engine {
	t.Helper()
	e, err := New(Options{Path: policyDir(t, map[string]string{"main.rego": sitePolicy, "data.yaml": siteData}),
		Gateway: "site-a-gw1", Log: zerolog.Nop(), NoCache: !cache, DecisionLog: l})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Every decision, evaluated or from the cache, allowed or denied, reaches
// the service as an OPA decision log event that OPA's own type decodes:
// decision id, path, input as the policy saw it, result, bundle revision,
// labels, time of the call; custom fields tie it to the audit record.
func TestDecisionLogEvents(t *testing.T) {
	ls := newLogService(t)
	l := startDecisionLog(t, DecisionLogOptions{URL: ls.srv.URL, Token: "s3cret", Interval: 20 * time.Millisecond,
		Labels: map[string]string{"id": "site-a-gw1", "version": "test"}})
	e := logEngine(t, l, true)
	s := testSession()
	ctx := context.Background()
	write := testCall(s, "write_multiple_registers", gateway.AccessWrite, inWindow)
	denied := testCall(s, "write_multiple_registers", gateway.AccessWrite, outOfWindow)
	var ds []gateway.Decision
	for _, c := range []*gateway.Call{write, write, denied} { // the second from the cache
		d, err := e.Decide(ctx, s, c)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	if !ds[1].Cached {
		t.Fatal("the repeated write was not answered from the cache; the test needs one cached decision")
	}
	evs := waitEvents(t, ls, 3)
	for i, ev := range evs {
		d := ds[i]
		if ev.DecisionID != d.ID || ev.Path != "interlock/decision" || ev.Labels["id"] != "site-a-gw1" ||
			ev.Bundles["interlock"].Revision != e.Revision() || ev.RequestedBy != "10.0.0.5:50123" {
			t.Errorf("event %d: id %q path %q labels %v bundles %v requested_by %q; want id %q, revision %q",
				i, ev.DecisionID, ev.Path, ev.Labels, ev.Bundles, ev.RequestedBy, d.ID, e.Revision())
		}
		want := []*gateway.Call{write, write, denied}[i]
		if !ev.Timestamp.Equal(want.Time) {
			t.Errorf("event %d timestamp %v, want the call's time %v", i, ev.Timestamp, want.Time)
		}
		if ev.Input == nil || ev.Result == nil {
			t.Fatalf("event %d has no input or result: %+v", i, ev)
		}
		in := (*ev.Input).(map[string]any)
		if op := in["operation"].(map[string]any); op["function"] != "write_multiple_registers" || in["time"] != want.Time.Format(time.RFC3339Nano) {
			t.Errorf("event %d input: operation %v time %v", i, op, in["time"])
		}
		res := (*ev.Result).(map[string]any)
		if res["allow"] != d.Allow || res["alert"] != d.Alert {
			t.Errorf("event %d result %v, decision allow=%v alert=%v", i, res, d.Allow, d.Alert)
		}
		if ev.Custom["cached"] != d.Cached || ev.Custom["call_id"] != want.ID || ev.Custom["session_id"] != s.ID {
			t.Errorf("event %d custom %v", i, ev.Custom)
		}
	}
	if evs[0].Result == nil || (*evs[2].Result).(map[string]any)["allow"] != false {
		t.Error("the write outside the window is not logged as denied")
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, a := range ls.auth {
		if a != "Bearer s3cret" {
			t.Fatalf("upload with Authorization %q", a)
		}
	}
}

// A failed decision (the policy gives no value) is logged with its error
// and no result.
func TestDecisionLogError(t *testing.T) {
	ls := newLogService(t)
	l := startDecisionLog(t, DecisionLogOptions{URL: ls.srv.URL, Interval: 20 * time.Millisecond})
	e, err := New(Options{Path: policyDir(t, map[string]string{"main.rego": "package interlock\n\ndecision := {\"allow\": true} if false\n"}),
		Log: zerolog.Nop(), NoCache: true, DecisionLog: l})
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	if _, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow)); Code(err) != CodeUndefined {
		t.Fatalf("Decide: %v, want %s", err, CodeUndefined)
	}
	ev := waitEvents(t, ls, 1)[0]
	if ev.Result != nil || !strings.HasPrefix(ev.Custom["error"].(string), CodeUndefined+":") {
		t.Fatalf("event of a failed decision: result %v, custom %v", ev.Result, ev.Custom)
	}
}

// While the service is down, events wait in the buffer and are retried
// (each failure logged with the wait in retry_in_ms, as README says);
// once it is back they all arrive, in order, each once.
func TestDecisionLogRetries(t *testing.T) {
	ls := newLogService(t)
	ls.set(true, nil)
	var logs syncBuffer
	l := startDecisionLogWith(t, DecisionLogOptions{URL: ls.srv.URL, Interval: 10 * time.Millisecond}, zerolog.New(&logs))
	e := logEngine(t, l, false)
	s := testSession()
	var ids []string
	for range 50 {
		d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, _, failed := l.Stats(); failed < 2; _, _, failed = l.Stats() {
		if time.Now().After(deadline) {
			t.Fatal("no failed upload while the service answers 503")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !regexp.MustCompile(`"retry_in_ms":(20|40)[,}]`).MatchString(logs.String()) {
		t.Errorf("the failed uploads' log lines do not say retry_in_ms (20 or 40, whole milliseconds):\n%s", logs.String())
	}
	ls.set(false, nil)
	evs := waitEvents(t, ls, 50)
	for i, ev := range evs {
		if ev.DecisionID != ids[i] {
			t.Fatalf("event %d is decision %s, want %s (order or duplicates)", i, ev.DecisionID, ids[i])
		}
	}
	// The service has the events before the uploader has read its answer
	// and counted them.
	deadline = time.Now().Add(10 * time.Second)
	for sent, dropped, _ := l.Stats(); sent != 50 || dropped != 0; sent, dropped, _ = l.Stats() {
		if sent > 50 || dropped != 0 || time.Now().After(deadline) {
			t.Fatalf("stats: sent %d dropped %d, want 50 and 0", sent, dropped)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A service that does not answer never holds up a decision: past
// MaxEvents the oldest events are dropped and counted, and what is left
// arrives once the service answers.
func TestDecisionLogBufferBound(t *testing.T) {
	ls := newLogService(t)
	hold := make(chan struct{})
	ls.set(false, hold)
	l := startDecisionLog(t, DecisionLogOptions{URL: ls.srv.URL, Interval: 10 * time.Millisecond, MaxEvents: 100})
	e := logEngine(t, l, false)
	s := testSession()
	decide := func() string {
		d, err := e.Decide(context.Background(), s, testCall(s, "read_coils", gateway.AccessRead, inWindow))
		if err != nil {
			t.Fatal(err)
		}
		return d.ID
	}
	deadline := time.Now().Add(10 * time.Second)
	pre := 0 // decisions before the first upload hung
	for {
		ls.mu.Lock()
		n := len(ls.auth)
		ls.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no upload started")
		}
		decide()
		pre++
		time.Sleep(time.Millisecond)
	}
	var last string
	for range 1000 { // with the upload hanging: these must not wait for it
		last = decide()
	}
	if _, dropped, _ := l.Stats(); dropped < 1000-100 {
		t.Fatalf("%d events dropped with a buffer of 100 and %d decisions", dropped, pre+1000)
	}
	ls.set(false, nil)
	close(hold)
	deadline = time.Now().Add(10 * time.Second)
	for {
		evs := ls.events()
		if len(evs) > 0 && evs[len(evs)-1].DecisionID == last {
			if len(evs) > pre+100 {
				t.Fatalf("%d events arrived; the buffer holds 100 besides the %d of the first upload", len(evs), pre)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the newest decision never arrived (%d events)", len(evs))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDecisionLogOptions(t *testing.T) {
	for _, u := range []string{"", "logs.example.com", "ftp://logs.example.com", "http://"} {
		if _, err := NewDecisionLog(DecisionLogOptions{URL: u}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "decision_logs.url") {
			t.Errorf("URL %q: error %v, want one naming decision_logs.url", u, err)
		}
	}
	if _, err := NewDecisionLog(DecisionLogOptions{URL: "https://logs.example.com", CAFile: "/nonexistent/ca.pem"}, zerolog.Nop()); err == nil ||
		!strings.Contains(err.Error(), "decision_logs.ca") {
		t.Errorf("missing CA file: %v", err)
	}
}

// The gateway's pipeline asks the cache first (Engine.Cached) and evaluates
// only on a miss: a decision the cache answers there is logged too, once.
func TestDecisionLogCachedThroughPipeline(t *testing.T) {
	ls := newLogService(t)
	l := startDecisionLog(t, DecisionLogOptions{URL: ls.srv.URL, Token: "s3cret", Interval: 20 * time.Millisecond})
	e := logEngine(t, l, true)
	s := testSession()
	write := testCall(s, "write_multiple_registers", gateway.AccessWrite, inWindow)
	if _, hit := e.Cached(s, write); hit {
		t.Fatal("a first call answered from the cache")
	}
	first, err := e.Decide(context.Background(), s, write)
	if err != nil {
		t.Fatal(err)
	}
	again, hit := e.Cached(s, write)
	if !hit {
		t.Fatal("the repeated write was not answered from the cache; the test needs one cached decision")
	}
	evs := waitEvents(t, ls, 2)
	time.Sleep(100 * time.Millisecond) // five flush intervals: no third event
	if evs = ls.events(); len(evs) != 2 {
		t.Fatalf("%d decision log events, want 2 (the evaluated decision and the cached one)", len(evs))
	}
	for i, d := range []gateway.Decision{first, again} {
		if evs[i].DecisionID != d.ID || evs[i].Custom["cached"] != d.Cached {
			t.Errorf("event %d: id %q cached %v, want id %q cached %v", i, evs[i].DecisionID, evs[i].Custom["cached"], d.ID, d.Cached)
		}
	}
}
