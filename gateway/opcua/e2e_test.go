package opcua_test

import (
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// scenario is the same work done directly and through the gateway.
func scenario(endpoint string) opcuatest.Scenario {
	return opcuatest.Scenario{
		Endpoint: endpoint,
		Steps: []opcuatest.Step{
			{Read: []string{opcuatest.NodeSetpoint, opcuatest.NodePressure, opcuatest.NodeCounter, "ns=1;s=NoSuchNode"}},
			{Write: []opcuatest.WriteValue{{Node: opcuatest.NodeSetpoint, Value: 42.5, DataType: "Double"}}},
			{Read: []string{opcuatest.NodeSetpoint}},
			{Call: &opcuatest.Call{Object: opcuatest.NodePLC, Method: opcuatest.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 300}}}},
			{Read: []string{opcuatest.NodeSpeed}},
			{Browse: opcuatest.NodePLC},
			{Subscribe: &opcuatest.Subscribe{Node: opcuatest.NodeTemperature, Samples: 3, Interval: 100 * time.Millisecond}},
		},
	}
}

// summary is what must be equal between a direct run and one through the
// gateway (Temperature changes, so only the samples' count and type count).
type summary struct {
	Reads      [][]string
	Call       string
	References []string
	Samples    int
}

func summarize(t *testing.T, r *opcuatest.Result) summary {
	t.Helper()
	var s summary
	if !r.Connect.OK || !r.Session.OK {
		t.Fatalf("connect %+v session %+v\n%s", r.Connect, r.Session, r.Log)
	}
	for i, st := range r.Steps {
		step(t, r, i, st.Step)
		switch st.Step {
		case "read", "write":
			var vals []string
			for _, v := range st.Results {
				vals = append(vals, v.Node+"="+v.Status.Name+":"+v.DataType+":"+fmtAny(v.Value))
			}
			s.Reads = append(s.Reads, vals)
		case "call":
			s.Call = st.Status.Name
			for _, o := range st.Outputs {
				s.Call += " " + o.DataType + ":" + fmtAny(o.Value)
			}
		case "browse":
			for _, ref := range st.References {
				s.References = append(s.References, ref.BrowseName+"="+ref.NodeID+":"+ref.NodeClass)
			}
			slices.Sort(s.References)
		case "subscribe":
			for _, v := range st.Samples {
				if v.Status.Good() && v.DataType == "Double" {
					s.Samples++
				}
			}
		}
	}
	return s
}

func fmtAny(v any) string {
	if v == nil {
		return "null"
	}
	return fmtValue(v)
}

func equalSummary(t *testing.T, direct, through summary) {
	t.Helper()
	if !slices.EqualFunc(direct.Reads, through.Reads, slices.Equal) {
		t.Errorf("reads/writes differ:\ndirect  %v\ngateway %v", direct.Reads, through.Reads)
	}
	if direct.Call != through.Call {
		t.Errorf("call: direct %q, gateway %q", direct.Call, through.Call)
	}
	if !slices.Equal(direct.References, through.References) {
		t.Errorf("browse differs:\ndirect  %v\ngateway %v", direct.References, through.References)
	}
	if direct.Samples != 3 || through.Samples != 3 {
		t.Errorf("samples: direct %d, gateway %d, want 3", direct.Samples, through.Samples)
	}
}

// node-opcua client -> gateway -> node-opcua server, SecurityPolicy None,
// anonymous: the same results as the direct connection.
func TestNodeOPCUAAnonymousNone(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	direct := summarize(t, opcuatest.RunClient(t, scenario(srv.Endpoint)))
	srv.Restart() // values start afresh

	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	r := opcuatest.RunClient(t, scenario(g.endpoint))
	equalSummary(t, direct, summarize(t, r))
	if got := srv.Value(opcuatest.NodeSetpoint); got != 42.5 {
		t.Errorf("server Setpoint %v, want 42.5", got)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	open := events(rs, "session.open")
	if len(open) != 1 || open[0].str("principal", "auth") != "anonymous" || open[0].str("session", "security_policy") != "None" {
		t.Fatalf("session.open records: %v", open)
	}
	var write record
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "write" {
			write = r
		}
	}
	if write == nil || write.str("operation", "node_id") != opcuatest.NodeSetpoint ||
		write.str("operation", "browse_path") != "/Objects/PLC/Setpoint" ||
		write.str("operation", "data_type") != "Double" || write.str("operation", "value") != "42.5" {
		t.Errorf("write call record: %v", write)
	}
	var res record
	for _, r := range events(rs, "result") {
		if r.str("call_id") == write.str("call_id") {
			res = r
		}
	}
	if res == nil || res.str("status") != "ok" || res.str("old_value") != "50" {
		t.Errorf("write result record: %v", res)
	}
	_ = ua.StatusOK
}
