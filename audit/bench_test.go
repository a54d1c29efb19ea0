package audit

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// BenchmarkWriterCall measures call records per second as the gateway
// writes them, with signed checkpoints on (every 1000 records, as by
// default): reads (written to the OS, fsynced in the background) and
// writes (fsynced before Call returns, shared by concurrent callers), from
// 1 and 16 goroutines. For writes it reports the latency of a durable Call
// (p50, p99): the wait for the fsync round it joins. The rotate variants
// rotate every 4 MiB.
func BenchmarkWriterCall(b *testing.B) {
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []struct {
		name    string
		call    func(id string) *gateway.Call
		durable bool
		rotate  int64
	}{
		{"read", readCall, false, 0},
		{"read_rotate", readCall, false, 4 << 20},
		{"write_durable", writeCall, true, 0},
	} {
		for _, goroutines := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", kind.name, goroutines), func(b *testing.B) {
				l := newTestLog(b)
				l.opts.SyncInterval = 0 // the default, as in production
				l.opts.SigningKey, l.opts.BootID = key, "bench"
				l.opts.RotateSize = kind.rotate
				w := l.open(b)
				s, c, d := testSession(), kind.call("c1"), allow()
				ctx := context.Background()
				var mu sync.Mutex
				var lat []time.Duration
				one := func(own *[]time.Duration) error {
					if !kind.durable {
						return w.Call(ctx, s, c, d)
					}
					start := time.Now()
					err := w.Call(ctx, s, c, d)
					*own = append(*own, time.Since(start))
					return err
				}
				b.ReportAllocs()
				b.ResetTimer()
				if goroutines == 1 {
					for b.Loop() {
						if err := one(&lat); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
					b.RunParallel(func(pb *testing.PB) {
						var own []time.Duration
						for pb.Next() {
							if err := one(&own); err != nil {
								b.Error(err)
								return
							}
						}
						mu.Lock()
						lat = append(lat, own...)
						mu.Unlock()
					})
				}
				b.StopTimer()
				st := w.Stats()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
				b.ReportMetric(float64(st.Fsyncs)/float64(b.N), "fsyncs/record")
				if st.Checkpoints < uint64(b.N/(DefaultCheckpointEvery+1)) {
					b.Errorf("%d checkpoints in %d records", st.Checkpoints, b.N)
				}
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				}
			})
		}
	}
}
