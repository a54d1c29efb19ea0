// Package config reads and checks the gateway's YAML configuration
// (ARCHITECTURE.md, "Contract: configuration"). Every error names the file,
// the line where known, the key and what is wrong.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/interlock-ics/interlock/gateway"
)

// Config is the whole configuration file.
type Config struct {
	Gateway   Gateway    `yaml:"gateway"`
	Listeners []Listener `yaml:"listeners"`
	Sources   []Source   `yaml:"sources"`
	Policy    Policy     `yaml:"policy"`
	Audit     Audit      `yaml:"audit"`
	Admin     Admin      `yaml:"admin"`

	// File is the path the configuration was read from; relative paths in
	// it are resolved against its directory.
	File string `yaml:"-"`
	// root is the parsed document, for the line an error names.
	root *yaml.Node
}

// Gateway is the `gateway:` section.
type Gateway struct {
	ID       string `yaml:"id"`
	LogLevel string `yaml:"log_level"` // operational log: debug, info, warn, error
}

// Listener is one entry of `listeners:`.
type Listener struct {
	Name     string `yaml:"name"`
	Protocol string `yaml:"protocol"`
	Listen   string `yaml:"listen"`
	Upstream string `yaml:"upstream"`
	Limits   Limits `yaml:"limits"`
	// TLS makes the listener Modbus/TCP Security (tls.go); nil: plain TCP.
	TLS *ListenerTLS `yaml:"tls"`
	// Sections holds the protocol's own section (such as `modbus:`), decoded
	// by the engine through Options.
	Sections map[string]yaml.Node `yaml:",inline"`

	line  int
	index int
	file  string
	root  *yaml.Node // the whole document, for the lines of its keys
}

// Limits is a listener's `limits:` section.
type Limits struct {
	MaxConns            int           `yaml:"max_conns"`
	MaxConnsPerSource   int           `yaml:"max_conns_per_source"`
	FirstRequestTimeout time.Duration `yaml:"first_request_timeout"`
	IdleTimeout         time.Duration `yaml:"idle_timeout"`
	RequestTimeout      time.Duration `yaml:"request_timeout"`

	// ConnRatePerSource is new connections a second per source address;
	// absent: gateway.DefaultConnRatePerSource, 0: no limit (ConnRate).
	ConnRatePerSource  *float64 `yaml:"conn_rate_per_source"`
	ConnBurstPerSource int      `yaml:"conn_burst_per_source"`

	// RejectedRecordsPerSource is the request.rejected records one source
	// address leaves in full per RejectedRecordsWindow; the rest are
	// counted in request.rejected_suppressed.
	RejectedRecordsPerSource int           `yaml:"rejected_records_per_source"`
	RejectedRecordsWindow    time.Duration `yaml:"rejected_records_window"`
}

// ConnRate is limits.conn_rate_per_source: the default when absent, 0
// when turned off.
func (l Limits) ConnRate() float64 {
	if l.ConnRatePerSource == nil {
		return gateway.DefaultConnRatePerSource
	}
	return *l.ConnRatePerSource
}

// Source is one entry of the source inventory (`sources:`).
type Source struct {
	Address string   `yaml:"address"` // an IP address or a CIDR block
	Name    string   `yaml:"name"`
	Owner   string   `yaml:"owner"`
	User    string   `yaml:"user"`
	Roles   []string `yaml:"roles"`
}

// Policy is the `policy:` section.
type Policy struct {
	// Path is a policy directory, an OPA bundle file (.tar.gz), or the
	// http:// or https:// URL of a bundle server.
	Path           string        `yaml:"path"`
	Mode           string        `yaml:"mode"` // enforce or monitor
	Timeout        time.Duration `yaml:"timeout"`
	ReloadInterval time.Duration `yaml:"reload_interval"`
	DecisionCache  DecisionCache `yaml:"decision_cache"`
	// MaxConcurrentEvaluations caps the evaluations running at once; a
	// call waits for a free one within Timeout. 0: twice the CPUs.
	MaxConcurrentEvaluations int `yaml:"max_concurrent_evaluations"`

	// Bundles. BundleKey verifies signed bundles (a PEM public key or
	// certificate, or a file holding an HMAC secret); with it, an unsigned
	// or tampered bundle, or one signed with another key id, is refused.
	BundleKey      string        `yaml:"bundle_key"`
	BundleKeyID    string        `yaml:"bundle_key_id"`
	BundleKeyAlg   string        `yaml:"bundle_key_alg"`   // default follows the key: RS256, ES256…, HS256
	BundleScope    string        `yaml:"bundle_scope"`     // must match the signature's scope claim
	BundleCA       string        `yaml:"bundle_ca"`        // PEM roots for an https bundle server instead of the system's
	BundleMaxBytes int64         `yaml:"bundle_max_bytes"` // download and unpacked size; default 64 MiB
	BundleTimeout  time.Duration `yaml:"bundle_timeout"`   // one request to the bundle server; default 30s

	// DecisionLogs sends every decision, in OPA's decision log format, to
	// a decision log service (best effort, beside the audit log).
	DecisionLogs *DecisionLogs `yaml:"decision_logs"`
}

// DecisionLogs is `policy.decision_logs:`.
type DecisionLogs struct {
	URL       string        `yaml:"url"`        // service; batches go to URL/logs (OPA's decision log API)
	TokenFile string        `yaml:"token_file"` // bearer token, read at start; mode 0600
	CA        string        `yaml:"ca"`         // PEM roots for an https URL instead of the system's
	Interval  time.Duration `yaml:"interval"`   // longest wait of an event before its upload; default 5s
	MaxEvents int           `yaml:"max_events"` // events held while the service is away; default 10000
	Timeout   time.Duration `yaml:"timeout"`    // one upload; default 10s
	Token     string        `yaml:"-"`          // read from TokenFile
}

// DecisionCache is `policy.decision_cache:`. Repeated identical calls (but
// for time and ids) within TTL reuse the verdict; time-based rules are
// therefore honoured within TTL. Turn it off for a policy that asks the
// network (http.send).
type DecisionCache struct {
	Disabled   bool          `yaml:"disabled"`
	TTL        time.Duration `yaml:"ttl"`         // default 1s
	MaxEntries int           `yaml:"max_entries"` // default 65536
}

// Audit is the `audit:` section.
type Audit struct {
	Path string `yaml:"path"`
	// ReadsOnFailure says what happens to read-only calls when the audit log
	// cannot take their record: "alert" (forward, log an error) or "deny".
	// State-changing calls are always denied.
	ReadsOnFailure string        `yaml:"reads_on_failure"`
	SyncInterval   time.Duration `yaml:"sync_interval"`

	// SigningKey is an Ed25519 private key (`interlock audit keygen`) that
	// signs checkpoints every CheckpointEvery records or CheckpointInterval;
	// without it the log has no checkpoints.
	SigningKey         string        `yaml:"signing_key"`
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`

	// Rotation by size and by age of the live file (zero: off), and
	// retention of rotated files by age and by the whole log's size (zero:
	// keep everything).
	RotateSize     ByteSize      `yaml:"rotate_size"`
	RotateInterval time.Duration `yaml:"rotate_interval"`
	RetainDays     int           `yaml:"retain_days"`
	RetainBytes    ByteSize      `yaml:"retain_bytes"`

	// WarnFillPercent is the fill level of the audit filesystem that raises
	// a warning, checked every CapacityInterval.
	WarnFillPercent  float64       `yaml:"warn_fill_percent"`
	CapacityInterval time.Duration `yaml:"capacity_interval"`

	// Ship lists the SIEMs every record is shipped to (ship.go).
	Ship []Ship `yaml:"ship"`
}

// ByteSize is a size in bytes, written as a number of bytes or with a unit:
// kB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
type ByteSize int64

var byteUnits = []struct {
	suffix string // lower case
	n      int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12}, {"b", 1},
}

// ParseByteSize reads a size such as 100MB, 1GiB or 4096; units are not
// case sensitive.
func ParseByteSize(s string) (ByteSize, error) {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(strings.ToLower(num), u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.n
			break
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || n*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (such as 100MB, 1GiB, or a number of bytes)", s)
	}
	return ByteSize(n * float64(mult)), nil
}

// UnmarshalYAML reads a ByteSize; an error names the line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %q is not a size (such as 100MB, 1GiB, or a number of bytes)", n.Line, n.Value)
	}
	*b = v
	return nil
}

// Admin is the `admin:` section: the local administration socket through
// which `interlock ticket …` changes the open change tickets.
type Admin struct {
	Socket string `yaml:"socket"` // Unix socket; no admin interface when empty
	// AllowedUsers may use it besides the user running the gateway.
	AllowedUsers []string `yaml:"allowed_users"`
	// Tickets is where open tickets are kept across restarts (default
	// tickets.json beside the socket).
	Tickets string `yaml:"tickets"`
}

// Policy modes.
const (
	ModeEnforce = "enforce"
	ModeMonitor = "monitor"
)

// Defaults.
const (
	DefaultPolicyReload       = time.Second
	DefaultSyncInterval       = time.Second
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = time.Minute
	DefaultWarnFillPercent    = 80
	DefaultCapacityInterval   = 10 * time.Second
)

// Error is a configuration error: file, line (0 when unknown), key, problem.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key == "" {
		return loc + ": " + e.Msg
	}
	return loc + ": " + e.Key + ": " + e.Msg
}

// Load reads, decodes and checks a configuration file, fills in defaults,
// and resolves relative paths against the file's directory.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: err.Error()}
	}
	return Parse(path, b)
}

// Parse decodes and checks a configuration read from file.
func Parse(file string, b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, yamlError(file, 0, "", nil, err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "the file is empty"}
		}
		return nil, yamlError(file, 0, "", &root, err)
	}
	if err := checkWholeNumbers(file, &root, &c, ""); err != nil {
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := 0
		if err == nil {
			line = next.Line
		}
		return nil, &Error{File: file, Line: line, Msg: "a second YAML document (after ---): the configuration is one document, and the rest would be ignored"}
	}
	c.File, c.root = file, &root
	for i, line := range listenerLines(&root) {
		if i < len(c.Listeners) {
			c.Listeners[i].line = line
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

// keyAt returns the path (gateway.id, listeners[0].limits.idle_timeout) of
// the key or value at line in a document, or "".
func keyAt(n *yaml.Node, line int) string {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return keyAt(n.Content[0], line)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Line == line && (v.Kind == yaml.ScalarNode || v.Line == line) {
				return k.Value
			}
			if sub := keyAt(v, line); sub != "" {
				return joinKey(k.Value, sub)
			}
			if k.Line == line {
				return k.Value
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if sub := keyAt(item, line); sub != "" {
				if strings.HasPrefix(sub, "[") {
					return fmt.Sprintf("[%d]%s", i, sub)
				}
				return fmt.Sprintf("[%d].%s", i, sub)
			}
			if item.Line == line && item.Kind == yaml.ScalarNode {
				return fmt.Sprintf("[%d]", i)
			}
		}
	}
	return ""
}

func joinKey(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	case strings.HasPrefix(b, "["):
		return a + b
	}
	return a + "." + b
}

// listenerLines returns the line of each entry of `listeners:`.
func listenerLines(root *yaml.Node) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "listeners" && m.Content[i+1].Kind == yaml.SequenceNode {
			var lines []int
			for _, item := range m.Content[i+1].Content {
				lines = append(lines, item.Line)
			}
			return lines
		}
	}
	return nil
}

func (c *Config) errf(line int, key, format string, args ...any) error {
	if line == 0 {
		line = lineOf(c.root, key)
	}
	return &Error{File: c.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// lineOf returns the line of key (policy.mode, sources[0].address) in the
// document, or of the nearest part of it that is there (gateway: for a
// missing gateway.id); 0 when no part is.
func lineOf(root *yaml.Node, key string) int {
	line, _ := lineOfKey(root, key)
	return line
}

// lineOfKey is lineOf that also reports whether the whole key is there.
func lineOfKey(root *yaml.Node, key string) (int, bool) {
	if root == nil || root.Kind != yaml.DocumentNode || len(root.Content) == 0 || key == "" {
		return 0, false
	}
	n, line := root.Content[0], 0
	for _, part := range strings.Split(strings.ReplaceAll(key, "[", ".["), ".") {
		switch {
		case part == "":
		case strings.HasPrefix(part, "["):
			i, err := strconv.Atoi(strings.Trim(part, "[]"))
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return line, false
			}
			n = n.Content[i]
			line = n.Line
		default:
			if n.Kind != yaml.MappingNode {
				return line, false
			}
			found := false
			for j := 0; j+1 < len(n.Content); j += 2 {
				if n.Content[j].Value == part {
					line, n, found = n.Content[j].Line, n.Content[j+1], true
					break
				}
			}
			if !found {
				return line, false
			}
		}
	}
	return line, true
}

func (c *Config) check() error {
	if c.Gateway.ID == "" {
		return c.errf(0, "gateway.id", "missing: name this gateway (it goes into every audit record)")
	}
	switch c.Gateway.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return c.errf(0, "gateway.log_level", "%q is not one of debug, info, warn, error", c.Gateway.LogLevel)
	}
	if len(c.Listeners) == 0 {
		return c.errf(0, "listeners", "missing: at least one listener is needed")
	}
	names := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		l.index, l.file, l.root = i, c.File, c.root
		if err := c.checkListener(l); err != nil {
			return err
		}
		if j, dup := names[l.Name]; dup {
			return c.errf(0, l.key("name"), "%q is also the name of listeners[%d]; names must be unique", l.Name, j)
		}
		names[l.Name] = i
	}
	if err := c.checkListenersApart(); err != nil {
		return err
	}
	if err := c.checkUpstreams(); err != nil {
		return err
	}
	seen := map[netip.Prefix]int{}
	for i, s := range c.Sources {
		key := fmt.Sprintf("sources[%d].address", i)
		p, err := parsePrefix(s.Address)
		if err != nil {
			return c.errf(0, key, "%v", err)
		}
		if j, dup := seen[p.Masked()]; dup {
			return c.errf(0, key, "%s is also sources[%d].address: the first would decide who calls from there, the order of the file", s.Address, j)
		}
		seen[p.Masked()] = i
	}
	if err := c.checkPolicy(); err != nil {
		return err
	}
	if err := c.checkAudit(); err != nil {
		return err
	}
	if err := c.checkShip(); err != nil {
		return err
	}
	return c.checkAdmin()
}

// checkListenersApart refuses two listeners on one address (the second
// could not bind) and a Modbus route whose target names another listener or
// another listener's route: policy, tickets and windows tell devices apart
// by target name.
func (c *Config) checkListenersApart() error {
	type bound struct {
		host string
		i    int
	}
	ports := map[string][]bound{}
	targets := map[string]string{} // target name -> the key that names it
	for i := range c.Listeners {
		targets[c.Listeners[i].Name] = c.Listeners[i].key("name")
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "[::]" || h == "::" }
	for i := range c.Listeners {
		l := &c.Listeners[i]
		addr, _ := ListenAddr(l.Listen) // checked by checkListener
		host, port, _ := splitHostPort(addr)
		for _, b := range ports[port] {
			if b.host == host || wild(b.host) || wild(host) {
				return c.errf(0, l.key("listen"), "%s: listeners[%d] listens on %s already", l.Listen, b.i, c.Listeners[b.i].Listen)
			}
		}
		if port != "0" { // port 0: one of the system's choosing, never the same twice
			ports[port] = append(ports[port], bound{host, i})
		}
		for _, rt := range l.routeTargets() {
			if other, dup := targets[rt.name]; dup && !strings.HasPrefix(other, l.key("")) {
				return c.errf(0, rt.key, "%q is also %s: a ticket or window for one would cover the other", rt.name, other)
			}
			targets[rt.name] = rt.key
		}
	}
	return nil
}

type routeTarget struct{ name, key string }

// routeTargets reads the target names of the routes in the listener's
// protocol section (modbus.routes[].target), which its engine decodes.
func (l *Listener) routeTargets() []routeTarget {
	var out []routeTarget
	for key, v := range l.routeField("target") {
		if v.Value != "" {
			out = append(out, routeTarget{v.Value, key})
		}
	}
	return out
}

// routeField yields the value of field in each route of the listener's
// protocol section (modbus.routes[j].field) that sets it, with its key
// (listeners[0].modbus.routes[1].target), by which errors find its line.
func (l *Listener) routeField(field string) iter.Seq2[string, *yaml.Node] {
	return func(yield func(string, *yaml.Node) bool) {
		sec, ok := l.Sections[l.Protocol]
		if !ok || sec.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(sec.Content); i += 2 {
			if sec.Content[i].Value != "routes" || sec.Content[i+1].Kind != yaml.SequenceNode {
				continue
			}
			for j, r := range sec.Content[i+1].Content {
				if r.Kind != yaml.MappingNode {
					continue
				}
				for k := 0; k+1 < len(r.Content); k += 2 {
					if r.Content[k].Value == field && !yield(l.key(fmt.Sprintf("%s.routes[%d].%s", l.Protocol, j, field)), r.Content[k+1]) {
						return
					}
				}
			}
		}
	}
}

// TargetNames are the names calls may carry as target.name: the listeners'
// names and their routes' targets, sorted.
func (c *Config) TargetNames() []string {
	var names []string
	for i := range c.Listeners {
		names = append(names, c.Listeners[i].Name)
		for _, rt := range c.Listeners[i].routeTargets() {
			names = append(names, rt.name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Errorf is an error about key (gateway.id, audit.signing_key), at its line.
func (c *Config) Errorf(key, format string, args ...any) error {
	return c.errf(0, key, format, args...)
}

func (c *Config) checkAdmin() error {
	a := &c.Admin
	if a.Socket == "" {
		if a.Tickets != "" || len(a.AllowedUsers) > 0 {
			return c.errf(0, "admin.socket", "missing: tickets and allowed_users need the admin socket")
		}
		return nil
	}
	a.Socket = c.resolve(a.Socket)
	if len(a.Socket) > 100 {
		return c.errf(0, "admin.socket", "%s is too long for a Unix socket (100 bytes at most)", a.Socket)
	}
	if a.Tickets == "" {
		a.Tickets = filepath.Join(filepath.Dir(a.Socket), "tickets.json") // beside the socket, resolved already
	} else {
		a.Tickets = c.resolve(a.Tickets)
	}
	for i, u := range a.AllowedUsers {
		if _, err := user.Lookup(u); err != nil {
			return c.errf(0, fmt.Sprintf("admin.allowed_users[%d]", i), "%q is not a user of this system", u)
		}
	}
	return nil
}

func (l *Listener) key(k string) string { return fmt.Sprintf("listeners[%d].%s", l.index, k) }

func (c *Config) checkListener(l *Listener) error {
	if l.Name == "" {
		return c.errf(0, l.key("name"), "missing: every listener needs a name (it is the target name in policy)")
	}
	if l.Protocol == "" {
		return c.errf(0, l.key("protocol"), "missing: one of %s", strings.Join(gateway.Protocols(), ", "))
	}
	if _, ok := gateway.Lookup(l.Protocol); !ok {
		return c.errf(0, l.key("protocol"), "%q is not a known protocol (known: %s)", l.Protocol, strings.Join(gateway.Protocols(), ", "))
	}
	if _, err := ListenAddr(l.Listen); err != nil {
		return c.errf(0, l.key("listen"), "%v", err)
	}
	if scheme, _, ok := strings.Cut(l.Listen, "://"); ok && !slices.Contains(listenSchemes(l.Protocol), scheme) {
		return c.errf(0, l.key("listen"), "%q: %s:// is not a scheme of %s listeners (want %s)", l.Listen, scheme, l.Protocol, listenForm(l.Protocol))
	}
	for k := range l.Sections {
		if k != l.Protocol {
			if _, isProto := gateway.Lookup(k); isProto {
				return c.errf(0, l.key(k), "a %s section on a %s listener", k, l.Protocol)
			}
			return c.errf(0, l.key(k), "unknown key")
		}
	}
	if l.Limits.MaxConns < 0 {
		return c.errf(0, l.key("limits.max_conns"), "%d is negative", l.Limits.MaxConns)
	}
	if l.Limits.MaxConns == 0 {
		l.Limits.MaxConns = gateway.DefaultMaxConns
	}
	if l.Limits.MaxConnsPerSource < 0 {
		return c.errf(0, l.key("limits.max_conns_per_source"), "%d is negative", l.Limits.MaxConnsPerSource)
	}
	if l.Limits.MaxConnsPerSource > l.Limits.MaxConns {
		return c.errf(0, l.key("limits.max_conns_per_source"), "%d is more than limits.max_conns (%d)",
			l.Limits.MaxConnsPerSource, l.Limits.MaxConns)
	}
	if l.Limits.MaxConnsPerSource == 0 {
		l.Limits.MaxConnsPerSource = gateway.DefaultMaxConnsPerSource(l.Limits.MaxConns)
	}
	if r := l.Limits.ConnRate(); r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
		return c.errf(0, l.key("limits.conn_rate_per_source"), "%v: want new connections a second, 0 for no limit", r)
	}
	if l.Limits.ConnBurstPerSource < 0 {
		return c.errf(0, l.key("limits.conn_burst_per_source"), "%d is negative", l.Limits.ConnBurstPerSource)
	}
	if l.Limits.ConnBurstPerSource == 0 {
		l.Limits.ConnBurstPerSource = gateway.DefaultConnBurstPerSource(l.Limits.MaxConnsPerSource)
	}
	if l.Limits.FirstRequestTimeout < 0 {
		return c.errf(0, l.key("limits.first_request_timeout"), "%v is negative", l.Limits.FirstRequestTimeout)
	}
	if l.Limits.FirstRequestTimeout == 0 {
		l.Limits.FirstRequestTimeout = gateway.DefaultFirstRequestTimeout
	}
	if l.Limits.IdleTimeout == 0 {
		l.Limits.IdleTimeout = gateway.DefaultIdleTimeout
	}
	if l.Limits.RequestTimeout == 0 {
		l.Limits.RequestTimeout = gateway.DefaultRequestTimeout
	}
	if l.Limits.IdleTimeout < 0 {
		return c.errf(0, l.key("limits.idle_timeout"), "%v is negative", l.Limits.IdleTimeout)
	}
	if l.Limits.RejectedRecordsPerSource < 0 {
		return c.errf(0, l.key("limits.rejected_records_per_source"), "%d is negative", l.Limits.RejectedRecordsPerSource)
	}
	if l.Limits.RejectedRecordsPerSource == 0 {
		l.Limits.RejectedRecordsPerSource = gateway.DefaultRejectedPerSource
	}
	// Under a second the cap would hardly bound the records, and the
	// summaries would come nearly as often as the rejections.
	if w := l.Limits.RejectedRecordsWindow; w != 0 && w < time.Second {
		return c.errf(0, l.key("limits.rejected_records_window"), "%v is under 1s", w)
	}
	if l.Limits.RejectedRecordsWindow == 0 {
		l.Limits.RejectedRecordsWindow = gateway.DefaultRejectedWindow
	}
	if l.Limits.RequestTimeout < 0 {
		return c.errf(0, l.key("limits.request_timeout"), "%v is negative", l.Limits.RequestTimeout)
	}
	return c.checkListenerTLS(l)
}

// Signature algorithms a bundle key may name (those of OPA's bundle signing).
var bundleAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"}

func (c *Config) checkPolicy() error {
	p := &c.Policy
	if p.Path == "" {
		return c.errf(0, "policy.path", "missing: a directory of .rego and data files, a bundle file (.tar.gz) or a bundle server URL")
	}
	isURL := strings.HasPrefix(p.Path, "http://") || strings.HasPrefix(p.Path, "https://")
	isDir := false
	if isURL {
		if u, err := url.Parse(p.Path); err != nil || u.Host == "" {
			return c.errf(0, "policy.path", "%q is not a bundle server URL with a host", p.Path)
		}
	} else {
		p.Path = c.resolve(p.Path)
		fi, err := os.Stat(p.Path)
		if err != nil {
			return c.errf(0, "policy.path", "%v", err)
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return c.errf(0, "policy.path", "%s is not a directory or a bundle file", p.Path)
		}
		isDir = fi.IsDir()
	}
	if err := c.checkBundle(isURL, isDir); err != nil {
		return err
	}
	switch p.Mode {
	case "":
		p.Mode = ModeEnforce
	case ModeEnforce, ModeMonitor:
	default:
		return c.errf(0, "policy.mode", "%q is not one of enforce, monitor", p.Mode)
	}
	if p.Timeout < 0 {
		return c.errf(0, "policy.timeout", "%v is negative", p.Timeout)
	}
	if p.ReloadInterval < 0 {
		return c.errf(0, "policy.reload_interval", "%v is negative", p.ReloadInterval)
	}
	if p.MaxConcurrentEvaluations < 0 {
		return c.errf(0, "policy.max_concurrent_evaluations", "%d is negative (0 or absent: twice the CPUs)", p.MaxConcurrentEvaluations)
	}
	if p.DecisionCache.TTL < 0 {
		return c.errf(0, "policy.decision_cache.ttl", "must be positive")
	}
	if p.DecisionCache.MaxEntries < 0 {
		return c.errf(0, "policy.decision_cache.max_entries", "must be positive")
	}
	if err := c.checkDecisionLogs(); err != nil {
		return err
	}
	if p.Timeout == 0 {
		p.Timeout = gateway.DefaultDecisionTimeout
	}
	if p.ReloadInterval == 0 {
		p.ReloadInterval = DefaultPolicyReload
	}
	return nil
}

// checkDecisionLogs checks `policy.decision_logs:` and reads its token.
func (c *Config) checkDecisionLogs() error {
	d := c.Policy.DecisionLogs
	if d == nil {
		return nil
	}
	u, err := url.Parse(d.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c.errf(0, "policy.decision_logs.url", "%q: want the http:// or https:// URL of a decision log service", d.URL)
	}
	if d.CA != "" {
		if u.Scheme != "https" {
			return c.errf(0, "policy.decision_logs.ca", "only for an https:// url")
		}
		d.CA = c.resolve(d.CA)
		if _, err := os.Stat(d.CA); err != nil {
			return c.errf(0, "policy.decision_logs.ca", "%v", err)
		}
	}
	if d.TokenFile != "" {
		d.TokenFile = c.resolve(d.TokenFile)
		var err error
		if d.Token, err = readSecret(d.TokenFile); err != nil {
			return c.errf(0, "policy.decision_logs.token_file", "%v", err)
		}
	}
	if d.Interval < 0 || d.Timeout < 0 {
		return c.errf(0, "policy.decision_logs", "interval and timeout must be positive")
	}
	if d.MaxEvents < 0 {
		return c.errf(0, "policy.decision_logs.max_events", "must be positive")
	}
	return nil
}

// checkBundle checks the bundle_* keys of `policy:`.
func (c *Config) checkBundle(isURL, isDir bool) error {
	p := &c.Policy
	if p.BundleKey == "" {
		for _, kv := range [][2]string{{"bundle_key_id", p.BundleKeyID}, {"bundle_key_alg", p.BundleKeyAlg}, {"bundle_scope", p.BundleScope}} {
			if kv[1] != "" {
				return c.errf(0, "policy.bundle_key", "missing: policy.%s needs the verification key", kv[0])
			}
		}
	} else {
		if isDir {
			return c.errf(0, "policy.bundle_key", "policy.path is a directory; only bundles (a .tar.gz file or a bundle server URL) are signed")
		}
		p.BundleKey = c.resolve(p.BundleKey)
		if fi, err := os.Stat(p.BundleKey); err != nil {
			return c.errf(0, "policy.bundle_key", "%v", err)
		} else if !fi.Mode().IsRegular() {
			return c.errf(0, "policy.bundle_key", "%s is not a file", p.BundleKey)
		}
		if p.BundleKeyID == "" {
			return c.errf(0, "policy.bundle_key_id", "missing: the key id bundles are signed with (bundle_key needs it)")
		}
		if p.BundleKeyAlg != "" && !slices.Contains(bundleAlgs, p.BundleKeyAlg) {
			return c.errf(0, "policy.bundle_key_alg", "%q is not one of %s", p.BundleKeyAlg, strings.Join(bundleAlgs, ", "))
		}
	}
	if p.BundleCA != "" {
		if !isURL || !strings.HasPrefix(p.Path, "https://") {
			return c.errf(0, "policy.bundle_ca", "only for an https:// policy.path")
		}
		p.BundleCA = c.resolve(p.BundleCA)
		if _, err := os.Stat(p.BundleCA); err != nil {
			return c.errf(0, "policy.bundle_ca", "%v", err)
		}
	}
	if p.BundleMaxBytes < 0 {
		return c.errf(0, "policy.bundle_max_bytes", "must be positive")
	}
	if p.BundleTimeout < 0 {
		return c.errf(0, "policy.bundle_timeout", "must be positive")
	}
	return nil
}

func (c *Config) checkAudit() error {
	a := &c.Audit
	if a.Path == "" {
		return c.errf(0, "audit.path", "missing: the audit log file, such as ./audit/audit.jsonl")
	}
	// resolve cleans the slash away, and the folder meant would become the log file
	if strings.HasSuffix(a.Path, string(filepath.Separator)) {
		return c.errf(0, "audit.path", "%q ends with %c, a folder: name the log file in it, such as %s",
			a.Path, filepath.Separator, filepath.Join(a.Path, "audit.jsonl"))
	}
	a.Path = c.resolve(a.Path)
	if fsDir, real, ok := onKernelFS(a.Path); ok {
		via := ""
		if real != "" {
			via = " (through a symlink: " + real + ")"
		}
		return c.errf(0, "audit.path", "%s is under %s%s, a kernel file system (processes, devices, memory): the audit log would not be kept on disk; put it on a disk, such as /var/log/interlock/audit.jsonl",
			a.Path, fsDir, via)
	}
	switch a.ReadsOnFailure {
	case "":
		a.ReadsOnFailure = "alert"
	case "alert", "deny":
	default:
		return c.errf(0, "audit.reads_on_failure", "%q is not one of alert, deny", a.ReadsOnFailure)
	}
	if a.SyncInterval < 0 {
		return c.errf(0, "audit.sync_interval", "must be positive")
	}
	if a.SyncInterval == 0 {
		a.SyncInterval = DefaultSyncInterval
	}
	return c.checkAuditEvidence()
}

// checkAuditEvidence checks the keys of `audit:` for checkpoints, rotation,
// retention and capacity.
func (c *Config) checkAuditEvidence() error {
	a := &c.Audit
	if a.SigningKey != "" {
		a.SigningKey = c.resolve(a.SigningKey)
		fi, err := os.Stat(a.SigningKey)
		switch {
		case err != nil:
			return c.errf(0, "audit.signing_key", "%v (make a key with `interlock audit keygen --out DIR`)", err)
		case !fi.Mode().IsRegular():
			return c.errf(0, "audit.signing_key", "%s is not a file", a.SigningKey)
		case fi.Mode().Perm()&0o077 != 0:
			return c.errf(0, "audit.signing_key", "the signing key %s is open to group or others (mode %04o): make it private with chmod 600 %s",
				a.SigningKey, fi.Mode().Perm(), a.SigningKey)
		}
	}
	for _, d := range []struct {
		key string
		v   *time.Duration
		def time.Duration
	}{
		{"checkpoint_interval", &a.CheckpointInterval, DefaultCheckpointInterval},
		{"capacity_interval", &a.CapacityInterval, DefaultCapacityInterval},
		{"rotate_interval", &a.RotateInterval, 0},
	} {
		if *d.v < 0 {
			return c.errf(0, "audit."+d.key, "must be positive")
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if a.CheckpointInterval < time.Millisecond {
		return c.errf(0, "audit.checkpoint_interval", "%s is under a millisecond", a.CheckpointInterval)
	}
	switch {
	case a.CheckpointEvery < 0:
		return c.errf(0, "audit.checkpoint_every", "must be positive")
	case a.CheckpointEvery == 0:
		a.CheckpointEvery = DefaultCheckpointEvery
	}
	if a.RetainDays < 0 {
		return c.errf(0, "audit.retain_days", "%d is negative (0 keeps every file)", a.RetainDays)
	}
	if (a.RetainDays > 0 || a.RetainBytes > 0) && a.RotateSize == 0 && a.RotateInterval == 0 {
		key := "audit.retain_bytes"
		if a.RetainDays > 0 {
			key = "audit.retain_days"
		}
		return c.errf(0, key, "retention deletes rotated files, but rotation is off: set audit.rotate_size or audit.rotate_interval")
	}
	switch {
	case a.WarnFillPercent == 0:
		a.WarnFillPercent = DefaultWarnFillPercent
	case a.WarnFillPercent < 0 || a.WarnFillPercent > 100:
		return c.errf(0, "audit.warn_fill_percent", "%v is not a percentage in 1..100", a.WarnFillPercent)
	}
	return nil
}

// kernelDirs are where kernel file systems are mounted: /proc and /sys
// store nothing, /dev holds devices and memory (/dev/shm), so an audit log
// there is refused or gone at the next boot.
var kernelDirs = []string{"/proc", "/sys", "/dev"}

// onKernelFS reports the kernel folder that path lies under, as written
// (made absolute and clean) or once the symlinks of the part of it that is
// there are resolved; real is that resolved path when only it is under one.
func onKernelFS(path string) (dir, real string, ok bool) {
	under := func(p string) (string, bool) {
		for _, k := range kernelDirs {
			if p == k || strings.HasPrefix(p, k+"/") {
				return k, true
			}
		}
		return "", false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = filepath.Clean(path)
	}
	if k, ok := under(abs); ok {
		return k, "", true
	}
	rest := ""
	for p := abs; ; {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			r = filepath.Join(r, rest)
			if k, ok := under(r); ok {
				return k, r, true
			}
			return "", "", false
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", "", false
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}

func (c *Config) resolve(p string) string {
	if filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// listenSchemes are the schemes a listen address may carry, by protocol:
// any other (tls://, udp://) would be listened on as plain TCP all the same.
// A protocol not named here (a new engine) takes tcp://.
func listenSchemes(protocol string) []string {
	if protocol == "opcua" {
		return []string{"opc.tcp"}
	}
	return []string{"tcp"}
}

// listenForm says what a listen address of the protocol looks like.
func listenForm(protocol string) string {
	switch protocol {
	case "modbus":
		return "host:port; Modbus/TCP Security is the listener's tls section"
	case "opcua":
		return "opc.tcp://host:port or host:port"
	}
	return "host:port"
}

// ListenAddr returns the host:port of a listen address, which may carry a
// scheme (opc.tcp://127.0.0.1:4841).
func ListenAddr(s string) (string, error) {
	if s == "" {
		return "", errors.New("missing: host:port to listen on, such as 127.0.0.1:5020")
	}
	if i := strings.Index(s, "://"); i >= 0 {
		u, err := url.Parse(s)
		if err != nil {
			return "", err
		}
		s = u.Host
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return "", err
	}
	return host + ":" + port, nil
}

func splitHostPort(s string) (string, string, error) {
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", fmt.Errorf("%q has no port", s)
	}
	port := s[i+1:]
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %q is not a number in 0..65535", s, port)
	}
	return s[:i], port, nil
}

// Inventory returns the source inventory as workstations.
func (c *Config) Inventory() []gateway.Workstation {
	ws := make([]gateway.Workstation, 0, len(c.Sources))
	for _, s := range c.Sources {
		p, _ := parsePrefix(s.Address) // checked in Load
		ws = append(ws, gateway.Workstation{Prefix: p, Name: s.Name, Owner: s.Owner, User: s.User, Roles: s.Roles})
	}
	return ws
}

func parsePrefix(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("missing: an IP address or CIDR block")
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR block", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Options returns a decoder for the listener's protocol section that rejects
// unknown keys, or nil when the listener has none. Errors name the file and
// line.
func (l *Listener) Options() func(into any) error {
	n, ok := l.Sections[l.Protocol]
	if !ok {
		return nil
	}
	return func(into any) error {
		b, err := yaml.Marshal(&n)
		if err != nil {
			return err
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(into); err != nil {
			var section yaml.Node
			_ = yaml.Unmarshal(b, &section)
			return yamlError(l.file, n.Line-1, l.key(l.Protocol), &section, err)
		}
		return checkWholeNumbers(l.file, &n, into, l.key(l.Protocol))
	}
}

// SectionError wraps an engine's complaint about its section in the file's
// terms. A complaint that begins with a key ("deny_exception: …",
// "routes[1].upstream: …") is put at that key's line, in the protocol's
// section or else on the listener itself (upstream).
func (l *Listener) SectionError(err error) error {
	var ce *Error
	if errors.As(err, &ce) {
		return err
	}
	msg := err.Error()
	if path, rest, ok := strings.Cut(msg, ": "); ok && keyPathRe.MatchString(path) {
		for _, k := range []string{l.key(l.Protocol + "." + path), l.key(path)} {
			if line, exact := lineOfKey(l.root, k); exact {
				return &Error{File: l.file, Line: line, Key: k, Msg: rest}
			}
		}
		// A key missing from an entry of the section (routes[1].upstream)
		// is put at the entry.
		k := l.key(l.Protocol + "." + path)
		if line, _ := lineOfKey(l.root, k); line > lineOf(l.root, l.key(l.Protocol)) {
			return &Error{File: l.file, Line: line, Key: k, Msg: rest}
		}
	}
	return &Error{File: l.file, Line: l.line, Key: l.key(l.Protocol), Msg: msg}
}

var keyPathRe = regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*$`)

// Key names a key of this listener in error messages.
func (l *Listener) Key(k string) string { return l.key(k) }

// Line is the listener's line in the file.
func (l *Listener) Line() int { return l.line }

var (
	lineRe         = regexp.MustCompile(`line (\d+): `)
	unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	durationRe     = regexp.MustCompile("cannot unmarshal !!\\w+ `([^`]*)` into time.Duration")
	numberRe       = regexp.MustCompile("cannot unmarshal !!\\w+ `([^`]*)` into u?int\\d*")
	listRe         = regexp.MustCompile("cannot unmarshal !!str `([^`]*)` into \\[\\]\\w+")
	kindRe         = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (\\[\\])?(?:\\*?[\\w.]+)")
)

// yamlError turns a yaml.v3 error into one Error for the first problem, with
// line numbers shifted by offset (for re-decoded sections). root, when
// given, is the document the line refers to: the key at that line is named.
func yamlError(file string, offset int, key string, root *yaml.Node, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if m := lineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		if root != nil {
			if k := keyAt(root, line); k != "" {
				key = joinKey(key, k)
			}
		}
		line += offset
		msg = strings.Replace(msg, m[0], "", 1)
	}
	msg = unknownFieldRe.ReplaceAllString(msg, `unknown key "$1"`)
	msg = durationRe.ReplaceAllString(msg, `"$1" is not a duration (such as 500ms, 5s, 2m)`)
	msg = numberRe.ReplaceAllString(msg, `"$1" is not a whole number`)
	msg = listRe.ReplaceAllString(msg, `"$1" is not a list (such as [$1])`)
	msg = kindRe.ReplaceAllStringFunc(msg, func(m string) string {
		sm := kindRe.FindStringSubmatch(m)
		got := map[string]string{"map": "a mapping (key: value lines)", "seq": "a list", "str": "a string", "int": "a number",
			"bool": "true or false", "float": "a number"}[sm[1]]
		if got == "" {
			got = "!!" + sm[1]
		}
		if sm[2] != "" {
			got += " (" + sm[2] + ")"
		}
		if sm[3] != "" {
			return got + " where a list is wanted (lines beginning with -)"
		}
		return got + " where another kind of value is wanted"
	})
	return &Error{File: file, Line: line, Key: key, Msg: msg}
}
