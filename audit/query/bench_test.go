//go:build unix

package query

import (
	"flag"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/query/querytest"
)

// The speed of a query over a day of a busy site: a log of
// -bench-records records (default 1,000,000) written by the real
// audit.Writer, generated once into $INTERLOCK_BENCH_DIR (else /dev/shm,
// else the temp dir) and reused by later runs and by audit/export.
//
//	go test ./audit/query -run '^$' -bench Query -benchtime 3x
var benchRecords = flag.Int("bench-records", 1_000_000, "records in the generated log of the benchmarks")

func benchLog(b *testing.B) []string { return querytest.BenchFiles(b, *benchRecords) }

func BenchmarkQuery(b *testing.B) {
	files := benchLog(b)
	for _, bc := range []struct {
		name   string
		filter Filter
		table  bool
	}{
		// The question of an incident review: one user's successful writes of
		// several registers.
		{"selective", Filter{Users: []string{"carol"}, Functions: []string{"write_multiple_registers"}, Statuses: []string{"ok"}}, true},
		{"denials", Filter{Decisions: []string{"deny"}}, true},
		{"address", Filter{Addresses: []Span{{1000, 1099}}, Accesses: []string{"write"}}, true},
		// Everything, as a table: the cost of formatting every row.
		{"all-table", Filter{}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var st Stats
			cpu := cpuTime()
			for b.Loop() {
				q := Query{Filter: bc.filter}
				t := NewTable(io.Discard)
				var err error
				st, err = q.Run(NewReader(files...), t.Write)
				if err != nil {
					b.Fatal(err)
				}
				t.Flush()
			}
			b.ReportMetric(float64(st.Records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(st.Bytes)*float64(b.N)/b.Elapsed().Seconds()/1e6, "MB/s")
			b.ReportMetric(float64(st.Items), "matches")
			b.ReportMetric(float64(st.Records)*float64(b.N)/(cpuTime()-cpu).Seconds(), "records/cpu-s")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	line := sampleCall
	var r Record
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if err := r.decode(line); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// cpuTime is the user and system CPU time of the process so far: on a
// shared machine records per CPU second say more than records per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
