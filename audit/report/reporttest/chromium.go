// Package reporttest drives a headless Chromium over the DevTools protocol
// (its --remote-debugging-pipe, with nothing but the standard library), so
// that tests can open a report, read its DOM, collect every console message
// and take a screenshot.
package reporttest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/interlock-ics/interlock/audit/report"
)

// Message is one thing the page said: a console call, an uncaught
// exception, a browser log entry (CSP violations, failed loads) or a
// dialog it tried to open.
type Message struct {
	Source string // console, exception, log, dialog
	Level  string // log, info, warning, error …
	Text   string
	URL    string
}

func (m Message) String() string {
	return fmt.Sprintf("[%s %s] %s %s", m.Source, m.Level, m.Text, m.URL)
}

// Browser is one Chromium process.
type Browser struct {
	cmd     *exec.Cmd
	w       *os.File // commands, Chromium's fd 3
	r       *os.File // answers and events, Chromium's fd 4
	profile string
	stderr  bytes.Buffer

	wmu     sync.Mutex // the command pipe
	mu      sync.Mutex // the rest
	nextID  int
	waiting map[int]chan reply
	pages   map[string]*Page // by session id
	dead    error
	done    chan struct{}
}

type reply struct {
	Result json.RawMessage
	Err    error
}

type wire struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *wireError      `json:"error,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
}

type wireError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Start runs Chromium with a fresh profile.
func Start() (*Browser, error) {
	bin, err := report.FindChromium()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "interlock-chromium-")
	if err != nil {
		return nil, err
	}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	b := &Browser{w: cmdW, r: evR, profile: profile, waiting: map[int]chan reply{}, pages: map[string]*Page{}, done: make(chan struct{})}
	args := append(report.ChromiumFlags(profile), "--remote-debugging-pipe", "about:blank")
	b.cmd = exec.Command(bin, args...)
	b.cmd.ExtraFiles = []*os.File{cmdR, evW} // fd 3, fd 4
	b.cmd.Stderr = &lockedWriter{mu: &b.mu, w: &b.stderr}
	if err := b.cmd.Start(); err != nil {
		os.RemoveAll(profile)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	cmdR.Close()
	evW.Close()
	go b.read()
	return b, nil
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() < 1<<20 {
		l.w.Write(p)
	}
	return len(p), nil
}

// Stderr is what Chromium printed, for a failing test's log.
func (b *Browser) Stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// read dispatches messages until the pipe closes. Messages end with NUL.
func (b *Browser) read() {
	defer close(b.done)
	br := bufio.NewReaderSize(b.r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			b.fail(fmt.Errorf("chromium closed the DevTools pipe: %w", err))
			return
		}
		var m wire
		if err := json.Unmarshal(msg[:len(msg)-1], &m); err != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.waiting[m.ID]; ok {
				delete(b.waiting, m.ID)
				r := reply{Result: m.Result}
				if m.Error != nil {
					r.Err = fmt.Errorf("devtools: %s (%d)", m.Error.Message, m.Error.Code)
				}
				ch <- r
			}
		} else if p := b.pages[m.SessionID]; p != nil {
			p.event(m.Method, m.Params)
		}
		b.mu.Unlock()
	}
}

func (b *Browser) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dead == nil {
		b.dead = err
	}
	for id, ch := range b.waiting {
		ch <- reply{Err: err}
		delete(b.waiting, id)
	}
}

// call sends one command and waits for its answer.
func (b *Browser) call(ctx context.Context, session, method string, params, out any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if params == nil {
		raw = []byte("{}")
	}
	ch := make(chan reply, 1)
	b.mu.Lock()
	if b.dead != nil {
		b.mu.Unlock()
		return b.dead
	}
	b.nextID++
	id := b.nextID
	b.waiting[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(wire{ID: id, Method: method, Params: raw, SessionID: session})
	b.wmu.Lock()
	_, err = b.w.Write(append(msg, 0))
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("devtools %s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.Err != nil {
			return fmt.Errorf("%s: %w", method, r.Err)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("devtools %s: %w", method, ctx.Err())
	}
}

// Close ends Chromium and removes its profile.
func (b *Browser) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_ = b.call(ctx, "", "Browser.close", nil, nil)
	cancel()
	b.w.Close()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
	}
	exited := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-exited
	}
	b.r.Close()
	os.RemoveAll(b.profile)
}

// Page is one tab.
type Page struct {
	b       *Browser
	session string
	msgs    []Message // under b.mu
	loaded  chan struct{}
}

// event takes a DevTools event of the page; b.mu is held.
func (p *Page) event(method string, params json.RawMessage) {
	switch method {
	case "Runtime.consoleAPICalled":
		var e struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		_ = json.Unmarshal(params, &e)
		var text []string
		for _, a := range e.Args {
			if a.Value != nil {
				text = append(text, fmt.Sprint(a.Value))
			} else {
				text = append(text, a.Description)
			}
		}
		p.msgs = append(p.msgs, Message{Source: "console", Level: e.Type, Text: fmt.Sprint(text)})
	case "Runtime.exceptionThrown":
		var e struct {
			Details struct {
				Text      string `json:"text"`
				URL       string `json:"url"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(params, &e)
		p.msgs = append(p.msgs, Message{Source: "exception", Level: "error",
			Text: e.Details.Text + " " + e.Details.Exception.Description, URL: e.Details.URL})
	case "Log.entryAdded":
		var e struct {
			Entry struct {
				Source string `json:"source"`
				Level  string `json:"level"`
				Text   string `json:"text"`
				URL    string `json:"url"`
			} `json:"entry"`
		}
		_ = json.Unmarshal(params, &e)
		p.msgs = append(p.msgs, Message{Source: "log/" + e.Entry.Source, Level: e.Entry.Level, Text: e.Entry.Text, URL: e.Entry.URL})
	case "Page.javascriptDialogOpening":
		var e struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		}
		_ = json.Unmarshal(params, &e)
		p.msgs = append(p.msgs, Message{Source: "dialog", Level: "error", Text: e.Type + ": " + e.Message})
		go func() { // a dialog blocks the page until answered
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = p.b.call(ctx, p.session, "Page.handleJavaScriptDialog", map[string]any{"accept": false}, nil)
		}()
	case "Page.loadEventFired":
		select {
		case p.loaded <- struct{}{}:
		default:
		}
	}
}

// NewPage opens a tab of width × height CSS pixels, with scripts on or
// off, and starts collecting its messages.
func (b *Browser) NewPage(ctx context.Context, width, height int, scripts bool) (*Page, error) {
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, err
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		return nil, err
	}
	p := &Page{b: b, session: att.SessionID, loaded: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pages[p.session] = p
	b.mu.Unlock()
	for _, m := range []string{"Runtime.enable", "Log.enable", "Page.enable"} {
		if err := b.call(ctx, p.session, m, nil, nil); err != nil {
			return nil, err
		}
	}
	if err := b.call(ctx, p.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		return nil, err
	}
	if !scripts {
		if err := b.call(ctx, p.session, "Emulation.setScriptExecutionDisabled", map[string]any{"value": true}, nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(ctx context.Context, url string) error {
	var nav struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.b.call(ctx, p.session, "Page.navigate", map[string]any{"url": url}, &nav); err != nil {
		return err
	}
	if nav.ErrorText != "" {
		return fmt.Errorf("navigate %s: %s", url, nav.ErrorText)
	}
	select {
	case <-p.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("navigate %s: no load event: %w", url, ctx.Err())
	}
}

// Eval evaluates a JavaScript expression in the page (in DevTools' own
// world: it runs even with the page's scripts off) and decodes its value.
func (p *Page) Eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := p.b.call(ctx, p.session, "Runtime.evaluate",
		map[string]any{"expression": expr, "returnByValue": true}, &r); err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("evaluate %q: %s", expr, r.Exception.Text)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// Screenshot writes a PNG of the whole page, at most maxHeight CSS pixels
// tall (0: no limit).
func (p *Page) Screenshot(ctx context.Context, path string, maxHeight int) error {
	return p.ScreenshotRange(ctx, path, 0, maxHeight)
}

// ScreenshotRange writes a PNG of the page from top down, height CSS
// pixels (0: to the end).
func (p *Page) ScreenshotRange(ctx context.Context, path string, top, height int) error {
	var size struct {
		W float64 `json:"w"`
		H float64 `json:"h"`
	}
	if err := p.Eval(ctx, `({w: document.documentElement.scrollWidth, h: document.documentElement.scrollHeight})`, &size); err != nil {
		return err
	}
	h := size.H - float64(top)
	if height > 0 && h > float64(height) {
		h = float64(height)
	}
	if h <= 0 {
		return fmt.Errorf("screenshot: the page is %v pixels tall, nothing below %d", size.H, top)
	}
	var shot struct {
		Data string `json:"data"`
	}
	if err := p.b.call(ctx, p.session, "Page.captureScreenshot", map[string]any{
		"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": top, "width": size.W, "height": h, "scale": 1},
	}, &shot); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		return errors.New("screenshot: not a PNG")
	}
	return os.WriteFile(path, png, 0o644)
}

// Messages returns what the page said so far.
func (p *Page) Messages() []Message {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return append([]Message(nil), p.msgs...)
}

// Problems are the messages at warning level or above: for a report page,
// any of them is a defect.
func (p *Page) Problems() []Message {
	var out []Message
	for _, m := range p.Messages() {
		switch m.Level {
		case "log", "info", "debug", "verbose", "startGroup", "startGroupCollapsed", "endGroup", "table", "dir", "dirxml", "trace", "count", "timeEnd", "clear":
		default:
			out = append(out, m)
		}
	}
	return out
}
