package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
	_ "github.com/interlock-ics/interlock/gateway/modbus"
)

const good = `gateway:
  id: gw1
listeners:
  - name: plc1
    protocol: modbus
    listen: 127.0.0.1:5020
    upstream: tcp://127.0.0.1:502
    modbus:
      deny_action: close
sources:
  - address: 10.0.0.0/24
    name: lab
    user: alice
    roles: [engineer]
  - address: 10.0.1.5
    name: ews
policy:
  path: ./policy
audit:
  path: ./audit/audit.jsonl
`

func write(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsAndPaths(t *testing.T) {
	p := write(t, good)
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(p)
	if c.Policy.Path != filepath.Join(dir, "policy") || c.Audit.Path != filepath.Join(dir, "audit/audit.jsonl") {
		t.Errorf("paths not resolved against the config file: %q %q", c.Policy.Path, c.Audit.Path)
	}
	if c.Policy.Mode != config.ModeEnforce || c.Policy.Timeout != gateway.DefaultDecisionTimeout {
		t.Errorf("policy defaults: %+v", c.Policy)
	}
	l := c.Listeners[0]
	if l.Limits.MaxConns != gateway.DefaultMaxConns || l.Limits.RequestTimeout != gateway.DefaultRequestTimeout {
		t.Errorf("limit defaults: %+v", l.Limits)
	}
	if l.Limits.MaxConnsPerSource != 16 {
		t.Errorf("limits.max_conns_per_source default: %d, want 16 (a quarter of 100, at most 16)", l.Limits.MaxConnsPerSource)
	}
	if l.Limits.FirstRequestTimeout != gateway.DefaultFirstRequestTimeout || gateway.DefaultFirstRequestTimeout != 10*time.Second {
		t.Errorf("limits.first_request_timeout default: %v, want 10s", l.Limits.FirstRequestTimeout)
	}
	if l.Limits.RejectedRecordsPerSource != 20 || l.Limits.RejectedRecordsWindow != time.Minute {
		t.Errorf("limits.rejected_records_per_source, rejected_records_window defaults: %d, %v; want 20, 1m",
			l.Limits.RejectedRecordsPerSource, l.Limits.RejectedRecordsWindow)
	}
	if c.Audit.ReadsOnFailure != "alert" || c.Audit.SyncInterval != time.Second {
		t.Errorf("audit defaults: %+v", c.Audit)
	}
	inv := c.Inventory()
	if len(inv) != 2 || inv[1].Prefix.Bits() != 32 || inv[0].User != "alice" {
		t.Errorf("inventory: %+v", inv)
	}
	var o struct {
		DenyAction string `yaml:"deny_action"`
	}
	if err := l.Options()(&o); err != nil || o.DenyAction != "close" {
		t.Errorf("modbus section: %+v, %v", o, err)
	}
}

func TestLoadErrorsNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, from, to string
		want           []string // substrings of the error
	}{
		{"unknown top key", "gateway:\n", "gatway:\n  id: x\ngateway:\n", []string{"config.yaml:1", "gatway", `unknown key "gatway"`}},
		{"unknown listener key", "    listen: 127.0.0.1:5020\n", "    listen: 127.0.0.1:5020\n    upstrem: x\n", []string{"config.yaml:7", "listeners[0].upstrem", "unknown key"}},
		{"missing id", "  id: gw1\n", "  log_level: info\n", []string{"config.yaml:1:", "gateway.id", "missing"}},
		{"bad protocol", "protocol: modbus", "protocol: dnp3", []string{"config.yaml:5", "listeners[0].protocol", `"dnp3" is not a known protocol`}},
		{"bad listen", "listen: 127.0.0.1:5020", "listen: 127.0.0.1", []string{"listeners[0].listen", "has no port"}},
		{"bad mode", "  path: ./policy\n", "  path: ./policy\n  mode: audit\n", []string{"config.yaml:19:", "policy.mode", `"audit" is not one of enforce, monitor`}},
		{"bad cidr", "10.0.0.0/24", "10.0.0.0/33", []string{"config.yaml:11:", "sources[0].address", "not a CIDR"}},
		{"bad duration", "    modbus:\n", "    limits:\n      idle_timeout: soon\n    modbus:\n", []string{"config.yaml:9", "listeners[0].limits.idle_timeout", `"soon" is not a duration`}},
		{"bad policy duration", "  path: ./policy\n", "  path: ./policy\n  timeout: 100 ms\n", []string{"config.yaml:19", "policy.timeout", `"100 ms" is not a duration`}},
		{"not a list", "    name: ews\n", "    name: ews\n    roles: admin\n", []string{"config.yaml:17", "sources[1].roles", "not a list"}},
		{"section of another protocol", "    modbus:\n", "    opcua:\n", []string{"listeners[0].opcua", "unknown key"}},
		{"missing policy dir", "path: ./policy", "path: ./nowhere", []string{"config.yaml:18:", "policy.path", "no such file"}},
		{"duplicate names", "listeners:\n", "listeners:\n  - name: plc1\n    protocol: modbus\n    listen: 127.0.0.1:1\n    upstream: tcp://127.0.0.1:2\n", []string{"listeners[1].name", "unique"}},
		{"a second document", "audit:\n  path: ./audit/audit.jsonl\n", "audit:\n  path: ./audit/audit.jsonl\n---\ngateway:\n  id: other\n", []string{"config.yaml:21:", "a second YAML document"}},
		{"a mapping for the listeners", "listeners:\n  - name: plc1\n", "listeners:\n  name: plc1\n  x:\n", []string{"config.yaml:4:", "listeners", "a mapping (key: value lines) where a list is wanted"}},
		{"negative timeout", "    modbus:\n", "    limits:\n      max_conns: 5\n      request_timeout: -2s\n    modbus:\n", []string{"config.yaml:10:", "listeners[0].limits.request_timeout", "-2s is negative"}},
		{"negative per-source cap", "    modbus:\n", "    limits:\n      max_conns_per_source: -1\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.max_conns_per_source", "-1 is negative"}},
		{"per-source cap over max_conns", "    modbus:\n", "    limits:\n      max_conns: 5\n      max_conns_per_source: 6\n    modbus:\n", []string{"config.yaml:10:", "listeners[0].limits.max_conns_per_source", "6 is more than limits.max_conns (5)"}},
		{"negative connection rate", "    modbus:\n", "    limits:\n      conn_rate_per_source: -1\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.conn_rate_per_source", "-1: want new connections a second, 0 for no limit"}},
		{"connection rate not a number", "    modbus:\n", "    limits:\n      conn_rate_per_source: .nan\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.conn_rate_per_source", "NaN: want new connections a second"}},
		{"a fraction where a whole number is wanted", "    modbus:\n", "    limits:\n      max_conns: 0.5\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.max_conns", `"0.5" is not a whole number`}},
		{"audit path a folder", "  path: ./audit/audit.jsonl\n", "  path: ./audit/\n", []string{"config.yaml:20:", "audit.path", `"./audit/" ends with /, a folder: name the log file in it, such as audit/audit.jsonl`}},
		{"negative connection burst", "    modbus:\n", "    limits:\n      conn_burst_per_source: -3\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.conn_burst_per_source", "-3 is negative"}},
		{"negative rejected records cap", "    modbus:\n", "    limits:\n      rejected_records_per_source: -1\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.rejected_records_per_source", "-1 is negative"}},
		{"rejected records window under a second", "    modbus:\n", "    limits:\n      rejected_records_window: 500ms\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.rejected_records_window", "500ms is under 1s"}},
		{"negative rejected records window", "    modbus:\n", "    limits:\n      rejected_records_window: -1m\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.rejected_records_window", "-1m0s is under 1s"}},
		{"negative first request timeout", "    modbus:\n", "    limits:\n      first_request_timeout: -1s\n    modbus:\n", []string{"config.yaml:9:", "listeners[0].limits.first_request_timeout", "-1s is negative"}},
		{"negative evaluation cap", "  path: ./policy\n", "  path: ./policy\n  max_concurrent_evaluations: -1\n", []string{"config.yaml:19:", "policy.max_concurrent_evaluations", "-1 is negative"}},
		{"negative policy timeout", "  path: ./policy\n", "  path: ./policy\n  timeout: -1s\n", []string{"config.yaml:19:", "policy.timeout", "-1s is negative"}},
		{"two listeners on one address", "sources:\n", "  - name: plc2\n    protocol: modbus\n    listen: 127.0.0.1:5020\n    upstream: tcp://127.0.0.1:503\nsources:\n", []string{"config.yaml:12:", "listeners[1].listen", "listeners[0] listens on 127.0.0.1:5020 already"}},
		{"two listeners on port 0 (the system's choice) and a route target named as one", "sources:\n", "  - name: plc2\n    protocol: modbus\n    listen: 127.0.0.1:0\n    upstream: tcp://127.0.0.1:503\n  - name: plc3\n    protocol: modbus\n    listen: 127.0.0.1:0\n    modbus:\n      routes:\n        - unit_ids: [1]\n          upstream: tcp://127.0.0.1:504\n          target: plc2\nsources:\n", []string{"listeners[2].modbus.routes[0].target", `"plc2" is also listeners[1].name`}},
		{"a listener on every address and one on the same port", "sources:\n", "  - name: plc2\n    protocol: modbus\n    listen: :5020\n    upstream: tcp://127.0.0.1:503\nsources:\n", []string{"listeners[1].listen", "already"}},
		{"one source address twice", "    name: ews\n", "    name: ews\n  - address: 10.0.1.5/32\n    name: other\n", []string{"config.yaml:17:", "sources[2].address", "also sources[1].address"}},
		{"a route target named as another listener", "sources:\n", "  - name: plc2\n    protocol: modbus\n    listen: 127.0.0.1:5021\n    modbus:\n      routes:\n        - unit_ids: [1]\n          upstream: tcp://127.0.0.1:503\n          target: plc1\nsources:\n", []string{"config.yaml:17:", "listeners[1].modbus.routes[0].target", `"plc1" is also listeners[0].name`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.Replace(good, tc.from, tc.to, 1)
			if body == good {
				t.Fatalf("test case does not change the config")
			}
			_, err := config.Load(write(t, body))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPerSourceCapDefaultFollowsMaxConns(t *testing.T) {
	for _, tc := range []struct{ maxConns, perSource, want int }{
		{8, 0, 2}, {4, 0, 2}, {2, 0, 2}, {1, 0, 1}, {1000, 0, 16}, {8, 8, 8}, {100, 3, 3},
	} {
		to := fmt.Sprintf("    limits:\n      max_conns: %d\n", tc.maxConns)
		if tc.perSource != 0 {
			to += fmt.Sprintf("      max_conns_per_source: %d\n", tc.perSource)
		}
		c, err := config.Load(write(t, strings.Replace(good, "    modbus:\n", to+"    modbus:\n", 1)))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Listeners[0].Limits.MaxConnsPerSource; got != tc.want {
			t.Errorf("max_conns %d, max_conns_per_source %d: got %d, want %d", tc.maxConns, tc.perSource, got, tc.want)
		}
	}
}

// limits.conn_rate_per_source: absent, 10 a second; 0, no limit. The
// burst follows max_conns_per_source unless set.
func TestConnRateDefaults(t *testing.T) {
	for _, tc := range []struct {
		limits string
		rate   float64
		burst  int
	}{
		{"", gateway.DefaultConnRatePerSource, 20},
		{"      conn_rate_per_source: 0\n", 0, 20},
		{"      conn_rate_per_source: 0.5\n      conn_burst_per_source: 3\n", 0.5, 3},
		{"      max_conns_per_source: 50\n", gateway.DefaultConnRatePerSource, 50},
	} {
		c, err := config.Load(write(t, strings.Replace(good, "    modbus:\n", "    limits:\n      max_conns: 100\n"+tc.limits+"    modbus:\n", 1)))
		if err != nil {
			t.Fatalf("%q: %v", tc.limits, err)
		}
		l := c.Listeners[0].Limits
		if l.ConnRate() != tc.rate || l.ConnBurstPerSource != tc.burst {
			t.Errorf("%q: conn_rate_per_source %v, conn_burst_per_source %d; want %v, %d", tc.limits, l.ConnRate(), l.ConnBurstPerSource, tc.rate, tc.burst)
		}
	}
}

func TestSectionDecodeRejectsUnknownKeysWithLine(t *testing.T) {
	body := strings.Replace(good, "      deny_action: close\n", "      deny_action: close\n      deny_actoin: close\n", 1)
	c, err := config.Load(write(t, body))
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		DenyAction string `yaml:"deny_action"`
	}
	err = c.Listeners[0].Options()(&o)
	if err == nil || !strings.Contains(err.Error(), "config.yaml:10") || !strings.Contains(err.Error(), `unknown key "deny_actoin"`) {
		t.Fatalf("got %v; want the file, line 10 and the unknown key", err)
	}
}

// modbusSection is the part of a modbus section the fraction tests decode.
type modbusSection struct {
	DenyAction    string `yaml:"deny_action"`
	DenyException int    `yaml:"deny_exception"`
	Routes        []struct {
		UnitIDs []uint8 `yaml:"unit_ids"`
	} `yaml:"routes"`
}

// yaml.v3 drops the fraction of 1.5 decoded into an int: the protocol's
// section refuses it, naming the line and key, as it does "abc".
func TestSectionDecodeRejectsFractions(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{"      deny_exception: 1.5\n", `config.yaml:10: listeners[0].modbus.deny_exception: "1.5" is not a whole number`},
		{"      routes:\n        - unit_ids: [3, 4.25]\n", `config.yaml:11: listeners[0].modbus.routes[0].unit_ids[1]: "4.25" is not a whole number`},
	} {
		c, err := config.Load(write(t, strings.Replace(good, "      deny_action: close\n", "      deny_action: close\n"+tc.section, 1)))
		if err != nil {
			t.Fatal(err)
		}
		var o modbusSection
		if err := c.Listeners[0].Options()(&o); err == nil || !strings.HasSuffix(err.Error(), tc.want) {
			t.Errorf("%q: got %v (decoded %+v); want it to end with %q", tc.section, err, o, tc.want)
		}
	}
	// whole numbers written with a point or an exponent are still whole
	c, err := config.Load(write(t, strings.Replace(good, "      deny_action: close\n", "      deny_action: close\n      deny_exception: 2.0\n      routes:\n        - unit_ids: [1e1]\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var o modbusSection
	if err := c.Listeners[0].Options()(&o); err != nil || o.DenyException != 2 || len(o.Routes) != 1 || o.Routes[0].UnitIDs[0] != 10 {
		t.Errorf("2.0 and 1e1: got %v, %+v; want 2 and 10", err, o)
	}
}

// An engine's complaint that begins with a key is put at that key: in the
// protocol's section, or on the listener.
func TestSectionErrorNamesTheKey(t *testing.T) {
	c, err := config.Load(write(t, good))
	if err != nil {
		t.Fatal(err)
	}
	l := &c.Listeners[0]
	for _, tc := range []struct{ err, want string }{
		{`deny_action: "x" is not one of exception, close`, `config.yaml:9: listeners[0].modbus.deny_action: "x" is not one of exception, close`},
		{"upstream: no host", "config.yaml:7: listeners[0].upstream: no host"},
		{"routes[0].upstream: missing", "config.yaml:4: listeners[0].modbus: routes[0].upstream: missing"},
		{"the section does not add up", "config.yaml:4: listeners[0].modbus: the section does not add up"},
	} {
		if got := l.SectionError(errors.New(tc.err)).Error(); !strings.HasSuffix(got, tc.want) {
			t.Errorf("%q: %q, want it to end with %q", tc.err, got, tc.want)
		}
	}
	// a key missing from an entry of the section: at the entry
	c, err = config.Load(write(t, strings.Replace(good, "      deny_action: close\n",
		"      deny_action: close\n      routes:\n        - unit_ids: [1]\n          upstream: tcp://127.0.0.1:502\n        - unit_ids: [2]\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	want := "config.yaml:13: listeners[0].modbus.routes[1].upstream: missing"
	if got := c.Listeners[0].SectionError(errors.New("routes[1].upstream: missing")).Error(); !strings.HasSuffix(got, want) {
		t.Errorf("%q, want it to end with %q", got, want)
	}
}

func TestEmptyFile(t *testing.T) {
	_, err := config.Load(write(t, ""))
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("got %v", err)
	}
}

// The ticket file beside a relative admin socket is resolved once, against
// the configuration's folder, whatever the working folder.
func TestAdminTicketsBesideTheSocket(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "tk")
	if err := os.MkdirAll(filepath.Join(sub, "policy"), 0o750); err != nil {
		t.Fatal(err)
	}
	body := good + "  ship:\n    - name: siem\n      type: syslog\n      address: 127.0.0.1:6514\n" + "admin:\n  socket: ./admin.sock\n"
	if err := os.WriteFile(filepath.Join(sub, "config.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err := config.Load(filepath.Join("tk", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join("tk", "tickets.json"); c.Admin.Tickets != want {
		t.Errorf("admin.tickets %q, want %q", c.Admin.Tickets, want)
	}
	if want := c.Audit.Path + ".ship-siem.cursor"; len(c.Audit.Ship) != 1 || c.Audit.Ship[0].Cursor != want ||
		!strings.HasPrefix(want, "tk"+string(filepath.Separator)) || strings.HasPrefix(want, filepath.Join("tk", "tk")) {
		t.Errorf("ship cursor %+v, want %q under tk/ once", c.Audit.Ship, want)
	}
}
