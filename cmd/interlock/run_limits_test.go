package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/cmd/interlock/internal/config"
	"github.com/interlock-ics/interlock/gateway"
)

// A listener's limits reach the gateway's listener: the connection rate
// per source by default, turned off with 0, or as configured.
func TestBuildListenersConnRate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "policy"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(`gateway:
  id: gw1
listeners:
  - name: plc1
    protocol: modbus
    listen: 127.0.0.1:0
    upstream: tcp://127.0.0.1:502
  - name: plc2
    protocol: modbus
    listen: 127.0.0.1:0
    upstream: tcp://127.0.0.1:503
    limits: {conn_rate_per_source: 0}
  - name: plc3
    protocol: modbus
    listen: 127.0.0.1:0
    upstream: tcp://127.0.0.1:504
    limits: {conn_rate_per_source: 2.5, conn_burst_per_source: 4}
policy:
  path: ./policy
audit:
  path: ./audit.jsonl
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ls, _, err := buildListeners(cfg, &gateway.Pipeline{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range ls {
			l.Engine.Close()
		}
	}()
	for i, want := range []struct {
		rate  float64
		burst int
	}{{gateway.DefaultConnRatePerSource, 20}, {0, 20}, {2.5, 4}} {
		if got := ls[i].Limits; got.ConnRatePerSource != want.rate || got.ConnBurstPerSource != want.burst {
			t.Errorf("%s: conn rate %v, burst %d; want %v, %d", ls[i].Name, got.ConnRatePerSource, got.ConnBurstPerSource, want.rate, want.burst)
		}
	}
}
