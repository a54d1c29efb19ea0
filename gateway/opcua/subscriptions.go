package opcua

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

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
		c.recheckItems(ctx, s)
		resp, _ := c.singleShaped(ctx, s, h, op("publish", gateway.AccessSubscribe), req, true, func(resp ua.Response) string {
			r, ok := resp.(*ua.PublishResponse)
			if !ok {
				return ""
			}
			// the policy may have changed while the Publish waited upstream
			c.recheckItems(ctx, s)
			return withheldDetail(s.translate(r.SubscriptionID, r.NotificationMessage, c.e.policyRevision()))
		})
		return resp
	case *ua.RepublishRequest:
		resp, _ := c.singleShaped(ctx, s, h, subCall("republish", req.SubscriptionID), req, false, func(resp ua.Response) string {
			r, ok := resp.(*ua.RepublishResponse)
			if !ok {
				return ""
			}
			c.recheckItems(ctx, s)
			return withheldDetail(s.translate(req.SubscriptionID, r.NotificationMessage, c.e.policyRevision()))
		})
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
						delete(s.handles, in[i])
						for key := range s.items {
							if key.sub == in[i] {
								s.forgetItemLocked(key) // nothing to decide again
							}
						}
					}
				}
				s.mu.Unlock()
			})
	case *ua.TransferSubscriptionsRequest:
		return c.transfer(ctx, s, req, subCall)
	}
	return fault(h, ua.StatusBadServiceUnsupported)
}

// withheldDetail is the result record's detail of a Publish or Republish
// answer whose notifications of revoked items were withheld.
func withheldDetail(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d notifications of monitored items the policy now denies, or not decided under it, withheld", n)
}

// monitoredItems forwards the monitored item services, one decision per
// item. Items created through the gateway are remembered with their node,
// so that later changes to them are decided with the node id.
func (c *conn) monitoredItems(ctx context.Context, s *uaSession, body ua.Request) ua.Response {
	h := body.Header()
	itemCall := func(function string, sub, item uint32) *gateway.Call {
		k := op(function, gateway.AccessSubscribe)
		k.Operation.Int(fieldSubscriptionID, int64(sub))
		if n := s.nodeOfItem(sub, item); n != "" {
			k.Operation.String(fieldNodeID, n)
		}
		return k
	}
	switch req := body.(type) {
	case *ua.CreateMonitoredItemsRequest:
		in := req.ItemsToCreate
		ids, paths := c.nodes(ctx, s, len(in), func(i int) string {
			if in[i].ItemToMonitor == nil {
				return ""
			}
			return nodeIDString(in[i].ItemToMonitor.NodeID)
		})
		out := make([]*ua.MonitoredItemCreateResult, len(in))
		attr := func(i int) string {
			if in[i].ItemToMonitor == nil {
				return attributeName(ua.AttributeIDInvalid)
			}
			return attributeName(in[i].ItemToMonitor.AttributeID)
		}
		handle := func(i int) uint32 {
			if p := in[i].RequestedParameters; p != nil {
				return p.ClientHandle
			}
			return 0
		}
		// The gateway's own handle for each item upstream, and the policy
		// revision the items are decided under (a change before the
		// server answers has them decided again).
		gwHandles := make([]uint32, len(in))
		for i := range gwHandles {
			gwHandles[i] = c.e.handleSeq.Add(1)
		}
		decidedRev := c.e.policyRevision()
		limit := c.e.opts.Limits.MaxMonitoredItemsPerSession
		s.mu.Lock()
		full := len(s.items)+s.itemsPending+len(in) > limit
		if !full {
			s.itemsPending += len(in) // held until the server answers
		}
		if len(s.items) == 0 {
			s.itemsRev = c.e.policyRevision() // the items about to be decided
		}
		s.mu.Unlock()
		if full && len(in) <= maxItems {
			c.e.pipeline.Reject(ctx, s.session(), c.serviceCall(body), "limit",
				fmt.Sprintf("max_monitored_items_per_session (%d) reached", limit), "Bad_TooManyMonitoredItems")
			return fault(h, ua.StatusBadTooManyMonitoredItems)
		}
		if !full {
			defer func() {
				s.mu.Lock()
				s.itemsPending -= len(in)
				s.mu.Unlock()
			}()
		}
		return c.runBatch(ctx, s, h, batch{
			n: len(in),
			call: func(i int) *gateway.Call {
				return itemDecision(req.SubscriptionID, ids[i], paths[ids[i]], attr(i))
			},
			deny: func(i int) {
				out[i] = &ua.MonitoredItemCreateResult{StatusCode: ua.StatusBadUserAccessDenied, FilterResult: ua.NewExtensionObject(nil)}
			},
			forward: func(allowed []int) ua.Request {
				items := make([]*ua.MonitoredItemCreateRequest, len(allowed))
				for j, i := range allowed {
					it := *in[i]
					if p := it.RequestedParameters; p != nil {
						q := *p
						q.ClientHandle = gwHandles[i]
						it.RequestedParameters = &q
					}
					items[j] = &it
				}
				return &ua.CreateMonitoredItemsRequest{SubscriptionID: req.SubscriptionID, TimestampsToReturn: req.TimestampsToReturn, ItemsToCreate: items}
			},
			merge: resultsMerge(out, func(r *ua.CreateMonitoredItemsResponse) []*ua.MonitoredItemCreateResult { return r.Results },
				func(r *ua.MonitoredItemCreateResult) ua.StatusCode { return r.StatusCode },
				func(_, i int) {
					if out[i].StatusCode == ua.StatusOK {
						s.mu.Lock()
						s.rememberItemLocked(itemKey{req.SubscriptionID, out[i].MonitoredItemID}, ids[i], attr(i),
							gwHandles[i], &itemHandle{client: handle(i), rev: decidedRev})
						if c.e.policyRevision() != decidedRev {
							s.itemsRev = "" // the policy changed meanwhile: decided again at the next Publish
						}
						s.mu.Unlock()
					}
				}),
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
				// each item keeps the gateway's handle upstream; an item the
				// gateway does not know gets a new one no notification is
				// passed on through
				items := make([]*ua.MonitoredItemModifyRequest, len(allowed))
				s.mu.Lock()
				for j, i := range allowed {
					it := *in[i]
					if p := it.RequestedParameters; p != nil {
						q := *p
						gw, ok := s.itemHandles[itemKey{req.SubscriptionID, it.MonitoredItemID}]
						if !ok {
							gw = c.e.handleSeq.Add(1)
						}
						q.ClientHandle = gw
						it.RequestedParameters = &q
					}
					items[j] = &it
				}
				s.mu.Unlock()
				return &ua.ModifyMonitoredItemsRequest{SubscriptionID: req.SubscriptionID, TimestampsToReturn: req.TimestampsToReturn, ItemsToModify: items}
			},
			merge: resultsMerge(out, func(r *ua.ModifyMonitoredItemsResponse) []*ua.MonitoredItemModifyResult { return r.Results },
				func(r *ua.MonitoredItemModifyResult) ua.StatusCode { return r.StatusCode },
				func(_, i int) {
					key := itemKey{req.SubscriptionID, in[i].MonitoredItemID}
					if out[i].StatusCode != ua.StatusOK || in[i].RequestedParameters == nil {
						return
					}
					s.mu.Lock()
					if gw, ok := s.itemHandles[key]; ok {
						if m := s.handles[key.sub][gw]; m != nil {
							m.client = in[i].RequestedParameters.ClientHandle
						}
					}
					s.mu.Unlock()
				}),
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
						s.forgetItemLocked(itemKey{req.SubscriptionID, in[i]})
					}
				}
				s.mu.Unlock()
			})
	case *ua.SetTriggeringRequest:
		// One decision per link to add or remove, with the nodes of the
		// triggering item (node_id) and of the linked item (linked_node_id).
		add, remove := req.LinksToAdd, req.LinksToRemove
		links := append(slices.Clip(add), remove...)
		forwardedAdds := 0
		return c.statusBatch(ctx, s, h, len(links),
			func(i int) *gateway.Call {
				k := itemCall("set_triggering", req.SubscriptionID, req.TriggeringItemID)
				link := "add"
				if i >= len(add) {
					link = "remove"
				}
				k.Operation.String(fieldLink, link)
				if n := s.nodeOfItem(req.SubscriptionID, links[i]); n != "" {
					k.Operation.String(fieldLinkedNodeID, n)
				}
				return k
			},
			func(allowed []int) ua.Request {
				forwardedAdds = sort.SearchInts(allowed, len(add))
				return &ua.SetTriggeringRequest{SubscriptionID: req.SubscriptionID, TriggeringItemID: req.TriggeringItemID,
					LinksToAdd: pick(links, allowed[:forwardedAdds]), LinksToRemove: pick(links, allowed[forwardedAdds:])}
			},
			func(resp ua.Response) ([]ua.StatusCode, bool) {
				r, ok := resp.(*ua.SetTriggeringResponse)
				if !ok || len(r.AddResults) != forwardedAdds {
					return nil, false
				}
				return append(slices.Clip(r.AddResults), r.RemoveResults...), true
			},
			func(h *ua.ResponseHeader, out []ua.StatusCode) ua.Response {
				return &ua.SetTriggeringResponse{ResponseHeader: h, AddResults: out[:len(add)], RemoveResults: out[len(add):]}
			}, nil)
	}
	return fault(h, ua.StatusBadServiceUnsupported)
}

// transfer forwards TransferSubscriptions. Only a session of the same user
// may take a subscription over (OPC UA Part 4 §5.13.7), and the server
// cannot tell: the gateway's upstream sessions may all log in with one
// account. So the gateway checks the owner among its own sessions first: a
// subscription of another user's session is refused with
// Bad_UserAccessDenied (reason not_owner), one no session of this listener
// holds with Bad_SubscriptionIdInvalid (reason unknown_subscription), one
// more than max_subscriptions_per_session allows with
// Bad_TooManySubscriptions (reason limit), each recorded as
// request.rejected; the others are decided and forwarded.
func (c *conn) transfer(ctx context.Context, s *uaSession, req *ua.TransferSubscriptionsRequest, subCall func(string, uint32) *gateway.Call) ua.Response {
	h := req.RequestHeader
	in := req.SubscriptionIDs
	if r := c.refuseTooMany(ctx, s, h, len(in), func() *gateway.Call { return subCall("transfer_subscriptions", in[0]) }); r != nil {
		return r
	}
	out := make([]*ua.TransferResult, len(in))
	gs := s.session()
	// owners[i] holds in[i] when it may move here; why[i] is the reason it
	// is refused otherwise.
	owners := make([]*uaSession, len(in))
	why := make([]string, len(in))
	for i, id := range in {
		switch o := c.e.sessions.subscriptionOwner(id); {
		case o == nil:
			why[i] = "unknown_subscription"
		case o != s && !sameUser(o.session(), gs):
			why[i] = "not_owner"
		default:
			owners[i] = o
		}
	}
	// Subscriptions that come from another session count against this
	// one's max_subscriptions_per_session, held as pending until the
	// server answers (as CreateSubscription does).
	limit := c.e.opts.Limits.MaxSubscriptionsPerSession
	reserved := 0
	s.mu.Lock()
	room := limit - len(s.subs) - s.subsPending
	for i, o := range owners {
		if o != nil && o != s {
			if reserved >= room {
				owners[i], why[i] = nil, "limit"
				continue
			}
			reserved++
		}
	}
	s.subsPending += reserved
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.subsPending -= reserved
		s.mu.Unlock()
	}()
	var owned []int // indexes of in that go on to the policy
	for i, id := range in {
		var code ua.StatusCode
		var detail string
		switch why[i] {
		case "":
			owned = append(owned, i)
			continue
		case "unknown_subscription":
			code, detail = ua.StatusBadSubscriptionIDInvalid, fmt.Sprintf("no session of this listener holds subscription %d", id)
		case "not_owner":
			code, detail = ua.StatusBadUserAccessDenied, fmt.Sprintf("subscription %d belongs to a session of another user", id)
		case "limit":
			code, detail = ua.StatusBadTooManySubscriptions, fmt.Sprintf("max_subscriptions_per_session (%d) reached", limit)
		}
		out[i] = &ua.TransferResult{StatusCode: code}
		k := subCall("transfer_subscriptions", id)
		k.Target = c.base.Target
		c.e.pipeline.Reject(ctx, gs, k, why[i], detail, statusName(code))
	}
	if len(in) > 0 && len(owned) == 0 {
		return &ua.TransferSubscriptionsResponse{ResponseHeader: header(h, ua.StatusOK), Results: out}
	}
	return c.runBatch(ctx, s, h, batch{
		n:    len(owned),
		call: func(j int) *gateway.Call { return subCall("transfer_subscriptions", in[owned[j]]) },
		deny: func(j int) { out[owned[j]] = &ua.TransferResult{StatusCode: ua.StatusBadUserAccessDenied} },
		forward: func(allowed []int) ua.Request {
			return &ua.TransferSubscriptionsRequest{SendInitialValues: req.SendInitialValues, SubscriptionIDs: pick(in, pick(owned, allowed))}
		},
		merge: func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
			r, ok := resp.(*ua.TransferSubscriptionsResponse)
			if !ok || len(r.Results) != len(allowed) {
				return nil, false
			}
			codes := make([]ua.StatusCode, len(allowed))
			for k, j := range allowed {
				i := owned[j]
				out[i] = r.Results[k]
				if out[i] == nil {
					continue
				}
				codes[k] = out[i].StatusCode
				if codes[k] == ua.StatusOK && owners[i] != s {
					// The subscription and the nodes of its items move.
					type item struct {
						node, attr string
						gw         uint32
						h          *itemHandle
					}
					moved := map[itemKey]item{}
					o := owners[i]
					o.mu.Lock()
					delete(o.subs, in[i])
					for key, node := range o.items {
						if key.sub == in[i] {
							gw := o.itemHandles[key]
							moved[key] = item{node, o.itemAttrs[key], gw, o.handles[key.sub][gw]}
							o.forgetItemLocked(key)
						}
					}
					delete(o.handles, in[i])
					o.mu.Unlock()
					s.mu.Lock()
					s.subs[in[i]] = true
					if len(moved) > 0 {
						s.itemsRev = "" // decided in another session: decided again here
					}
					for key, it := range moved {
						h := &itemHandle{rev: ""} // passes nothing until decided here
						if it.h != nil {
							h.client = it.h.client
						}
						s.rememberItemLocked(key, it.node, it.attr, it.gw, h)
					}
					s.mu.Unlock()
				}
			}
			return codes, true
		},
		respond: func(h *ua.ResponseHeader) ua.Response {
			return &ua.TransferSubscriptionsResponse{ResponseHeader: h, Results: out}
		},
	})
}

// sameUser reports whether the user of session b may take over a
// subscription of session a (OPC UA Part 4 §5.13.7): the same kind of login
// and user name (for X.509 user tokens the certificate's subject CN, the
// principal's user); for anonymous sessions the same ApplicationURI, both
// on Sign or SignAndEncrypt channels.
func sameUser(a, b *gateway.Session) bool {
	if a == nil || b == nil || a.Principal.Auth != b.Principal.Auth {
		return false
	}
	if a.Principal.Auth == gateway.AuthAnonymous {
		secured := func(s *gateway.Session) bool { return s.SecurityMode == "Sign" || s.SecurityMode == "SignAndEncrypt" }
		return a.Principal.ApplicationURI != "" && a.Principal.ApplicationURI == b.Principal.ApplicationURI && secured(a) && secured(b)
	}
	return a.Principal.User != "" && a.Principal.User == b.Principal.User
}

// itemDecision is the decision input of a monitored item on node.
func itemDecision(sub uint32, node, path, attr string) *gateway.Call {
	k := op("create_monitored_items", gateway.AccessSubscribe)
	k.Operation.Int(fieldSubscriptionID, int64(sub))
	k.Operation.String(fieldNodeID, node)
	k.Operation.String(fieldBrowsePath, path)
	k.Operation.String(fieldAttribute, attr)
	return k
}

// rememberItemLocked keeps a monitored item's node and attribute, and
// what its gateway handle gw stands for; s.mu is held. The items are
// bounded by max_monitored_items_per_session (CreateMonitoredItems is
// refused beyond it), never by forgetting some: a forgotten item would not
// be decided again when the policy changes.
func (s *uaSession) rememberItemLocked(key itemKey, node, attr string, gw uint32, h *itemHandle) {
	s.items[key] = node
	s.itemAttrs[key] = attr
	s.itemHandles[key] = gw
	if s.handles[key.sub] == nil {
		s.handles[key.sub] = map[uint32]*itemHandle{}
	}
	s.handles[key.sub][gw] = h
}

// forgetItemLocked drops a monitored item; its notifications are no longer
// passed on.
func (s *uaSession) forgetItemLocked(key itemKey) {
	if gw, ok := s.itemHandles[key]; ok {
		delete(s.handles[key.sub], gw)
	}
	delete(s.items, key)
	delete(s.itemAttrs, key)
	delete(s.itemHandles, key)
}

// translate passes on the notifications of a Publish or Republish answer
// that belong to items allowed under the policy in force (rev), with the
// client's handles, and removes the others: those of an item the policy
// now denies or has not decided again yet (values the server queued before
// it deleted the item, or sampled while a Publish waited upstream), and of
// handles the gateway gave no item it knows (one whose creation timed out
// at the gateway but not at the server). It returns how many it removed.
func (s *uaSession) translate(sub uint32, msg *ua.NotificationMessage, rev string) int {
	if msg == nil || len(msg.NotificationData) == 0 {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	handles := s.handles[sub]
	pass := func(gw uint32) (uint32, bool) {
		h := handles[gw]
		if h == nil || (rev != "" && h.rev != rev) {
			return 0, false
		}
		return h.client, true
	}
	n := 0
	for _, eo := range msg.NotificationData {
		if eo == nil {
			continue
		}
		switch v := eo.Value.(type) {
		case *ua.DataChangeNotification:
			keep := v.MonitoredItems[:0]
			var diags []*ua.DiagnosticInfo
			parallel := len(v.DiagnosticInfos) == len(v.MonitoredItems)
			for i, m := range v.MonitoredItems {
				if m == nil {
					continue
				}
				client, ok := pass(m.ClientHandle)
				if !ok {
					n++
					continue
				}
				m.ClientHandle = client
				keep = append(keep, m)
				if parallel {
					diags = append(diags, v.DiagnosticInfos[i])
				}
			}
			if parallel {
				v.DiagnosticInfos = diags
			}
			v.MonitoredItems = keep
		case *ua.EventNotificationList:
			keep := v.Events[:0]
			for _, e := range v.Events {
				if e == nil {
					continue
				}
				client, ok := pass(e.ClientHandle)
				if !ok {
					n++
					continue
				}
				e.ClientHandle = client
				keep = append(keep, e)
			}
			v.Events = keep
		}
	}
	return n
}

// recheckItems decides the session's monitored items again when the
// policy changed since they were decided: a monitored item goes on
// delivering values, so a policy that now denies its node must stop it.
// Each item is decided as when it was created (create_monitored_items,
// with recheck true) and recorded; the server deletes the ones denied
// (DeleteMonitoredItems, the gateway's own request), and the client's later
// use of them is answered Bad_MonitoredItemIdInvalid. It runs before a
// Publish, the request that would carry their values.
func (c *conn) recheckItems(ctx context.Context, s *uaSession) {
	s.recheck.Lock() // one at a time: the next finds the items decided
	defer s.recheck.Unlock()
	rev := c.e.policyRevision()
	s.mu.Lock()
	if rev == "" || s.itemsRev == rev || len(s.items) == 0 {
		if len(s.items) == 0 {
			s.itemsRev = rev
		}
		s.mu.Unlock()
		return
	}
	keys := make([]itemKey, 0, len(s.items))
	for k := range s.items {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b itemKey) int {
		if a.sub != b.sub {
			return cmp.Compare(a.sub, b.sub)
		}
		return cmp.Compare(a.item, b.item)
	})
	nodes, attrs := make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		nodes[i], attrs[i] = s.items[k], s.itemAttrs[k]
	}
	s.mu.Unlock()
	paths := c.pathsOf(ctx, s, nodes)
	calls := make([]*gateway.Call, len(keys))
	for i, k := range keys {
		calls[i] = itemDecision(k.sub, nodes[i], paths[nodes[i]], attrs[i])
		calls[i].Operation.Bool(fieldRecheck, true)
		calls[i].Target = c.base.Target
	}
	allowed, _, denied := s.admit(ctx, calls)
	for _, i := range allowed {
		s.finish(ctx, calls[i], ua.StatusOK, 0, "still allowed: the item goes on", nil)
	}
	// The items' notifications pass again, or no longer, before the
	// server deletes the denied ones; the items are decided under rev
	// from here.
	bySub := map[uint32][]uint32{}
	s.mu.Lock()
	setRev := func(key itemKey, r string) {
		if gw, ok := s.itemHandles[key]; ok {
			if h := s.handles[key.sub][gw]; h != nil {
				h.rev = r
			}
		}
	}
	for _, i := range allowed {
		setRev(keys[i], rev)
	}
	for _, i := range denied {
		setRev(keys[i], "")
		bySub[keys[i].sub] = append(bySub[keys[i].sub], keys[i].item)
	}
	s.itemsRev = rev
	s.mu.Unlock()
	for sub, items := range bySub {
		h := &ua.RequestHeader{Timestamp: time.Now(), AdditionalHeader: ua.NewExtensionObject(nil)}
		_, err := c.send(ctx, s, h, &ua.DeleteMonitoredItemsRequest{SubscriptionID: sub, MonitoredItemIDs: items}, false)
		if err != nil {
			s.session().Log.Error().Err(err).Uint32("subscription_id", sub).
				Msg("opcua: cannot delete monitored items the policy now denies; they are decided again at the next Publish")
			s.mu.Lock()
			s.itemsRev = ""
			s.mu.Unlock()
			continue
		}
		s.mu.Lock()
		for _, item := range items {
			s.forgetItemLocked(itemKey{sub, item})
		}
		s.mu.Unlock()
	}
}
