package main

import (
	"compress/gzip"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// policy.decision_logs on a running gateway: an mbpoll write denied outside
// the maintenance window reaches a decision log service as an OPA decision
// log event (POST /logs, gzip JSON array, bearer token from token_file)
// whose decision_id is the one in the audit record, and the decision is
// the same; a service that fails does not stop the gateway from deciding.
func TestE2EDecisionLogs(t *testing.T) {
	t.Parallel()
	requirePeer(t, peerMbpoll, peerPymodbus)
	var mu sync.Mutex
	var events []map[string]any
	var auth []string
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.URL.Path != "/logs" || r.Header.Get("Content-Encoding") != "gzip" {
			http.Error(w, "not a decision log upload", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var evs []map[string]any
		if err := json.NewDecoder(zr).Decode(&evs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		events = append(events, evs...)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer svc.Close()

	_, _, init := plcValues()
	plc := startPLC(t, 0, init...)
	g := newGateway(t, gwOptions{upstreamPort: plc.port})
	token := filepath.Join(g.dir, "dl.token")
	if err := os.WriteFile(token, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	withLogs := strings.Replace(string(cfg), "policy:\n", "policy:\n  decision_logs:\n    url: "+svc.URL+"\n    token_file: ./dl.token\n    interval: 50ms\n", 1)
	writeFile(t, g.config, withLogs)
	g.start(t)

	if w := mbpoll(t, g.port, []string{"-r", "100"}, "4321"); w.code == 0 {
		t.Fatalf("mbpoll write outside the window succeeded\n%s", w.out)
	}
	recs := waitAudit(t, g.auditPath, 3*time.Second, "the denied write", func(recs []record) bool {
		return len(callRecords(recs, "write_single_register", 100)) == 1
	})
	c := callRecords(recs, "write_single_register", 100)[0]
	id := c.str("decision.decision_id")
	if id == "" {
		t.Fatalf("call record without decision.decision_id: %v", c)
	}
	var ev map[string]any
	eventually(t, 10*time.Second, 20*time.Millisecond, "the write's decision log event", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range events {
			if e["decision_id"] == id {
				ev = e
				return true, ""
			}
		}
		return false, "events: " + strings.Repeat(".", len(events))
	})
	res, _ := ev["result"].(map[string]any)
	in, _ := ev["input"].(map[string]any)
	labels, _ := ev["labels"].(map[string]any)
	if res["allow"] != false || ev["path"] != "interlock/decision" || labels["id"] != "e2e-gw1" {
		t.Errorf("event %v: want allow false, path interlock/decision, labels.id e2e-gw1", ev)
	}
	if op, _ := in["operation"].(map[string]any); op["function"] != "write_single_register" {
		t.Errorf("event input operation %v", in["operation"])
	}
	if ts, _ := ev["timestamp"].(string); ts == "" || !strings.HasPrefix(c.str("call_time"), ts[:19]) {
		t.Errorf("event timestamp %q, call record time %q", ev["timestamp"], c.str("call_time"))
	}
	mu.Lock()
	for _, a := range auth {
		if a != "Bearer t0ken" {
			t.Errorf("upload with Authorization %q, want the token of token_file", a)
		}
	}
	mu.Unlock()

	// The service goes away: the gateway keeps deciding and forwarding.
	svc.Close()
	if r := mbpoll(t, g.port, []string{"-r", "100", "-c", "1"}); r.code != 0 {
		t.Fatalf("mbpoll read with the decision log service gone: exit %d\n%s", r.code, r.out)
	}
}
