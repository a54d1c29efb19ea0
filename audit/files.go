package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A log is one live file (Options.Path) and the files rotated out of it,
// beside it in the same directory, named
//
//	<stem>-<UTC time of rotation>-<seq of its first record>.jsonl
//
// where stem is the live file's name without its extension: audit.jsonl
// rotates into audit-20261126T051000Z-000000000001234.jsonl. The seq is
// zero-padded so that names sort in chain order; LogFiles orders by the
// number anyway.

const rotatedTimeFormat = "20060102T150405Z"

// RotatedName is the name a log file gets when it is rotated out.
func RotatedName(path string, at time.Time, firstSeq uint64) string {
	dir, stem, ext := splitLogPath(path)
	return filepath.Join(dir, fmt.Sprintf("%s-%s-%015d%s", stem, at.UTC().Format(rotatedTimeFormat), firstSeq, ext))
}

// LogFiles returns the files of the log whose live file is path, in chain
// order: the rotated files by the seq of their first record, then the live
// file when it exists.
func LogFiles(path string) ([]string, error) {
	dir, stem, ext := splitLogPath(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	type rotated struct {
		name string
		seq  uint64
	}
	var rs []rotated
	for _, e := range entries {
		if seq, ok := rotatedSeq(e.Name(), stem, ext); ok && e.Type().IsRegular() {
			rs = append(rs, rotated{filepath.Join(dir, e.Name()), seq})
		}
	}
	slices.SortFunc(rs, func(a, b rotated) int {
		if a.seq != b.seq {
			if a.seq < b.seq {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	files := make([]string, 0, len(rs)+1)
	for _, r := range rs {
		files = append(files, r.name)
	}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	}
	return files, nil
}

// rotatedSeq parses the first seq out of a rotated file's name.
func rotatedSeq(name, stem, ext string) (uint64, bool) {
	rest, ok := strings.CutPrefix(name, stem+"-")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, ext)
	if !ok {
		return 0, false
	}
	ts, seq, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	if _, err := time.Parse(rotatedTimeFormat, ts); err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	return n, err == nil
}

func splitLogPath(path string) (dir, stem, ext string) {
	dir, base := filepath.Split(path)
	ext = filepath.Ext(base)
	return filepath.Clean(dir), strings.TrimSuffix(base, ext), ext
}
