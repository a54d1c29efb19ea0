package audit

import (
	"compress/gzip"
	"fmt"
	"io"
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
//
// The writer never compresses a file, but an operator may gzip rotated
// files in place (<rotated name>.gz). The tools that read a log decompress
// them and list them with LogFilesWithGzip, and so does retention (which
// counts and deletes them too); the writer and the shipper read files as
// they are on disk and list them with LogFiles.

// gzipExt ends the name of a file compressed with gzip.
const gzipExt = ".gz"

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
	return logFiles(path, false)
}

// LogFilesWithGzip is LogFiles with the rotated files that were compressed
// with gzip (…jsonl.gz) in their place in the chain, for readers that
// decompress them (OpenLogFile). A rotated file there both compressed and
// not (gzip still at work, or run with -k) is listed once, uncompressed.
func LogFilesWithGzip(path string) ([]string, error) {
	return logFiles(path, true)
}

func logFiles(path string, withGzip bool) ([]string, error) {
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
	plain := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if withGzip {
			name = strings.TrimSuffix(name, gzipExt)
		}
		if seq, ok := rotatedSeq(name, stem, ext); ok && e.Type().IsRegular() {
			rs = append(rs, rotated{filepath.Join(dir, e.Name()), seq})
			if name == e.Name() {
				plain[name] = true
			}
		}
	}
	// A compressed copy beside its uncompressed file is left out.
	rs = slices.DeleteFunc(rs, func(r rotated) bool {
		base, gz := strings.CutSuffix(filepath.Base(r.name), gzipExt)
		return gz && plain[base]
	})
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

// OpenLogFile opens a file of a log for reading; a name ending in .gz is
// decompressed with gzip, so the lines read are the records as written. A
// file that is not gzip is an error naming it; a stream damaged further on
// is an error of Read that says so.
func OpenLogFile(name string) (io.ReadCloser, error) {
	f, err := os.Open(name)
	if err != nil || !strings.HasSuffix(name, gzipExt) {
		return f, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a readable gzip file: %w", name, err)
	}
	return &gzipFile{zr: zr, f: f}, nil
}

// gzipFile is a file of a log compressed with gzip, read decompressed.
type gzipFile struct {
	zr *gzip.Reader
	f  *os.File
}

func (g *gzipFile) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("the gzip stream is damaged: %w", err)
	}
	return n, err
}

func (g *gzipFile) Close() error {
	g.zr.Close()
	return g.f.Close()
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
