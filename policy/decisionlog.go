package policy

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

// Decision logs: every decision, in OPA's decision log format (the events
// an OPA sends to a decision log service), uploaded to a remote service in
// batches. They are best effort and in addition to the audit log, which
// stays the evidence: an upload that fails is retried while the buffer
// lasts, then the oldest events are dropped and counted; a decision never
// waits for them.

// Defaults of DecisionLogOptions.
const (
	DefaultDecisionLogInterval  = 5 * time.Second
	DefaultDecisionLogMaxEvents = 10000
	DefaultDecisionLogTimeout   = 10 * time.Second
	decisionLogBatch            = 1000 // events per upload at most
	decisionLogPath             = "interlock/decision"
)

// DecisionLogOptions configure decision logs.
type DecisionLogOptions struct {
	// URL of the decision log service; batches are POSTed to URL + "/logs"
	// as OPA does: a gzip-compressed JSON array of events.
	URL string
	// Token is sent as "Authorization: Bearer <token>" when set.
	Token string
	// CAFile holds PEM roots for an https URL instead of the system's.
	CAFile string
	// Interval is the longest an event waits before its upload (default
	// 5 s); a full batch goes at once.
	Interval time.Duration
	// MaxEvents bounds the events held while the service is unreachable
	// (default 10000); past it the oldest are dropped and counted.
	MaxEvents int
	// Timeout bounds one upload (default 10 s).
	Timeout time.Duration
	// Labels of every event; OPA's are id and version.
	Labels map[string]string
}

// DecisionLog buffers decision events and uploads them (Run).
type DecisionLog struct {
	opts   DecisionLogOptions
	target string // URL + "/logs"
	client *http.Client
	log    zerolog.Logger

	mu      sync.Mutex
	events  []logEvent // oldest first, by seq
	nextSeq uint64
	kick    chan struct{} // a batch is full
	sent    atomic.Uint64
	dropped atomic.Uint64
	failed  atomic.Uint64 // uploads that failed
}

// logEvent is one decision as the engine hands it over; it is turned into
// JSON on the uploader's goroutine, not the caller's.
type logEvent struct {
	seq                                                  uint64
	id, revision, requestedBy, sessionID, callID, errMsg string
	input                                                ast.Value
	decision                                             gateway.Decision
	at                                                   time.Time
	cached                                               bool
}

// NewDecisionLog checks the options; Run uploads.
func NewDecisionLog(o DecisionLogOptions, log zerolog.Logger) (*DecisionLog, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("decision_logs.url %q: want an http:// or https:// URL", o.URL)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultDecisionLogInterval
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultDecisionLogMaxEvents
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultDecisionLogTimeout
	}
	tr, err := httpTransport(o.CAFile, "decision_logs.ca")
	if err != nil {
		return nil, err
	}
	return &DecisionLog{
		opts:   o,
		target: strings.TrimSuffix(o.URL, "/") + "/logs",
		client: &http.Client{Transport: tr, Timeout: o.Timeout},
		log:    log,
		kick:   make(chan struct{}, 1),
	}, nil
}

// Stats returns the events uploaded, the events dropped because the buffer
// was full, and the uploads that failed.
func (l *DecisionLog) Stats() (sent, dropped, failedUploads uint64) {
	return l.sent.Load(), l.dropped.Load(), l.failed.Load()
}

// add buffers one event; it never blocks on the network.
func (l *DecisionLog) add(ev logEvent) {
	l.mu.Lock()
	if len(l.events) >= l.opts.MaxEvents {
		n := len(l.events) - l.opts.MaxEvents + 1
		l.events = append(l.events[:0], l.events[n:]...)
		l.dropped.Add(uint64(n))
	}
	l.nextSeq++
	ev.seq = l.nextSeq
	l.events = append(l.events, ev)
	full := len(l.events) >= decisionLogBatch
	l.mu.Unlock()
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Run uploads buffered events every Interval (at once when a batch is
// full) until ctx ends, then makes one last attempt bounded by Timeout.
// After a failed upload it waits up to 2^n intervals (at most a minute)
// before the next try; the events stay in the buffer meanwhile.
func (l *DecisionLog) Run(ctx context.Context) {
	wait := l.opts.Interval
	t := time.NewTimer(wait)
	defer t.Stop()
	var warnedDrops uint64
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), l.opts.Timeout)
			l.flush(fctx)
			cancel()
			return
		case <-l.kick:
		case <-t.C:
		}
		if err := l.flush(ctx); err != nil {
			l.failed.Add(1)
			wait = min(2*wait, time.Minute)
			l.log.Warn().Err(err).Str("url", l.target).Int64("retry_in_ms", wait.Milliseconds()).
				Msg("decision logs: upload failed; events stay buffered")
		} else {
			wait = l.opts.Interval
		}
		if d := l.dropped.Load(); d != warnedDrops {
			l.log.Warn().Uint64("dropped_total", d).Int("max_events", l.opts.MaxEvents).
				Msg("decision logs: buffer full, oldest events dropped (the audit log has every decision)")
			warnedDrops = d
		}
		t.Reset(wait)
	}
}

// flush uploads the buffered events in batches; a failed batch goes back
// to the front of the buffer.
func (l *DecisionLog) flush(ctx context.Context) error {
	for {
		l.mu.Lock()
		n := min(len(l.events), decisionLogBatch)
		batch := append([]logEvent(nil), l.events[:n]...)
		l.mu.Unlock()
		if n == 0 {
			return nil
		}
		if err := l.upload(ctx, batch); err != nil {
			return err
		}
		l.mu.Lock()
		// Events dropped meanwhile came off the front: remove what is left
		// of this batch, by sequence number.
		last, k := batch[n-1].seq, 0
		for k < len(l.events) && l.events[k].seq <= last {
			k++
		}
		l.events = append(l.events[:0], l.events[k:]...)
		l.mu.Unlock()
		l.sent.Add(uint64(n))
	}
}

func (l *DecisionLog) upload(ctx context.Context, batch []logEvent) error {
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	enc := json.NewEncoder(zw)
	events := make([]opaEvent, len(batch))
	for i := range batch {
		events[i] = l.event(&batch[i])
	}
	if err := enc.Encode(events); err != nil {
		return fmt.Errorf("encoding events: %w", err)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.target, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	if l.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.opts.Token)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("decision log service answered %s", resp.Status)
	}
	return nil
}

// opaEvent is a decision log event as OPA writes it (its EventV1 fields
// this gateway has), plus custom fields that tie it to the audit log.
type opaEvent struct {
	Labels      map[string]string         `json:"labels"`
	DecisionID  string                    `json:"decision_id"`
	Bundles     map[string]map[string]any `json:"bundles,omitempty"`
	Path        string                    `json:"path"`
	Input       any                       `json:"input,omitempty"`
	Result      any                       `json:"result,omitempty"`
	RequestedBy string                    `json:"requested_by,omitempty"`
	Timestamp   time.Time                 `json:"timestamp"`
	Custom      map[string]any            `json:"custom,omitempty"`
}

func (l *DecisionLog) event(ev *logEvent) opaEvent {
	out := opaEvent{
		Labels:      l.opts.Labels,
		DecisionID:  ev.id,
		Path:        decisionLogPath,
		RequestedBy: ev.requestedBy,
		Timestamp:   ev.at.UTC(),
		Custom:      map[string]any{"session_id": ev.sessionID, "call_id": ev.callID, "cached": ev.cached},
	}
	if ev.revision != "" {
		out.Bundles = map[string]map[string]any{"interlock": {"revision": ev.revision}}
	}
	if ev.input != nil {
		if in, err := ast.JSON(ev.input); err == nil {
			out.Input = in
		}
	}
	if ev.errMsg != "" {
		out.Custom["error"] = ev.errMsg // the call was denied: the policy gave no decision
		return out
	}
	d := ev.decision
	res := map[string]any{"allow": d.Allow, "alert": d.Alert, "reasons": d.Reasons}
	if d.Reasons == nil {
		res["reasons"] = []string{}
	}
	if d.Ticket != "" {
		res["ticket"] = d.Ticket
	}
	if d.RecordOldValue {
		res["record_old_value"] = true
	}
	out.Result = res
	return out
}

// logDecision hands one decision to the decision log; in is built here for
// a cached decision (the cache skips it).
func (e *Engine) logDecision(s *gateway.Session, c *gateway.Call, in ast.Value, d gateway.Decision, err error) {
	l := e.opts.DecisionLog
	if in == nil {
		tickets, _, _ := e.tickets(c.Time)
		in, _ = sessionInputFor(e.opts.Gateway, s).input(c, tickets, false)
	}
	ev := logEvent{id: d.ID, revision: d.Revision, sessionID: s.ID, callID: c.ID, input: in,
		decision: d, at: c.Time, cached: d.Cached}
	if s.Source.IP.IsValid() {
		ev.requestedBy = netip.AddrPortFrom(s.Source.IP, s.Source.Port).String()
	}
	if err != nil {
		ev.errMsg = err.Error() // "<code>: <why>"
	}
	l.add(ev)
}
