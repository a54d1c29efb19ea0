package report

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// trustFolders are the folders a pki.load names for a store at dir.
func trustFolders(dir string) []string {
	return []string{dir + "/trusted/certs", dir + "/trusted/crl", dir + "/issuer/certs", dir + "/issuer/crl"}
}

// trustSummary is a pki or user_pki object as a pki.load writes it.
func trustSummary(trusted, issuers, crls, revoked int) map[string]int {
	return map[string]int{"trusted_certs": trusted, "issuer_certs": issuers, "crls": crls, "revoked_certificates": revoked}
}

// OPC UA trust-list checks are shown beside the Modbus/TCP Security file
// loads: when, which listener and folders, what the trust lists of pki (and
// user_pki) held, the sessions they ended, and the connections to the server
// closed when its certificate no longer passed; a failed read is a finding.
// A check with the trust lists unchanged (trust_changed false) is counted
// and shown as a re-check, not as a change; a load without the field (an
// older log) is a change. None of them is filed under the events the
// report does not interpret.
func TestReportPKILoads(t *testing.T) {
	l := newLog(t)
	at := func(s string) time.Time { return ts("2026-11-26T" + s + "Z") }
	paths := append(trustFolders("/etc/interlock/pki"), trustFolders("/etc/interlock/user-pki")...)
	const badRead = `user_pki: open /etc/interlock/user-pki/trusted/certs: permission denied`
	const badServer = `server certificate: certificate "CN=` + hostileReason + `": Bad_CertificateUntrusted`
	l.add(ts("2026-11-25T22:00:00Z"), "pki.load", field{"listener", "before-period"}, field{"paths", paths[:4]},
		field{"pki", trustSummary(9, 9, 9, 9)}, field{"sessions_ended", 5},
		field{"upstream_connections_dropped", 9}, field{"upstream_error", "before the period"})
	l.add(at("08:00:00"), "pki.load", field{"listener", hostileUser}, field{"trust_changed", true}, field{"paths", paths},
		field{"pki", trustSummary(3, 1, 1, 2)}, field{"user_pki", trustSummary(5, 4, 6, 7)}, field{"sessions_ended", 1},
		field{"upstream_connections_dropped", 2}, field{"upstream_error", badServer})
	l.add(at("08:30:00"), "pki.load", field{"listener", "line2"}, field{"trust_changed", false}, field{"paths", paths[:4]},
		field{"pki", trustSummary(0, 0, 0, 0)}, field{"sessions_ended", 2})
	l.add(at("08:45:00"), "pki.load", field{"listener", "line3"}, field{"paths", paths[:4]},
		field{"pki", trustSummary(1, 0, 0, 0)}, field{"sessions_ended", 0})
	l.add(at("09:00:00"), "pki.load_failed", field{"listener", "line1"}, field{"error", badRead})
	rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	a := rep.agg
	for _, ev := range []string{"pki.load", "pki.load_failed"} {
		if o := a.others.m[ev]; o != nil {
			t.Errorf("%s is filed under events the report does not interpret", ev)
		}
	}
	if a.pkiLoads.Total != 3 || a.pkiChanged != 2 || a.pkiFails.Total != 1 || a.pkiEnded != 3 {
		t.Fatalf("pki loads %d (%d changes), failures %d, sessions ended %d in the period; want 3 (2), 1 and 3",
			a.pkiLoads.Total, a.pkiChanged, a.pkiFails.Total, a.pkiEnded)
	}
	if changed := []bool{a.pkiLoads.Rows[0].TrustChanged, a.pkiLoads.Rows[1].TrustChanged, a.pkiLoads.Rows[2].TrustChanged}; !slices.Equal(changed, []bool{true, false, true}) {
		t.Errorf("trust changed by row %v, want true, false and true (no field)", changed)
	}
	if got := a.pkiLoads.Rows[0]; got.Listener != hostileUser || !slices.Equal(got.Paths, paths) ||
		got.PKI != (trustLists{Trusted: 3, Issuers: 1, CRLs: 1, Revoked: 2}) || !got.HasUserPKI ||
		got.UserPKI != (trustLists{Trusted: 5, Issuers: 4, CRLs: 6, Revoked: 7}) || got.SessionsEnded != 1 ||
		!got.HasUpstream || got.UpstreamDropped != 2 || got.UpstreamError != badServer {
		t.Errorf("pki.load row: %+v", got)
	}
	if got := a.pkiLoads.Rows[1]; got.HasUserPKI || got.SessionsEnded != 2 || got.HasUpstream || got.UpstreamDropped != 0 || got.UpstreamError != "" {
		t.Errorf("pki.load row without user_pki and upstream: %+v", got)
	}
	if a.pkiUpFails != 1 || a.pkiDropped != 2 {
		t.Errorf("server certificate failures %d, connections closed %d in the period; want 1 and 2", a.pkiUpFails, a.pkiDropped)
	}
	if got := a.pkiFails.Rows[0]; got.Listener != "line1" || got.Error != badRead {
		t.Errorf("pki.load_failed row: %+v", got)
	}

	sec := section(t, page, "policy")
	if strings.Contains(sec, hostileUser) {
		t.Errorf("a listener name is in the page unescaped")
	}
	if strings.Contains(sec, hostileReason) {
		t.Errorf("an upstream error is in the page unescaped")
	}
	for _, want := range []string{`<span data-k="pki-changes">2</span>`, `<span data-k="pki-rechecks">1</span>`, `<span data-k="pki-sessions-ended">3</span>`} {
		if !strings.Contains(sec, want) {
			t.Errorf("the policy section lacks %s", want)
		}
	}
	text := pageText(sec)
	for _, want := range []string{
		"OPC UA trust lists", "is a pki.load record.", "Changes in the period: 2 ; re-checks without a change: 1 .",
		"2026-11-26 08:00:00.000 seq 2 " + hostileUser + " " + strings.Join(paths, ", ") +
			" changed 3 user_pki 5 1 user_pki 4 1 user_pki 6 2 user_pki 7 1 2 " + badServer + " 2026-11-26 08:30:00.000",
		"2026-11-26 08:30:00.000 seq 3 line2 " + strings.Join(paths[:4], ", ") + " re-checked without a change 0 0 0 0 2 2026-11-26 08:45:00.000",
		"2026-11-26 08:45:00.000 seq 4 line3 " + strings.Join(paths[:4], ", ") + " changed 1 0 0 0 0 OPC UA trust-list read failures",
		"1 OPC UA trust-list read failed ( pki.load_failed , once per distinct error); open sessions were not checked again.",
		"2026-11-26 09:00:00.000 seq 5 line1 " + badRead,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the policy section lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "before-period") {
		t.Errorf("a pki.load before the period is shown in it")
	}
	checkFindings(t, rep,
		"The OPC UA trust lists changed twice and were re-checked without a change once in the period (pki.load);"+
			" 3 sessions were ended because their certificate no longer passed;"+
			" the server's certificate no longer passed once, and 2 connections to the server were closed.",
		"1 OPC UA trust-list read failed; open sessions were not checked again (pki.load_failed).",
	)
}

// The findings count in words: one session ended is "its certificate", and
// a load that ended none says nothing of sessions; the server's certificate
// is spoken of only when a connection to the server was closed; a load with
// the trust lists unchanged is a re-check, never a change.
func TestReportPKIFindingsWording(t *testing.T) {
	for _, tc := range []struct {
		loads, ended, fails int
		dropped             []int // per load from the first: its server certificate no longer passed, and this many connections closed
		want                []string
		rechecks            int // loads after the first ones, with trust_changed false (those have no such field)
	}{
		{1, 0, 0, nil, []string{"The OPC UA trust lists changed once in the period (pki.load)."}, 0},
		{1, 1, 2, nil, []string{
			"The OPC UA trust lists changed once in the period (pki.load); 1 session was ended because its certificate no longer passed.",
			"2 OPC UA trust-list reads failed; open sessions were not checked again (pki.load_failed).",
		}, 0},
		{3, 2, 1, nil, []string{
			"The OPC UA trust lists changed 3 times in the period (pki.load); 2 sessions were ended because their certificate no longer passed.",
			"1 OPC UA trust-list read failed; open sessions were not checked again (pki.load_failed).",
		}, 0},
		{0, 0, 1, nil, []string{"1 OPC UA trust-list read failed; open sessions were not checked again (pki.load_failed)."}, 0},
		{1, 0, 0, []int{1}, []string{
			"The OPC UA trust lists changed once in the period (pki.load); the server's certificate no longer passed once, and 1 connection to the server was closed.",
		}, 0},
		{2, 1, 0, []int{3, 0}, []string{
			"The OPC UA trust lists changed twice in the period (pki.load); 1 session was ended because its certificate no longer passed;" +
				" the server's certificate no longer passed twice, and 3 connections to the server were closed.",
		}, 0},
		{3, 2, 0, []int{0, 4, 1}, []string{
			"The OPC UA trust lists changed 3 times in the period (pki.load); 2 sessions were ended because their certificate no longer passed;" +
				" the server's certificate no longer passed 3 times, and 5 connections to the server were closed.",
		}, 0},
		{2, 0, 0, []int{0}, []string{"The OPC UA trust lists changed twice in the period (pki.load)."}, 0},
		{0, 1, 0, nil, []string{
			"The OPC UA trust lists were re-checked without a change once in the period (pki.load); 1 session was ended because its certificate no longer passed.",
		}, 1},
		{0, 0, 0, []int{2}, []string{
			"The OPC UA trust lists were re-checked without a change 3 times in the period (pki.load); the server's certificate no longer passed once, and 2 connections to the server were closed.",
		}, 3},
		{1, 2, 1, nil, []string{
			"The OPC UA trust lists changed once and were re-checked without a change twice in the period (pki.load); 2 sessions were ended because their certificate no longer passed.",
			"1 OPC UA trust-list read failed; open sessions were not checked again (pki.load_failed).",
		}, 2},
	} {
		t.Run(fmt.Sprintf("loads %d, re-checks %d, ended %d, failed %d, dropped %v", tc.loads, tc.rechecks, tc.ended, tc.fails, tc.dropped), func(t *testing.T) {
			l := newLog(t)
			for i := range tc.loads + tc.rechecks {
				ended := 0
				if i == 0 {
					ended = tc.ended
				}
				fs := []field{{"listener", "line1"}, {"paths", trustFolders("/etc/interlock/pki")},
					{"pki", trustSummary(i, 0, 0, 0)}, {"sessions_ended", ended}}
				if i >= tc.loads {
					fs = append(fs, field{"trust_changed", false})
				}
				if i < len(tc.dropped) {
					fs = append(fs, field{"upstream_connections_dropped", tc.dropped[i]},
						field{"upstream_error", `server certificate: certificate "CN=plc" is not trusted: Bad_CertificateUntrusted`})
				}
				l.add(ts("2026-11-26T08:00:00Z"), "pki.load", fs...)
			}
			for i := range tc.fails {
				l.add(ts("2026-11-26T09:00:00Z"), "pki.load_failed", field{"listener", "line1"},
					field{"error", fmt.Sprintf("pki: open /etc/interlock/pki%d/trusted/certs: permission denied", i)})
			}
			rep, page := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
			if pki := findingsWith(rep, "pki.load"); !slices.Equal(pki, tc.want) {
				t.Errorf("findings about pki loads:\n%q\nwant\n%q", pki, tc.want)
			}
			if tc.fails == 0 && !strings.Contains(page, "<h3>OPC UA trust-list read failures</h3>\n<p class=\"muted\">None.</p>") {
				t.Errorf("no pki.load_failed, and the page does not say None under the failures")
			}
		})
	}
}

// A pki.load's folders are bounded like a tls.load's lists, its upstream
// error like other text of a record, and fields of another type than the
// record's leave the rest of the row as written (a trust_changed that is
// not false is a change); a negative count of connections closed counts none.
func TestPKILoadFieldsBounded(t *testing.T) {
	l := newLog(t)
	var paths []string
	for i := range 10 {
		paths = append(paths, fmt.Sprintf("/%s/%d/trusted/certs", strings.Repeat("x", 300), i))
	}
	l.add(ts("2026-11-26T08:00:00Z"), "pki.load", field{"listener", "line1"}, field{"paths", paths},
		field{"pki", trustSummary(1, 2, 3, 4)}, field{"user_pki", "not an object"}, field{"sessions_ended", 1}, field{"trust_changed", "no"},
		field{"upstream_connections_dropped", "many"}, field{"upstream_error", "server certificate: " + strings.Repeat("é", 1000)})
	l.add(ts("2026-11-26T08:10:00Z"), "pki.load", field{"listener", "line1"}, field{"paths", paths[:1]},
		field{"pki", trustSummary(1, 2, 3, 4)}, field{"sessions_ended", 0},
		field{"upstream_connections_dropped", -3}, field{"upstream_error", "server certificate: revoked"})
	rep, _ := build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	got := rep.agg.pkiLoads.Rows[0]
	if len(got.Paths) != 9 || got.Paths[8] != "… 2 more" || len(got.Paths[0]) > 256+len("…") {
		t.Errorf("paths %d kept, last %q, first %d bytes", len(got.Paths), got.Paths[len(got.Paths)-1], len(got.Paths[0]))
	}
	if got.PKI != (trustLists{Trusted: 1, Issuers: 2, CRLs: 3, Revoked: 4}) || got.HasUserPKI || got.SessionsEnded != 1 || !got.TrustChanged {
		t.Errorf("a user_pki and a trust_changed of another type: row %+v", got)
	}
	if e := got.UpstreamError; !got.HasUpstream || got.UpstreamDropped != 0 || len(e) > maxFieldText+len("…") ||
		!strings.HasPrefix(e, "server certificate: éé") || !strings.HasSuffix(e, "é…") {
		t.Errorf("a long upstream error and a count of another type: %v, %d closed, error of %d bytes %q…",
			got.HasUpstream, got.UpstreamDropped, len(e), e[:min(len(e), 40)])
	}
	if got := rep.agg.pkiLoads.Rows[1]; !got.HasUpstream || got.UpstreamDropped != 0 || rep.agg.pkiDropped != 0 {
		t.Errorf("a negative count of connections closed: row %+v, %d closed in the period", got, rep.agg.pkiDropped)
	}
	if fs := findingsWith(rep, "server's certificate"); len(fs) > 0 {
		t.Errorf("no connection to the server closed, yet a finding says %q", fs)
	}
	// A count without its error still says the server's certificate failed.
	l = newLog(t)
	l.add(ts("2026-11-26T08:00:00Z"), "pki.load", field{"listener", "line1"}, field{"paths", paths[:1]},
		field{"pki", trustSummary(1, 2, 3, 4)}, field{"sessions_ended", 0}, field{"upstream_connections_dropped", 1})
	rep, _ = build(t, Options{Files: []string{l.write(t.TempDir())}, From: periodFrom, To: periodTo})
	if got := rep.agg.pkiLoads.Rows[0]; !got.HasUpstream || got.UpstreamDropped != 1 || got.UpstreamError != "" {
		t.Errorf("connections closed without an error: row %+v", got)
	}
	want := "The OPC UA trust lists changed once in the period (pki.load); the server's certificate no longer passed once, and 1 connection to the server was closed."
	if f := rep.view().Findings; !slices.Contains(f, want) {
		t.Errorf("connections closed without an error: findings %q", f)
	}
}
