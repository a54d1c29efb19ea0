package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Ship is one entry of `audit.ship:`, a SIEM that gets every audit record.
//
//	audit:
//	  ship:
//	    - name: siem1                  # names the cursor file and the logs
//	      type: syslog                 # RFC 5424, octet-counted, over TCP or TLS
//	      address: siem.example:6514
//	      tls: {ca: ca.pem, cert: gw.pem, key: gw.key}   # no tls: plain TCP
//	      format: json                 # or cef
//	    - name: hec
//	      type: http                   # POST of JSON lines
//	      url: https://splunk.example:8088/services/collector/raw
//	      token_file: hec.token
//	      auth_scheme: Splunk
type Ship struct {
	Name   string   `yaml:"name"`
	Type   string   `yaml:"type"`   // syslog or http
	Format string   `yaml:"format"` // syslog: json (default) or cef; http: jsonl
	TLS    *ShipTLS `yaml:"tls"`    // syslog: TLS (RFC 5425) when present; http: for https URLs

	// syslog
	Address  string `yaml:"address"`  // host:port
	Facility string `yaml:"facility"` // a name (audit, auth, authpriv, local0…) or 1..23; default audit (13)
	Hostname string `yaml:"hostname"` // HOSTNAME; default gateway.id
	SDID     string `yaml:"sd_id"`    // SD-ID of the structured data; default interlock@32473

	// http
	URL        string `yaml:"url"`
	TokenFile  string `yaml:"token_file"`  // a file holding a token for the Authorization header
	AuthScheme string `yaml:"auth_scheme"` // default Bearer; Splunk for Splunk HEC
	OnReject   string `yaml:"on_reject"`   // a record the receiver refuses (4xx): stop (default) or skip

	BatchRecords int           `yaml:"batch_records"` // default 500
	BatchBytes   ByteSize      `yaml:"batch_bytes"`   // default 1MiB
	Timeout      time.Duration `yaml:"timeout"`       // connecting, one write or one request; default 10s
	RetryMax     time.Duration `yaml:"retry_max"`     // longest wait between attempts while the SIEM is down; default 30s
	Cursor       string        `yaml:"cursor"`        // default <audit.path>.ship-<name>.cursor

	// FacilityCode is Facility as a number, set by Load.
	FacilityCode int `yaml:"-"`
}

// ShipTLS is the `tls:` section of a shipper.
type ShipTLS struct {
	CA         string `yaml:"ca"`          // PEM roots for the receiver's certificate; default the system's
	Cert       string `yaml:"cert"`        // client certificate (PEM), with key
	Key        string `yaml:"key"`         // its private key
	ServerName string `yaml:"server_name"` // name to verify instead of the address's host
}

// Shipper types and formats.
const (
	ShipSyslog = "syslog"
	ShipHTTP   = "http"
)

// syslogFacilities are the facility names of RFC 5424 table 1.
var syslogFacilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

var shipNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// sdIDRe is an SD-ID outside the IANA registry (RFC 5424 §7.2.2):
// name@<private enterprise number>, at most 32 characters (checked apart).
var sdIDRe = regexp.MustCompile(`^[!#-<>-\\^-~]+@[0-9]+(\.[0-9]+)*$`)

// checkShip checks `audit.ship:`; audit.path is resolved already.
func (c *Config) checkShip() error {
	names := map[string]int{}
	cursors := map[string]int{}
	for i := range c.Audit.Ship {
		s := &c.Audit.Ship[i]
		key := func(k string) string { return fmt.Sprintf("audit.ship[%d].%s", i, k) }
		if !shipNameRe.MatchString(s.Name) {
			if s.Name == "" {
				return c.errf(0, key("name"), "missing: name this shipper (it names its cursor file and its log lines)")
			}
			return c.errf(0, key("name"), "%q: use letters, digits, '.', '_' and '-' (64 at most)", s.Name)
		}
		if j, dup := names[s.Name]; dup {
			return c.errf(0, key("name"), "%q is also the name of audit.ship[%d]; names must be unique", s.Name, j)
		}
		names[s.Name] = i
		var err error
		switch s.Type {
		case ShipSyslog:
			err = c.checkShipSyslog(s, key)
		case ShipHTTP:
			err = c.checkShipHTTP(s, key)
		case "":
			return c.errf(0, key("type"), "missing: syslog or http")
		default:
			return c.errf(0, key("type"), "%q is not one of syslog, http", s.Type)
		}
		if err != nil {
			return err
		}
		if s.TLS != nil {
			if err := c.checkShipTLS(s.TLS, key); err != nil {
				return err
			}
		}
		if s.BatchRecords < 0 {
			return c.errf(0, key("batch_records"), "must be positive")
		}
		if s.BatchBytes < 0 {
			return c.errf(0, key("batch_bytes"), "must be positive")
		}
		if s.Timeout < 0 {
			return c.errf(0, key("timeout"), "must be positive")
		}
		if s.RetryMax < 0 {
			return c.errf(0, key("retry_max"), "must be positive")
		}
		if s.Timeout == 0 {
			s.Timeout = 10 * time.Second
		}
		if s.Cursor == "" {
			s.Cursor = c.Audit.Path + ".ship-" + s.Name + ".cursor" // beside the log, resolved already
		} else {
			s.Cursor = c.resolve(s.Cursor)
		}
		if j, dup := cursors[s.Cursor]; dup {
			return c.errf(0, key("cursor"), "%s is also the cursor of audit.ship[%d]", s.Cursor, j)
		}
		cursors[s.Cursor] = i
	}
	return nil
}

func (c *Config) checkShipSyslog(s *Ship, key func(string) string) error {
	for _, kv := range [][2]string{{"url", s.URL}, {"token_file", s.TokenFile}, {"auth_scheme", s.AuthScheme}, {"on_reject", s.OnReject}} {
		if kv[1] != "" {
			return c.errf(0, key(kv[0]), "is for type http, not syslog")
		}
	}
	if s.Address == "" {
		return c.errf(0, key("address"), "missing: host:port of the syslog receiver, such as siem.example:6514")
	}
	host, port, err := splitHostPort(s.Address)
	if err != nil || host == "" || port == "0" {
		return c.errf(0, key("address"), "%q is not host:port", s.Address)
	}
	switch s.Format {
	case "":
		s.Format = "json"
	case "json", "cef":
	default:
		return c.errf(0, key("format"), "%q is not one of json, cef", s.Format)
	}
	switch f := strings.ToLower(s.Facility); {
	case f == "":
		s.FacilityCode = syslogFacilities["audit"]
	case syslogFacilities[f] > 0:
		s.FacilityCode = syslogFacilities[f]
	default:
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 23 {
			return c.errf(0, key("facility"), "%q is not a facility name (audit, auth, authpriv, local0…local7 …) or a number 1..23", s.Facility)
		}
		s.FacilityCode = n
	}
	if s.SDID != "" && (!sdIDRe.MatchString(s.SDID) || len(s.SDID) > 32) {
		return c.errf(0, key("sd_id"), "%q is not an SD-ID of your own: name@enterprise-number, at most 32 characters, no space, '=', ']' or '\"', such as interlock@32473", s.SDID)
	}
	for _, ch := range []byte(s.Hostname) {
		if ch < 33 || ch > 126 {
			return c.errf(0, key("hostname"), "%q: a syslog HOSTNAME is printable US-ASCII without spaces", s.Hostname)
		}
	}
	if len(s.Hostname) > 255 {
		return c.errf(0, key("hostname"), "longer than 255 characters")
	}
	return nil
}

func (c *Config) checkShipHTTP(s *Ship, key func(string) string) error {
	for _, kv := range [][2]string{{"address", s.Address}, {"facility", s.Facility}, {"hostname", s.Hostname}, {"sd_id", s.SDID}} {
		if kv[1] != "" {
			return c.errf(0, key(kv[0]), "is for type syslog, not http")
		}
	}
	if s.URL == "" {
		return c.errf(0, key("url"), "missing: the URL records are POSTed to, such as https://siem.example:8088/services/collector/raw")
	}
	u, err := url.Parse(s.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c.errf(0, key("url"), "%q is not an http:// or https:// URL with a host", s.URL)
	}
	if u.User != nil {
		return c.errf(0, key("url"), "put credentials in token_file, not in the URL")
	}
	if s.TLS != nil && u.Scheme != "https" {
		return c.errf(0, key("tls"), "only for an https:// url")
	}
	switch s.Format {
	case "":
		s.Format = "jsonl"
	case "jsonl":
	default:
		return c.errf(0, key("format"), "%q: type http sends jsonl", s.Format)
	}
	switch s.OnReject {
	case "":
		s.OnReject = "stop"
	case "stop", "skip":
	default:
		return c.errf(0, key("on_reject"), "%q is not one of stop, skip", s.OnReject)
	}
	if s.TokenFile != "" {
		s.TokenFile = c.resolve(s.TokenFile)
		if _, err := readSecret(s.TokenFile); err != nil {
			return c.errf(0, key("token_file"), "%v", err)
		}
	} else if s.AuthScheme != "" {
		return c.errf(0, key("token_file"), "missing: auth_scheme needs the token")
	}
	if strings.ContainsAny(s.AuthScheme, " \r\n") {
		return c.errf(0, key("auth_scheme"), "%q is not one word, such as Bearer or Splunk", s.AuthScheme)
	}
	return nil
}

func (c *Config) checkShipTLS(t *ShipTLS, key func(string) string) error {
	for _, f := range []struct {
		k string
		v *string
	}{{"tls.ca", &t.CA}, {"tls.cert", &t.Cert}, {"tls.key", &t.Key}} {
		if *f.v == "" {
			continue
		}
		*f.v = c.resolve(*f.v)
		if err := checkFile(*f.v); err != nil {
			return c.errf(0, key(f.k), "%v", err)
		}
	}
	if (t.Cert == "") != (t.Key == "") {
		if t.Cert == "" {
			return c.errf(0, key("tls.cert"), "missing: tls.key needs its certificate")
		}
		return c.errf(0, key("tls.key"), "missing: tls.cert needs its private key")
	}
	if t.CA != "" {
		b, err := os.ReadFile(t.CA)
		if err != nil {
			return c.errf(0, key("tls.ca"), "%v", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return c.errf(0, key("tls.ca"), "%s holds no PEM certificate", t.CA)
		}
	}
	if t.Cert != "" {
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			return c.errf(0, key("tls.cert"), "%s with tls.key %s: %v", t.Cert, t.Key, err)
		}
	}
	return nil
}

func checkFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a file", path)
	}
	return nil
}

// readSecret reads a file holding a credential (a token): a file only its
// owner can read, holding one line.
func readSecret(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a file", path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(t, "\r\n") {
		return "", fmt.Errorf("%s: want one line holding the token", path)
	}
	return t, nil
}
