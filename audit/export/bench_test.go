//go:build unix

package export

import (
	"flag"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/query"
	"github.com/interlock-ics/interlock/audit/query/querytest"
)

// The speed of an export of a day of a busy site: the log of
// audit/query's benchmarks (-bench-records records, generated once by the
// real audit.Writer into $INTERLOCK_BENCH_DIR, else /dev/shm, else the temp
// dir), every record exported.
//
//	go test ./audit/export -run '^$' -bench Export -benchtime 3x
var benchRecords = flag.Int("bench-records", 1_000_000, "records in the generated log of the benchmarks")

func benchLog(b *testing.B) []string { return querytest.BenchFiles(b, *benchRecords) }

func BenchmarkExport(b *testing.B) {
	files := benchLog(b)
	for _, format := range Formats {
		b.Run(format, func(b *testing.B) { benchExport(b, files, format, true) })
	}
	// The same without the pipeline: one core does everything.
	b.Run("ocsf-one-goroutine", func(b *testing.B) { benchExport(b, files, "ocsf", false) })
}

// benchExport exports files in format as `audit export` does (pipelined),
// or on one goroutine.
func benchExport(b *testing.B, files []string, format string, pipelined bool) {
	var st query.Stats
	var out countWriter
	cpu := cpuTime()
	for b.Loop() {
		enc, err := NewEncoder(&out, format, "bench")
		if err != nil {
			b.Fatal(err)
		}
		write, observe, closer := enc.Write, enc.Observe, enc.Close
		if pipelined {
			p := NewPipeline(enc)
			write, observe, closer = p.Write, p.Observe, p.Close
		}
		q := query.Query{Observe: observe}
		if st, err = q.Run(query.NewReader(files...), write); err != nil {
			b.Fatal(err)
		}
		if err := closer(); err != nil {
			b.Fatal(err)
		}
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(st.Records)*float64(b.N)/secs, "records/s")
	b.ReportMetric(float64(st.Items)*float64(b.N)/secs, "events/s")
	b.ReportMetric(float64(out.n)/secs/1e6, "MB/s_out")
	b.ReportMetric(float64(st.Records)*float64(b.N)/(cpuTime()-cpu).Seconds(), "records/cpu-s")
}

// countWriter discards what it is given and counts it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countWriter)(nil)

// cpuTime is the user and system CPU time of the process so far: on a
// shared machine records per CPU second say more than records per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
