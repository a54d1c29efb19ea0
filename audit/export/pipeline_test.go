package export

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/interlock-ics/interlock/audit/query"
)

// The pipeline writes what the encoder writes, in the same order, with the
// version of the gateway.start observed before each match.
func TestPipelineWritesWhatTheEncoderWrites(t *testing.T) {
	recs := []*query.Record{joined(t, lineCallDenied, lineResultDenied), parse(t, lineSessionOpen), parse(t, lineRejected)}
	start := parse(t, lineGatewayStart)
	for _, format := range Formats {
		var direct, piped bytes.Buffer
		enc, _ := NewEncoder(&direct, format, "exporter")
		pipe, _ := NewEncoder(&piped, format, "exporter")
		p := NewPipeline(pipe)
		for i := range 600 { // several batches
			r := recs[i%len(recs)]
			if i == 300 {
				enc.Observe(start)
				p.Observe(start)
			}
			if err := enc.Write(r); err != nil {
				t.Fatal(err)
			}
			// The caller reuses its record once Write returns.
			c := r.Clone()
			if err := p.Write(c); err != nil {
				t.Fatal(err)
			}
			c.CallID, c.Line = "overwritten", "overwritten"
			if c.Result != nil {
				c.Result.Status = "overwritten"
			}
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if direct.String() != piped.String() {
			t.Errorf("%s: the pipeline wrote something else", format)
		}
		if format == "cef" && (!strings.Contains(direct.String(), "|exporter|") || !strings.Contains(direct.String(), "|1.4.0|")) {
			t.Errorf("cef: the observed version was not used")
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n++; f.n > 2 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestPipelineReportsTheEncodersError(t *testing.T) {
	enc, _ := NewEncoder(&failWriter{}, "ocsf", "v")
	p := NewPipeline(enc)
	r := joined(t, lineCallRead, lineResultOK)
	var err error
	for i := 0; i < 100000 && err == nil; i++ {
		err = p.Write(r)
	}
	if cerr := p.Close(); cerr == nil || (err != nil && err.Error() != "disk full") || cerr.Error() != "disk full" {
		t.Errorf("write error %v, close error %v; want disk full", err, cerr)
	}
}
