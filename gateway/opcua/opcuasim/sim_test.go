package opcuasim_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/opcuasim"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

func start(t *testing.T, policies ...string) *opcuasim.Server {
	t.Helper()
	s, err := opcuasim.Start(opcuasim.Options{Endpoint: "opc.tcp://127.0.0.1:0", SecurityPolicies: policies})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func connect(t *testing.T, endpoint string, opts ...opcua.Option) *opcua.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts = append([]opcua.Option{opcua.AuthAnonymous(), opcua.SecurityMode(ua.MessageSecurityModeNone), opcua.RequestTimeout(10 * time.Second)}, opts...)
	c, err := opcua.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", endpoint, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func read(t *testing.T, c *opcua.Client, nodes ...string) []*ua.DataValue {
	t.Helper()
	req := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth}
	for _, n := range nodes {
		req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.MustParseNodeID(n), AttributeID: ua.AttributeIDValue})
	}
	resp, err := c.Read(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != len(nodes) {
		t.Fatalf("read %v: %d results", nodes, len(resp.Results))
	}
	return resp.Results
}

func write(t *testing.T, c *opcua.Client, node string, v any) ua.StatusCode {
	t.Helper()
	resp, err := c.Write(context.Background(), &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID:      ua.MustParseNodeID(node),
		AttributeID: ua.AttributeIDValue,
		Value:       &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Results[0]
}

func call(t *testing.T, c *opcua.Client, args ...any) *ua.CallMethodResult {
	t.Helper()
	req := &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuasim.NodePLC), MethodID: ua.MustParseNodeID(opcuasim.NodeStart)}
	for _, a := range args {
		req.InputArguments = append(req.InputArguments, ua.MustVariant(a))
	}
	res, err := c.Call(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestGopcuaClient(t *testing.T) {
	s := start(t)
	c := connect(t, s.Endpoint())

	got := read(t, c, opcuasim.NodeTemperature, opcuasim.NodeSetpoint, opcuasim.NodePressure, opcuasim.NodeCounter, "ns=1;s=Nope")
	if got[1].Value.Value() != 50.0 || got[2].Value.Value() != 1.013 || got[3].Value.Value() != int32(0) {
		t.Errorf("initial values: %v %v %v", got[1].Value.Value(), got[2].Value.Value(), got[3].Value.Value())
	}
	if _, ok := got[0].Value.Value().(float64); !ok || got[0].Status != ua.StatusOK {
		t.Errorf("Temperature: %+v", got[0])
	}
	if got[4].Status != ua.StatusBadNodeIDUnknown {
		t.Errorf("unknown node: %v", got[4].Status)
	}

	if st := write(t, c, opcuasim.NodeSetpoint, 42.5); st != ua.StatusOK {
		t.Errorf("write Setpoint: %v", st)
	}
	if st := write(t, c, opcuasim.NodeCounter, int32(7)); st != ua.StatusOK {
		t.Errorf("write Counter: %v", st)
	}
	back := read(t, c, opcuasim.NodeSetpoint, opcuasim.NodeCounter)
	if back[0].Value.Value() != 42.5 || back[1].Value.Value() != int32(7) {
		t.Errorf("read back: %v %v", back[0].Value.Value(), back[1].Value.Value())
	}
	if s.Value(opcuasim.NodeSetpoint) != 42.5 {
		t.Errorf("simulator holds %v", s.Value(opcuasim.NodeSetpoint))
	}
	// Wrong type, read-only node, unknown node.
	if st := write(t, c, opcuasim.NodeSetpoint, "hot"); st != ua.StatusBadTypeMismatch {
		t.Errorf("write a String to Setpoint: %v", st)
	}
	if st := write(t, c, opcuasim.NodePressure, 2.0); st != ua.StatusBadNotWritable {
		t.Errorf("write Pressure: %v", st)
	}
	if st := write(t, c, "ns=1;s=Nope", 2.0); st != ua.StatusBadNodeIDUnknown {
		t.Errorf("write unknown node: %v", st)
	}

	// Temperature moves.
	first := read(t, c, opcuasim.NodeTemperature)[0].Value.Value()
	deadline := time.Now().Add(10 * time.Second)
	for read(t, c, opcuasim.NodeTemperature)[0].Value.Value() == first {
		if time.Now().After(deadline) {
			t.Fatal("Temperature did not change in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestGopcuaClientCallsStart(t *testing.T) {
	s := start(t)
	c := connect(t, s.Endpoint())

	ok := call(t, c, int32(300))
	if ok.StatusCode != ua.StatusOK || len(ok.OutputArguments) != 1 || ok.OutputArguments[0].Value() != true {
		t.Errorf("Start(300): %+v", ok)
	}
	if s.Value(opcuasim.NodeSpeed) != int32(300) {
		t.Errorf("Speed %v after Start(300)", s.Value(opcuasim.NodeSpeed))
	}
	for _, tc := range []struct {
		name string
		args []any
		want ua.StatusCode
	}{
		{"over the limit", []any{int32(1001)}, ua.StatusBadOutOfRange},
		{"no argument", nil, ua.StatusBadArgumentsMissing},
		{"two arguments", []any{int32(1), int32(2)}, ua.StatusBadTooManyArguments},
		{"wrong type", []any{1.5}, ua.StatusBadInvalidArgument},
	} {
		if got := call(t, c, tc.args...); got.StatusCode != tc.want {
			t.Errorf("Start %s: %v, want %v", tc.name, got.StatusCode, tc.want)
		}
	}
	if s.Value(opcuasim.NodeSpeed) != int32(300) {
		t.Errorf("Speed %v after refused calls, want 300", s.Value(opcuasim.NodeSpeed))
	}
	res, err := c.Call(context.Background(), &ua.CallMethodRequest{
		ObjectID: ua.MustParseNodeID(opcuasim.NodePLC), MethodID: ua.MustParseNodeID("ns=1;s=Stop"),
	})
	if err != nil || res.StatusCode != ua.StatusBadMethodInvalid {
		t.Errorf("unknown method: %v %v", res, err)
	}
}

func TestGopcuaClientBrowses(t *testing.T) {
	s := start(t)
	c := connect(t, s.Endpoint())
	browse := func(node string) []string {
		t.Helper()
		resp, err := c.Browse(context.Background(), &ua.BrowseRequest{
			NodesToBrowse: []*ua.BrowseDescription{{
				NodeID:          ua.MustParseNodeID(node),
				BrowseDirection: ua.BrowseDirectionForward,
				ReferenceTypeID: ua.NewNumericNodeID(0, 33), // HierarchicalReferences
				IncludeSubtypes: true,
				ResultMask:      uint32(ua.BrowseResultMaskAll),
			}},
		})
		if err != nil || len(resp.Results) != 1 || resp.Results[0].StatusCode != ua.StatusOK {
			t.Fatalf("browse %s: %v %+v", node, err, resp)
		}
		var names []string
		for _, r := range resp.Results[0].References {
			names = append(names, r.BrowseName.Name+"="+r.NodeID.NodeID.String())
		}
		slices.Sort(names)
		return names
	}
	if objects := browse("i=85"); !slices.Contains(objects, "PLC="+opcuasim.NodePLC) {
		t.Errorf("Objects: %v", objects)
	}
	want := []string{
		"Counter=" + opcuasim.NodeCounter, "Pressure=" + opcuasim.NodePressure, "Setpoint=" + opcuasim.NodeSetpoint,
		"Speed=" + opcuasim.NodeSpeed, "Start=" + opcuasim.NodeStart, "Temperature=" + opcuasim.NodeTemperature,
	}
	if got := browse(opcuasim.NodePLC); !slices.Equal(got, want) {
		t.Errorf("PLC: %v, want %v", got, want)
	}
	// The DataType attribute is a NodeId: what clients use to encode writes.
	resp, err := c.Read(context.Background(), &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.MustParseNodeID(opcuasim.NodeSetpoint), AttributeID: ua.AttributeIDDataType},
		{NodeID: ua.MustParseNodeID(opcuasim.NodeCounter), AttributeID: ua.AttributeIDDataType},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if dt := resp.Results[0].Value.NodeID(); dt == nil || dt.String() != "i=11" {
		t.Errorf("Setpoint DataType %v, want i=11 (Double)", resp.Results[0].Value)
	}
	if dt := resp.Results[1].Value.NodeID(); dt == nil || dt.String() != "i=6" {
		t.Errorf("Counter DataType %v, want i=6 (Int32)", resp.Results[1].Value)
	}
}

func TestGopcuaClientSignAndEncrypt(t *testing.T) {
	s := start(t, "None", "Basic256Sha256")
	cert, key := clientCertificate(t)
	eps, err := opcua.GetEndpoints(context.Background(), s.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	ep, err := opcua.SelectEndpoint(eps, ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt)
	if err != nil {
		t.Fatal(err)
	}
	c := connect(t, s.Endpoint(),
		opcua.SecurityPolicy(ua.SecurityPolicyURIBasic256Sha256),
		opcua.SecurityMode(ua.MessageSecurityModeSignAndEncrypt),
		opcua.Certificate(cert), opcua.PrivateKey(key),
		opcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous),
	)
	if st := write(t, c, opcuasim.NodeSetpoint, 61.0); st != ua.StatusOK {
		t.Errorf("write: %v", st)
	}
	if got := read(t, c, opcuasim.NodeSetpoint)[0].Value.Value(); got != 61.0 {
		t.Errorf("read back %v", got)
	}
}

func clientCertificate(t *testing.T) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sim test client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// node-opcua, a stack nobody here wrote, reads, writes and calls the
// simulator.
func TestNodeOPCUAClient(t *testing.T) {
	s := start(t, "None", "Basic256Sha256")
	for _, sec := range []struct{ policy, mode string }{{"None", "None"}, {"Basic256Sha256", "SignAndEncrypt"}} {
		t.Run(sec.policy, func(t *testing.T) {
			r := opcuatest.RunClient(t, opcuatest.Scenario{
				Endpoint:       s.Endpoint(),
				SecurityPolicy: sec.policy,
				SecurityMode:   sec.mode,
				Steps: []opcuatest.Step{
					{Read: []string{opcuasim.NodeTemperature, opcuasim.NodePressure}},
					{Write: []opcuatest.WriteValue{
						{Node: opcuasim.NodeSetpoint, Value: 33.5, DataType: "Double"},
						{Node: opcuasim.NodeCounter, Value: 12, DataType: "Int32"},
						{Node: opcuasim.NodePressure, Value: 2.5, DataType: "Double"},
					}},
					{Read: []string{opcuasim.NodeSetpoint, opcuasim.NodeCounter}},
					{Call: &opcuatest.Call{Object: opcuasim.NodePLC, Method: opcuasim.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 250}}}},
					{Call: &opcuatest.Call{Object: opcuasim.NodePLC, Method: opcuasim.NodeStart, Args: []opcuatest.Variant{{DataType: "Int32", Value: 5000}}}},
					{Browse: opcuasim.NodePLC},
				},
			})
			if !r.Connect.OK || !r.Session.OK || len(r.Steps) != 6 {
				t.Fatalf("connect %+v session %+v steps %d\n%s", r.Connect, r.Session, len(r.Steps), r.Log)
			}
			for i, st := range r.Steps {
				if st.Error != "" {
					t.Fatalf("step %d: %s", i, st.Error)
				}
			}
			rd := r.Steps[0].Results
			if !rd[0].Status.Good() || rd[0].DataType != "Double" || rd[1].Value != 1.013 {
				t.Errorf("read: %+v", rd)
			}
			wr := r.Steps[1].Results
			if !wr[0].Status.Good() || !wr[1].Status.Good() || wr[2].Status.StatusCode() != ua.StatusBadNotWritable {
				t.Errorf("write: %+v", wr)
			}
			back := r.Steps[2].Results
			if back[0].Value != 33.5 || back[1].Value != 12.0 {
				t.Errorf("read back: %+v", back)
			}
			if s.Value(opcuasim.NodeCounter) != int32(12) {
				t.Errorf("simulator Counter %v", s.Value(opcuasim.NodeCounter))
			}
			if c := r.Steps[3]; c.Status == nil || !c.Status.Good() || len(c.Outputs) != 1 || c.Outputs[0].Value != true {
				t.Errorf("Start(250): %+v", c)
			}
			if c := r.Steps[4]; c.Status == nil || c.Status.StatusCode() != ua.StatusBadOutOfRange {
				t.Errorf("Start(5000): %+v", c)
			}
			var names []string
			for _, ref := range r.Steps[5].References {
				names = append(names, ref.BrowseName)
			}
			for _, want := range []string{"Temperature", "Setpoint", "Pressure", "Counter", "Speed", "Start"} {
				if !slices.Contains(names, want) {
					t.Errorf("browse PLC: %v lacks %s", names, want)
				}
			}
		})
	}
}

func TestNodeOPCUASubscribes(t *testing.T) {
	s := start(t)
	r := opcuatest.RunClient(t, opcuatest.Scenario{
		Endpoint: s.Endpoint(),
		Steps:    []opcuatest.Step{{Subscribe: &opcuatest.Subscribe{Node: opcuasim.NodeTemperature, Samples: 3, Interval: 100 * time.Millisecond}}},
	})
	if !r.Connect.OK || !r.Session.OK || len(r.Steps) != 1 || r.Steps[0].Error != "" {
		t.Fatalf("connect %+v session %+v steps %+v\n%s", r.Connect, r.Session, r.Steps, r.Log)
	}
	seen := map[any]bool{}
	for _, v := range r.Steps[0].Samples {
		if !v.Status.Good() || v.DataType != "Double" {
			t.Errorf("sample %+v", v)
		}
		seen[v.Value] = true
	}
	if len(r.Steps[0].Samples) != 3 || len(seen) < 2 {
		t.Errorf("samples of a changing Temperature: %+v", r.Steps[0].Samples)
	}
}
