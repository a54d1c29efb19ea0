package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// A Modbus listener's upstream_tls loads are shown beside the Modbus/TCP
// Security file loads: when, which listener and files, the gateway's client
// certificate, CAs and CRLs (stale ones named) in force, and the
// connections to the PLCs closed; a failed load is a finding. None of them
// is filed under the events the report does not interpret.
func TestReportUpstreamTLSLoads(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	paths := []string{"/etc/interlock/plc-ca.crt", "/etc/interlock/gw-client.crt", "/etc/interlock/gw-client.key"}
	const thumb = "6c2f0e1d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d"
	const stale = `the CRL of "CN=PLC authority" was due for its next update at 2026-11-25T00:00:00Z`
	const badKey = "listener plc1: modbus.upstream_tls.key: /etc/interlock/gw-client.key is not the key of the certificate in /etc/interlock/gw-client.crt"
	cert := func(subject string, cas int) []field {
		return []field{{"paths", paths}, {"cert_subject", subject}, {"cert_thumbprint", thumb},
			{"cert_not_after", "2027-11-26T00:00:00Z"}, {"ca_certs", cas}}
	}
	l.add(ts("2026-11-25T22:00:00Z"), "upstream_tls.load", append(append([]field{{"listener", "plc1"}}, cert("CN=before-period", 1)...),
		field{"connections_closed", 5})...)
	l.add(at("08:00:00"), "upstream_tls.load", append(append([]field{{"listener", "plc1"}}, cert("CN="+hostileUser, 2)...),
		field{"crls", 2}, field{"revoked_certificates", 3}, field{"stale_crls", []string{stale}}, field{"connections_closed", 1})...)
	l.add(at("08:30:00"), "upstream_tls.load", append(append([]field{{"listener", "plc2"}}, cert("CN=plc2 gateway", 1)...),
		field{"connections_closed", 2})...)
	l.add(at("09:00:00"), "upstream_tls.load_failed", append(append([]field{{"listener", "plc1"}}, cert("CN=interlock gateway", 2)...),
		field{"error", badKey})...)
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	a := rep.agg
	for _, ev := range []string{"upstream_tls.load", "upstream_tls.load_failed"} {
		if o := a.others.m[ev]; o != nil {
			t.Errorf("%s is filed under events the report does not interpret", ev)
		}
	}
	if a.upLoads.Total != 2 || a.upFails.Total != 1 || a.upClosed != 3 {
		t.Fatalf("upstream_tls loads %d, failures %d, connections closed %d in the period; want 2, 1 and 3", a.upLoads.Total, a.upFails.Total, a.upClosed)
	}
	if got := a.upLoads.Rows[0]; got.Listener != "plc1" || !slices.Equal(got.Paths, paths) || got.Subject != "CN="+hostileUser ||
		got.Thumbprint != thumb || !got.NotAfter.Equal(ts("2027-11-26T00:00:00Z")) || got.CAs != 2 ||
		got.CRLs != 2 || got.Revoked != 3 || !slices.Equal(got.StaleCRLs, []string{stale}) || got.Closed != 1 {
		t.Errorf("upstream_tls.load row: %+v", got)
	}
	if got := a.upFails.Rows[0]; got.Listener != "plc1" || got.Error != badKey || got.Subject != "CN=interlock gateway" || got.CAs != 2 {
		t.Errorf("upstream_tls.load_failed row: %+v", got)
	}

	sec := section(t, page, "policy")
	if strings.Contains(sec, hostileUser) {
		t.Errorf("a certificate subject is in the page unescaped")
	}
	for _, want := range []string{`<span data-k="upstream-tls-changes">2</span>`, `<span data-k="upstream-tls-closed">3</span>`} {
		if !strings.Contains(sec, want) {
			t.Errorf("the policy section lacks %s", want)
		}
	}
	text := pageText(sec)
	for _, want := range []string{
		"Modbus/TCP Security toward the PLCs", "is an upstream_tls.load record (nothing is recorded at start). Changes in the period: 2 .",
		"2026-11-26 08:00:00.000 seq 2 plc1 " + strings.Join(paths, ", ") + " CN=" + hostileUser + " SHA-1 " + thumb +
			" 2027-11-26 00:00:00.000 2 2 " + stale + " 3 1",
		"2026-11-26 08:30:00.000 seq 3 plc2 " + strings.Join(paths, ", ") + " CN=plc2 gateway SHA-1 " + thumb +
			" 2027-11-26 00:00:00.000 1 0 0 2",
		"1 upstream_tls file load failed ( upstream_tls.load_failed , once per distinct error); the certificate, CAs and CRLs in force stayed.",
		"2026-11-26 09:00:00.000 seq 4 plc1 " + badKey,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the policy section lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "before-period") {
		t.Errorf("an upstream_tls.load before the period is shown in it")
	}
	checkFindings(t, rep,
		"The gateway's client certificate, CAs or CRLs toward its Modbus/TCP Security PLCs changed twice in the period (upstream_tls.load); 3 connections to the PLCs were closed to use them.",
		"1 upstream_tls file load failed; the certificate, CAs and CRLs in force stayed (upstream_tls.load_failed).",
	)
	if tls := findingsWith(rep, "(tls.load"); len(tls) != 0 {
		t.Errorf("upstream_tls records counted as a listener's tls loads: %q", tls)
	}
}

// The findings count in words, and a load that closed no connection says
// nothing of connections.
func TestReportUpstreamTLSFindingsWording(t *testing.T) {
	for _, tc := range []struct {
		closed, fails int
		want          []string
	}{
		{0, 0, []string{"The gateway's client certificate, CAs or CRLs toward its Modbus/TCP Security PLCs changed once in the period (upstream_tls.load)."}},
		{1, 2, []string{
			"The gateway's client certificate, CAs or CRLs toward its Modbus/TCP Security PLCs changed once in the period (upstream_tls.load); 1 connection to the PLCs was closed to use them.",
			"2 upstream_tls file loads failed; the certificate, CAs and CRLs in force stayed (upstream_tls.load_failed).",
		}},
	} {
		t.Run(fmt.Sprintf("closed %d, failed %d", tc.closed, tc.fails), func(t *testing.T) {
			l := newLog(t)
			l.add(ts("2026-11-26T08:00:00Z"), "upstream_tls.load", field{"listener", "plc1"}, field{"ca_certs", 1},
				field{"connections_closed", tc.closed})
			for i := range tc.fails {
				l.add(ts("2026-11-26T09:00:00Z"), "upstream_tls.load_failed", field{"listener", "plc1"},
					field{"error", fmt.Sprintf("listener plc1: modbus.upstream_tls.cert: open /etc/interlock/gw%d.crt: no such file", i)})
			}
			rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
			if got := findingsWith(rep, "upstream_tls.load"); !slices.Equal(got, tc.want) {
				t.Errorf("findings about upstream_tls loads:\n%q\nwant\n%q", got, tc.want)
			}
			if tc.fails == 0 && !strings.Contains(page, "<h3>Modbus/TCP Security toward the PLCs: load failures</h3>\n<p class=\"muted\">None.</p>") {
				t.Errorf("no upstream_tls.load_failed, and the page does not say None under the failures")
			}
		})
	}
}
