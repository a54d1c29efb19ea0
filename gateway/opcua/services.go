package opcua

import (
	"context"
	"reflect"
	"strconv"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// Operation field names of the OPC UA policy input (examples/opcua relies
// on them).
const (
	fieldNodeID         = "node_id"
	fieldBrowsePath     = "browse_path"
	fieldAttribute      = "attribute"
	fieldIndexRange     = "index_range"
	fieldValue          = "value"
	fieldDataType       = "data_type"
	fieldObjectID       = "object_id"
	fieldMethodID       = "method_id"
	fieldArguments      = "arguments"
	fieldArgumentTypes  = "argument_types"
	fieldSubscriptionID = "subscription_id"
	fieldOldValue       = "old_value"
	// Write: what the written DataValue carries besides its value, when it
	// does (a client may write a quality or a time an HMI shows).
	fieldValueStatus     = "value_status"
	fieldSourceTimestamp = "source_timestamp"
	fieldServerTimestamp = "server_timestamp"
	fieldLinkedNodeID    = "linked_node_id" // SetTriggering: the node of the linked item
	fieldLink            = "link"           // SetTriggering: add or remove
	fieldRecheck         = "recheck"        // a monitored item decided again after a policy change
	// The address space changes and HistoryUpdate: what the item would
	// create, link or change besides its node.
	fieldTargetNodeID      = "target_node_id"
	fieldReferenceTypeID   = "reference_type_id"
	fieldIsForward         = "is_forward"
	fieldDeleteTargetRefs  = "delete_target_references"
	fieldDeleteBidirection = "delete_bidirectional"
	fieldNewNodeID         = "requested_new_node_id"
	fieldBrowseName        = "browse_name"
	fieldNodeClass         = "node_class"
	fieldTypeDefinition    = "type_definition"
	fieldHistoryUpdate     = "history_update" // the kind of details: update_data, delete_raw_modified …
	fieldPerformUpdate     = "perform_update" // insert, replace, update, remove
	fieldValues            = "values"
)

// service dispatches a request of an activated session.
func (c *conn) service(ctx context.Context, s *uaSession, body ua.Request) ua.Response {
	_, publish := body.(*ua.PublishRequest)
	ctx = withRequestDeadline(ctx, time.Now().Add(c.budget(body.Header(), publish)))
	switch req := body.(type) {
	case *ua.ReadRequest:
		return c.read(ctx, s, req)
	case *ua.WriteRequest:
		return c.write(ctx, s, req)
	case *ua.HistoryReadRequest:
		return c.historyRead(ctx, s, req)
	case *ua.HistoryUpdateRequest:
		return c.historyUpdate(ctx, s, req)
	case *ua.CallRequest:
		return c.call(ctx, s, req)
	case *ua.BrowseRequest:
		return c.browse(ctx, s, req)
	case *ua.BrowseNextRequest:
		return c.browseNext(ctx, s, req)
	case *ua.TranslateBrowsePathsToNodeIDsRequest:
		return c.translate(ctx, s, req)
	case *ua.RegisterNodesRequest:
		return c.registerNodes(ctx, s, req)
	case *ua.UnregisterNodesRequest:
		return c.unregisterNodes(ctx, s, req)
	case *ua.AddNodesRequest:
		return c.addNodes(ctx, s, req)
	case *ua.AddReferencesRequest:
		return c.addReferences(ctx, s, req)
	case *ua.DeleteNodesRequest:
		return c.deleteNodes(ctx, s, req)
	case *ua.DeleteReferencesRequest:
		return c.deleteReferences(ctx, s, req)
	case *ua.CreateSubscriptionRequest, *ua.ModifySubscriptionRequest, *ua.SetPublishingModeRequest,
		*ua.DeleteSubscriptionsRequest, *ua.TransferSubscriptionsRequest, *ua.PublishRequest, *ua.RepublishRequest:
		return c.subscription(ctx, s, body)
	case *ua.CreateMonitoredItemsRequest, *ua.ModifyMonitoredItemsRequest, *ua.SetMonitoringModeRequest,
		*ua.SetTriggeringRequest, *ua.DeleteMonitoredItemsRequest:
		return c.monitoredItems(ctx, s, body)
	}
	c.e.pipeline.Reject(ctx, s.session(), c.serviceCall(body), "unsupported_service", "", "Bad_ServiceUnsupported")
	return fault(body.Header(), ua.StatusBadServiceUnsupported)
}

// pathsOf resolves the browse paths of node ids through the session's
// upstream, within the request's budget (lookupShare).
func (c *conn) pathsOf(ctx context.Context, s *uaSession, ids []string) map[string]string {
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	now := time.Now()
	dl, ok := requestDeadline(ctx)
	if !ok {
		dl = now.Add(c.e.limits.RequestTimeout)
	}
	until := lookupShare(now, dl)
	return c.e.paths.paths(ctx, up, ids, until, fullShare(now, until, c.e.limits.RequestTimeout))
}

func codesMerge(dst []ua.StatusCode) func(ua.Response, []int, []ua.StatusCode) ([]ua.StatusCode, bool) {
	return func(_ ua.Response, allowed []int, got []ua.StatusCode) ([]ua.StatusCode, bool) {
		if len(got) != len(allowed) {
			return nil, false
		}
		for j, i := range allowed {
			dst[i] = got[j]
		}
		return got, true
	}
}

func (c *conn) read(ctx context.Context, s *uaSession, req *ua.ReadRequest) ua.Response {
	in := req.NodesToRead
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(in[i].NodeID) })
	out := make([]*ua.DataValue, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n:    len(in),
		call: func(i int) *gateway.Call { return readCall(ids[i], paths[ids[i]], in[i]) },
		deny: func(i int) { out[i] = deniedDataValue() },
		forward: func(allowed []int) ua.Request {
			return &ua.ReadRequest{MaxAge: req.MaxAge, TimestampsToReturn: req.TimestampsToReturn, NodesToRead: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.ReadResponse) []*ua.DataValue { return r.Results },
			func(v *ua.DataValue) ua.StatusCode { return v.Status }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.ReadResponse{ResponseHeader: h, Results: out}
		},
	})
}

func (c *conn) write(ctx context.Context, s *uaSession, req *ua.WriteRequest) ua.Response {
	in := req.NodesToWrite
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(in[i].NodeID) })
	out := make([]ua.StatusCode, len(in))
	old := map[int]any{} // forwarded index j -> old value, for items whose decision asked
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n:    len(in),
		call: func(i int) *gateway.Call { return writeCall(ids[i], paths[ids[i]], in[i]) },
		deny: func(i int) { out[i] = ua.StatusBadUserAccessDenied },
		before: func(ctx context.Context, allowed []int, decs []gateway.Decision) {
			rr := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
			var js []int
			for j, i := range allowed {
				if decs[j].RecordOldValue {
					rr.NodesToRead = append(rr.NodesToRead, &ua.ReadValueID{NodeID: in[i].NodeID,
						AttributeID: in[i].AttributeID, IndexRange: in[i].IndexRange, DataEncoding: &ua.QualifiedName{}})
					js = append(js, j)
				}
			}
			if len(js) == 0 {
				return
			}
			resp, err := c.send(ctx, s, req.RequestHeader, rr, false)
			r, ok := resp.(*ua.ReadResponse)
			if err != nil || !ok || len(r.Results) != len(js) {
				for _, j := range js {
					old[j] = map[string]any{"error": "old value could not be read"}
				}
				return
			}
			for k, j := range js {
				dv := r.Results[k]
				switch {
				case dv == nil:
					old[j] = nil
				case dv.Status != ua.StatusOK:
					old[j] = map[string]any{"status": int64(uint32(dv.Status))}
				default:
					old[j] = plainValue(dv.Value, newPlainBudget())
				}
			}
		},
		outcome: func(j int) []gateway.Field {
			v, ok := old[j]
			if !ok {
				return nil
			}
			return []gateway.Field{{Key: fieldOldValue, Kind: gateway.KindAny, Any: v}}
		},
		forward: func(allowed []int) ua.Request {
			return &ua.WriteRequest{NodesToWrite: pick(in, allowed)}
		},
		merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
			r, ok := resp.(*ua.WriteResponse)
			if !ok {
				return nil, false
			}
			return codesMerge(out)(resp, allowed, r.Results)
		},
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.WriteResponse{ResponseHeader: h, Results: out}
		},
	})
}

func (c *conn) historyRead(ctx context.Context, s *uaSession, req *ua.HistoryReadRequest) ua.Response {
	in := req.NodesToRead
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(in[i].NodeID) })
	out := make([]*ua.HistoryReadResult, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n: len(in),
		call: func(i int) *gateway.Call {
			k := op("history_read", gateway.AccessRead)
			k.Operation.String(fieldNodeID, ids[i])
			k.Operation.String(fieldBrowsePath, paths[ids[i]])
			return k
		},
		deny: func(i int) {
			out[i] = &ua.HistoryReadResult{StatusCode: ua.StatusBadUserAccessDenied, HistoryData: ua.NewExtensionObject(nil)}
		},
		forward: func(allowed []int) ua.Request {
			return &ua.HistoryReadRequest{HistoryReadDetails: req.HistoryReadDetails, TimestampsToReturn: req.TimestampsToReturn,
				ReleaseContinuationPoints: req.ReleaseContinuationPoints, NodesToRead: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.HistoryReadResponse) []*ua.HistoryReadResult { return r.Results },
			func(r *ua.HistoryReadResult) ua.StatusCode { return r.StatusCode }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.HistoryReadResponse{ResponseHeader: h, Results: out}
		},
	})
}

// historyNode is the node a HistoryUpdate details object names (every
// details type has a NodeID field).
func historyNode(eo *ua.ExtensionObject) *ua.NodeID {
	if eo == nil || eo.Value == nil {
		return nil
	}
	v := reflect.ValueOf(eo.Value)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return nil
	}
	f := v.FieldByName("NodeID")
	if !f.IsValid() {
		return nil
	}
	n, _ := f.Interface().(*ua.NodeID)
	return n
}

func (c *conn) historyUpdate(ctx context.Context, s *uaSession, req *ua.HistoryUpdateRequest) ua.Response {
	in := req.HistoryUpdateDetails
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(historyNode(in[i])) })
	out := make([]*ua.HistoryUpdateResult, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n: len(in),
		call: func(i int) *gateway.Call {
			k := op("history_update", gateway.AccessWrite)
			k.Operation.String(fieldNodeID, ids[i])
			k.Operation.String(fieldBrowsePath, paths[ids[i]])
			historyDetails(k, in[i])
			return k
		},
		deny: func(i int) { out[i] = &ua.HistoryUpdateResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.HistoryUpdateRequest{HistoryUpdateDetails: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.HistoryUpdateResponse) []*ua.HistoryUpdateResult { return r.Results },
			func(r *ua.HistoryUpdateResult) ua.StatusCode { return r.StatusCode }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.HistoryUpdateResponse{ResponseHeader: h, Results: out}
		},
	})
}

func (c *conn) call(ctx context.Context, s *uaSession, req *ua.CallRequest) ua.Response {
	in := req.MethodsToCall
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(in[i].MethodID) })
	out := make([]*ua.CallMethodResult, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n:    len(in),
		call: func(i int) *gateway.Call { return methodCall(ids[i], paths[ids[i]], in[i]) },
		deny: func(i int) { out[i] = &ua.CallMethodResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.CallRequest{MethodsToCall: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.CallResponse) []*ua.CallMethodResult { return r.Results },
			func(r *ua.CallMethodResult) ua.StatusCode { return r.StatusCode }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.CallResponse{ResponseHeader: h, Results: out}
		},
	})
}

// readCall is the decision input of one node of a Read (id and path: its
// node id and browse path).
func readCall(id, path string, r *ua.ReadValueID) *gateway.Call {
	return attributeCall("read", gateway.AccessRead, id, path, r.AttributeID, r.IndexRange)
}

// attributeCall is a call on an attribute of a node (a Read's or a Write's).
func attributeCall(function string, access gateway.Access, id, path string, attribute ua.AttributeID, indexRange string) *gateway.Call {
	k := op(function, access)
	k.Operation.String(fieldNodeID, id)
	k.Operation.String(fieldBrowsePath, path)
	k.Operation.String(fieldAttribute, attributeName(attribute))
	k.Operation.String(fieldIndexRange, boundedString(indexRange))
	return k
}

// writeCall is the decision input of one node of a Write.
func writeCall(id, path string, w *ua.WriteValue) *gateway.Call {
	k := attributeCall("write", gateway.AccessWrite, id, path, w.AttributeID, w.IndexRange)
	var v *ua.Variant
	dv := w.Value
	if dv != nil {
		v = dv.Value
	}
	k.Operation.Any(fieldValue, plainValue(v, newPlainBudget()))
	k.Operation.String(fieldDataType, typeName(v))
	if dv != nil {
		if dv.EncodingMask&ua.DataValueStatusCode != 0 {
			k.Operation.String(fieldValueStatus, statusName(dv.Status))
		}
		if dv.EncodingMask&ua.DataValueSourceTimestamp != 0 {
			k.Operation.String(fieldSourceTimestamp, dv.SourceTimestamp.UTC().Format(time.RFC3339Nano))
		}
		if dv.EncodingMask&ua.DataValueServerTimestamp != 0 {
			k.Operation.String(fieldServerTimestamp, dv.ServerTimestamp.UTC().Format(time.RFC3339Nano))
		}
	}
	return k
}

// methodCall is the decision input of one method of a Call (id: its method
// id).
func methodCall(id, path string, m *ua.CallMethodRequest) *gateway.Call {
	k := op("call", gateway.AccessExecute)
	k.Operation.String(fieldObjectID, nodeIDString(m.ObjectID))
	k.Operation.String(fieldMethodID, id)
	k.Operation.String(fieldBrowsePath, path)
	// the arguments are cut as an array is, and share one budget
	in := m.InputArguments
	n := min(len(in), maxPlainElems)
	args, types := make([]any, n, n+1), make([]string, n, n+1)
	b := newPlainBudget()
	for a, v := range in[:n] {
		args[a], types[a] = plainValue(v, b), typeName(v)
	}
	if n < len(in) {
		m := more(len(in) - n)
		args, types = append(args, m), append(types, m)
	}
	k.Operation.Any(fieldArguments, args)
	k.Operation.Strings(fieldArgumentTypes, types)
	return k
}

// browseCall is the decision input of one node of a Browse.
func browseCall(b *ua.BrowseDescription) *gateway.Call {
	return nodeCall("browse", gateway.AccessBrowse, nodeIDString(b.NodeID))
}

// nodeCall is a call whose only field is a node id.
func nodeCall(function string, access gateway.Access, id string) *gateway.Call {
	k := op(function, access)
	k.Operation.String(fieldNodeID, id)
	return k
}

func (c *conn) browse(ctx context.Context, s *uaSession, req *ua.BrowseRequest) ua.Response {
	in := req.NodesToBrowse
	out := make([]*ua.BrowseResult, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n:    len(in),
		call: func(i int) *gateway.Call { return browseCall(in[i]) },
		deny: func(i int) { out[i] = &ua.BrowseResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.BrowseRequest{View: req.View, RequestedMaxReferencesPerNode: req.RequestedMaxReferencesPerNode, NodesToBrowse: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.BrowseResponse) []*ua.BrowseResult { return r.Results }, browseStatus,
			func(_, i int) { s.rememberCP(out[i].ContinuationPoint, nodeIDString(in[i].NodeID)) }),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.BrowseResponse{ResponseHeader: h, Results: out}
		},
	})
}

func browseStatus(r *ua.BrowseResult) ua.StatusCode { return r.StatusCode }

// rememberCP keeps which node a browse continuation point continues.
func (s *uaSession) rememberCP(cp []byte, node string) {
	if len(cp) == 0 {
		return
	}
	s.mu.Lock()
	putBounded(s.cps, string(cp), node)
	s.mu.Unlock()
}

func (s *uaSession) nodeOfCP(cp []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cps[string(cp)]
}

// browseNext forwards the continuation points this session was given and
// has not used yet, each decided with the node its Browse named; one the
// gateway did not hand out (forged, used or released already) is answered
// Bad_ContinuationPointInvalid and recorded, not forwarded: no policy rule
// on the node could apply to it.
func (c *conn) browseNext(ctx context.Context, s *uaSession, req *ua.BrowseNextRequest) ua.Response {
	in := req.ContinuationPoints
	if r := c.refuseTooMany(ctx, s, req.RequestHeader, len(in), func() *gateway.Call { return nodeCall("browse_next", gateway.AccessBrowse, "") }); r != nil {
		return r
	}
	out := make([]*ua.BrowseResult, len(in))
	var known []int // indexes of in the gateway handed out
	var nodes []string
	for i, cp := range in {
		node := s.nodeOfCP(cp)
		if node == "" {
			out[i] = &ua.BrowseResult{StatusCode: ua.StatusBadContinuationPointInvalid}
			k := nodeCall("browse_next", gateway.AccessBrowse, "")
			k.Target = c.base.Target
			c.e.pipeline.Reject(ctx, s.session(), k, "unknown_continuation_point",
				"a continuation point the gateway did not give this session, or one used or released already",
				statusName(ua.StatusBadContinuationPointInvalid))
			continue
		}
		known = append(known, i)
		nodes = append(nodes, node)
	}
	if len(in) > 0 && len(known) == 0 {
		return &ua.BrowseNextResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), Results: out}
	}
	outK := make([]*ua.BrowseResult, len(known))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n:    len(known),
		call: func(j int) *gateway.Call { return nodeCall("browse_next", gateway.AccessBrowse, nodes[j]) },
		deny: func(j int) { outK[j] = &ua.BrowseResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.BrowseNextRequest{ReleaseContinuationPoints: req.ReleaseContinuationPoints, ContinuationPoints: pick(in, pick(known, allowed))}
		},
		merge: resultsMerge(outK, func(r *ua.BrowseNextResponse) []*ua.BrowseResult { return r.Results }, browseStatus,
			func(_, j int) {
				// a continuation point is used once (released, or replaced
				// by the next one): the map holds only those still open
				s.mu.Lock()
				delete(s.cps, string(in[known[j]]))
				s.mu.Unlock()
				s.rememberCP(outK[j].ContinuationPoint, nodes[j])
			}),
		respond: func(h *ua.ResponseHeader) ua.Response {
			for j, i := range known {
				out[i] = outK[j]
			}
			return &ua.BrowseNextResponse{ResponseHeader: h, Results: out}
		},
	})
}

func (c *conn) translate(ctx context.Context, s *uaSession, req *ua.TranslateBrowsePathsToNodeIDsRequest) ua.Response {
	in := req.BrowsePaths
	out := make([]*ua.BrowsePathResult, len(in))
	return c.runBatch(ctx, s, req.RequestHeader, batch{
		n: len(in),
		call: func(i int) *gateway.Call {
			return nodeCall("translate_browse_paths", gateway.AccessBrowse, nodeIDString(in[i].StartingNode))
		},
		deny: func(i int) { out[i] = &ua.BrowsePathResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.TranslateBrowsePathsToNodeIDsRequest{BrowsePaths: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.TranslateBrowsePathsToNodeIDsResponse) []*ua.BrowsePathResult { return r.Results },
			func(r *ua.BrowsePathResult) ua.StatusCode { return r.StatusCode }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.TranslateBrowsePathsToNodeIDsResponse{ResponseHeader: h, Results: out}
		},
	})
}

// registerNodes is answered by the gateway: every node is registered as
// itself, which OPC 10000-4 (5.8.5) allows a server to do. Forwarded, the
// server would hand out aliases (node-opcua: ns=9999;i=1, 2, … in each
// session) that stand for nodes the policy cannot see: an alias the client
// uses before the gateway has learnt it, or one the server hands out again
// for another node after the gateway re-created its upstream session, would
// be decided and audited as an opaque id while the server acts on the node
// behind it. Each node is still decided and audited; registering is only an
// optimisation, so a denied node comes back as itself too.
func (c *conn) registerNodes(ctx context.Context, s *uaSession, req *ua.RegisterNodesRequest) ua.Response {
	in := req.NodesToRegister
	if r := c.answerHere(ctx, s, req.RequestHeader, len(in), func(i int) *gateway.Call {
		return nodeCall("register_nodes", gateway.AccessBrowse, nodeIDString(in[i]))
	}); r != nil {
		return r
	}
	return &ua.RegisterNodesResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK), RegisteredNodeIDs: in}
}

// unregisterNodes is answered by the gateway, which registers nodes as
// themselves (registerNodes): there is nothing to undo upstream.
func (c *conn) unregisterNodes(ctx context.Context, s *uaSession, req *ua.UnregisterNodesRequest) ua.Response {
	in := req.NodesToUnregister
	if r := c.answerHere(ctx, s, req.RequestHeader, len(in), func(i int) *gateway.Call {
		return nodeCall("unregister_nodes", gateway.AccessBrowse, nodeIDString(in[i]))
	}); r != nil {
		return r
	}
	return &ua.UnregisterNodesResponse{ResponseHeader: header(req.RequestHeader, ua.StatusOK)}
}

// changed clears the browse path cache after a change of the address space.
func (c *conn) changed(resp ua.Response) ua.Response {
	c.e.paths.clear()
	return resp
}

func (c *conn) addNodes(ctx context.Context, s *uaSession, req *ua.AddNodesRequest) ua.Response {
	in := req.NodesToAdd
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return expandedString(in[i].ParentNodeID) })
	out := make([]*ua.AddNodesResult, len(in))
	return c.changed(c.runBatch(ctx, s, req.RequestHeader, batch{
		n: len(in),
		call: func(i int) *gateway.Call {
			k := programCall("add_nodes", ids[i], paths[ids[i]])
			if it := in[i]; it != nil {
				k.Operation.String(fieldNewNodeID, expandedString(it.RequestedNewNodeID))
				if it.BrowseName != nil {
					k.Operation.String(fieldBrowseName, boundedString(it.BrowseName.Name))
				}
				k.Operation.String(fieldNodeClass, nodeClassName(it.NodeClass))
				k.Operation.String(fieldReferenceTypeID, nodeIDString(it.ReferenceTypeID))
				k.Operation.String(fieldTypeDefinition, expandedString(it.TypeDefinition))
			}
			return k
		},
		deny: func(i int) {
			out[i] = &ua.AddNodesResult{StatusCode: ua.StatusBadUserAccessDenied, AddedNodeID: ua.NewTwoByteNodeID(0)}
		},
		forward: func(allowed []int) ua.Request {
			return &ua.AddNodesRequest{NodesToAdd: pick(in, allowed)}
		},
		merge: resultsMerge(out, func(r *ua.AddNodesResponse) []*ua.AddNodesResult { return r.Results },
			func(r *ua.AddNodesResult) ua.StatusCode { return r.StatusCode }, nil),
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.AddNodesResponse{ResponseHeader: h, Results: out}
		},
	}))
}

func programCall(function, id, path string) *gateway.Call {
	k := op(function, gateway.AccessProgram)
	k.Operation.String(fieldNodeID, id)
	k.Operation.String(fieldBrowsePath, path)
	return k
}

// pick returns the items of in at the allowed indexes, in order: the part
// of a batched request that is forwarded.
func pick[T any](in []T, allowed []int) []T {
	out := make([]T, 0, len(allowed))
	for _, i := range allowed {
		out = append(out, in[i])
	}
	return out
}

// statusResults reads the per-item status codes of a response of type R;
// false when the server answered something else.
func statusResults[R ua.Response](results func(R) []ua.StatusCode) func(ua.Response) ([]ua.StatusCode, bool) {
	return func(resp ua.Response) ([]ua.StatusCode, bool) {
		r, ok := resp.(R)
		if !ok {
			return nil, false
		}
		return results(r), true
	}
}

// statusBatch is a batch of items whose results are plain status codes.
func (c *conn) statusBatch(ctx context.Context, s *uaSession, h *ua.RequestHeader, n int,
	call func(i int) *gateway.Call, forward func(allowed []int) ua.Request,
	results func(ua.Response) ([]ua.StatusCode, bool), respond func(*ua.ResponseHeader, []ua.StatusCode) ua.Response,
	after func(allowed []int, codes []ua.StatusCode)) ua.Response {
	out := make([]ua.StatusCode, n)
	return c.runBatch(ctx, s, h, batch{
		n: n, call: call, forward: forward,
		deny: func(i int) { out[i] = ua.StatusBadUserAccessDenied },
		merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
			got, ok := results(resp)
			if !ok {
				return nil, false
			}
			codes, ok := codesMerge(out)(resp, allowed, got)
			if ok && after != nil {
				after(allowed, codes)
			}
			return codes, ok
		},
		respond: func(h *ua.ResponseHeader) ua.Response { return respond(h, out) },
	})
}

// programItems decides and forwards a change of the address space whose
// items each name one node and whose results are status codes; function is
// the policy's operation.function.
func programItems[T any, R ua.Response](c *conn, ctx context.Context, s *uaSession, h *ua.RequestHeader, function string,
	in []T, node func(T) *ua.NodeID, details func(T, *gateway.Operation), forward func([]T) ua.Request, results func(R) []ua.StatusCode,
	respond func(*ua.ResponseHeader, []ua.StatusCode) ua.Response) ua.Response {
	ids, paths := c.nodes(ctx, s, len(in), func(i int) string { return nodeIDString(node(in[i])) })
	return c.changed(c.statusBatch(ctx, s, h, len(in),
		func(i int) *gateway.Call {
			k := programCall(function, ids[i], paths[ids[i]])
			details(in[i], &k.Operation)
			return k
		},
		func(allowed []int) ua.Request { return forward(pick(in, allowed)) },
		statusResults(results), respond, nil))
}

func (c *conn) addReferences(ctx context.Context, s *uaSession, req *ua.AddReferencesRequest) ua.Response {
	return programItems(c, ctx, s, req.RequestHeader, "add_references", req.ReferencesToAdd,
		func(r *ua.AddReferencesItem) *ua.NodeID { return r.SourceNodeID },
		func(r *ua.AddReferencesItem, o *gateway.Operation) {
			o.String(fieldTargetNodeID, expandedString(r.TargetNodeID))
			o.String(fieldReferenceTypeID, nodeIDString(r.ReferenceTypeID))
			o.Bool(fieldIsForward, r.IsForward)
		},
		func(in []*ua.AddReferencesItem) ua.Request { return &ua.AddReferencesRequest{ReferencesToAdd: in} },
		func(r *ua.AddReferencesResponse) []ua.StatusCode { return r.Results },
		func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
			return &ua.AddReferencesResponse{ResponseHeader: h, Results: out}
		})
}

func (c *conn) deleteNodes(ctx context.Context, s *uaSession, req *ua.DeleteNodesRequest) ua.Response {
	return programItems(c, ctx, s, req.RequestHeader, "delete_nodes", req.NodesToDelete,
		func(d *ua.DeleteNodesItem) *ua.NodeID { return d.NodeID },
		func(d *ua.DeleteNodesItem, o *gateway.Operation) {
			o.Bool(fieldDeleteTargetRefs, d.DeleteTargetReferences)
		},
		func(in []*ua.DeleteNodesItem) ua.Request { return &ua.DeleteNodesRequest{NodesToDelete: in} },
		func(r *ua.DeleteNodesResponse) []ua.StatusCode { return r.Results },
		func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
			return &ua.DeleteNodesResponse{ResponseHeader: h, Results: out}
		})
}

func (c *conn) deleteReferences(ctx context.Context, s *uaSession, req *ua.DeleteReferencesRequest) ua.Response {
	return programItems(c, ctx, s, req.RequestHeader, "delete_references", req.ReferencesToDelete,
		func(d *ua.DeleteReferencesItem) *ua.NodeID { return d.SourceNodeID },
		func(d *ua.DeleteReferencesItem, o *gateway.Operation) {
			o.String(fieldTargetNodeID, expandedString(d.TargetNodeID))
			o.String(fieldReferenceTypeID, nodeIDString(d.ReferenceTypeID))
			o.Bool(fieldIsForward, d.IsForward)
			o.Bool(fieldDeleteBidirection, d.DeleteBidirectional)
		},
		func(in []*ua.DeleteReferencesItem) ua.Request {
			return &ua.DeleteReferencesRequest{ReferencesToDelete: in}
		},
		func(r *ua.DeleteReferencesResponse) []ua.StatusCode { return r.Results },
		func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
			return &ua.DeleteReferencesResponse{ResponseHeader: h, Results: out}
		})
}

// nodeClassName is a NodeClass by its name in OPC 10000-3 (Object,
// Variable …); "Unspecified" for 0 and a number for anything else.
func nodeClassName(c ua.NodeClass) string {
	switch c {
	case 0:
		return "Unspecified"
	case ua.NodeClassObject:
		return "Object"
	case ua.NodeClassVariable:
		return "Variable"
	case ua.NodeClassMethod:
		return "Method"
	case ua.NodeClassObjectType:
		return "ObjectType"
	case ua.NodeClassVariableType:
		return "VariableType"
	case ua.NodeClassReferenceType:
		return "ReferenceType"
	case ua.NodeClassDataType:
		return "DataType"
	case ua.NodeClassView:
		return "View"
	}
	return strconv.FormatUint(uint64(c), 10)
}

// historyDetails adds what a HistoryUpdate item would change: the kind of
// details, and for an update of data its mode and values.
func historyDetails(k *gateway.Call, eo *ua.ExtensionObject) {
	if eo == nil {
		return
	}
	switch d := eo.Value.(type) {
	case *ua.UpdateDataDetails:
		k.Operation.String(fieldHistoryUpdate, "update_data")
		k.Operation.String(fieldPerformUpdate, performUpdateName(d.PerformInsertReplace))
		b := newPlainBudget()
		vs := make([]any, 0, len(d.UpdateValues))
		for _, dv := range d.UpdateValues {
			var v *ua.Variant
			if dv != nil {
				v = dv.Value
			}
			vs = append(vs, plainValue(v, b))
		}
		k.Operation.Any(fieldValues, vs)
	case *ua.UpdateStructureDataDetails:
		k.Operation.String(fieldHistoryUpdate, "update_structure_data")
		k.Operation.String(fieldPerformUpdate, performUpdateName(d.PerformInsertReplace))
	case *ua.UpdateEventDetails:
		k.Operation.String(fieldHistoryUpdate, "update_event")
		k.Operation.String(fieldPerformUpdate, performUpdateName(d.PerformInsertReplace))
	case *ua.DeleteRawModifiedDetails:
		k.Operation.String(fieldHistoryUpdate, "delete_raw_modified")
	case *ua.DeleteAtTimeDetails:
		k.Operation.String(fieldHistoryUpdate, "delete_at_time")
	case *ua.DeleteEventDetails:
		k.Operation.String(fieldHistoryUpdate, "delete_event")
	}
}

func performUpdateName(p ua.PerformUpdateType) string {
	switch p {
	case ua.PerformUpdateTypeInsert:
		return "insert"
	case ua.PerformUpdateTypeReplace:
		return "replace"
	case ua.PerformUpdateTypeUpdate:
		return "update"
	case ua.PerformUpdateTypeRemove:
		return "remove"
	}
	return strconv.FormatUint(uint64(p), 10)
}
