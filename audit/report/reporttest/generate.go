package reporttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
	"github.com/interlock-ics/interlock/gateway"
)

// Counts are what Generate wrote, for checking a report of the log.
type Counts struct {
	Records       uint64
	Calls         int64
	Denied        int64
	Alerts        int64
	StateChanging int64
	Sessions      int64
	Rejected      int64
}

// Generate writes a log of at least records records with the real audit
// writer, opened with opts (Path is required; signing, rotation and the
// rest as the test wants): sessions of engineers, operators and unknown
// sources calling reads, writes, diagnostics and unknown functions on three
// targets, each call with its result, malformed requests, and a policy
// change now and then. The mix is fixed by seed. State-changing calls are
// fsynced one by one, as the gateway does: give a path on a tmpfs to write
// fast.
func Generate(opts audit.Options, records uint64, seed uint64) (Counts, error) {
	if opts.Gateway == "" {
		opts.Gateway = "bench-gw1"
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Hour
	}
	if opts.BootID == "" {
		opts.BootID = "boot-bench"
	}
	w, err := audit.Open(opts)
	if err != nil {
		return Counts{}, err
	}
	defer w.Close()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ctx := context.Background()
	var n Counts
	type who struct {
		user, name string
		roles      []string
		ip         string
	}
	people := []who{
		{"alice", "ews-alice", []string{"engineer"}, "10.0.5.7"},
		{"bob", "hmi-line1", []string{"operator"}, "10.0.20.4"},
		{"carol", "ews-carol", []string{"engineer"}, "10.0.5.9"},
		{"hmi", "hmi-line2", []string{"operator"}, "10.0.20.5"},
		{"", "", nil, "10.0.66.6"},
	}
	targets := []string{"plc1", "plc2", "drives"}
	rev := 1
	load := func() error {
		return w.Record("policy.load", true, func(e *zerolog.Event) {
			e.Str("policy_revision", fmt.Sprintf("rev-%04d", rev)).Str("path", "/etc/interlock/policy").Strs("files", []string{"interlock.rego", "data.json"})
		})
	}
	if err := w.Record("gateway.start", true, func(e *zerolog.Event) {
		e.Str("version", "bench").Str("boot_id", opts.BootID).Str("policy_revision", fmt.Sprintf("rev-%04d", rev)).Str("policy_mode", "enforce")
	}); err != nil {
		return n, err
	}
	if err := load(); err != nil {
		return n, err
	}
	for sess := 0; w.Stats().Seq < records; sess++ {
		p := people[rng.IntN(len(people))]
		auth := gateway.AuthInventory
		if p.user == "" {
			auth = gateway.AuthNone
		}
		tgt := targets[rng.IntN(len(targets))]
		s := &gateway.Session{
			ID: fmt.Sprintf("s%08d", sess), Started: time.Now(), Gateway: "bench-gw1", Listener: tgt, Protocol: "modbus",
			Source:    gateway.Source{IP: netip.MustParseAddr(p.ip), Port: uint16(40000 + rng.IntN(20000)), Name: p.name},
			Principal: gateway.Principal{User: p.user, Auth: auth, Roles: p.roles},
			Target:    gateway.Target{Name: tgt, Upstream: "tcp://10.0.0.20:502", UnitID: 1},
		}
		revName := fmt.Sprintf("rev-%04d", rev)
		w.SessionStart(ctx, s, &gateway.Decision{Allow: true, Alert: p.user == "", Reasons: []string{"session"}, Revision: revName, ID: "d", Mode: "enforce"}, "")
		n.Sessions++
		calls := 20 + rng.IntN(200)
		for i := 0; i < calls && w.Stats().Seq < records; i++ {
			c := &gateway.Call{ID: fmt.Sprintf("%s-%04d", s.ID, i), Time: time.Now().UTC(), Target: s.Target}
			d := gateway.Decision{Allow: true, Reasons: []string{"read"}, Revision: revName, ID: c.ID, Mode: "enforce"}
			res := &gateway.Result{Status: gateway.StatusOK, Latency: time.Duration(300+rng.IntN(3000)) * time.Microsecond}
			switch x := rng.IntN(1000); {
			case x < 800:
				c.Operation = gateway.Operation{Function: "read_holding_registers", Access: gateway.AccessRead}
				c.Operation.Int("code", 3)
				c.Operation.Int("address", int64(rng.IntN(400)))
				c.Operation.Int("quantity", int64(1+rng.IntN(20)))
			case x < 880:
				c.Operation = gateway.Operation{Function: "read_coils", Access: gateway.AccessRead}
				c.Operation.Int("code", 1)
				c.Operation.Int("address", int64(rng.IntN(100)))
				c.Operation.Int("quantity", 8)
			case x < 960:
				c.Operation = gateway.Operation{Function: "write_single_register", Access: gateway.AccessWrite}
				c.Operation.Int("code", 6)
				c.Operation.Int("address", int64(rng.IntN(400)))
				c.Operation.Ints("values", []int64{int64(rng.IntN(65536))})
				if p.roles == nil || p.roles[0] != "engineer" {
					d = gateway.Decision{Allow: false, Alert: true, Reasons: []string{"account_not_approved"}, Revision: revName, ID: c.ID, Mode: "enforce"}
				} else {
					d.Reasons = []string{"maintenance_window:weekly"}
				}
			case x < 990:
				c.Operation = gateway.Operation{Function: "write_multiple_registers", Access: gateway.AccessWrite}
				c.Operation.Int("code", 16)
				c.Operation.Int("address", 200)
				c.Operation.Int("quantity", 4)
				c.Operation.Ints("values", []int64{1, 2, 3, 4})
				d = gateway.Decision{Allow: true, Alert: true, Reasons: []string{"protected_range:safety_limits"}, Revision: revName, ID: c.ID, Mode: "enforce"}
			case x < 997:
				c.Operation = gateway.Operation{Function: "diagnostics", Access: gateway.AccessDiagnostic}
				c.Operation.Int("code", 8)
				c.Operation.Int("sub_function", 1)
				c.Operation.String("sub_function_name", "restart_communications")
				d = gateway.Decision{Allow: false, Alert: true, Reasons: []string{"diagnostics_denied"}, Revision: revName, ID: c.ID, Mode: "enforce"}
			default:
				c.Operation = gateway.Operation{Function: "unknown", Access: gateway.AccessProgram}
				c.Operation.Int("code", 0x5A)
				c.Operation.String("data", "0102")
				d = gateway.Decision{Allow: false, Alert: true, Reasons: []string{"unknown_function_denied"}, Revision: revName, ID: c.ID, Mode: "enforce"}
			}
			if p.user == "" && d.Allow {
				d.Alert = true
			}
			if err := w.Call(ctx, s, c, d); err != nil {
				return n, err
			}
			n.Calls++
			if !d.Allow {
				n.Denied++
				res = &gateway.Result{Status: gateway.StatusDenied, Detail: d.Reasons[0]}
			}
			if d.Alert {
				n.Alerts++
			}
			if c.Operation.Access.ChangesState() {
				n.StateChanging++
			}
			w.Result(ctx, s, c, res)
			if rng.IntN(2000) == 0 {
				w.Rejected(ctx, s, &gateway.Call{ID: c.ID + "r"}, "quantity_out_of_range", "quantity 300 over 125", "exception 0x03")
				n.Rejected++
			}
		}
		w.SessionEnd(ctx, s, nil)
		if sess%500 == 499 {
			rev++
			if err := load(); err != nil {
				return n, err
			}
		}
	}
	if err := w.Record("gateway.stop", true, func(e *zerolog.Event) { e.Str("boot_id", opts.BootID) }); err != nil {
		return n, err
	}
	n.Records = w.Stats().Seq
	return n, nil
}
