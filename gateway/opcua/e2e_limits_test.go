package opcua_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// TestMaxDecodedSizeLimit: limits.max_decoded_size binds both legs. With
// node-opcua upstream and a gopcua client, a gateway at the least bound (1
// MiB) answers a Read of 20,000 nodes with Bad_EncodingLimitsExceeded and a
// request.rejected record, and a Read of the 20,000-value Trend variable
// (80 kB encoded, about 2 MiB decoded) with Bad_EncodingLimitsExceeded from
// its upstream leg, while Reads of single values go on; a gateway at 8 MiB
// reads the Trend's values as the server has them.
func TestMaxDecodedSizeLimit(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	ctx := context.Background()
	read := func(c *gopcua.Client, nodes ...string) (*ua.ReadResponse, error) {
		req := &ua.ReadRequest{}
		for _, n := range nodes {
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.MustParseNodeID(n), AttributeID: ua.AttributeIDValue})
		}
		return c.Read(ctx, req)
	}
	open := func(maxDecoded int64) (*gw, *gopcua.Client) {
		g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true,
			Limits: opcua.LimitOptions{MaxDecodedSize: maxDecoded}}})
		c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return g, c
	}

	g, c := open(channel.MinMaxDecodedSize)
	many := make([]string, 20_000)
	for i := range many {
		many[i] = "ns=1;s=N" + strconv.Itoa(i)
	}
	if r, err := read(c, many...); err != ua.StatusBadEncodingLimitsExceeded {
		t.Errorf("a Read of %d nodes at 1 MiB: %v, %+v; want Bad_EncodingLimitsExceeded", len(many), err, r)
	}
	if r, err := read(c, opcuatest.NodeTrend); err != ua.StatusBadEncodingLimitsExceeded {
		t.Errorf("a Read of the Trend at 1 MiB: %v, %+v; want Bad_EncodingLimitsExceeded", err, r)
	}
	if v := readValue(ctx, t, c, opcuatest.NodePressure); v.Value.Value() != 1.013 {
		t.Errorf("Pressure after the refusals: %v", v.Value.Value())
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 1 })
	if rej := events(rs, "request.rejected"); len(rej) == 0 {
		t.Error("no request.rejected record of the refused Read")
	} else if rej[0].str("response") != certs.StatusName(ua.StatusBadEncodingLimitsExceeded) ||
		rej[0].str("reason") != "undecodable" {
		t.Errorf("the refused Read's record: %v", rej[0])
	}

	_, c = open(8 << 20)
	v := readValue(ctx, t, c, opcuatest.NodeTrend)
	got, ok := v.Value.Value().([]int32)
	if !ok || len(got) != 20_000 || got[0] != 0 || got[19_999] != 19_999 {
		t.Fatalf("the Trend at 8 MiB: %T of %d", v.Value.Value(), len(got))
	}
}

// TestRequestBounds: a Read of more than 10,000 nodes is refused with
// Bad_TooManyOperations and a request.rejected record (reason limit) before
// anything of it reaches the upstream: the gateway does not even resolve
// the nodes' browse paths there. A counting relay between gateway and
// node-opcua server shows the upstream leg silent during the refusal, and
// busy for a Read of 100 nodes after it; a Write of 10,001 nodes and a
// Call of 10,001 methods are refused the same way. A Read of a node id of 5,000
// characters (OPC 10000-3 allows 4096) is refused with Bad_NodeIdInvalid,
// and a TransferSubscriptions of 10,001 ids like the Read of 10,001 nodes,
// with one record, not one per id.
func TestRequestBounds(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	up := countingRelay(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	g := startGateway(t, gwOpts{upstream: "opc.tcp://" + up.addr, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx := context.Background()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := readValue(ctx, t, c, opcuatest.NodePressure); v.Value.Value() != 1.013 {
		t.Fatalf("Pressure: %v", v.Value.Value())
	}
	read := func(n int) (*ua.ReadResponse, error) {
		req := &ua.ReadRequest{}
		for i := range n {
			req.NodesToRead = append(req.NodesToRead, &ua.ReadValueID{NodeID: ua.MustParseNodeID("ns=1;s=N" + strconv.Itoa(i)), AttributeID: ua.AttributeIDValue})
		}
		return c.Read(ctx, req)
	}

	before := up.sent.Load()
	if r, err := read(10_001); err != ua.StatusBadTooManyOperations {
		t.Errorf("a Read of 10,001 nodes: %v, %+v; want Bad_TooManyOperations", err, r)
	}
	if n := up.sent.Load() - before; n != 0 {
		t.Errorf("the gateway sent the upstream %d bytes for the refused Read", n)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 1 })
	if rej := events(rs, "request.rejected"); len(rej) == 0 {
		t.Error("no request.rejected record of the refused Read")
	} else if rej[0].str("response") != "Bad_TooManyOperations" || rej[0].str("reason") != "limit" ||
		rej[0].str("operation", "function") != "read" {
		t.Errorf("the refused Read's record: %v", rej[0])
	}

	// the other services refuse the same way (a Write, a Call)
	many := make([]*ua.WriteValue, 10_001)
	methods := make([]*ua.CallMethodRequest, 10_001)
	for i := range many {
		n := ua.MustParseNodeID("ns=1;s=N" + strconv.Itoa(i))
		many[i] = &ua.WriteValue{NodeID: n, AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(1.0)}}
		methods[i] = &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC), MethodID: n}
	}
	if r, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: many}); err != ua.StatusBadTooManyOperations {
		t.Errorf("a Write of 10,001 nodes: %v, %+v; want Bad_TooManyOperations", err, r)
	}
	if err := c.Send(ctx, &ua.CallRequest{MethodsToCall: methods}, func(r ua.Response) error {
		if code := r.Header().ServiceResult; code != ua.StatusBadTooManyOperations {
			t.Errorf("a Call of 10,001 methods: %v, want Bad_TooManyOperations", code)
		}
		return nil
	}); err != nil && err != ua.StatusBadTooManyOperations {
		t.Errorf("a Call of 10,001 methods: %v", err)
	}
	if n := up.sent.Load() - before; n != 0 {
		t.Errorf("the gateway sent the upstream %d bytes for the refused Write and Call", n)
	}

	// a NodeId over OPC 10000-3's 4096 characters names no node
	before = up.sent.Load()
	long := &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.NewStringNodeID(1, strings.Repeat("n", 5000)), AttributeID: ua.AttributeIDValue}}}
	if r, err := c.Read(ctx, long); err != ua.StatusBadNodeIDInvalid {
		t.Errorf("a Read of a node id of 5,000 characters: %v, %+v; want Bad_NodeIdInvalid", err, r)
	}
	if n := up.sent.Load() - before; n != 0 {
		t.Errorf("the gateway sent the upstream %d bytes for the Read of a 5,000 character node id", n)
	}
	rs = g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 4 })
	if rej := events(rs, "request.rejected"); len(rej) < 4 || rej[1].str("operation", "function") != "write" || rej[1].str("reason") != "limit" ||
		rej[2].str("operation", "function") != "call" || rej[2].str("reason") != "limit" ||
		rej[3].str("response") != "Bad_NodeIdInvalid" || rej[3].str("reason") != "undecodable" {
		t.Errorf("the records of the refused Reads: %v", rej)
	}

	// TransferSubscriptions checks each id's owner before deciding: a
	// request over the bound must not get a record per id.
	ids := make([]uint32, 10_001)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	var transfer ua.StatusCode
	if err := c.Send(ctx, &ua.TransferSubscriptionsRequest{SubscriptionIDs: ids}, func(r ua.Response) error {
		transfer = r.Header().ServiceResult
		return nil
	}); err != nil && err != ua.StatusBadTooManyOperations {
		t.Fatalf("TransferSubscriptions of 10,001 ids: %v", err)
	}
	if transfer != ua.StatusBadTooManyOperations {
		t.Errorf("TransferSubscriptions of 10,001 ids: %v, want Bad_TooManyOperations", transfer)
	}
	rs = g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 5 })
	var transfers []record
	for _, r := range events(rs, "request.rejected") {
		if r.str("operation", "function") == "transfer_subscriptions" {
			transfers = append(transfers, r)
		}
	}
	if len(transfers) != 1 || transfers[0].str("reason") != "limit" || transfers[0].str("response") != "Bad_TooManyOperations" {
		t.Errorf("TransferSubscriptions of 10,001 ids left %d request.rejected records, want one of reason limit; the first: %v", len(transfers), transfers[:min(1, len(transfers))])
	}

	r, err := read(100)
	if err != nil {
		t.Fatalf("a Read of 100 nodes: %v", err)
	}
	if len(r.Results) != 100 {
		t.Fatalf("a Read of 100 nodes: %d results", len(r.Results))
	}
	if up.sent.Load() == before {
		t.Error("the Read of 100 nodes did not reach the upstream")
	}
}

// relay is a TCP relay that counts the bytes it forwards to its target.
type relay struct {
	addr string
	sent atomic.Int64
}

func countingRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &relay{addr: ln.Addr().String()}
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			upc, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			t.Cleanup(func() { down.Close(); upc.Close() })
			go func() {
				io.Copy(countWriter{upc, &r.sent}, down)
				upc.Close()
			}()
			go func() { io.Copy(down, upc); down.Close() }()
		}
	}()
	return r
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// TestLargeValueCut: a Write of a 1 MB String reaches the policy and the
// audit record cut to 4,096 bytes and "… N more bytes" (the policy below
// allows only such a cut value), and the server the whole value (the
// counting relay between gateway and node-opcua server forwards over 1
// MB). A Call of 2,000 arguments leaves 1,024 of them in its record. No
// audit record grows past 16 kB.
func TestLargeValueCut(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	up := countingRelay(t, strings.TrimPrefix(srv.Endpoint, "opc.tcp://"))
	g := startGateway(t, gwOpts{upstream: "opc.tcp://" + up.addr, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true},
		policy: `package interlock

allow if input.operation.access in {"session", "read", "browse"}

allow if {
	input.operation.access == "write"
	count(input.operation.value) < 4200
	endswith(input.operation.value, " more bytes")
}

default allow := false

decision := {"allow": allow, "reasons": []}
`})
	ctx := context.Background()
	c, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	before := up.sent.Load()
	big := strings.Repeat("x", 1<<20)
	resp, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(big)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Results[0]; got == ua.StatusBadUserAccessDenied {
		t.Errorf("the 1 MB Write was denied: the policy did not see the value cut")
	}
	if n := up.sent.Load() - before; n < 1<<20 {
		t.Errorf("the gateway forwarded %d bytes, less than the 1 MB value", n)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 2 })
	var call record
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "write" {
			call = r
		}
	}
	if v := call.str("operation", "value"); v != big[:4096]+"… 1044480 more bytes" {
		t.Errorf("the call record's value: %d bytes ending %q", len(v), v[max(0, len(v)-24):])
	}

	// a Call's arguments are cut as an array is: 2,000 of them (denied
	// here) leave 1,024 and "… 976 more" in the record, names of types alike
	args := make([]*ua.Variant, 2000)
	for i := range args {
		args[i] = ua.MustVariant(int32(i))
	}
	if _, err := c.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
		MethodID: ua.MustParseNodeID(opcuatest.NodeStart), InputArguments: args}); err != nil {
		t.Fatal(err)
	}
	rs = g.records(t, func(rs []record) bool {
		for _, r := range events(rs, "call") {
			if r.str("operation", "function") == "call" {
				return true
			}
		}
		return false
	})
	calls := 0
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") != "call" {
			continue
		}
		calls++
		op := r["operation"].(map[string]any)
		a, _ := op["arguments"].([]any)
		ty, _ := op["argument_types"].([]any)
		if len(a) != 1025 || a[1023] != 1023.0 || a[1024] != "… 976 more" || len(ty) != 1025 || ty[0] != "Int32" || ty[1024] != "… 976 more" {
			t.Errorf("the call record of 2,000 arguments: %d arguments (%v, %v), %d types", len(a), a[min(1023, len(a)-1)], a[len(a)-1], len(ty))
		}
	}
	if calls != 1 {
		t.Errorf("%d call records of the Call, want 1", calls)
	}
	g.noRecordOver(t, 16<<10)
}

// TestNameBounds: an ApplicationURI or a user name over 4096 bytes would go
// into the policy input and every record of its session; CreateSession
// with such an ApplicationURI is refused with Bad_InvalidArgument, and an
// ActivateSession with such a user name with Bad_IdentityTokenInvalid,
// each with a record that does not carry it. A user at the bound logs in
// as far as the users file lets it (wrong password).
func TestNameBounds(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true, Users: usersFile(t)}})
	ctx := context.Background()
	eps, err := gopcua.GetEndpoints(ctx, g.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ep := eps[0]
	base := []gopcua.Option{gopcua.AutoReconnect(false), gopcua.RequestTimeout(5 * time.Second)}

	long := strings.Repeat("u", 5000)
	_, err = connectClient(ctx, t, g.endpoint, append(base, gopcua.ApplicationURI("urn:"+long),
		gopcua.AuthAnonymous(), gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous))...)
	if !errors.Is(err, ua.StatusBadInvalidArgument) {
		t.Errorf("CreateSession with an ApplicationURI of 5,004 bytes: %v, want Bad_InvalidArgument", err)
	}
	for _, user := range []string{long, strings.Repeat("u", 4096)} {
		_, err = connectClient(ctx, t, g.endpoint, append(base, gopcua.AuthUsername(user, "x"),
			gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName))...)
		want := ua.StatusBadUserAccessDenied
		if len(user) > 4096 {
			want = ua.StatusBadIdentityTokenInvalid
		}
		if !errors.Is(err, want) {
			t.Errorf("a user name of %d bytes: %v, want %v", len(user), err, want)
		}
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.auth_failed")) >= 2 })
	rej := events(rs, "request.rejected")
	if len(rej) != 1 || rej[0].str("reason") != "application_uri_invalid" || rej[0].str("response") != "Bad_InvalidArgument" {
		t.Errorf("the refused CreateSession's records: %v", rej)
	}
	failed := events(rs, "session.auth_failed")
	if len(failed) != 2 || failed[0].str("principal", "user") != "" || !strings.Contains(failed[0].str("detail"), "5000 bytes") ||
		failed[1].str("principal", "user") != strings.Repeat("u", 4096) {
		t.Errorf("the failed logins' records: %d, the first's user %d bytes, detail %q", len(failed),
			len(failed[0].str("principal", "user")), failed[0].str("detail"))
	}
	g.noRecordOver(t, 16<<10)
}

// noRecordOver fails the test for every audit record longer than max bytes.
func (g *gw) noRecordOver(t *testing.T, max int) {
	t.Helper()
	b, err := os.ReadFile(g.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(line) > max {
			t.Errorf("audit record %d is %d bytes, over %d", i+1, len(line), max)
		}
	}
}
