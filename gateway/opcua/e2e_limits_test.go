package opcua_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

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

// TestTooManyOperations: a Read of more than 10,000 nodes is refused with
// Bad_TooManyOperations and a request.rejected record (reason limit) before
// anything of it reaches the upstream: the gateway does not even resolve
// the nodes' browse paths there. A counting relay between gateway and
// node-opcua server shows the upstream leg silent during the refusal, and
// busy for a Read of 100 nodes after it. A TransferSubscriptions of 10,001
// ids is refused the same way, with one record, not one per id.
func TestTooManyOperations(t *testing.T) {
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
	rs = g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) >= 2 })
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
