package report

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// logBuilder writes hand-made records with a valid hash chain, at times the
// test chooses.
type logBuilder struct {
	t    *testing.T
	buf  bytes.Buffer
	seq  uint64
	prev string
	gw   string
}

func newLog(t *testing.T) *logBuilder {
	return &logBuilder{t: t, prev: audit.GenesisPrev, gw: "gw-test"}
}

// field is one field of a record, in order.
type field struct {
	k string
	v any
}

// add appends a record of event at t with fields in order.
func (l *logBuilder) add(at time.Time, event string, fields ...field) {
	l.t.Helper()
	l.seq++
	var b bytes.Buffer
	b.WriteString(`{"seq":`)
	b.WriteString(jsonText(l.t, l.seq))
	b.WriteString(`,"time":`)
	b.WriteString(jsonText(l.t, at.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")))
	b.WriteString(`,"event":`)
	b.WriteString(jsonText(l.t, event))
	b.WriteString(`,"gateway":`)
	b.WriteString(jsonText(l.t, l.gw))
	for _, f := range fields {
		b.WriteString(",")
		b.WriteString(jsonText(l.t, f.k))
		b.WriteString(":")
		b.WriteString(jsonText(l.t, f.v))
	}
	b.WriteString(`,"prev":"` + l.prev + `"}`)
	sum := sha256.Sum256(b.Bytes())
	h := hex.EncodeToString(sum[:])
	line := b.Bytes()[:b.Len()-1]
	l.buf.Write(line)
	l.buf.WriteString(`,"hash":"` + h + `"}` + "\n")
	l.prev = h
}

func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkpoint appends an audit.checkpoint record signed with key, covering
// the record before it.
func (l *logBuilder) checkpoint(at time.Time, boot string, key ed25519.PrivateKey) {
	l.t.Helper()
	c := audit.Checkpoint{Gateway: l.gw, Seq: l.seq, Hash: l.prev, Time: at.UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
		BootID: boot, KeyID: audit.KeyID(key.Public().(ed25519.PublicKey)), Reason: "count", Every: 1000, IntervalMS: 7 * 24 * 3600 * 1000}
	sig := ed25519.Sign(key, c.SignedBytes(nil))
	l.add(at, "audit.checkpoint", field{"checkpoint", orderedObject{{"seq", c.Seq}, {"hash", c.Hash}, {"time", c.Time},
		{"boot_id", c.BootID}, {"key_id", c.KeyID}, {"reason", c.Reason}, {"every", c.Every}, {"interval_ms", c.IntervalMS}}},
		field{"signature", base64.StdEncoding.EncodeToString(sig)})
}

// testKey is the scenario's checkpoint signing key.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// write saves the log and returns its path.
func (l *logBuilder) write(dir string) string {
	l.t.Helper()
	p := filepath.Join(dir, "audit.jsonl")
	if err := os.WriteFile(p, l.buf.Bytes(), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// callSpec is one call for logBuilder.call.
type callSpec struct {
	id, session  string
	user, auth   string
	roles        []string
	ip, srcName  string
	target       string
	listener     string
	function     string
	access       string
	code         int
	fields       []field
	allow, alert bool
	reasons      []string
	rev          string
	mode         string
	ticket       string
	status       string // of the result record; "" writes none
	resCode      int
}

func (l *logBuilder) call(at time.Time, c callSpec) {
	l.t.Helper()
	if c.listener == "" {
		c.listener = c.target
	}
	if c.mode == "" {
		c.mode = "enforce"
	}
	if c.reasons == nil {
		c.reasons = []string{}
	}
	if c.auth == "" {
		c.auth = "inventory"
	}
	src := map[string]any{"ip": c.ip, "port": 50123}
	if c.srcName != "" {
		src["name"] = c.srcName
	}
	princ := map[string]any{"auth": c.auth}
	if c.user != "" {
		princ["user"] = c.user
	}
	if len(c.roles) > 0 {
		princ["roles"] = c.roles
	}
	op := orderedObject{{"function", c.function}, {"access", c.access}, {"code", c.code}}
	op = append(op, c.fields...)
	dec := orderedObject{{"allow", c.allow}, {"alert", c.alert}, {"reasons", c.reasons},
		{"policy_revision", c.rev}, {"decision_id", c.id + "-d"}, {"mode", c.mode}}
	if c.ticket != "" {
		dec = append(dec, field{"ticket", c.ticket})
	}
	l.add(at, "call",
		field{"call_id", c.id}, field{"session_id", c.session}, field{"listener", c.listener},
		field{"call_time", at.UTC().Format(time.RFC3339Nano)},
		field{"source", src}, field{"principal", princ},
		field{"target", map[string]any{"name": c.target, "upstream": "tcp://127.0.0.1:502", "unit_id": 1}},
		field{"protocol", "modbus"}, field{"operation", op}, field{"decision", dec})
	if c.status != "" {
		fs := []field{{"call_id", c.id}, {"session_id", c.session}, {"function", c.function}, {"status", c.status}}
		if c.resCode != 0 {
			fs = append(fs, field{"code", c.resCode})
		}
		fs = append(fs, field{"latency_us", 1200})
		l.add(at.Add(time.Millisecond), "result", fs...)
	}
}

// orderedObject marshals as a JSON object with its fields in order.
type orderedObject []field

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{")
	for i, f := range o {
		if i > 0 {
			b.WriteString(",")
		}
		k, _ := json.Marshal(f.k)
		v, err := json.Marshal(f.v)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteString(":")
		b.Write(v)
	}
	b.WriteString("}")
	return b.Bytes(), nil
}

// build runs Build over the files and renders the page.
func build(t *testing.T, opts Options) (*Report, string) {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC) }
	}
	rep, err := Build(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	return rep, b.String()
}

// section is the page's <section id="id"> (the test fails without one).
func section(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<section id="`+id+`">`)
	if i < 0 {
		t.Fatalf("the page has no section %q", id)
	}
	j := strings.Index(page[i:], "</section>")
	return page[i : i+j]
}

// pageText is the text of some HTML as a reader sees it: tags dropped,
// entities decoded, white space runs as one space.
func pageText(h string) string {
	text := html.UnescapeString(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(h, " "))
	return strings.Join(strings.Fields(text), " ")
}

// checkFindings fails the test unless the report's findings hold each of
// want, and none says that there are events the report does not interpret.
func checkFindings(t *testing.T, rep *Report, want ...string) {
	t.Helper()
	p := rep.view()
	for _, w := range want {
		if !slices.Contains(p.Findings, w) {
			t.Errorf("findings lack %q: %q", w, p.Findings)
		}
	}
	for _, f := range p.Findings {
		if strings.Contains(f, "does not interpret") {
			t.Errorf("a finding says there are events the report does not interpret: %q", f)
		}
	}
}

// findingsWith returns the report's findings that contain s.
func findingsWith(rep *Report, s string) []string {
	var out []string
	for _, f := range rep.view().Findings {
		if strings.Contains(f, s) {
			out = append(out, f)
		}
	}
	return out
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
