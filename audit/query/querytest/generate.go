// Package querytest writes genuine audit logs of any size for benchmarks of
// query, export and report: the records come from the real audit.Writer
// (hash chain, rotation, signed checkpoints), the traffic is that of a busy
// site (many sessions, mostly reads, some writes, denials, alerts,
// exceptions and malformed requests).
package querytest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// Options shape a generated log.
type Options struct {
	Path       string // the live file; rotated files go beside it
	Records    int    // about this many records (the last session ends the log)
	Workers    int    // concurrent sessions (default 8): group commit shares fsyncs
	RotateSize int64  // rotate the live file at this size (0: one file)
	Sign       bool   // write signed checkpoints
	Seed       uint64
}

// Users, sources and targets of the generated site; the benchmarks filter
// on them.
var (
	Users   = []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	Targets = []string{"plc1", "plc2", "plc3", "drives"}
)

// Generate writes the log and returns the number of records written.
func Generate(opts Options) (int, error) {
	if opts.Path == "" || opts.Records <= 0 {
		return 0, errors.New("querytest: a path and a record count are needed")
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	wo := audit.Options{Path: opts.Path, Gateway: "bench-gw1", Log: zerolog.Nop(), RotateSize: opts.RotateSize}
	if opts.Sign {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return 0, err
		}
		wo.SigningKey, wo.BootID = key, gateway.NewID()
	}
	w, err := audit.Open(wo)
	if err != nil {
		return 0, err
	}
	_ = w.Record("gateway.start", true, func(e *zerolog.Event) {
		e.Str("version", "bench").Str("boot_id", wo.BootID)
	})
	var (
		left     atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		errOnce  sync.Once
	)
	left.Store(int64(opts.Records) - 2)
	for i := range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)))
			for left.Load() > 0 {
				if err := session(w, rng, &left); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	_ = w.Record("gateway.stop", true, func(e *zerolog.Event) { e.Str("boot_id", wo.BootID) })
	if err := w.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	return int(w.Stats().Seq), firstErr
}

// Cached returns the live file of a generated log of about n records in
// dir, generating it (rotated at 64 MB, with signed checkpoints) unless an
// earlier run left it complete: benchmarks of several packages share one.
func Cached(dir string, n int) (path string, records int, err error) {
	sub := filepath.Join(dir, fmt.Sprintf("interlock-bench-audit-%d", n))
	path = filepath.Join(sub, "audit.jsonl")
	done := filepath.Join(sub, "complete")
	if b, err := os.ReadFile(done); err == nil {
		if records, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return path, records, nil
		}
	}
	if err := os.RemoveAll(sub); err != nil {
		return "", 0, err
	}
	records, err = Generate(Options{Path: path, Records: n, RotateSize: 64 << 20, Sign: true, Seed: 1})
	if err != nil {
		return "", 0, err
	}
	return path, records, os.WriteFile(done, []byte(strconv.Itoa(records)+"\n"), 0o644)
}

// session writes one client session: open, a run of calls, close.
func session(w *audit.Writer, rng *rand.Rand, left *atomic.Int64) error {
	ctx := context.Background()
	u := rng.IntN(len(Users) + 1) // the last one is an unknown source
	s := &gateway.Session{
		ID:       gateway.NewID(),
		Started:  time.Now().UTC(),
		Gateway:  "bench-gw1",
		Listener: "plc1",
		Protocol: "modbus",
		Source: gateway.Source{
			IP:   netip.AddrFrom4([4]byte{10, 0, 5, byte(10 + u)}),
			Port: uint16(40000 + rng.IntN(20000)),
		},
		Principal: gateway.Principal{Auth: gateway.AuthNone},
		Target:    gateway.Target{Name: "plc1", Upstream: "tcp://10.0.0.20:502", UnitID: -1},
	}
	if u < len(Users) {
		s.Source.Name, s.Source.Owner = "ews-"+Users[u], Users[u]
		s.Principal = gateway.Principal{User: Users[u], Auth: gateway.AuthInventory, Roles: []string{"engineer"}}
		if u >= 4 {
			s.Principal.Roles = []string{"operator"}
		}
	}
	open := gateway.Decision{Allow: true, Alert: u == len(Users), Reasons: []string{"session"}, Revision: "rev-1", ID: gateway.NewID(), Mode: "enforce"}
	w.SessionStart(ctx, s, &open, "")
	left.Add(-2) // open and close
	for calls := 1 + rng.IntN(40); calls > 0 && left.Load() > 0; calls-- {
		c, d, res := call(rng, s)
		if res == nil {
			w.Rejected(ctx, s, c, "quantity_out_of_range", "quantity 0 not in 1..125", "exception 3")
			left.Add(-1)
			continue
		}
		if err := w.Call(ctx, s, c, d); err != nil {
			return fmt.Errorf("querytest: %w", err)
		}
		w.Result(ctx, s, c, res)
		left.Add(-2)
	}
	w.SessionEnd(ctx, s, nil)
	return nil
}

// call makes one call of the mix, its decision and its result; a nil
// result is a malformed request.
func call(rng *rand.Rand, s *gateway.Session) (*gateway.Call, gateway.Decision, *gateway.Result) {
	target := Targets[rng.IntN(len(Targets))]
	unit := 1
	if target == "drives" {
		unit = 2 + rng.IntN(2)
	}
	c := &gateway.Call{
		ID:     gateway.NewID(),
		Time:   time.Now().UTC(),
		Target: gateway.Target{Name: target, Upstream: "tcp://10.0.0." + strconv.Itoa(20+len(target)) + ":502", UnitID: unit},
	}
	d := gateway.Decision{Allow: true, Reasons: []string{"read"}, Revision: "rev-1", ID: gateway.NewID(), Mode: "enforce"}
	res := &gateway.Result{Status: gateway.StatusOK, Latency: time.Duration(200+rng.IntN(3000)) * time.Microsecond}
	op := &c.Operation
	addr := int64(rng.IntN(20) * 100)
	p := rng.IntN(1000)
	switch {
	case p < 2:
		op.Function, op.Access = "read_holding_registers", gateway.AccessRead
		op.Int(gateway.KeyCode, 3)
		op.Int(gateway.KeyAddress, addr)
		op.Int(gateway.KeyQuantity, 0)
		return c, d, nil
	case p < 600:
		op.Function, op.Access = "read_holding_registers", gateway.AccessRead
		op.Int(gateway.KeyCode, 3)
		op.Int(gateway.KeyAddress, addr)
		op.Int(gateway.KeyQuantity, int64(1+rng.IntN(20)))
	case p < 700:
		op.Function, op.Access = "read_coils", gateway.AccessRead
		op.Int(gateway.KeyCode, 1)
		op.Int(gateway.KeyAddress, addr)
		op.Int(gateway.KeyQuantity, int64(1+rng.IntN(64)))
	case p < 760:
		op.Function, op.Access = "read_input_registers", gateway.AccessRead
		op.Int(gateway.KeyCode, 4)
		op.Int(gateway.KeyAddress, addr)
		op.Int(gateway.KeyQuantity, int64(1+rng.IntN(10)))
	case p < 860:
		op.Function, op.Access = "write_single_register", gateway.AccessWrite
		op.Int(gateway.KeyCode, 6)
		op.Int(gateway.KeyAddress, addr+int64(rng.IntN(10)))
		op.Ints(gateway.KeyValues, []int64{int64(rng.IntN(65536))})
	case p < 940:
		n := 1 + rng.IntN(8)
		vals := make([]int64, n)
		for i := range vals {
			vals[i] = int64(rng.IntN(65536))
		}
		op.Function, op.Access = "write_multiple_registers", gateway.AccessWrite
		op.Int(gateway.KeyCode, 16)
		op.Int(gateway.KeyAddress, addr)
		op.Int(gateway.KeyQuantity, int64(n))
		op.Ints(gateway.KeyValues, vals)
	case p < 980:
		op.Function, op.Access = "read_device_identification", gateway.AccessDiagnostic
		op.Int(gateway.KeyCode, 43)
		op.Int("mei_type", 14)
		op.Int("read_device_id_code", 1)
		op.Int("object_id", 0)
		d.Reasons = []string{"diagnostic_read"}
	case p < 995:
		op.Function, op.Access = "diagnostics", gateway.AccessDiagnostic
		op.Int(gateway.KeyCode, 8)
		op.Int("sub_function", 1)
		op.String("sub_function_name", "restart_communications")
		d.Allow, d.Alert, d.Reasons = false, true, []string{"diagnostics_denied"}
	default:
		op.Function, op.Access = "unknown", gateway.AccessProgram
		op.Int(gateway.KeyCode, 90)
		op.String("data", "0102")
		d.Allow, d.Alert, d.Reasons = false, true, []string{"unknown_function_denied"}
	}
	if op.Access == gateway.AccessWrite {
		switch {
		case s.Principal.User == "" || s.Principal.Roles[0] != "engineer":
			d.Allow, d.Alert, d.Reasons = false, true, []string{"account_not_approved"}
		case rng.IntN(4) == 0:
			d.Allow, d.Alert, d.Reasons = false, true, []string{"outside_maintenance_window"}
		default:
			d.Reasons = []string{"maintenance_window:CHG-" + strconv.Itoa(1000+rng.IntN(50))}
			if addr >= 1000 && addr < 1100 {
				d.Alert = true
				d.Reasons = append(d.Reasons, "protected_range:safety_limits")
			}
		}
	} else if s.Principal.Auth == gateway.AuthNone && d.Allow {
		d.Alert = true
	}
	switch {
	case !d.Allow:
		res = &gateway.Result{Status: gateway.StatusDenied, Detail: strings.Join(d.Reasons, ",")}
	case rng.IntN(100) == 0:
		res.Status, res.Code, res.Detail = gateway.StatusException, 2, "illegal data address"
	case rng.IntN(200) == 0:
		res.Status, res.Code, res.Detail = gateway.StatusError, 0x0b, "upstream timeout"
	}
	return c, d, res
}
