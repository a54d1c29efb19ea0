package ship

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// nopSink takes everything after formatting each syslog message.
type nopSink struct {
	n      atomic.Int64
	format *Syslog
	buf    []byte
}

func (s *nopSink) Send(_ context.Context, recs []Record) error {
	if s.format != nil {
		for i := range recs {
			s.buf = s.format.AppendMessage(s.buf[:0], &recs[i])
		}
	}
	s.n.Add(int64(len(recs)))
	return nil
}

func (s *nopSink) Close(context.Context) error { return nil }

// BenchmarkShip measures how fast a shipper drains a backlog of call
// records (about 700 bytes each) from the log into a sink that takes
// everything: reading, parsing and, for syslog, formatting.
func BenchmarkShip(b *testing.B) {
	for _, format := range []string{FormatJSON, FormatCEF} {
		b.Run(format, func(b *testing.B) {
			l := newTestLog(b)
			extra := `,"call_id":"4baf1dea14f476585ff3a20c4e9f969c","session_id":"b1881343d0d8fad86ba74e859abb469d","listener":"plc1",` +
				`"source":{"ip":"127.0.0.1","port":55906,"name":"ews-alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},` +
				`"target":{"name":"plc1","upstream":"tcp://127.0.0.1:15502","unit_id":1},"protocol":"modbus",` +
				`"operation":{"function":"read_holding_registers","access":"read","code":3,"address":100,"quantity":10},` +
				`"decision":{"allow":true,"alert":false,"reasons":["read"],"policy_revision":"625cc695ee7ff6e5","decision_id":"2293f02a538f97921ab2bb9543827d3c","mode":"enforce"}`
			const n = 100000
			var sb strings.Builder
			for range n {
				sb.WriteString(l.line("call", extra))
				sb.WriteByte('\n')
			}
			l.write(sb.String())
			b.ResetTimer()
			for range b.N {
				sink := &nopSink{}
				sink.format, _ = NewSyslog(SyslogOptions{Address: "127.0.0.1:1", Format: format})
				b.StopTimer()
				s, err := New(Options{Name: "bench", Path: l.path, Sink: sink, CursorPath: b.TempDir() + "/cursor"})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := s.Start(); err != nil {
					b.Fatal(err)
				}
				for sink.n.Load() < n {
					time.Sleep(time.Millisecond)
				}
				b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s.Stop(ctx)
				cancel()
			}
		})
	}
}
