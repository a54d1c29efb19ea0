package query

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The OPC UA trust-list records are events --event accepts, and the filters
// pick them out by event and by listener (as their target); their nested
// pki objects do not disturb the decoding of the fields around them.
func TestTrustListRecords(t *testing.T) {
	for _, e := range []string{"pki.load", "pki.load_failed"} {
		if !slices.Contains(Events, e) {
			t.Errorf("%s is not in Events", e)
		}
	}
	summary := func(trusted, issuers, crls, revoked int) obj {
		return obj{{"trusted_certs", trusted}, {"issuer_certs", issuers}, {"crls", crls}, {"revoked_certificates", revoked}}
	}
	const failed = "user_pki: open /etc/interlock/user-pki/trusted/certs: permission denied"
	path := writeLog(t, t.TempDir(), "audit.jsonl", []string{
		line(1, "tls.load", kv{"listener", "plc1-tls"}, kv{"paths", []string{"/etc/interlock/gw.crt"}}, kv{"crls", 1},
			kv{"revoked_certificates", 2}, kv{"sessions_ended", 0}),
		line(2, "pki.load", kv{"listener", "line1"}, kv{"paths", []string{"/etc/interlock/pki/trusted/certs"}},
			kv{"pki", summary(2, 1, 1, 3)}, kv{"user_pki", summary(4, 0, 0, 0)}, kv{"sessions_ended", 1}),
		line(3, "pki.load", kv{"listener", "line2"}, kv{"paths", []string{"/etc/interlock/pki2/trusted/certs"}},
			kv{"pki", summary(1, 0, 0, 0)}, kv{"sessions_ended", 0}),
		line(4, "pki.load_failed", kv{"listener", "line1"}, kv{"error", failed}),
	})
	for _, tc := range []struct {
		name string
		f    Filter
		want []string
	}{
		{"event glob", Filter{Events: []string{"pki.*"}}, []string{"pki.load line1", "pki.load line2", "pki.load_failed line1"}},
		{"event", Filter{Events: []string{"pki.load_failed"}}, []string{"pki.load_failed line1"}},
		{"listener as target", Filter{Targets: []string{"line1"}}, []string{"pki.load line1", "pki.load_failed line1"}},
		{"time range", Filter{Events: []string{"pki.load"}, From: base.Add(3 * time.Second)}, []string{"pki.load line2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs, _ := run(t, Query{Filter: tc.f}, path)
			if got := eventListeners(recs); !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			for _, r := range recs {
				if r.Event == "pki.load_failed" && r.Error != failed {
					t.Errorf("pki.load_failed error %q, want %q", r.Error, failed)
				}
				if want := fmt.Sprintf("%064x", r.Seq); r.Hash != want {
					t.Errorf("%s seq %d: hash %q, want %q (the fields after its objects)", r.Event, r.Seq, r.Hash, want)
				}
			}
		})
	}
}

// eventListeners names each record by its event and listener.
func eventListeners(recs []*Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Event+" "+r.Listener)
	}
	return out
}
