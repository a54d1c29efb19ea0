package ship

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// hecServer is an HTTP receiver of JSON lines whose answer a test scripts.
type hecServer struct {
	*httptest.Server
	mu      sync.Mutex
	seqs    []uint64
	answer  func(seqs []uint64) int // status for a batch; nil: 200
	auth    []string
	types   []string
	batches int
}

func newHECServer(t *testing.T) *hecServer {
	h := &hecServer{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var seqs []uint64
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				http.Error(w, "bad line", http.StatusBadRequest)
				return
			}
			seqs = append(seqs, v.Seq)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.batches++
		h.auth = append(h.auth, r.Header.Get("Authorization"))
		h.types = append(h.types, r.Header.Get("Content-Type"))
		st := http.StatusOK
		if h.answer != nil {
			st = h.answer(seqs)
		}
		if st == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		if st/100 == 2 {
			h.seqs = append(h.seqs, seqs...)
		}
		w.WriteHeader(st)
		fmt.Fprintf(w, "answer %d\n", st)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hecServer) got() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.seqs...)
}

func (h *hecServer) setAnswer(f func([]uint64) int) {
	h.mu.Lock()
	h.answer = f
	h.mu.Unlock()
}

func waitHEC(t *testing.T, h *hecServer, want []uint64) {
	t.Helper()
	waitFor(t, "records at the HTTP receiver", func() (bool, string) {
		got := h.got()
		return equalSeqs(got, want), summarize(got)
	})
}

func newHTTPSink(t *testing.T, url string) *HTTP {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	h, err := NewHTTP(HTTPOptions{URL: url, TokenFile: tok, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHTTPRetriesServerErrors(t *testing.T) {
	srv := newHECServer(t)
	fails := 0
	srv.setAnswer(func([]uint64) int {
		fails++
		switch {
		case fails <= 2:
			return http.StatusServiceUnavailable
		case fails <= 3:
			return http.StatusTooManyRequests
		case fails <= 4:
			return http.StatusUnauthorized // a token not yet known there: retried, never skipped
		}
		return http.StatusOK
	})
	l := newTestLog(t)
	l.add(120, "call", "")
	s := startShipper(t, l, newHTTPSink(t, srv.URL), func(o *Options) { o.BatchRecords = 50; o.OnReject = RejectSkip })
	waitHEC(t, srv, seqRange(1, 120))
	waitFor(t, "the cursor at 120 after 4 failed attempts, nothing skipped", func() (bool, string) {
		st := s.Stats()
		return st.Errors == 4 && st.Skipped == 0 && st.Seq == 120 && !st.Down, fmt.Sprintf("%+v", st)
	})
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i := range srv.auth {
		if srv.auth[i] != "Bearer s3cret" || srv.types[i] != "application/x-ndjson" {
			t.Fatalf("request %d: Authorization %q, Content-Type %q", i, srv.auth[i], srv.types[i])
		}
	}
}

func TestHTTPRefusedRecordSkip(t *testing.T) {
	srv := newHECServer(t)
	srv.setAnswer(func(seqs []uint64) int {
		for _, s := range seqs {
			if s == 37 {
				return http.StatusBadRequest
			}
		}
		return http.StatusOK
	})
	l := newTestLog(t)
	l.add(100, "call", "")
	var mu sync.Mutex
	var notes []string
	s := startShipper(t, l, newHTTPSink(t, srv.URL), func(o *Options) {
		o.OnReject = RejectSkip
		o.BatchRecords = 40
		o.Note = func(event string, fields func(*zerolog.Event)) error {
			var b strings.Builder
			zl := zerolog.New(&b)
			e := zl.Log()
			fields(e)
			e.Str("event", event).Send()
			mu.Lock()
			notes = append(notes, b.String())
			mu.Unlock()
			return nil
		}
	})
	want := append(seqRange(1, 36), seqRange(38, 100)...)
	waitHEC(t, srv, want)
	waitFor(t, "the cursor past the skipped record", func() (bool, string) {
		st := s.Stats()
		return st.Skipped == 1 && st.Seq == 100 && st.Shipped == 99, fmt.Sprintf("%+v", st)
	})
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 1 || !strings.Contains(notes[0], `"record_seq":37`) || !strings.Contains(notes[0], `"status":400`) ||
		!strings.Contains(notes[0], `"event":"audit.ship_skipped"`) {
		t.Fatalf("notes %v", notes)
	}
}

func TestHTTPRefusedRecordStop(t *testing.T) {
	srv := newHECServer(t)
	srv.setAnswer(func(seqs []uint64) int {
		for _, s := range seqs {
			if s == 37 {
				return http.StatusUnprocessableEntity
			}
		}
		return http.StatusOK
	})
	l := newTestLog(t)
	l.add(100, "call", "")
	s := startShipper(t, l, newHTTPSink(t, srv.URL), func(o *Options) { o.BatchRecords = 40 })
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the shipper did not stop on a refused record")
	}
	if got := srv.got(); !equalSeqs(got, seqRange(1, 36)) {
		t.Fatalf("delivered %s, want 1..36", summarize(got))
	}
	st := s.Stats()
	cur, _, _ := ReadCursor(CursorPath(l.path, "test"))
	if !st.Stopped || cur.Seq != 36 || !strings.Contains(st.LastError, "422") {
		t.Fatalf("stats %+v, cursor %+v", st, cur)
	}
	srv.mu.Lock()
	batches := srv.batches
	srv.mu.Unlock()
	if batches > 12 {
		t.Fatalf("%d requests: the shipper loops on the refused record", batches)
	}
}

func TestHTTPStatusClasses(t *testing.T) {
	for _, tc := range []struct {
		status int
		reject bool
	}{
		{200, false}, {204, false}, {400, true}, {413, true}, {422, true},
		{401, false}, {403, false}, {404, false}, {408, false}, {429, false}, {500, false}, {503, false}, {307, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.status == 307 {
				w.Header().Set("Location", "http://elsewhere.example/?token=x")
			}
			w.WriteHeader(tc.status)
		}))
		h, _ := NewHTTP(HTTPOptions{URL: srv.URL})
		err := h.Send(context.Background(), []Record{{Line: []byte(`{"seq":1}`), Seq: 1}})
		srv.Close()
		var rej *RejectError
		switch {
		case tc.status/100 == 2 && err != nil:
			t.Errorf("%d: %v", tc.status, err)
		case tc.status/100 != 2 && err == nil:
			t.Errorf("%d: no error", tc.status)
		case errors.As(err, &rej) != tc.reject:
			t.Errorf("%d: %v, refused %v, want %v", tc.status, err, !tc.reject, tc.reject)
		case tc.status == 307 && strings.Contains(err.Error(), "token"):
			t.Errorf("307: the error shows the query: %v", err)
		}
	}
}

// A receiver may answer before it read the whole request (a 503 from a
// busy indexer, a proxy's error page): the next batch must not be built in
// the buffer the last request's body is still being sent from. (Run with
// -race.)
func TestHTTPAnswerBeforeBodyRead(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	var got []uint64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		if n <= 20 {
			w.Header().Set("Connection", "close")
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var seqs []uint64
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v struct {
				Seq uint64 `json:"seq"`
			}
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				http.Error(w, "bad line", http.StatusBadRequest)
				return
			}
			seqs = append(seqs, v.Seq)
		}
		mu.Lock()
		got = append(got, seqs...)
		mu.Unlock()
	}))
	defer srv.Close()
	l := newTestLog(t)
	l.add(3000, "call", benchCall)
	startShipper(t, l, newHTTPSink(t, srv.URL), func(o *Options) { o.RetryMax = time.Millisecond })
	waitFor(t, "3000 records at the receiver", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return equalSeqs(got, seqRange(1, 3000)), summarize(got)
	})
}

// A stop while a batch is in flight (the receiver has not answered yet)
// leaves the cursor after the last batch answered, and the next start
// sends the rest: nothing skipped, in order.
func TestHTTPStopInTheMiddle(t *testing.T) {
	srv := newHECServer(t)
	release := make(chan struct{})
	var hung atomic.Int32
	srv.setAnswer(func(seqs []uint64) int {
		if seqs[len(seqs)-1] > 60 {
			hung.Add(1)
			<-release // the answer never comes before the stop gives up
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var once sync.Once
	unhang := func() { once.Do(func() { close(release) }) }
	defer unhang()
	l := newTestLog(t)
	l.add(100, "call", "")
	s := startShipper(t, l, newHTTPSink(t, srv.URL), func(o *Options) { o.BatchRecords = 20 })
	waitFor(t, "a batch in flight", func() (bool, string) { return hung.Load() > 0, "" })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	s.Stop(ctx)
	cancel()
	unhang() // the hung request gets its 503 (it holds the server's lock)
	cur, _, _ := ReadCursor(CursorPath(l.path, "test"))
	if got := srv.got(); !equalSeqs(got, seqRange(1, 60)) || cur.Seq != 60 {
		t.Fatalf("delivered %s, cursor at %d; want 1..60 and 60", summarize(got), cur.Seq)
	}

	srv.setAnswer(nil)
	startShipper(t, l, newHTTPSink(t, srv.URL), nil)
	waitHEC(t, srv, seqRange(1, 100))
}
