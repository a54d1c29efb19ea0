package query

import (
	"slices"
	"testing"
)

// The records of a Modbus listener's upstream_tls files read again are
// events --event accepts, told apart from a tls listener's by glob, and
// the filters pick them out by listener (as their target).
func TestUpstreamTLSRecords(t *testing.T) {
	for _, e := range []string{"upstream_tls.load", "upstream_tls.load_failed"} {
		if !slices.Contains(Events, e) {
			t.Errorf("%s is not in Events", e)
		}
	}
	const failed = "listener plc1: modbus.upstream_tls.cert: /etc/interlock/gw-client.crt: certificate 1: x509: malformed certificate"
	paths := []string{"/etc/interlock/plc-ca.crt", "/etc/interlock/gw-client.crt", "/etc/interlock/gw-client.key"}
	path := writeLog(t, t.TempDir(), "audit.jsonl", []string{
		line(1, "tls.load", kv{"listener", "plc1-tls"}, kv{"paths", []string{"/etc/interlock/gw.crt"}}, kv{"crls", 1}),
		line(2, "upstream_tls.load", kv{"listener", "plc1"}, kv{"paths", paths}, kv{"cert_subject", "CN=interlock gateway"},
			kv{"ca_certs", 2}, kv{"connections_closed", 1}),
		line(3, "upstream_tls.load_failed", kv{"listener", "plc1"}, kv{"paths", paths}, kv{"ca_certs", 2}, kv{"error", failed}),
		line(4, "upstream_tls.load", kv{"listener", "plc2"}, kv{"paths", paths}, kv{"ca_certs", 1}, kv{"connections_closed", 0}),
	})
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"event glob", Filter{Events: []string{"upstream_tls.*"}}, []string{"upstream_tls.load plc1", "upstream_tls.load_failed plc1", "upstream_tls.load plc2"}},
		{"tls glob", Filter{Events: []string{"tls.*"}}, []string{"tls.load plc1-tls"}},
		{"event", Filter{Events: []string{"upstream_tls.load_failed"}}, []string{"upstream_tls.load_failed plc1"}},
		{"listener as target", Filter{Targets: []string{"plc1"}}, []string{"upstream_tls.load plc1", "upstream_tls.load_failed plc1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _ := run(t, Query{Filter: tc.f}, path)
			if got := eventListeners(recs); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			for _, r := range recs {
				if r.Event == "upstream_tls.load_failed" && r.Error != failed {
					t.Errorf("upstream_tls.load_failed error %q, want %q", r.Error, failed)
				}
			}
		})
	}
}
