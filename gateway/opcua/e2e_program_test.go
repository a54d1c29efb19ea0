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

// programPolicy allows changes of the address space only under PLC and
// history updates only of Setpoint; subscriptions are allowed.
const programPolicy = `package interlock

deny if {
	input.operation.access == "program"
	input.operation.node_id != "ns=1;s=PLC"
}

deny if {
	input.operation.function == "history_update"
	input.operation.node_id != "ns=1;s=Setpoint"
}

default allow := false

allow if not deny

decision := {"allow": allow}
`

// The services that change the address space or history, and the
// subscription services not covered elsewhere, are decided per item: a
// denied item answers Bad_UserAccessDenied in its slot and is recorded, an
// allowed one carries the server's own answer (node-opcua implements
// neither node management nor history updates, so its refusal comes back),
// and a request whose items are all denied never reaches the server.
func TestProgramAndSubscriptionServicesPerItem(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: programPolicy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	send := sender(ctx, t, c)
	// items sends a batched request and returns the per-item status codes,
	// or the fault's code for every item when the whole request failed.
	items := func(req ua.Request, n int) []ua.StatusCode {
		t.Helper()
		var resp ua.Response
		err := c.Send(ctx, req, func(r ua.Response) error { resp = r; return nil })
		var out []ua.StatusCode
		if code, isFault := err.(ua.StatusCode); isFault {
			for range n {
				out = append(out, code)
			}
			return out
		} else if err != nil {
			t.Fatalf("%T: %v", req, err)
		}
		switch r := resp.(type) {
		case *ua.AddNodesResponse:
			for _, x := range r.Results {
				out = append(out, x.StatusCode)
			}
		case *ua.DeleteNodesResponse:
			out = r.Results
		case *ua.AddReferencesResponse:
			out = r.Results
		case *ua.DeleteReferencesResponse:
			out = r.Results
		case *ua.HistoryUpdateResponse:
			for _, x := range r.Results {
				out = append(out, x.StatusCode)
			}
		}
		if len(out) != n {
			t.Fatalf("%T: %d results, want %d: %+v", resp, len(out), n, resp)
		}
		return out
	}
	want := func(what string, got []ua.StatusCode, codes ...ua.StatusCode) {
		t.Helper()
		for i, c := range codes {
			if got[i] != c {
				t.Errorf("%s slot %d: %v, want %v", what, i, got[i], c)
			}
		}
	}
	denied, unsupported := ua.StatusBadUserAccessDenied, ua.StatusBadServiceUnsupported
	addItem := func(parent string) *ua.AddNodesItem {
		return &ua.AddNodesItem{
			ParentNodeID:       ua.NewExpandedNodeID(ua.MustParseNodeID(parent), "", 0),
			ReferenceTypeID:    ua.NewNumericNodeID(0, id.HasComponent),
			RequestedNewNodeID: ua.NewExpandedNodeID(ua.NewStringNodeID(1, "New"), "", 0),
			BrowseName:         &ua.QualifiedName{NamespaceIndex: 1, Name: "New"},
			NodeClass:          ua.NodeClassVariable,
			NodeAttributes:     ua.NewExtensionObject(nil),
			TypeDefinition:     ua.NewExpandedNodeID(ua.NewNumericNodeID(0, id.BaseDataVariableType), "", 0),
		}
	}
	// The server refuses node management as a whole (a ServiceFault): the
	// gateway passes that on for a request with allowed items, and answers
	// a request whose items are all denied itself, slot by slot.
	want("add nodes, one allowed", items(&ua.AddNodesRequest{NodesToAdd: []*ua.AddNodesItem{
		addItem(opcuatest.NodePLC), addItem("i=85")}}, 2), unsupported, unsupported)
	want("add nodes, all denied", items(&ua.AddNodesRequest{NodesToAdd: []*ua.AddNodesItem{
		addItem("i=85"), addItem(opcuatest.NodeSetpoint)}}, 2), denied, denied)
	want("delete nodes, one allowed", items(&ua.DeleteNodesRequest{NodesToDelete: []*ua.DeleteNodesItem{
		{NodeID: ua.MustParseNodeID(opcuatest.NodePLC)}, {NodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint)}}}, 2), unsupported, unsupported)
	want("add references, denied", items(&ua.AddReferencesRequest{ReferencesToAdd: []*ua.AddReferencesItem{
		{SourceNodeID: ua.MustParseNodeID(opcuatest.NodeSetpoint), ReferenceTypeID: ua.NewNumericNodeID(0, id.Organizes),
			IsForward: true, TargetNodeID: ua.NewExpandedNodeID(ua.MustParseNodeID(opcuatest.NodeCounter), "", 0)}}}, 1), denied)
	ref := func(source string) *ua.DeleteReferencesItem {
		return &ua.DeleteReferencesItem{SourceNodeID: ua.MustParseNodeID(source), ReferenceTypeID: ua.NewNumericNodeID(0, id.HasComponent),
			IsForward: true, TargetNodeID: ua.NewExpandedNodeID(ua.MustParseNodeID(opcuatest.NodeCounter), "", 0)}
	}
	want("delete references, one allowed", items(&ua.DeleteReferencesRequest{ReferencesToDelete: []*ua.DeleteReferencesItem{
		ref(opcuatest.NodePLC), ref(opcuatest.NodeSetpoint)}}, 2), unsupported, unsupported)
	want("delete references, denied", items(&ua.DeleteReferencesRequest{ReferencesToDelete: []*ua.DeleteReferencesItem{
		ref(opcuatest.NodeSetpoint)}}, 1), denied)
	update := func(node string) *ua.ExtensionObject {
		return ua.NewExtensionObject(&ua.UpdateDataDetails{NodeID: ua.MustParseNodeID(node),
			PerformInsertReplace: ua.PerformUpdateTypeInsert,
			UpdateValues:         []*ua.DataValue{{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(1.5)}}})
	}
	hu := items(&ua.HistoryUpdateRequest{HistoryUpdateDetails: []*ua.ExtensionObject{
		update(opcuatest.NodeSetpoint), update(opcuatest.NodeCounter)}}, 2)
	if hu[0] == denied || (hu[1] != denied && hu[1] != hu[0]) {
		t.Errorf("history update of Setpoint (allowed) and Counter (denied): %v", hu)
	}

	// Subscription services: allowed and answered by the server.
	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	if ms := send(&ua.ModifySubscriptionRequest{SubscriptionID: cs.SubscriptionID, RequestedPublishingInterval: 200,
		RequestedLifetimeCount: 60, RequestedMaxKeepAliveCount: 10}).(*ua.ModifySubscriptionResponse); ms.ResponseHeader.ServiceResult != ua.StatusOK || ms.RevisedPublishingInterval < 100 {
		t.Errorf("modify subscription: %+v", ms)
	}
	if pm := send(&ua.SetPublishingModeRequest{PublishingEnabled: false, SubscriptionIDs: []uint32{cs.SubscriptionID}}).(*ua.SetPublishingModeResponse); len(pm.Results) != 1 || pm.Results[0] != ua.StatusOK {
		t.Errorf("set publishing mode: %+v", pm)
	}
	err := c.Send(ctx, &ua.RepublishRequest{SubscriptionID: cs.SubscriptionID, RetransmitSequenceNumber: 99}, func(ua.Response) error { return nil })
	if err != ua.StatusBadMessageNotAvailable {
		t.Errorf("republish of a message never sent: %v, want the server's Bad_MessageNotAvailable", err)
	}

	rs := g.records(t, func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "function") == "republish" {
				n++
			}
		}
		return n > 0
	})
	refused := map[string]int{}
	for _, r := range events(rs, "call") {
		if r.str("decision", "allow") != "true" {
			refused[r.str("operation", "function")]++
			if r.str("operation", "access") == "" {
				t.Errorf("call record without access: %v", r)
			}
		}
	}
	for f, n := range map[string]int{"add_nodes": 3, "delete_nodes": 1, "add_references": 1, "delete_references": 2, "history_update": 1} {
		if refused[f] != n {
			t.Errorf("%d denied %s records, want %d (all denied: %v)", refused[f], f, n, refused)
		}
	}
	// Each record says what the item would create, link or change.
	wantFields := map[string]map[string]string{
		"add_nodes": {"requested_new_node_id": "ns=1;s=New", "browse_name": "New", "node_class": "Variable",
			"reference_type_id": "i=47", "type_definition": "i=63"},
		"add_references":    {"target_node_id": opcuatest.NodeCounter, "reference_type_id": "i=35", "is_forward": "true"},
		"delete_references": {"target_node_id": opcuatest.NodeCounter, "reference_type_id": "i=47", "is_forward": "true", "delete_bidirectional": "false"},
		"delete_nodes":      {"delete_target_references": "false"},
		"history_update":    {"history_update": "update_data", "perform_update": "insert", "values": "[1.5]"},
	}
	for _, r := range events(rs, "call") {
		f := r.str("operation", "function")
		for k, v := range wantFields[f] {
			if got := r.str("operation", k); got != v {
				t.Errorf("%s record: operation.%s = %q, want %q", f, k, got, v)
			}
		}
	}
}
