package opcua

import (
	"context"
	"runtime"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// BenchmarkIdleSessionMemory reports the heap an idle client session holds
// in the gateway, its upstream session (gopcua client) included, at
// SecurityPolicy None. Run: go test -run '^$' -bench IdleSession ./gateway/opcua/
func BenchmarkIdleSessionMemory(b *testing.B) {
	srv := opcuatest.StartServer(b, opcuatest.ServerOptions{})
	const n = 8 // node-opcua serves ten connections per endpoint by default
	for range b.N {
		h := newHarnessFor(b, srv.Endpoint)
		c := h.conn(1)
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		for range n {
			cs := create(b, c)
			if r := activate(c, cs.AuthenticationToken, nil); r.Header().ServiceResult != ua.StatusOK {
				b.Fatalf("activate: %v", r.Header().ServiceResult)
			}
			rd := &ua.ReadRequest{RequestHeader: hdr(cs.AuthenticationToken), NodesToRead: []*ua.ReadValueID{
				{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}
			if r := c.handle(context.Background(), rd); r.Header().ServiceResult != ua.StatusOK {
				b.Fatalf("read: %v", r.Header().ServiceResult)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/n, "heap_bytes/session")
		b.ReportMetric(float64(ms1.NumGC-ms0.NumGC), "gc")
		h.e.Close()
	}
}
