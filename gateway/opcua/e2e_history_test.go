package opcua_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// gopcua client -> gateway -> node-opcua server: values written through the
// gateway come back through it from the server's history (HistoryRead, raw
// values, also two at a time with continuation points), the same as a
// HistoryRead straight to the server, and the read is decided and recorded
// as history_read of its node.
func TestHistoryReadThroughGateway(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	start := time.Now().Add(-time.Minute)
	through := anonymousSender(t, g.endpoint)
	written := []float64{1.5, 2.5, 3.5}
	for _, v := range written {
		w := through(&ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
			NodeID: ua.MustParseNodeID(opcuatest.NodeLevel), AttributeID: ua.AttributeIDValue,
			Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
		}}}).(*ua.WriteResponse)
		if len(w.Results) != 1 || w.Results[0] != ua.StatusOK {
			t.Fatalf("write %v: %v", v, w.Results)
		}
		time.Sleep(20 * time.Millisecond) // distinct source timestamps
	}

	end := time.Now().Add(time.Minute)
	// history reads the node's raw values, perNode at a time, following
	// the server's continuation points
	history := func(send func(ua.Request) ua.Response, perNode uint32) (values []float64, reads int) {
		t.Helper()
		var cp []byte
		for reads = 1; reads <= 20; reads++ {
			resp := send(&ua.HistoryReadRequest{
				HistoryReadDetails: ua.NewExtensionObject(&ua.ReadRawModifiedDetails{StartTime: start, EndTime: end, NumValuesPerNode: perNode}),
				TimestampsToReturn: ua.TimestampsToReturnBoth,
				NodesToRead:        []*ua.HistoryReadValueID{{NodeID: ua.MustParseNodeID(opcuatest.NodeLevel), DataEncoding: &ua.QualifiedName{}, ContinuationPoint: cp}},
			})
			hr, ok := resp.(*ua.HistoryReadResponse)
			if !ok || len(hr.Results) != 1 || !(hr.Results[0].StatusCode == ua.StatusOK || hr.Results[0].StatusCode == ua.StatusGoodMoreData) || hr.Results[0].HistoryData == nil {
				t.Fatalf("history read: %#v", resp)
			}
			data, ok := hr.Results[0].HistoryData.Value.(*ua.HistoryData)
			if !ok {
				t.Fatalf("history data: %#v", hr.Results[0].HistoryData)
			}
			for _, dv := range data.DataValues {
				if f, ok := dv.Value.Value().(float64); ok {
					values = append(values, f)
				}
			}
			if cp = hr.Results[0].ContinuationPoint; len(cp) == 0 {
				return values, reads
			}
		}
		t.Fatalf("history read: still a continuation point after 20 reads (%v)", values)
		return nil, 0
	}
	got, _ := history(through, 100)
	if len(got) < len(written) || !slices.Equal(got[len(got)-len(written):], written) {
		t.Errorf("history through the gateway: %v, want it to end with %v", got, written)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if direct, _ := history(sender(ctx, t, anonymousClient(ctx, t, srv.Endpoint)), 100); !slices.Equal(direct, got) {
		t.Errorf("history straight from the server %v, through the gateway %v", direct, got)
	}
	// two values a read: the server's continuation points work through
	// the gateway (they belong to the upstream session of this session)
	if paged, reads := history(through, 2); !slices.Equal(paged, got) || reads != (len(got)+1)/2 {
		t.Errorf("history two values at a time through the gateway: %v in %d reads, want %v in %d", paged, reads, got, (len(got)+1)/2)
	}

	rs := g.records(t, func(rs []record) bool {
		for _, r := range events(rs, "result") {
			if r.str("operation", "function") == "history_read" {
				return true
			}
		}
		return false
	})
	var call record
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "history_read" {
			call = r
		}
	}
	if call == nil || call.str("operation", "node_id") != opcuatest.NodeLevel || call.str("operation", "access") != "read" ||
		call.str("operation", "browse_path") != "/Objects/PLC/Level" || call.str("decision", "allow") != "true" {
		t.Errorf("history read call record: %v", call)
	}
}
