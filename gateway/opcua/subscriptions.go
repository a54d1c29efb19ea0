package opcua

import (
	"context"
	"fmt"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// subscription forwards the subscription services. Subscriptions live in the
// gateway's upstream session, so their ids are the server's; the gateway
// counts them per client session for limits.max_subscriptions_per_session.
func (c *conn) subscription(ctx context.Context, s *uaSession, body ua.Request) ua.Response {
	h := body.Header()
	subCall := func(function string, id uint32) *gateway.Call {
		k := op(function, gateway.AccessSubscribe)
		k.Operation.Int(fieldSubscriptionID, int64(id))
		return k
	}
	switch req := body.(type) {
	case *ua.CreateSubscriptionRequest:
		s.mu.Lock()
		full := len(s.subs)+s.subsPending >= c.e.opts.Limits.MaxSubscriptionsPerSession
		if !full {
			s.subsPending++ // held until the server answers
		}
		s.mu.Unlock()
		if full {
			c.e.pipeline.Reject(ctx, s.session(), c.serviceCall(body), "limit",
				fmt.Sprintf("max_subscriptions_per_session (%d) reached", c.e.opts.Limits.MaxSubscriptionsPerSession), "Bad_TooManySubscriptions")
			return fault(h, ua.StatusBadTooManySubscriptions)
		}
		resp, ok := c.single(ctx, s, h, op("create_subscription", gateway.AccessSubscribe), req, false)
		s.mu.Lock()
		s.subsPending--
		if r, is := resp.(*ua.CreateSubscriptionResponse); ok && is {
			s.subs[r.SubscriptionID] = true
		}
		s.mu.Unlock()
		return resp
	case *ua.ModifySubscriptionRequest:
		resp, _ := c.single(ctx, s, h, subCall("modify_subscription", req.SubscriptionID), req, false)
		return resp
	case *ua.PublishRequest:
		resp, _ := c.single(ctx, s, h, op("publish", gateway.AccessSubscribe), req, true)
		return resp
	case *ua.RepublishRequest:
		resp, _ := c.single(ctx, s, h, subCall("republish", req.SubscriptionID), req, false)
		return resp
	case *ua.SetPublishingModeRequest:
		in := req.SubscriptionIDs
		return c.statusBatch(ctx, s, h, len(in),
			func(i int) *gateway.Call { return subCall("set_publishing_mode", in[i]) },
			func(allowed []int) ua.Request {
				return &ua.SetPublishingModeRequest{PublishingEnabled: req.PublishingEnabled, SubscriptionIDs: pick(in, allowed)}
			},
			statusResults(func(r *ua.SetPublishingModeResponse) []ua.StatusCode { return r.Results }),
			func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
				return &ua.SetPublishingModeResponse{ResponseHeader: h, Results: out}
			}, nil)
	case *ua.DeleteSubscriptionsRequest:
		in := req.SubscriptionIDs
		return c.statusBatch(ctx, s, h, len(in),
			func(i int) *gateway.Call { return subCall("delete_subscriptions", in[i]) },
			func(allowed []int) ua.Request {
				return &ua.DeleteSubscriptionsRequest{SubscriptionIDs: pick(in, allowed)}
			},
			statusResults(func(r *ua.DeleteSubscriptionsResponse) []ua.StatusCode { return r.Results }),
			func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
				return &ua.DeleteSubscriptionsResponse{ResponseHeader: h, Results: out}
			},
			func(allowed []int, codes []ua.StatusCode) {
				s.mu.Lock()
				for j, i := range allowed {
					if codes[j] == ua.StatusOK || codes[j] == ua.StatusBadSubscriptionIDInvalid {
						delete(s.subs, in[i])
					}
				}
				s.mu.Unlock()
			})
	case *ua.TransferSubscriptionsRequest:
		in := req.SubscriptionIDs
		out := make([]*ua.TransferResult, len(in))
		return c.runBatch(ctx, s, h, batch{
			n:    len(in),
			call: func(i int) *gateway.Call { return subCall("transfer_subscriptions", in[i]) },
			deny: func(i int) { out[i] = &ua.TransferResult{StatusCode: ua.StatusBadUserAccessDenied} },
			forward: func(allowed []int) ua.Request {
				return &ua.TransferSubscriptionsRequest{SendInitialValues: req.SendInitialValues, SubscriptionIDs: pick(in, allowed)}
			},
			merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
				r, ok := resp.(*ua.TransferSubscriptionsResponse)
				if !ok || len(r.Results) != len(allowed) {
					return nil, false
				}
				codes := make([]ua.StatusCode, len(allowed))
				s.mu.Lock()
				for j, i := range allowed {
					out[i] = r.Results[j]
					if out[i] != nil {
						codes[j] = out[i].StatusCode
						if codes[j] == ua.StatusOK {
							s.subs[in[i]] = true
						}
					}
				}
				s.mu.Unlock()
				return codes, true
			},
			respond: func(h *ua.ResponseHeader) ua.Response {
				return &ua.TransferSubscriptionsResponse{ResponseHeader: h, Results: out}
			},
		})
	}
	return fault(h, ua.StatusBadServiceUnsupported)
}

// monitoredItems forwards the monitored item services, one decision per
// item. Items created through the gateway are remembered with their node,
// so that later changes to them are decided with the node id.
func (c *conn) monitoredItems(ctx context.Context, s *uaSession, body ua.Request) ua.Response {
	h := body.Header()
	itemCall := func(function string, sub, item uint32) *gateway.Call {
		k := op(function, gateway.AccessSubscribe)
		k.Operation.Int(fieldSubscriptionID, int64(sub))
		if n := s.nodeOfItem(item); n != "" {
			k.Operation.String(fieldNodeID, n)
		}
		return k
	}
	switch req := body.(type) {
	case *ua.CreateMonitoredItemsRequest:
		in := req.ItemsToCreate
		ids := make([]string, len(in))
		for i, m := range in {
			if m.ItemToMonitor != nil {
				ids[i] = s.original(nodeIDString(m.ItemToMonitor.NodeID))
			}
		}
		paths := c.pathsOf(ctx, s, ids)
		out := make([]*ua.MonitoredItemCreateResult, len(in))
		return c.runBatch(ctx, s, h, batch{
			n: len(in),
			call: func(i int) *gateway.Call {
				k := op("create_monitored_items", gateway.AccessSubscribe)
				k.Operation.Int(fieldSubscriptionID, int64(req.SubscriptionID))
				k.Operation.String(fieldNodeID, ids[i])
				k.Operation.String(fieldBrowsePath, paths[ids[i]])
				attr := ua.AttributeIDInvalid
				if in[i].ItemToMonitor != nil {
					attr = in[i].ItemToMonitor.AttributeID
				}
				k.Operation.String(fieldAttribute, attributeName(attr))
				return k
			},
			deny: func(i int) {
				out[i] = &ua.MonitoredItemCreateResult{StatusCode: ua.StatusBadUserAccessDenied, FilterResult: ua.NewExtensionObject(nil)}
			},
			forward: func(allowed []int) ua.Request {
				return &ua.CreateMonitoredItemsRequest{SubscriptionID: req.SubscriptionID, TimestampsToReturn: req.TimestampsToReturn, ItemsToCreate: pick(in, allowed)}
			},
			merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
				r, ok := resp.(*ua.CreateMonitoredItemsResponse)
				if !ok || len(r.Results) != len(allowed) {
					return nil, false
				}
				codes := make([]ua.StatusCode, len(allowed))
				s.mu.Lock()
				for j, i := range allowed {
					out[i] = r.Results[j]
					if out[i] != nil {
						codes[j] = out[i].StatusCode
						if codes[j] == ua.StatusOK {
							putBounded(s.items, out[i].MonitoredItemID, ids[i])
						}
					}
				}
				s.mu.Unlock()
				return codes, true
			},
			respond: func(h *ua.ResponseHeader) ua.Response {
				return &ua.CreateMonitoredItemsResponse{ResponseHeader: h, Results: out}
			},
		})
	case *ua.ModifyMonitoredItemsRequest:
		in := req.ItemsToModify
		out := make([]*ua.MonitoredItemModifyResult, len(in))
		return c.runBatch(ctx, s, h, batch{
			n: len(in),
			call: func(i int) *gateway.Call {
				return itemCall("modify_monitored_items", req.SubscriptionID, in[i].MonitoredItemID)
			},
			deny: func(i int) {
				out[i] = &ua.MonitoredItemModifyResult{StatusCode: ua.StatusBadUserAccessDenied, FilterResult: ua.NewExtensionObject(nil)}
			},
			forward: func(allowed []int) ua.Request {
				return &ua.ModifyMonitoredItemsRequest{SubscriptionID: req.SubscriptionID, TimestampsToReturn: req.TimestampsToReturn, ItemsToModify: pick(in, allowed)}
			},
			merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
				r, ok := resp.(*ua.ModifyMonitoredItemsResponse)
				if !ok || len(r.Results) != len(allowed) {
					return nil, false
				}
				codes := make([]ua.StatusCode, len(allowed))
				for j, i := range allowed {
					out[i] = r.Results[j]
					if out[i] != nil {
						codes[j] = out[i].StatusCode
					}
				}
				return codes, true
			},
			respond: func(h *ua.ResponseHeader) ua.Response {
				return &ua.ModifyMonitoredItemsResponse{ResponseHeader: h, Results: out}
			},
		})
	case *ua.SetMonitoringModeRequest:
		in := req.MonitoredItemIDs
		return c.statusBatch(ctx, s, h, len(in),
			func(i int) *gateway.Call { return itemCall("set_monitoring_mode", req.SubscriptionID, in[i]) },
			func(allowed []int) ua.Request {
				return &ua.SetMonitoringModeRequest{SubscriptionID: req.SubscriptionID, MonitoringMode: req.MonitoringMode, MonitoredItemIDs: pick(in, allowed)}
			},
			statusResults(func(r *ua.SetMonitoringModeResponse) []ua.StatusCode { return r.Results }),
			func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
				return &ua.SetMonitoringModeResponse{ResponseHeader: h, Results: out}
			}, nil)
	case *ua.DeleteMonitoredItemsRequest:
		in := req.MonitoredItemIDs
		return c.statusBatch(ctx, s, h, len(in),
			func(i int) *gateway.Call { return itemCall("delete_monitored_items", req.SubscriptionID, in[i]) },
			func(allowed []int) ua.Request {
				return &ua.DeleteMonitoredItemsRequest{SubscriptionID: req.SubscriptionID, MonitoredItemIDs: pick(in, allowed)}
			},
			statusResults(func(r *ua.DeleteMonitoredItemsResponse) []ua.StatusCode { return r.Results }),
			func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
				return &ua.DeleteMonitoredItemsResponse{ResponseHeader: h, Results: out}
			},
			func(allowed []int, codes []ua.StatusCode) {
				s.mu.Lock()
				for j, i := range allowed {
					if codes[j] == ua.StatusOK {
						delete(s.items, in[i])
					}
				}
				s.mu.Unlock()
			})
	case *ua.SetTriggeringRequest:
		// One decision for the triggering item and its links.
		resp, _ := c.single(ctx, s, h, itemCall("set_triggering", req.SubscriptionID, req.TriggeringItemID), req, false)
		return resp
	}
	return fault(h, ua.StatusBadServiceUnsupported)
}
