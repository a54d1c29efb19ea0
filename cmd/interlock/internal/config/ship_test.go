package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit/ship/shiptest"
	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
)

func TestShipDefaultsAndPaths(t *testing.T) {
	p := write(t, good+`  ship:
    - name: siem1
      type: syslog
      address: 127.0.0.1:6514
      tls: {ca: ca.pem, cert: client.pem, key: client.key}
      format: cef
      facility: local4
    - name: hec
      type: http
      url: https://splunk.example:8088/services/collector/raw?channel=abc
      token_file: hec.token
      auth_scheme: Splunk
      batch_bytes: 256KiB
      on_reject: skip
`)
	dir := filepath.Dir(p)
	if _, err := shiptest.NewPKI(dir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "hec.token"), []byte("x"), 0o600)
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s, h := c.Audit.Ship[0], c.Audit.Ship[1]
	if s.FacilityCode != 20 || s.Format != "cef" || s.TLS.CA != filepath.Join(dir, "ca.pem") ||
		s.Cursor != filepath.Join(dir, "audit/audit.jsonl.ship-siem1.cursor") || s.Timeout <= 0 {
		t.Errorf("syslog shipper: %+v %+v", s, s.TLS)
	}
	if h.Format != "jsonl" || h.TokenFile != filepath.Join(dir, "hec.token") || h.BatchBytes != 256<<10 || h.OnReject != "skip" {
		t.Errorf("http shipper: %+v", h)
	}

	p = write(t, good+"  ship:\n    - {name: s, type: syslog, address: 'localhost:514'}\n")
	c, err = config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Audit.Ship[0]; s.FacilityCode != 13 || s.Format != "json" || s.TLS != nil {
		t.Errorf("syslog defaults: %+v", s)
	}
}

func TestShipErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ ship, key, msg string }{
		{"{type: syslog, address: 'a:1'}", "audit.ship[0].name", "missing"},
		{"{name: 'a b', type: syslog, address: 'a:1'}", "audit.ship[0].name", "letters"},
		{"{name: a, address: 'a:1'}", "audit.ship[0].type", "missing"},
		{"{name: a, type: kafka}", "audit.ship[0].type", "not one of syslog, http"},
		{"{name: a, type: syslog}", "audit.ship[0].address", "missing"},
		{"{name: a, type: syslog, address: nohost}", "audit.ship[0].address", "host:port"},
		{"{name: a, type: syslog, address: 'a:1', format: xml}", "audit.ship[0].format", "json, cef"},
		{"{name: a, type: syslog, address: 'a:1', facility: kern}", "audit.ship[0].facility", "facility"},
		{"{name: a, type: syslog, address: 'a:1', facility: 24}", "audit.ship[0].facility", "facility"},
		{"{name: a, type: syslog, address: 'a:1', url: 'http://x'}", "audit.ship[0].url", "type http"},
		{"{name: a, type: syslog, address: 'a:1', tls: {ca: missing.pem}}", "audit.ship[0].tls.ca", "no such file"},
		{"{name: a, type: http}", "audit.ship[0].url", "missing"},
		{"{name: a, type: http, url: 'ftp://x'}", "audit.ship[0].url", "http:// or https://"},
		{"{name: a, type: http, url: 'https://u:p@x'}", "audit.ship[0].url", "token_file"},
		{"{name: a, type: http, url: 'http://x', tls: {}}", "audit.ship[0].tls", "https"},
		{"{name: a, type: http, url: 'http://x', format: cef}", "audit.ship[0].format", "jsonl"},
		{"{name: a, type: http, url: 'http://x', on_reject: retry}", "audit.ship[0].on_reject", "stop, skip"},
		{"{name: a, type: http, url: 'http://x', token_file: nope}", "audit.ship[0].token_file", "no such file"},
		{"{name: a, type: http, url: 'http://x', token_file: open.token}", "audit.ship[0].token_file", "chmod 600"},
		{"{name: a, type: http, url: 'http://x', token_file: empty.token}", "audit.ship[0].token_file", "is empty"},
		{"{name: a, type: http, url: 'http://x', token_file: two.token}", "audit.ship[0].token_file", "one line"},
		{"{name: a, type: http, url: 'http://x', address: 'a:1'}", "audit.ship[0].address", "type syslog"},
		{"{name: a, type: http, url: 'http://x', retry_max: -1s}", "audit.ship[0].retry_max", "positive"},
		{"{name: a, type: http, url: 'http://x', batch_size: 3}", "audit.ship", "unknown key"},
		{"{name: a, type: syslog, address: 'a:1', sd_id: 'interlock'}", "audit.ship[0].sd_id", "enterprise"},
		{"{name: a, type: syslog, address: 'a:1', sd_id: 'a b@1'}", "audit.ship[0].sd_id", "SD-ID"},
		{"{name: a, type: syslog, address: 'a:1', hostname: 'plant a'}", "audit.ship[0].hostname", "US-ASCII"},
		{"{name: a, type: syslog, address: 'a:99999'}", "audit.ship[0].address", "host:port"},
		{"{name: a, type: syslog, address: 'a:1', timeout: -1s}", "audit.ship[0].timeout", "positive"},
		{"{name: a, type: syslog, address: 'a:1', batch_records: -1}", "audit.ship[0].batch_records", "positive"},
		{"{name: a, type: syslog, address: 'a:1', tls: {ca: notpem.txt}}", "audit.ship[0].tls.ca", "no PEM certificate"},
		{"{name: a, type: syslog, address: 'a:1', tls: {cert: notpem.txt, key: notpem.txt}}", "audit.ship[0].tls.cert", "tls.key"},
		{"{name: a, type: syslog, address: 'a:1', tls: {key: notpem.txt}}", "audit.ship[0].tls.cert", "missing"},
	} {
		p := write(t, good+"  ship:\n    - "+tc.ship+"\n")
		os.WriteFile(filepath.Join(filepath.Dir(p), "notpem.txt"), []byte("not a certificate\n"), 0o600)
		os.WriteFile(filepath.Join(filepath.Dir(p), "open.token"), []byte("tok\n"), 0o644)
		os.WriteFile(filepath.Join(filepath.Dir(p), "empty.token"), []byte(" \n"), 0o600)
		os.WriteFile(filepath.Join(filepath.Dir(p), "two.token"), []byte("tok\nen\n"), 0o600)
		_, err := config.Load(p)
		// the entry is line 22 of the file
		if err == nil || !strings.Contains(err.Error(), "config.yaml:22: "+tc.key) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want config.yaml:22: %s: …%s…", tc.ship, err, tc.key, tc.msg)
		}
	}
	p := write(t, good+"  ship:\n    - {name: a, type: syslog, address: 'a:1'}\n    - {name: a, type: syslog, address: 'b:1'}\n")
	if _, err := config.Load(p); err == nil || !strings.Contains(err.Error(), "audit.ship[1].name") {
		t.Errorf("duplicate names: %v", err)
	}
}
