package opcua_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// Single-node Reads of a node-opcua server at SecurityPolicy None on both
// legs, directly and through the gateway (real policy, real audit log), with
// 1 and 8 client sessions. Run: go test -run '^$' -bench Read ./gateway/opcua/
func BenchmarkRead(b *testing.B) {
	srv := opcuatest.StartServer(b, opcuatest.ServerOptions{})
	g := startGateway(b, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	for _, target := range []struct{ name, endpoint string }{{"direct", srv.Endpoint}, {"gateway", g.endpoint}} {
		for _, sessions := range []int{1, 8} {
			b.Run(target.name+"/sessions="+string(rune('0'+sessions)), func(b *testing.B) {
				benchRead(b, target.endpoint, sessions)
			})
		}
	}
}

// The same against `interlock sim opcua` in this process: the gateway's own
// cost shows fully here, and allocs/op (gateway minus direct) is its
// machine-independent part. Run:
//
//	go test -run '^$' -bench ReadSim -benchmem ./gateway/opcua/
func BenchmarkReadSim(b *testing.B) {
	sim, err := opcuasim.Start(opcuasim.Options{Endpoint: "opc.tcp://127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })
	g := startGateway(b, gwOpts{upstream: sim.Endpoint(), opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	for _, target := range []struct{ name, endpoint string }{{"direct", sim.Endpoint()}, {"gateway", g.endpoint}} {
		b.Run(target.name, func(b *testing.B) {
			b.ReportAllocs()
			benchReadNode(b, target.endpoint, 1, opcuasim.NodePressure)
		})
	}
}

func benchRead(b *testing.B, endpoint string, sessions int) {
	benchReadNode(b, endpoint, sessions, opcuatest.NodePressure)
}

func benchReadNode(b *testing.B, endpoint string, sessions int, node string) {
	ctx := context.Background()
	clients := make([]*gopcua.Client, sessions)
	for i := range clients {
		c, err := gopcua.NewClient(endpoint, gopcua.AutoReconnect(false), gopcua.SecurityMode(ua.MessageSecurityModeNone))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		defer c.Close(ctx)
		clients[i] = c
	}
	req := &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(node),
		AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}}}}
	lat := make([][]time.Duration, sessions)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		n := b.N / sessions
		if i < b.N%sessions {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				t0 := time.Now()
				resp, err := c.Read(ctx, req)
				if err != nil || resp.Results[0].Status != ua.StatusOK {
					b.Errorf("read: %v", err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50_us")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99_us")
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "reads/s")
}
