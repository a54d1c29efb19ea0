package reporttest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway/gatewaytest"
)

// TestPageReportsProblems: the driver hears what a page says, so that a
// report test that hears nothing means the report said nothing.
func TestPageReportsProblems(t *testing.T) {
	gatewaytest.RequirePeer(t, "chromium")
	dir := t.TempDir()
	page := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	noisy := page("noisy.html", `<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">`+
		`<p style="color:red">styled</p><img src="http://127.0.0.1:9/x.png">`+
		`<script>console.error("boom"); console.warn("careful"); alert("hi"); undefinedFunction();</script>`)
	quiet := page("quiet.html", `<!DOCTYPE html><title>q</title><p id="x">fine</p><script>console.log("just a log")</script>`)

	b, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	p, err := b.NewPage(ctx, 800, 600, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(ctx, noisy); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	var said []string
	for _, m := range p.Problems() {
		said = append(said, m.String())
	}
	all := strings.Join(said, "\n")
	for _, want := range []string{"[console error] [boom]", "[console warning] [careful]", "dialog", "undefinedFunction", "inline style", "127.0.0.1:9"} {
		if !strings.Contains(all, want) {
			t.Errorf("the driver did not hear %q; it heard:\n%s", want, all)
		}
	}

	q, err := b.NewPage(ctx, 800, 600, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Navigate(ctx, quiet); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if ps := q.Problems(); len(ps) != 0 {
		t.Errorf("a quiet page: %v", ps)
	}
	if len(q.Messages()) != 1 {
		t.Errorf("a quiet page's messages: %v, want the one log", q.Messages())
	}
	var text string
	if err := q.Eval(ctx, `document.getElementById("x").textContent`, &text); err != nil || text != "fine" {
		t.Errorf("eval: %q, %v", text, err)
	}
	shot := filepath.Join(dir, "q.png")
	if err := q.Screenshot(ctx, shot, 0); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 100 {
		t.Errorf("screenshot: %v", err)
	}
}
