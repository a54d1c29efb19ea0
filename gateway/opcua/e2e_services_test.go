package opcua_test

import (
	"context"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// servicesPolicy denies, per item, browsing the Server object, reading,
// monitoring or reading the history of Counter, and Start above 500.
const servicesPolicy = `package interlock

deny if {
	input.operation.function == "browse"
	input.operation.node_id == "i=2253"
}

deny if {
	input.operation.function in {"read", "create_monitored_items", "history_read"}
	input.operation.node_id == "ns=1;s=Counter"
}

deny if {
	input.operation.function == "call"
	input.operation.arguments[0] > 500
}

default allow := false

allow if not deny

decision := {"allow": allow}
`

// Batched services, decided per item with a gopcua client: a Read of three
// nodes, Browse, TranslateBrowsePathsToNodeIds, RegisterNodes and
// UnregisterNodes, CreateMonitoredItems, HistoryRead, a Call of two methods.
func TestBatchedServicesPerItem(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: servicesPolicy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	send := sender(ctx, t, c)

	rd := send(&ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: []*ua.ReadValueID{
		{NodeID: ua.MustParseNodeID(opcuatest.NodePressure), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.MustParseNodeID(opcuatest.NodeCounter), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		{NodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint), AttributeID: ua.AttributeIDBrowseName, DataEncoding: &ua.QualifiedName{}},
	}}).(*ua.ReadResponse)
	if len(rd.Results) != 3 || rd.Results[0].Status != ua.StatusOK || rd.Results[0].Value.Value() != 1.013 ||
		rd.Results[1].Status != ua.StatusBadUserAccessDenied || (rd.Results[1].Value != nil && rd.Results[1].Value.Value() != nil) ||
		rd.Results[2].Status != ua.StatusOK || rd.Results[2].Value.Value().(*ua.QualifiedName).Name != "Setpoint" {
		for i, r := range rd.Results {
			t.Errorf("read slot %d: %v %#v", i, r.Status, r.Value)
		}
	}

	br := send(&ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}, NodesToBrowse: []*ua.BrowseDescription{
		{NodeID: ua.MustParseNodeID(opcuatest.NodePLC), BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)},
		{NodeID: ua.NewNumericNodeID(0, id.Server), BrowseDirection: ua.BrowseDirectionForward, ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)},
	}}).(*ua.BrowseResponse)
	if len(br.Results) != 2 || br.Results[0].StatusCode != ua.StatusOK || len(br.Results[0].References) < 6 ||
		br.Results[1].StatusCode != ua.StatusBadUserAccessDenied {
		t.Errorf("browse: %+v", br.Results)
	}

	tr := send(&ua.TranslateBrowsePathsToNodeIDsRequest{BrowsePaths: []*ua.BrowsePath{{
		StartingNode: ua.NewNumericNodeID(0, id.ObjectsFolder),
		RelativePath: &ua.RelativePath{Elements: []*ua.RelativePathElement{
			{ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, TargetName: &ua.QualifiedName{NamespaceIndex: 1, Name: "PLC"}},
			{ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, TargetName: &ua.QualifiedName{NamespaceIndex: 1, Name: "Setpoint"}},
		}},
	}}}).(*ua.TranslateBrowsePathsToNodeIDsResponse)
	if len(tr.Results) != 1 || tr.Results[0].StatusCode != ua.StatusOK || len(tr.Results[0].Targets) != 1 ||
		tr.Results[0].Targets[0].TargetID.NodeID.String() != opcuatest.NodeSetpoint {
		t.Errorf("translate: %+v", tr.Results)
	}

	rn := send(&ua.RegisterNodesRequest{NodesToRegister: []*ua.NodeID{ua.MustParseNodeID(opcuatest.NodeSetpoint)}}).(*ua.RegisterNodesResponse)
	if len(rn.RegisteredNodeIDs) != 1 {
		t.Fatalf("register: %+v", rn)
	}
	if dv := readValue(ctx, t, c, rn.RegisteredNodeIDs[0].String()); dv.Status != ua.StatusOK {
		t.Errorf("read of the registered node: %v", dv.Status)
	}
	if un := send(&ua.UnregisterNodesRequest{NodesToUnregister: rn.RegisteredNodeIDs}).(*ua.UnregisterNodesResponse); un.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Errorf("unregister: %+v", un.ResponseHeader)
	}

	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60, RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	item := func(node string, h uint32) *ua.MonitoredItemCreateRequest { return monitoredItem(node, h, 100, 1) }
	mi := send(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{item(opcuatest.NodeTemperature, 1), item(opcuatest.NodeCounter, 2)}}).(*ua.CreateMonitoredItemsResponse)
	if len(mi.Results) != 2 || mi.Results[0].StatusCode != ua.StatusOK || mi.Results[1].StatusCode != ua.StatusBadUserAccessDenied {
		t.Errorf("create monitored items: %+v", mi.Results)
	}
	del := send(&ua.DeleteMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, MonitoredItemIDs: []uint32{mi.Results[0].MonitoredItemID}}).(*ua.DeleteMonitoredItemsResponse)
	if len(del.Results) != 1 || del.Results[0] != ua.StatusOK {
		t.Errorf("delete monitored items: %+v", del.Results)
	}
	ds := send(&ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{cs.SubscriptionID}}).(*ua.DeleteSubscriptionsResponse)
	if len(ds.Results) != 1 || ds.Results[0] != ua.StatusOK {
		t.Errorf("delete subscriptions: %+v", ds.Results)
	}

	hr := send(&ua.HistoryReadRequest{
		HistoryReadDetails: ua.NewExtensionObject(&ua.ReadRawModifiedDetails{StartTime: time.Now().Add(-time.Hour), EndTime: time.Now(), NumValuesPerNode: 10}),
		TimestampsToReturn: ua.TimestampsToReturnBoth,
		NodesToRead: []*ua.HistoryReadValueID{
			{NodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint), DataEncoding: &ua.QualifiedName{}},
			{NodeID: ua.MustParseNodeID(opcuatest.NodeCounter), DataEncoding: &ua.QualifiedName{}},
		}})
	if h, ok := hr.(*ua.HistoryReadResponse); !ok || len(h.Results) != 2 || h.Results[0].StatusCode == ua.StatusBadUserAccessDenied ||
		h.Results[1].StatusCode != ua.StatusBadUserAccessDenied {
		t.Errorf("history read: %T %+v", hr, hr)
	}

	call := send(&ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{
		{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC), MethodID: ua.MustParseNodeID(opcuatest.NodeStart), InputArguments: []*ua.Variant{ua.MustVariant(int32(120))}},
		{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC), MethodID: ua.MustParseNodeID(opcuatest.NodeStart), InputArguments: []*ua.Variant{ua.MustVariant(int32(700))}},
	}}).(*ua.CallResponse)
	if len(call.Results) != 2 || call.Results[0].StatusCode != ua.StatusOK || call.Results[1].StatusCode != ua.StatusBadUserAccessDenied {
		t.Errorf("call: %+v", call.Results)
	}
	if v := srv.Value(opcuatest.NodeSpeed); v != 120.0 && v != 120 {
		t.Errorf("Speed %v, want 120", v)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 15 })
	seen := map[string]bool{}
	for _, r := range events(rs, "call") {
		seen[r.str("operation", "function")] = true
	}
	for _, f := range []string{"browse", "translate_browse_paths", "register_nodes", "unregister_nodes", "create_subscription", "create_monitored_items",
		"delete_monitored_items", "delete_subscriptions", "history_read", "call"} {
		if !seen[f] {
			t.Errorf("no call record of %s", f)
		}
	}
}

// RegisterNodes is answered by the gateway with the nodes themselves: the
// server never hands out an alias, so the one it would have given
// (node-opcua: ns=9999;i=1 first in a session) reaches no node upstream,
// and the registered id is decided as the node it is.
func TestRegisterNodesAnsweredAsThemselves(t *testing.T) {
	ctx, g, c, send := anonymousThrough(t, servicesPolicy)

	nodes := []*ua.NodeID{ua.MustParseNodeID(opcuatest.NodeCounter), ua.MustParseNodeID(opcuatest.NodePressure)}
	rn := send(&ua.RegisterNodesRequest{NodesToRegister: nodes}).(*ua.RegisterNodesResponse)
	if rn.ResponseHeader.ServiceResult != ua.StatusOK || len(rn.RegisteredNodeIDs) != 2 ||
		rn.RegisteredNodeIDs[0].String() != opcuatest.NodeCounter || rn.RegisteredNodeIDs[1].String() != opcuatest.NodePressure {
		t.Fatalf("register: %v %v", rn.ResponseHeader.ServiceResult, rn.RegisteredNodeIDs)
	}
	if dv := readValue(ctx, t, c, "ns=9999;i=1"); dv.Status == ua.StatusOK {
		t.Errorf("a read of node-opcua's first alias returned %v: the server registered Counter", dv.Value.Value())
	}
	if dv := readValue(ctx, t, c, rn.RegisteredNodeIDs[0].String()); dv.Status != ua.StatusBadUserAccessDenied {
		t.Errorf("a read of the registered Counter: %v, want Bad_UserAccessDenied", dv.Status)
	}
	if dv := readValue(ctx, t, c, rn.RegisteredNodeIDs[1].String()); dv.Status != ua.StatusOK {
		t.Errorf("a read of the registered Pressure: %v", dv.Status)
	}
	un := send(&ua.UnregisterNodesRequest{NodesToUnregister: rn.RegisteredNodeIDs}).(*ua.UnregisterNodesResponse)
	if un.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Errorf("unregister: %v", un.ResponseHeader.ServiceResult)
	}

	want := map[string]int{"register_nodes": 2, "unregister_nodes": 2}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "result")) >= 8 })
	calls := map[string]string{}
	for _, r := range events(rs, "call") {
		f := r.str("operation", "function")
		if _, ok := want[f]; ok {
			want[f]--
			calls[r.str("call_id")] = f
			if n := r.str("operation", "node_id"); n != opcuatest.NodeCounter && n != opcuatest.NodePressure {
				t.Errorf("%s call record names %q", f, n)
			}
		}
	}
	for _, r := range events(rs, "result") {
		if f, ok := calls[r.str("call_id")]; ok && r.str("status") != "ok" {
			t.Errorf("%s result %v", f, r)
		}
	}
	if want["register_nodes"] != 0 || want["unregister_nodes"] != 0 {
		t.Errorf("call records missing: %v", want)
	}
}
