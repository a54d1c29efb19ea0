package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Modbus/TCP Security file loads are shown beside the users files': when,
// which listener and files, the certificate in force, its CRLs and the
// sessions they ended; a failed load is a finding. None of them is filed
// under the events the report does not interpret.
func TestReportTLSFileLoads(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	paths := []string{"/etc/interlock/gw.crt", "/etc/interlock/gw.key", "/etc/interlock/clients-ca.crt", "/etc/interlock/clients.crl"}
	const thumb = "5b1e0f1c9d2a7e3b4c6d8e0f1a2b3c4d5e6f7a8b"
	const stale = `the CRL of "CN=clients CA" was due for its next update at 2026-11-20T00:00:00Z`
	const badCRL = `listener plc1-tls: tls.crl: /etc/interlock/clients.crl: CRL 1, of "CN=other", is not signed by a CA in tls.client_ca`
	cert := func(subject string) []field {
		return []field{{"paths", paths}, {"cert_subject", subject}, {"cert_thumbprint", thumb},
			{"cert_not_after", "2027-11-26T00:00:00Z"}, {"crls", 1}, {"revoked_certificates", 2}}
	}
	l.add(ts("2026-11-25T22:00:00Z"), "tls.load", append(append([]field{{"listener", "plc1-tls"}}, cert("CN=before-period")...),
		field{"sessions_ended", 5})...)
	l.add(at("08:00:00"), "tls.load", append(append([]field{{"listener", "plc1-tls"}}, cert("CN="+hostileUser)...),
		field{"sessions_ended", 1}, field{"stale_crls", []string{stale}})...)
	l.add(at("08:30:00"), "tls.load", field{"listener", "plc2-tls"}, field{"paths", paths[:3]}, field{"cert_subject", "CN=plc2 gateway"},
		field{"cert_thumbprint", thumb}, field{"cert_not_after", "2027-12-01T00:00:00Z"}, field{"crls", 0}, field{"revoked_certificates", 0},
		field{"sessions_ended", 2})
	l.add(at("09:00:00"), "tls.load_failed", append(append([]field{{"listener", "plc1-tls"}}, cert("CN=interlock gateway")...),
		field{"error", badCRL})...)
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	a := rep.agg
	for _, ev := range []string{"tls.load", "tls.load_failed"} {
		if o := a.others.m[ev]; o != nil {
			t.Errorf("%s is filed under events the report does not interpret", ev)
		}
	}
	if a.tlsLoads.Total != 2 || a.tlsFails.Total != 1 || a.tlsEnded != 3 {
		t.Fatalf("tls loads %d, failures %d, sessions ended %d in the period; want 2, 1 and 3", a.tlsLoads.Total, a.tlsFails.Total, a.tlsEnded)
	}
	if got := a.tlsLoads.Rows[0]; got.Listener != "plc1-tls" || !slices.Equal(got.Paths, paths) || got.Subject != "CN="+hostileUser ||
		got.Thumbprint != thumb || !got.NotAfter.Equal(ts("2027-11-26T00:00:00Z")) || got.CRLs != 1 || got.Revoked != 2 ||
		got.SessionsEnded != 1 || !slices.Equal(got.StaleCRLs, []string{stale}) {
		t.Errorf("tls.load row: %+v", got)
	}
	if got := a.tlsFails.Rows[0]; got.Listener != "plc1-tls" || got.Error != badCRL || got.Subject != "CN=interlock gateway" {
		t.Errorf("tls.load_failed row: %+v", got)
	}

	sec := section(t, page, "policy")
	if strings.Contains(sec, hostileUser) {
		t.Errorf("a certificate subject is in the page unescaped")
	}
	for _, want := range []string{`<span data-k="tls-changes">2</span>`, `<span data-k="tls-sessions-ended">3</span>`} {
		if !strings.Contains(sec, want) {
			t.Errorf("the policy section lacks %s", want)
		}
	}
	text := pageText(sec)
	for _, want := range []string{
		"Modbus/TCP Security certificates and trust", "is a tls.load record (nothing is recorded at start). Changes in the period: 2 .",
		"2026-11-26 08:00:00.000 seq 2 plc1-tls " + strings.Join(paths, ", ") + " CN=" + hostileUser + " SHA-1 " + thumb +
			" 2027-11-26 00:00:00.000 1 " + stale + " 2 1",
		"2026-11-26 08:30:00.000 seq 3 plc2-tls " + strings.Join(paths[:3], ", ") + " CN=plc2 gateway SHA-1 " + thumb +
			" 2027-12-01 00:00:00.000 0 0 2",
		"1 Modbus/TCP Security file load failed ( tls.load_failed , once per distinct error); the certificate and trust in force stayed.",
		"2026-11-26 09:00:00.000 seq 4 plc1-tls " + badCRL,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the policy section lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "before-period") {
		t.Errorf("a tls.load before the period is shown in it")
	}
	checkFindings(t, rep,
		"The Modbus/TCP Security certificates or trust changed twice in the period (tls.load); 3 sessions were ended because their certificate no longer passed.",
		"1 Modbus/TCP Security file load failed; the certificate and trust in force stayed (tls.load_failed).",
	)
}

// The findings count in words: one session ended is "its certificate", and
// a load that ended none says nothing of sessions.
func TestReportTLSFindingsWording(t *testing.T) {
	for _, tc := range []struct {
		ended, fails int
		want         []string
	}{
		{0, 0, []string{"The Modbus/TCP Security certificates or trust changed once in the period (tls.load)."}},
		{1, 2, []string{
			"The Modbus/TCP Security certificates or trust changed once in the period (tls.load); 1 session was ended because its certificate no longer passed.",
			"2 Modbus/TCP Security file loads failed; the certificate and trust in force stayed (tls.load_failed).",
		}},
	} {
		t.Run(fmt.Sprintf("ended %d, failed %d", tc.ended, tc.fails), func(t *testing.T) {
			l := newLog(t)
			l.add(ts("2026-11-26T08:00:00Z"), "tls.load", field{"listener", "plc1-tls"}, field{"crls", 0},
				field{"revoked_certificates", 0}, field{"sessions_ended", tc.ended})
			for i := range tc.fails {
				l.add(ts("2026-11-26T09:00:00Z"), "tls.load_failed", field{"listener", "plc1-tls"},
					field{"error", fmt.Sprintf("listener plc1-tls: tls.cert: /etc/interlock/gw%d.crt: no such file", i)})
			}
			rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
			if tls := findingsWith(rep, "tls.load"); !slices.Equal(tls, tc.want) {
				t.Errorf("findings about tls loads:\n%q\nwant\n%q", tls, tc.want)
			}
			if tc.fails == 0 && !strings.Contains(page, "<h3>Modbus/TCP Security file load failures</h3>\n<p class=\"muted\">None.</p>") {
				t.Errorf("no tls.load_failed, and the page does not say None under the failures")
			}
		})
	}
}

// A tls.load's lists are bounded like a users.load's names.
func TestTLSLoadListsBounded(t *testing.T) {
	l := newLog(t)
	var stale []string
	for i := range 10 {
		stale = append(stale, fmt.Sprintf("the CRL of %q was due for its next update at 2026-11-20T00:00:00Z", strings.Repeat("x", 300)+fmt.Sprint(i)))
	}
	l.add(ts("2026-11-26T08:00:00Z"), "tls.load", field{"listener", "plc1-tls"}, field{"cert_subject", "CN=" + strings.Repeat("s", 1000)},
		field{"stale_crls", stale})
	rep, _ := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	got := rep.agg.tlsLoads.Rows[0]
	if len(got.StaleCRLs) != 9 || got.StaleCRLs[8] != "… 2 more" || len(got.StaleCRLs[0]) > 256+len("…") || len(got.Subject) > 256+len("…") {
		t.Errorf("stale CRLs %d kept, last %q, first %d bytes; subject %d bytes", len(got.StaleCRLs), got.StaleCRLs[len(got.StaleCRLs)-1],
			len(got.StaleCRLs[0]), len(got.Subject))
	}
}
