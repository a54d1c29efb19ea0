package modbus_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/modbus"
	"github.com/interlock-ics/interlock/gateway/modbus/modbussim"
	"github.com/interlock-ics/interlock/policy"
)

// BenchmarkGatewayRead drives FC 3 reads through the whole gateway in one
// process — frame, decode, the quickstart policy, the audit log on a real
// file, the upstream round trip to the simulator — for profiling:
//
//	go test -run '^$' -bench GatewayRead -cpuprofile cpu.out ./gateway/modbus/
func BenchmarkGatewayRead(b *testing.B) {
	simLn, _ := net.Listen("tcp", "127.0.0.1:0")
	sim := modbussim.New(modbussim.Options{})
	go sim.Serve(simLn)
	defer sim.Close()

	dir := b.TempDir()
	aw, err := audit.Open(audit.Options{Path: filepath.Join(dir, "audit.jsonl"), Gateway: "bench", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer aw.Close()
	pol, err := policy.New(policy.Options{Path: quickstartPolicy(b), Gateway: "bench", Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	p := &gateway.Pipeline{Decider: pol, Auditor: aw}
	up := "tcp://" + simLn.Addr().String()
	target := gateway.Target{Name: "plc1", Upstream: up, UnitID: -1}
	limits := gateway.Limits{RequestTimeout: time.Second, IdleTimeout: time.Minute}
	eng, err := modbus.New(gateway.EngineSpec{Listener: "plc1", Upstream: up, Target: target, Limits: limits, Pipeline: p, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	inv := gateway.NewInventory([]gateway.Workstation{{Prefix: netip.MustParsePrefix("127.0.0.1/32"),
		Name: "ews-alice", User: "alice", Roles: []string{"engineer"}}})
	l := &gateway.Listener{Name: "plc1", Protocol: "modbus", Gateway: "bench", Target: target,
		Engine: eng, Pipeline: p, Identify: inv, Limits: limits, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go l.Serve(ctx, ln)

	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		req := []byte{0, 0, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10}
		resp := make([]byte, 9+20)
		var tid uint16
		for pb.Next() {
			tid++
			binary.BigEndian.PutUint16(req, tid)
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, resp); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func quickstartPolicy(b *testing.B) string {
	src := "../../examples/quickstart/policy"
	dst := b.TempDir()
	for _, f := range []string{"interlock.rego", "data.json"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dst
}
