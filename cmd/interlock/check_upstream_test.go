package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

// upstreamListeners replaces the listeners of the e2e gateway: a Modbus
// listener (upstream on the 4th line, one route's upstream on the 9th) and
// an OPC UA listener (upstream on the 13th).
const upstreamListeners = `  - name: plc1
    protocol: modbus
    listen: {mblisten}
    upstream: {mb}
    modbus:
      routes:
        - unit_ids: [7]
          target: drives
          upstream: {route}
  - name: ua1
    protocol: opcua
    listen: {ualisten}
    upstream: {ua}
    opcua:
      pki: ./pki
      anonymous: true
`

// upstreamGateway is an e2e gateway whose listeners are upstreamListeners
// with the addresses given; base is the line before the first listener.
func upstreamGateway(t *testing.T, mblisten, mb, route, ualisten, ua string) (g *gw, base int) {
	t.Helper()
	g = newGateway(t, gwOptions{upstreamPort: 502})
	b, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	before, rest, ok1 := strings.Cut(string(b), "listeners:\n")
	_, after, ok2 := strings.Cut(rest, "sources:\n")
	if !ok1 || !ok2 {
		t.Fatalf("the gateway configuration has no listeners or sources:\n%s", b)
	}
	ls := strings.NewReplacer("{mblisten}", mblisten, "{mb}", mb, "{route}", route, "{ualisten}", ualisten, "{ua}", ua).Replace(upstreamListeners)
	writeFile(t, g.config, before+"listeners:\n"+ls+"sources:\n"+after)
	return g, strings.Count(before, "\n") + 1
}

// An upstream the gateway could never dial, or one that is a listener of
// the same configuration (the gateway would connect to itself), fails
// check with one line naming the file, the line and key of that upstream,
// route or OPC UA endpoint URL.
func TestCheckRefusesBadUpstreams(t *testing.T) {
	t.Parallel()
	const (
		mb    = 4 // lines in upstreamListeners
		route = 9
		ua    = 13
	)
	for _, tc := range []struct {
		name, mblisten, mb, route, ua string
		line                          int
		want                          string
	}{
		{"port 0", "0.0.0.0:5020", "tcp://10.0.0.20:0", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "tcp://10.0.0.20:0": port 0 is not in 1..65535`},
		{"port over 65535", "0.0.0.0:5020", "tcp://10.0.0.20:70000", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "tcp://10.0.0.20:70000": port 70000 is not in 1..65535`},
		{"no port", "0.0.0.0:5020", "tcp://10.0.0.20", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "tcp://10.0.0.20" has no port: want tcp://host:port`},
		{"port not a number", "0.0.0.0:5020", "tcp://10.0.0.20:http", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "tcp://10.0.0.20:http" is not a URL: invalid port ":http" after host`},
		{"empty host", "0.0.0.0:5020", "tcp://:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "tcp://:502" has no host: want tcp://host:port`},
		{"scheme of another protocol", "0.0.0.0:5020", "opc.tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, `listeners[0].upstream: "opc.tcp://10.0.0.20:502": unsupported scheme "opc.tcp" (want tcp, rtuovertcp, tls or rtu)`},
		{"loop onto a wildcard listener", "0.0.0.0:502", "tcp://127.0.0.1:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, "listeners[0].upstream: tcp://127.0.0.1:502 is the gateway's own listener listeners[0].listen (listen: 0.0.0.0:502): the gateway would connect to itself"},
		{"loop onto the same host:port", "10.0.0.5:502", "tcp://10.0.0.5:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, "listeners[0].upstream: tcp://10.0.0.5:502 is the gateway's own listener listeners[0].listen (listen: 10.0.0.5:502): the gateway would connect to itself"},
		{"loop by localhost", "'[::]:502'", "tcp://localhost:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, "listeners[0].upstream: tcp://localhost:502 is the gateway's own listener listeners[0].listen (listen: [::]:502): the gateway would connect to itself"},
		{"localhost onto an IPv6 loopback listener", "'[::1]:502'", "tcp://localhost:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:4840",
			mb, "listeners[0].upstream: tcp://localhost:502 is the gateway's own listener listeners[0].listen (listen: [::1]:502): the gateway would connect to itself"},
		{"route by loopback onto a listener on localhost", "localhost:5020", "tcp://10.0.0.20:502", "tcp://127.0.0.1:5020", "opc.tcp://10.0.0.30:4840",
			route, "listeners[0].modbus.routes[0].upstream: tcp://127.0.0.1:5020 is the gateway's own listener listeners[0].listen (listen: localhost:5020): the gateway would connect to itself"},
		{"route port 0", "0.0.0.0:5020", "tcp://10.0.0.20:502", "rtuovertcp://10.0.0.21:0", "opc.tcp://10.0.0.30:4840",
			route, `listeners[0].modbus.routes[0].upstream: "rtuovertcp://10.0.0.21:0": port 0 is not in 1..65535`},
		{"route onto another listener", "0.0.0.0:5020", "tcp://10.0.0.20:502", "tcp://127.0.0.1:4841", "opc.tcp://10.0.0.30:4840",
			route, "listeners[0].modbus.routes[0].upstream: tcp://127.0.0.1:4841 is the gateway's own listener listeners[1].listen (listen: opc.tcp://127.0.0.1:4841): the gateway would connect to itself"},
		{"OPC UA scheme", "0.0.0.0:5020", "tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "tcp://10.0.0.30:4840",
			ua, `listeners[1].upstream: "tcp://10.0.0.30:4840" is not an opc.tcp://host:port URL`},
		{"OPC UA port over 65535", "0.0.0.0:5020", "tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "opc.tcp://10.0.0.30:484000/UA/Server",
			ua, `listeners[1].upstream: "opc.tcp://10.0.0.30:484000/UA/Server": port 484000 is not in 1..65535`},
		{"OPC UA empty host", "0.0.0.0:5020", "tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "opc.tcp://:4840/UA/Server",
			ua, `listeners[1].upstream: "opc.tcp://:4840/UA/Server" has no host: want opc.tcp://host:port`},
		{"OPC UA loop onto itself", "0.0.0.0:5020", "tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "opc.tcp://0.0.0.0:4841/UA/Server",
			ua, "listeners[1].upstream: opc.tcp://0.0.0.0:4841/UA/Server is the gateway's own listener listeners[1].listen (listen: opc.tcp://127.0.0.1:4841): the gateway would connect to itself"},
		{"OPC UA default port onto the Modbus listener", "0.0.0.0:4840", "tcp://10.0.0.20:502", "tcp://10.0.0.21:502", "opc.tcp://127.0.0.1",
			ua, "listeners[1].upstream: opc.tcp://127.0.0.1 is the gateway's own listener listeners[0].listen (listen: 0.0.0.0:4840): the gateway would connect to itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, base := upstreamGateway(t, tc.mblisten, tc.mb, tc.route, "opc.tcp://127.0.0.1:4841", tc.ua)
			var stdout, stderr bytes.Buffer
			err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr)
			want := fmt.Sprintf("%s:%d: %s", g.config, base+tc.line, tc.want)
			if err == nil || err.Error() != want {
				t.Errorf("check: %v\nwant %s", err, want)
			}
		})
	}
}

// Upstreams on other hosts, on another port of this machine, a serial line
// and an OPC UA endpoint URL with a path and no port (4840) pass check; an
// upstream host name that does not resolve is a warning at its line.
func TestCheckAcceptsGoodUpstreams(t *testing.T) {
	t.Parallel()
	mbPort, uaPort := freePort(t), freePort(t)
	g, base := upstreamGateway(t, fmt.Sprintf("127.0.0.1:%d", mbPort), fmt.Sprintf("tcp://127.0.0.1:%d", mbPort+1),
		"rtu:///dev/ttyS0?baud=19200", fmt.Sprintf("opc.tcp://127.0.0.1:%d", uaPort), "opc.tcp://plc.invalid/UA/Server")
	var stdout, stderr bytes.Buffer
	if err := cmdCertsInit([]string{"--pki", filepath.Join(g.dir, "pki"), "--uri", "urn:interlock:check:ua1", "--host", "127.0.0.1"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("certs init: %v\n%s", err, stderr.String())
	}
	stdout.Reset()
	if err := cmdCheck([]string{"--config", g.config}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("check: %v\n%s", err, stderr.String())
	}
	want := fmt.Sprintf("%s:%d: warning: listeners[1].upstream: host plc.invalid ", g.config, base+13)
	if !strings.Contains(stdout.String(), want) || !strings.Contains(stdout.String(), ": ok: 2 listeners, policy ") {
		t.Errorf("check printed\n%s\nwant a line starting %q and ok", stdout.String(), want)
	}
	if strings.Contains(stdout.String(), "listeners[0].") || strings.Contains(stdout.String(), "connect to itself") {
		t.Errorf("check printed\n%s\nwant nothing about listeners[0] and no loop", stdout.String())
	}
}

// An upstream host name is looked up as the ship receivers' are: one that
// does not resolve is a warning, and one that resolves here to an address
// of the gateway's own listener is a warning that the gateway would
// connect to itself (a literal address is an error of Load). A serial
// line and literal addresses are not looked up.
func TestCheckWarnsUpstreamHosts(t *testing.T) {
	t.Parallel()
	g, base := upstreamGateway(t, "0.0.0.0:5020", "tcp://gw-self.site:5020", "rtu:///dev/ttyS0", "opc.tcp://127.0.0.1:4841", "opc.tcp://plc.invalid:4840/UA")
	cfg, asked, got := warnWithDNS(t, g, map[string][]string{"gw-self.site": {"10.0.0.9", "127.0.0.1"}})
	if !slices.Equal(asked, []string{"gw-self.site", "plc.invalid"}) {
		t.Errorf("looked up %q, want the two names only", asked)
	}
	want := []string{
		fmt.Sprintf("%s:%d: warning: listeners[0].upstream: host gw-self.site resolves here to 127.0.0.1: port 5020 there is the gateway's own listener listeners[0].listen (listen: 0.0.0.0:5020): the gateway would connect to itself", cfg.File, base+4),
		fmt.Sprintf("%s:%d: warning: listeners[1].upstream: host plc.invalid does not resolve here (no such host): the gateway cannot reach it, and every call through listener ua1 fails until it does", cfg.File, base+13),
	}
	if got != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

// A listen host name other than localhost is looked up by check, as Go's
// listener does (its first IPv4 address, else its first): an upstream,
// literal or a name, that reaches that address on the listener's port is
// a warning that the gateway would connect to itself. An address of the
// name the listener does not take (fd00::5) is not warned of.
func TestCheckWarnsUpstreamsOntoNamedListeners(t *testing.T) {
	t.Parallel()
	g, base := upstreamGateway(t, "gw.site:5020", "tcp://10.0.0.5:5020", "tcp://plc-alias.site:5020", "opc.tcp://127.0.0.1:4841", "opc.tcp://[fd00::5]:5020/UA")
	cfg, asked, got := warnWithDNS(t, g, map[string][]string{"gw.site": {"fd00::5", "10.0.0.5"}, "plc-alias.site": {"10.0.0.5"}})
	if !slices.Equal(asked, []string{"gw.site", "plc-alias.site"}) {
		t.Errorf("looked up %q, want the listener's and the route's names", asked)
	}
	want := []string{
		fmt.Sprintf("%s:%d: warning: listeners[0].modbus.routes[0].upstream: host plc-alias.site resolves here to 10.0.0.5: port 5020 there is the gateway's own listener listeners[0].listen (listen: gw.site:5020, which resolves here to 10.0.0.5): the gateway would connect to itself", cfg.File, base+9),
		fmt.Sprintf("%s:%d: warning: listeners[0].upstream: tcp://10.0.0.5:5020 is the gateway's own listener listeners[0].listen (listen: gw.site:5020, which resolves here to 10.0.0.5): the gateway would connect to itself", cfg.File, base+4),
	}
	if got != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

// warnWithDNS loads the gateway's configuration and runs check's host
// warnings with a DNS that answers names as in answers, and no such host
// to the others: it returns the names looked up, sorted, and the warnings.
func warnWithDNS(t *testing.T, g *gw, answers map[string][]string) (cfg *config.Config, asked []string, warnings string) {
	t.Helper()
	cfg, err := config.Load(g.config)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	lookup := func(_ context.Context, host string) ([]string, error) {
		mu.Lock()
		asked = append(asked, host)
		mu.Unlock()
		if a, ok := answers[host]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out bytes.Buffer
	warnHosts(cfg, &out, lookup)
	slices.Sort(asked)
	return cfg, asked, strings.TrimSpace(out.String())
}
