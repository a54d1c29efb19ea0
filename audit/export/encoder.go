package export

import (
	"bufio"
	"fmt"
	"io"
	"slices"

	"github.com/interlock-ics/interlock/audit/query"
)

// Formats are the export formats.
var Formats = []string{"ocsf", "cef", "csv", "jsonl"}

// Encoder writes query matches in one export format, one line (or CSV row)
// per call with its result joined or per other record; jsonl writes the
// records as they are: a call's result record after it when joined, by
// itself when the query emits it at its place in the log (LogOrder).
type Encoder struct {
	format   string
	w        *bufio.Writer
	fallback string            // version when the log names none
	versions map[string]string // gateway id → version of its latest gateway.start
	buf      []byte
	csv      *csvWriter
	header   bool
}

// NewEncoder writes format to w. version is used for the product version
// until a gateway.start record names the gateway's own (see Observe).
func NewEncoder(w io.Writer, format, version string) (*Encoder, error) {
	if !slices.Contains(Formats, format) {
		return nil, fmt.Errorf("export: unknown format %q (want one of %v)", format, Formats)
	}
	e := &Encoder{format: format, w: bufio.NewWriterSize(w, 256<<10), fallback: version, versions: map[string]string{}}
	if format == "csv" {
		e.csv = newCSVWriter(e.w)
	}
	return e, nil
}

// Observe learns each gateway's version from its gateway.start records; give
// it every record read (query.Query.Observe), matching or not.
func (e *Encoder) Observe(r *query.Record) {
	if r.Event == query.EventGatewayStart && r.Version != "" && e.versions[r.Gateway] != r.Version {
		e.versions[r.Gateway] = r.Version
	}
}

func (e *Encoder) version(r *query.Record) string {
	if v := e.versions[r.Gateway]; v != "" {
		return v
	}
	return e.fallback
}

// Write writes one match. It does not keep r.
func (e *Encoder) Write(r *query.Record) error {
	switch e.format {
	case "jsonl":
		e.buf = append(append(e.buf[:0], r.Line...), '\n')
		if r.Result != nil {
			e.buf = append(append(e.buf, r.Result.Line...), '\n')
		}
	case "ocsf":
		e.buf = append(AppendOCSF(e.buf[:0], r, e.version(r)), '\n')
	case "cef":
		e.buf = append(AppendCEF(e.buf[:0], r, e.version(r)), '\n')
	case "csv":
		if !e.header {
			e.header = true
			if err := e.csv.header(); err != nil {
				return err
			}
		}
		return e.csv.write(r)
	}
	_, err := e.w.Write(e.buf)
	return err
}

// Close writes what is buffered (and the CSV header of an empty export).
func (e *Encoder) Close() error {
	if e.csv != nil {
		if !e.header {
			e.header = true
			if err := e.csv.header(); err != nil {
				return err
			}
		}
		if err := e.csv.flush(); err != nil {
			return err
		}
	}
	return e.w.Flush()
}
