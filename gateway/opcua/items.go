package opcua

import (
	"context"
	"fmt"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// maxItems bounds the operation items of one request (nodes of a Read,
// methods of a Call …); more is refused with Bad_TooManyOperations.
const maxItems = 10000

// batch is a service request of many items, each decided on its own: the
// allowed items are forwarded together in one upstream request and the
// results merged back in order; denied items get Bad_UserAccessDenied.
type batch struct {
	n int
	// call builds the decision input of item i.
	call func(i int) *gateway.Call
	// deny puts Bad_UserAccessDenied into the client's slot i.
	deny func(i int)
	// forward builds the upstream request of the allowed items.
	forward func(allowed []int) ua.Request
	// merge copies the upstream's results into the client's slots and
	// returns each forwarded item's status; ok false when the response does
	// not fit the request.
	merge func(resp ua.Response, allowed []int) (codes []ua.StatusCode, ok bool)
	// respond builds the answer from the merged slots.
	respond func(h *ua.ResponseHeader) ua.Response

	// before, when set, runs after the decisions and before forwarding
	// (a Write reads the old values the policy asked for).
	before func(ctx context.Context, allowed []int, decisions []gateway.Decision)
	// outcome, when set, adds result record fields of forwarded item j.
	outcome func(j int) []gateway.Field
}

// admit decides each call under the session's decision lock and writes the
// call records; it returns the indices allowed and their decisions.
func (s *uaSession) admit(ctx context.Context, calls []*gateway.Call) (allowed []int, decs []gateway.Decision, denied []int) {
	gs := s.session()
	s.decide.Lock()
	defer s.decide.Unlock()
	for i, c := range calls {
		d, r := s.e.pipeline.Admit(ctx, gs, c)
		if r != nil {
			denied = append(denied, i)
			continue
		}
		allowed = append(allowed, i)
		decs = append(decs, d)
	}
	return allowed, decs, denied
}

// nodes returns the node id each of n items names, and their browse paths. A
// request of more than maxItems items is refused by runBatch before any
// decision, named by its first item: of such a request only the first node
// id is given, and no path is resolved (the gateway asks the upstream
// nothing for a request it will not forward).
func (c *conn) nodes(ctx context.Context, s *uaSession, n int, id func(i int) string) ([]string, map[string]string) {
	if n > maxItems {
		return []string{id(0)}, nil
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = id(i)
	}
	return ids, c.pathsOf(ctx, s, ids)
}

// resultsMerge is the merge of a batch whose response R carries one result
// per forwarded item: each result goes into its client's slot of out and
// gives the item's status. each, when set, sees every result that is not
// nil (j its index in the forwarded request, i in the client's).
func resultsMerge[R ua.Response, T any](out []*T, results func(R) []*T, status func(*T) ua.StatusCode, each func(j, i int)) func(ua.Response, []int) ([]ua.StatusCode, bool) {
	return func(resp ua.Response, allowed []int) ([]ua.StatusCode, bool) {
		r, ok := resp.(R)
		if !ok {
			return nil, false
		}
		got := results(r)
		if len(got) != len(allowed) {
			return nil, false
		}
		codes := make([]ua.StatusCode, len(allowed))
		for j, i := range allowed {
			out[i] = got[j]
			if out[i] == nil {
				continue
			}
			codes[j] = status(out[i])
			if each != nil {
				each(j, i)
			}
		}
		return codes, true
	}
}

// finish writes the result record of a forwarded call.
func (s *uaSession) finish(ctx context.Context, c *gateway.Call, code ua.StatusCode, latency time.Duration, detail string, fields []gateway.Field) {
	r := &gateway.Result{Status: statusKind(code), Code: int(uint32(code)), Latency: latency, Detail: detail, Fields: fields}
	s.e.pipeline.Finish(ctx, s.session(), c, r)
}

// statusKind is the result status of an item's OPC UA status code.
func statusKind(code ua.StatusCode) gateway.Status {
	if uint32(code)&0x80000000 != 0 {
		return gateway.StatusException
	}
	return gateway.StatusOK
}

func (c *conn) runBatch(ctx context.Context, s *uaSession, h *ua.RequestHeader, b batch) ua.Response {
	if b.n == 0 {
		return fault(h, ua.StatusBadNothingToDo)
	}
	if r := c.refuseTooMany(ctx, s, h, b.n, func() *gateway.Call { return b.call(0) }); r != nil {
		return r
	}
	calls := make([]*gateway.Call, b.n)
	for i := range calls {
		calls[i] = b.call(i)
		calls[i].Target = c.base.Target
	}
	allowed, decs, denied := s.admit(ctx, calls)
	for _, i := range denied {
		b.deny(i)
	}
	if len(allowed) > 0 {
		if b.before != nil {
			b.before(ctx, allowed, decs)
		}
		req := b.forward(allowed)
		start := time.Now()
		resp, err := c.send(ctx, s, h, req, false)
		lat := time.Since(start)
		if err != nil {
			code := statusOf(err)
			for _, i := range allowed {
				r := &gateway.Result{Status: gateway.StatusError, Code: int(uint32(code)), Latency: lat, Detail: err.Error()}
				c.e.pipeline.Finish(ctx, s.session(), calls[i], r)
			}
			return fault(h, code)
		}
		var codes []ua.StatusCode
		ok := resp.Header().ServiceResult == ua.StatusOK
		if ok {
			codes, ok = b.merge(resp, allowed)
		}
		if !ok {
			code := resp.Header().ServiceResult
			detail := ""
			if code == ua.StatusOK {
				code, detail = ua.StatusBadUnexpectedError, fmt.Sprintf("upstream answered %T that does not fit the request", resp)
			}
			for _, i := range allowed {
				s.finish(ctx, calls[i], code, lat, detail, nil)
			}
			return fault(h, code)
		}
		for j, i := range allowed {
			var fields []gateway.Field
			if b.outcome != nil {
				fields = b.outcome(j)
			}
			s.finish(ctx, calls[i], codes[j], lat, "", fields)
		}
	}
	return b.respond(header(h, ua.StatusOK))
}

// answerHere decides and audits the n items of a request the gateway
// answers itself, forwarding nothing: an allowed item's result is Good. It
// returns the answer instead of the caller's when the request is refused
// as a whole (no items, too many), else nil.
func (c *conn) answerHere(ctx context.Context, s *uaSession, h *ua.RequestHeader, n int, call func(i int) *gateway.Call) ua.Response {
	if n == 0 {
		return fault(h, ua.StatusBadNothingToDo)
	}
	if r := c.refuseTooMany(ctx, s, h, n, func() *gateway.Call { return call(0) }); r != nil {
		return r
	}
	calls := make([]*gateway.Call, n)
	for i := range calls {
		calls[i] = call(i)
		calls[i].Target = c.base.Target
	}
	allowed, _, _ := s.admit(ctx, calls)
	for _, i := range allowed {
		s.finish(ctx, calls[i], ua.StatusOK, 0, "answered by the gateway", nil)
	}
	return nil
}

// refuseTooMany answers a request of more than maxItems items with
// Bad_TooManyOperations and one request.rejected record, named by the
// function of first (its first item's call); nil when the request is
// within the bound. It comes before any decision, record or upstream
// request per item.
func (c *conn) refuseTooMany(ctx context.Context, s *uaSession, h *ua.RequestHeader, n int, first func() *gateway.Call) ua.Response {
	if n <= maxItems {
		return nil
	}
	call := first()
	call.Target = c.base.Target
	call.Operation.Fields = nil
	c.e.pipeline.Reject(ctx, s.session(), call, "limit",
		fmt.Sprintf("%d operation items, more than %d", n, maxItems), "Bad_TooManyOperations")
	return fault(h, ua.StatusBadTooManyOperations)
}

// minHintBudget is the least a request other than a Publish is given when
// its client's TimeoutHint is shorter than the listener's request timeout.
// A hint of a few milliseconds is smaller than a round trip through the
// gateway to a controller on the plant network plus the controller's own
// work: cut at the hint, such a request would be decided, audited and
// answered Bad_Timeout without a real attempt. 100 ms gives a Read of a
// controller on a LAN a real chance, and is short enough that a client that
// has given up does not hold an upstream request for long.
const minHintBudget = 100 * time.Millisecond

// budget is how long a request may take, from its arrival to its answer:
// the listener's request timeout; longer when the client's TimeoutHint says
// it waits longer (up to limits.max_publish_timeout); shorter when the hint
// is shorter, but never under minHintBudget (nor over the request
// timeout); and for a Publish the hint (bounded by
// limits.max_publish_timeout). Where the hint sets the budget, the budget
// ends a little before the hint (beforeHint), so that the client hears
// Bad_Timeout before it gives up itself.
func (c *conn) budget(h *ua.RequestHeader, publish bool) time.Duration {
	d := c.e.limits.RequestTimeout
	hint := time.Duration(h.TimeoutHint) * time.Millisecond
	switch {
	case publish:
		d = c.e.opts.Limits.MaxPublishTimeout
		if hint > 0 {
			d = min(beforeHint(hint), d)
		}
	case hint > d:
		d = min(max(beforeHint(hint), d), c.e.opts.Limits.MaxPublishTimeout)
	case hint > 0:
		d = min(max(beforeHint(hint), minHintBudget), d)
	}
	return d
}

// requestDeadlineKey is the context key of when the budget of the request
// being served ends. It is a value, not the context's deadline: the
// decisions and records of a request that ran out of time are still made.
type requestDeadlineKey struct{}

func withRequestDeadline(ctx context.Context, dl time.Time) context.Context {
	return context.WithValue(ctx, requestDeadlineKey{}, dl)
}

func requestDeadline(ctx context.Context) (time.Time, bool) {
	dl, ok := ctx.Value(requestDeadlineKey{}).(time.Time)
	return dl, ok
}

// send forwards req through the session's upstream within the request's
// time budget (budget), counted from the request's arrival: the lookups
// before it (browse paths, old values) took their time from it.
func (c *conn) send(ctx context.Context, s *uaSession, h *ua.RequestHeader, req ua.Request, publish bool) (ua.Response, error) {
	budget := c.budget(h, publish)
	if budget >= c.e.limits.RequestTimeout*9/10 {
		ctx = withMayMarkSilent(ctx)
	}
	dl := time.Now().Add(budget)
	if rdl, ok := requestDeadline(ctx); ok && rdl.Before(dl) {
		dl = rdl
	}
	if publish {
		var release func()
		ctx, release = c.parked.hold(ctx)
		defer release()
	}
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	s.mu.Lock()
	up := s.up
	s.mu.Unlock()
	if up == nil {
		return nil, errUpstreamClosed
	}
	resp, err := up.send(ctx, req)
	if cause := context.Cause(ctx); err != nil && ended(cause) {
		return nil, cause
	}
	return resp, err
}

// beforeHint is how long the gateway waits for a request whose client
// waits hint: a tenth less, at most a second less, so that the answer,
// Bad_Timeout included, reaches the client while it still waits (a server
// answers a parked Publish before its TimeoutHint the same way).
func beforeHint(hint time.Duration) time.Duration {
	return hint - min(hint/10, time.Second)
}

// single forwards a request decided as one call (CreateSubscription,
// Publish …) and returns the upstream's answer with the client's handle.
func (c *conn) single(ctx context.Context, s *uaSession, h *ua.RequestHeader, call *gateway.Call, req ua.Request, publish bool) (ua.Response, bool) {
	return c.singleShaped(ctx, s, h, call, req, publish, nil)
}

// singleShaped is single with shape run on the upstream's answer before
// the result record is written; what it returns is the record's detail.
func (c *conn) singleShaped(ctx context.Context, s *uaSession, h *ua.RequestHeader, call *gateway.Call, req ua.Request, publish bool,
	shape func(ua.Response) string) (ua.Response, bool) {
	call.Target = c.base.Target
	allowed, _, _ := s.admit(ctx, []*gateway.Call{call})
	if len(allowed) == 0 {
		return fault(h, ua.StatusBadUserAccessDenied), false
	}
	start := time.Now()
	resp, err := c.send(ctx, s, h, req, publish)
	lat := time.Since(start)
	if err != nil {
		code := statusOf(err)
		r := &gateway.Result{Status: gateway.StatusError, Code: int(uint32(code)), Latency: lat, Detail: err.Error()}
		c.e.pipeline.Finish(ctx, s.session(), call, r)
		return fault(h, code), false
	}
	rh := resp.Header()
	detail := ""
	if shape != nil {
		detail = shape(resp)
	}
	s.finish(ctx, call, rh.ServiceResult, lat, detail, nil)
	restore(resp, h)
	return resp, rh.ServiceResult == ua.StatusOK
}

// restore gives an upstream response back the client's request handle (the
// upstream session sends its own).
func restore(resp ua.Response, h *ua.RequestHeader) {
	rh := resp.Header()
	if rh == nil {
		resp.SetHeader(header(h, ua.StatusOK))
		return
	}
	rh.RequestHandle = h.RequestHandle
}

// op starts an operation of a function and access kind.
func op(function string, access gateway.Access) *gateway.Call {
	return &gateway.Call{Time: time.Now().UTC(), Operation: gateway.Operation{Function: function, Access: access}}
}

// deniedDataValue is a Read result slot of a denied node.
func deniedDataValue() *ua.DataValue {
	return &ua.DataValue{EncodingMask: ua.DataValueStatusCode, Status: ua.StatusBadUserAccessDenied}
}
