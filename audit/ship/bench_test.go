package ship

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/interlock-ics/interlock/audit/ship/shiptest"
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

// benchCall is the body of a typical call record (about 700 bytes a line).
const benchCall = `,"call_id":"4baf1dea14f476585ff3a20c4e9f969c","session_id":"b1881343d0d8fad86ba74e859abb469d","listener":"plc1",` +
	`"source":{"ip":"127.0.0.1","port":55906,"name":"ews-alice"},"principal":{"user":"alice","auth":"inventory","roles":["engineer"]},` +
	`"target":{"name":"plc1","upstream":"tcp://127.0.0.1:15502","unit_id":1},"protocol":"modbus",` +
	`"operation":{"function":"read_holding_registers","access":"read","code":3,"address":100,"quantity":10},` +
	`"decision":{"allow":true,"alert":false,"reasons":["read"],"policy_revision":"625cc695ee7ff6e5","decision_id":"2293f02a538f97921ab2bb9543827d3c","mode":"enforce"}`

const benchRecords = 100000

// benchLog is a log of benchRecords call records.
func benchLog(b *testing.B) *testLog {
	l := newTestLog(b)
	var sb strings.Builder
	for range benchRecords {
		sb.WriteString(l.line("call", benchCall))
		sb.WriteByte('\n')
	}
	l.write(sb.String())
	return l
}

// benchShip ships the whole log from the start once per iteration and
// reports records/s: from Start until the receiver counted them all.
func benchShip(b *testing.B, l *testLog, sink func() Sink, received func() int64) {
	b.Helper()
	var total time.Duration
	for range b.N {
		b.StopTimer()
		base := received()
		s, err := New(Options{Name: "bench", Path: l.path, Sink: sink(), CursorPath: b.TempDir() + "/cursor"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := s.Start(); err != nil {
			b.Fatal(err)
		}
		for received()-base < benchRecords {
			time.Sleep(100 * time.Microsecond)
		}
		total += time.Since(start)
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Stop(ctx)
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchRecords)*float64(b.N)/total.Seconds(), "records/s")
}

// BenchmarkShip measures how fast a shipper drains a backlog of call
// records from the log: into a sink that takes everything (reading,
// parsing and formatting), to a syslog receiver on a local TCP port
// (octet-counted frames read and counted), and to a local HTTP receiver
// (JSON lines read and counted, 200 for each batch).
func BenchmarkShip(b *testing.B) {
	l := benchLog(b)
	for _, format := range []string{FormatJSON, FormatCEF} {
		b.Run("format-only/"+format, func(b *testing.B) {
			var n atomic.Int64
			benchShip(b, l, func() Sink {
				f, _ := NewSyslog(SyslogOptions{Address: "127.0.0.1:1", Format: format})
				return &countSink{n: &n, inner: &nopSink{format: f}}
			}, n.Load)
		})
	}
	for _, format := range []string{FormatJSON, FormatCEF} {
		b.Run("syslog-tcp/"+format, func(b *testing.B) {
			addr, n := countingSyslogReceiver(b)
			benchShip(b, l, func() Sink {
				s, err := NewSyslog(SyslogOptions{Address: addr, Format: format})
				if err != nil {
					b.Fatal(err)
				}
				return s
			}, n.Load)
		})
	}
	b.Run("http-jsonl", func(b *testing.B) {
		var n atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sc := bufio.NewScanner(r.Body)
			sc.Buffer(nil, 1<<20)
			k := 0
			for sc.Scan() {
				k++
			}
			n.Add(int64(k))
		}))
		defer srv.Close()
		benchShip(b, l, func() Sink {
			h, err := NewHTTP(HTTPOptions{URL: srv.URL + "/ingest"})
			if err != nil {
				b.Fatal(err)
			}
			return h
		}, n.Load)
	})
}

// countSink counts what its inner sink took.
type countSink struct {
	n     *atomic.Int64
	inner Sink
}

func (c *countSink) Send(ctx context.Context, recs []Record) error {
	err := c.inner.Send(ctx, recs)
	if err == nil {
		c.n.Add(int64(len(recs)))
	}
	return err
}

func (c *countSink) Close(ctx context.Context) error { return c.inner.Close(ctx) }

// countingSyslogReceiver reads octet-counted frames on a local port and
// counts them; it closes a connection when the sender does.
func countingSyslogReceiver(b *testing.B) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	n := &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReaderSize(c, 256<<10)
				for {
					if _, err := shiptest.ReadFrame(br); err != nil {
						if err != io.EOF {
							b.Error(err)
						}
						return
					}
					n.Add(1)
				}
			}()
		}
	}()
	return ln.Addr().String(), n
}
