package report

import (
	"bytes"
	"os"
	"testing"

	"github.com/interlock-ics/interlock/audit/query/querytest"
)

// The decoder's share of a report: every line of a generated log of 20,000
// records (the writer's own lines, rotations and checkpoints included),
// decoded as Build decodes them.
//
//	go test ./audit/report -run '^$' -bench DecodeRecord
func BenchmarkDecodeRecord(b *testing.B) {
	var lines [][]byte
	for _, f := range querytest.BenchFiles(b, 20_000) {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		lines = append(lines, bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))...)
	}
	var size int64
	for _, l := range lines {
		size += int64(len(l)) + 1
	}
	dec := newDecoder()
	var r record
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			r = record{}
			if err := decodeRecord(l, &r, dec); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(len(lines))/float64(b.N), "ns/record")
}
