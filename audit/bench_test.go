package audit

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

// BenchmarkWriterCall measures call records per second: reads (written to
// the OS, fsynced in the background) and writes (fsynced before Call
// returns, shared by concurrent callers), from 1 and 16 goroutines.
func BenchmarkWriterCall(b *testing.B) {
	for _, kind := range []struct {
		name string
		call func(id string) *gateway.Call
	}{
		{"read", readCall},
		{"write_durable", writeCall},
	} {
		for _, goroutines := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", kind.name, goroutines), func(b *testing.B) {
				l := newTestLog(b)
				l.opts.SyncInterval = 0 // the default, as in production
				w := l.open(b)
				s, c, d := testSession(), kind.call("c1"), allow()
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				if goroutines == 1 {
					for b.Loop() {
						if err := w.Call(ctx, s, c, d); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := w.Call(ctx, s, c, d); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(w.Stats().Fsyncs)/float64(b.N), "fsyncs/record")
			})
		}
	}
}
