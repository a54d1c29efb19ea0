package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// shipConfig is a gateway configuration with the ship entries given (one
// per line, each on its own line of the file: line first+i).
func shipConfig(t *testing.T, entries ...string) (cfg *config.Config, first int) {
	t.Helper()
	g := newGateway(t, gwOptions{upstreamPort: 502})
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	first = bytes.Count(b, []byte("\n")) + 2
	var sb strings.Builder
	sb.Write(b)
	sb.WriteString("  ship:\n")
	for _, e := range entries {
		sb.WriteString("    - " + e + "\n")
	}
	writeFile(t, g.config, sb.String())
	cfg, err = config.Load(g.config)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, first
}

// A ship host that does not resolve is a warning naming the file, the line
// and the key; literal addresses are not looked up; a DNS that does not
// answer holds check for hostTimeout at most.
func TestCheckWarnsShipHostsThatDoNotResolve(t *testing.T) {
	t.Parallel()
	cfg, first := shipConfig(t,
		"{name: a, type: syslog, address: 'siem.invalid:6514'}",
		"{name: b, type: syslog, address: '10.0.0.9:514'}",
		"{name: c, type: http, url: 'https://[fd00::9]:8088/raw'}",
		"{name: d, type: http, url: 'https://hec.invalid:8088/raw'}",
		"{name: e, type: syslog, address: 'siem.site:6514'}",
		"{name: f, type: syslog, address: 'slow.site:6514'}",
	)
	var mu sync.Mutex
	var asked []string
	lookup := func(ctx context.Context, host string) ([]string, error) {
		mu.Lock()
		asked = append(asked, host)
		mu.Unlock()
		switch host {
		case "siem.site":
			return []string{"10.0.0.10"}, nil
		case "slow.site":
			<-ctx.Done()
			return nil, &net.DNSError{Err: "i/o timeout", Name: host, IsTimeout: true}
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out bytes.Buffer
	start := time.Now()
	warnHosts(cfg, &out, lookup)
	if took := time.Since(start); took > hostTimeout+time.Second {
		t.Errorf("the lookups took %v, want at most about %v", took, hostTimeout)
	}
	if len(asked) != 4 {
		t.Errorf("looked up %q, want the four names and no literal address", asked)
	}
	want := []string{
		fmt.Sprintf("%s:%d: warning: audit.ship[0].address: host siem.invalid does not resolve here (no such host)", cfg.File, first),
		fmt.Sprintf("%s:%d: warning: audit.ship[3].url: host hec.invalid does not resolve here (no such host)", cfg.File, first+3),
		fmt.Sprintf("%s:%d: warning: audit.ship[5].address: host slow.site: no answer from DNS within 2s", cfg.File, first+5),
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("warnings:\n%s\nwant %d", out.String(), len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("warning %d:\n%s\nwant it to start\n%s", i, lines[i], w)
		}
	}
}

// check with a syslog receiver whose host cannot resolve (.invalid, RFC
// 6761) warns and passes.
func TestE2EShipCheckWarnsHostNotResolving(t *testing.T) {
	t.Parallel()
	cfg, first := shipConfig(t, "{name: s, type: syslog, address: 'no-such-host.invalid:514'}")
	r := interlock(t, "check", "--config", cfg.File)
	want := fmt.Sprintf("%s:%d: warning: audit.ship[0].address: host no-such-host.invalid ", cfg.File, first)
	if r.code != 0 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, cfg.File+": ok: 1 listener, policy ") {
		t.Errorf("exit %d, want 0 and a warning starting %q\nstdout: %s\nstderr: %s", r.code, want, r.stdout, r.stderr)
	}
}

// The decision log service's host is checked as the ship receivers' are:
// one that does not resolve is a warning naming the file, the line and
// policy.decision_logs.url; a literal address is not looked up.
func TestCheckWarnsDecisionLogHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want string // "": no warning
	}{
		{"https://dl.invalid:8443/", "warning: policy.decision_logs.url: host dl.invalid does not resolve here (no such host): decisions would be held"},
		{"http://10.0.0.9:8181/", ""},
	} {
		g := newGateway(t, gwOptions{upstreamPort: 502})
		b, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		before, after, ok := strings.Cut(string(b), "audit:\n")
		if !ok {
			t.Fatalf("the gateway configuration has no audit section:\n%s", b)
		}
		line := strings.Count(before, "\n") + 2
		writeFile(t, g.config, before+"  decision_logs:\n    url: "+tc.url+"\naudit:\n"+after)
		cfg, err := config.Load(g.config)
		if err != nil {
			t.Fatal(err)
		}
		var asked []string
		lookup := func(_ context.Context, host string) ([]string, error) {
			asked = append(asked, host)
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		var out bytes.Buffer
		warnHosts(cfg, &out, lookup)
		if tc.want == "" {
			if out.Len() > 0 || len(asked) > 0 {
				t.Errorf("%s: looked up %q and warned %q, want neither", tc.url, asked, out.String())
			}
			continue
		}
		if want := fmt.Sprintf("%s:%d: %s", cfg.File, line, tc.want); !strings.HasPrefix(out.String(), want) {
			t.Errorf("%s: warned %q\nwant it to start %q", tc.url, out.String(), want)
		}
	}
}
