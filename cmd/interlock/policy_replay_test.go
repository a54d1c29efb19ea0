package main

import (
	"strings"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/policy"
)

// The text and markdown replay reports count files, decisions and groups
// in words: "1 file", "2 files", "1 group", never "group(s)".
func TestReplayReportsCountInWords(t *testing.T) {
	at := time.Date(2026, 11, 26, 2, 14, 27, 0, time.UTC)
	report := func(files, decisions, groups int) *policy.ReplayReport {
		rep := &policy.ReplayReport{PolicyRevision: "0123456789abcdef", Files: make([]string, files), From: at, To: at,
			Totals: policy.ReplayTotals{Replayed: decisions, NewlyDenied: groups}, Groups: map[policy.Change][]policy.ChangeGroup{}}
		for range groups {
			rep.Groups[policy.NewlyDenied] = append(rep.Groups[policy.NewlyDenied],
				policy.ChangeGroup{User: "alice", Source: "ews-1", Target: "plc1", Function: "write_single_register", Count: 1})
		}
		return rep
	}
	const span = " from 2026-11-26 02:14:27Z to 2026-11-26 02:14:27Z"
	for _, tc := range []struct {
		name           string
		rep            *policy.ReplayReport
		text, markdown []string
	}{
		{"one of each", report(1, 1, 1),
			[]string{"policy replay: 1 recorded decision" + span + " in 1 file\ncandidate policy ./p (revision 01234567)\n", "\nnewly denied: 1 in 1 group\n"},
			[]string{"1 recorded decision" + span + " in 1 audit log, decided again under `./p` (revision `01234567`).\n"},
		},
		{"one more group than shown", report(2, 60, maxReplayGroups+1),
			[]string{"policy replay: 60 recorded decisions" + span + " in 2 files\n", "\nnewly denied: 51 in 51 groups\n", "\n  … 1 more group (--format json lists them all)\n"},
			[]string{"60 recorded decisions" + span + " in 2 audit logs, decided", "\n… 1 more group (`--format json` lists them all).\n"},
		},
		{"more groups than shown", report(3, 60, maxReplayGroups+2),
			[]string{" in 3 files\n", "\nnewly denied: 52 in 52 groups\n", "\n  … 2 more groups (--format json lists them all)\n"},
			[]string{" in 3 audit logs, decided", "\n… 2 more groups (`--format json` lists them all).\n"},
		},
	} {
		var text, md strings.Builder
		if err := replayText(&text, tc.rep, "./p"); err != nil {
			t.Fatal(err)
		}
		if err := replayMarkdown(&md, tc.rep, "./p"); err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.text {
			if !strings.Contains(text.String(), w) {
				t.Errorf("%s: text lacks %q:\n%s", tc.name, w, text.String())
			}
		}
		for _, w := range tc.markdown {
			if !strings.Contains(md.String(), w) {
				t.Errorf("%s: markdown lacks %q:\n%s", tc.name, w, md.String())
			}
		}
		if strings.Contains(text.String()+md.String(), "(s)") {
			t.Errorf("%s: a count with (s):\n%s\n%s", tc.name, text.String(), md.String())
		}
	}
}
