package report

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// maxLine bounds one line, as the audit writer does (16 MiB); the rest of
// a longer line is skipped and the line counts as unreadable.
const maxLine = 16 << 20

// Report is everything one pass over a log found, ready to render.
type Report struct {
	opts      Options
	agg       *aggregator
	Files     []FileInfo
	Verify    Verification
	Generated time.Time
	Elapsed   time.Duration
}

// Build reads the log's files once, in order, and aggregates every record;
// the chain verifier reads the same files beside it. A line that is not an
// audit record is counted and shown, not fatal: the report is most needed
// for a damaged log.
func Build(ctx context.Context, opts Options) (*Report, error) {
	if err := opts.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	began := time.Now()
	rep := &Report{opts: opts, Generated: opts.Now().UTC()}
	rep.agg = newAggregator(&rep.opts)
	verified := make(chan Verification, 1)
	go func() { verified <- opts.Verify(opts.Files) }()
	var err error
	for _, f := range opts.Files {
		var fi FileInfo
		if fi, err = rep.agg.readFile(ctx, f); err != nil {
			break
		}
		rep.Files = append(rep.Files, fi)
	}
	rep.Verify = <-verified
	if err != nil {
		return nil, err
	}
	if v := &rep.Verify; v.OK() && v.Records != uint64(rep.agg.records) {
		v.Notes = append(v.Notes, fmt.Sprintf("the verifier read %d records and this report %d: the log changed while the report was made (a live log); "+
			"the numbers of the report are of the records it read", v.Records, rep.agg.records))
	}
	rep.Elapsed = time.Since(began)
	return rep, nil
}

func (a *aggregator) readFile(ctx context.Context, name string) (FileInfo, error) {
	fi := FileInfo{Name: name}
	f, err := os.Open(name)
	if err != nil {
		return fi, fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	// The hash is of the file as stored; a rotated file someone gzipped
	// is read decompressed.
	var in io.Reader = io.TeeReader(f, h)
	if strings.HasSuffix(name, ".gz") {
		zr, err := gzip.NewReader(in)
		if err != nil {
			return fi, fmt.Errorf("report: %s: not a readable gzip file: %w", name, err)
		}
		in = zr
	}
	br := bufio.NewReaderSize(in, 256<<10)
	var (
		r    record
		line []byte
	)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) <= maxLine+1 {
			line = append(line, chunk...)
		} else if len(line) <= maxLine {
			line = append(line, chunk[:maxLine+1-len(line)]...) // marks the line as too long
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fi, fmt.Errorf("report: reading %s: %w", name, err)
		}
		if len(line) > 0 {
			fi.Lines++
			if fi.Lines%4096 == 0 && ctx.Err() != nil {
				return fi, ctx.Err()
			}
			a.line(&fi, &r, bytes.TrimSuffix(line, []byte("\n")))
		}
		line = line[:0]
		if err != nil {
			break
		}
	}
	fi.Size, fi.SHA256 = bytesRead(f), hex.EncodeToString(h.Sum(nil))
	return fi, nil
}

// bytesRead is where the reader stopped: the size of the file as read.
func bytesRead(f *os.File) int64 {
	off, _ := f.Seek(0, io.SeekCurrent)
	return off
}

// line decodes one line into r and hands it to the aggregator.
func (a *aggregator) line(fi *FileInfo, r *record, line []byte) {
	where := func() string { return fmt.Sprintf("%s:%d", fi.Name, fi.Lines) }
	if len(line) > maxLine {
		fi.Unreadable++
		a.bad(where() + ": longer than 16 MiB")
		return
	}
	*r = record{}
	if err := decodeRecord(line, r, a.dec); err != nil {
		fi.Unreadable++
		a.bad(where() + ": not an audit record: " + clip(err.Error(), 120))
		return
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil || r.Event == "" {
		fi.Unreadable++
		a.bad(where() + ": no event or no RFC 3339 time")
		return
	}
	fi.Records++
	if fi.FirstSeq == 0 {
		fi.FirstSeq = r.Seq
	}
	fi.LastSeq = r.Seq
	a.add(line, r, t.UTC())
}

// Summary is the report's headline numbers.
type Summary struct {
	Records       int64 // records read in the whole log
	InPeriod      int64 // records in the period
	Unreadable    int64 // lines that are not audit records
	Calls         int64
	Allowed       int64
	Denied        int64
	Alerts        int64
	StateChanging int64
	Sessions      int64
	Rejected      int64
}

// Summary returns the headline numbers, as the page shows them.
func (r *Report) Summary() Summary {
	a := r.agg
	return Summary{
		Records: a.records, InPeriod: a.periodRecords, Unreadable: a.unreadable,
		Calls: a.calls, Allowed: a.allowed, Denied: a.denied, Alerts: a.alerted,
		StateChanging: a.state, Sessions: a.sessOpened, Rejected: a.rejected,
	}
}
