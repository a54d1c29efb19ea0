package opcua_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// allowAllPolicy allows every operation.
const allowAllPolicy = `package interlock

decision := {"allow": true}
`

// triggerPolicy denies linking an item on Counter to a triggering item;
// everything else is allowed.
const triggerPolicy = `package interlock

deny if {
	input.operation.function == "set_triggering"
	input.operation.linked_node_id == "ns=1;s=Counter"
}

default allow := false

allow if not deny

decision := {"allow": allow}
`

// triggerScenario links items on Counter and Pressure (Sampling) to an item
// on Setpoint (Reporting) and writes v to Setpoint.
func triggerScenario(endpoint string, v float64) opcuatest.Scenario {
	return opcuatest.Scenario{Endpoint: endpoint, Steps: []opcuatest.Step{{Trigger: &opcuatest.Trigger{
		Triggering: opcuatest.NodeSetpoint,
		Linked:     []string{opcuatest.NodeCounter, opcuatest.NodePressure},
		Write:      opcuatest.WriteValue{Node: opcuatest.NodeSetpoint, Value: v, DataType: "Double"},
	}}}}
}

// triggered is what a trigger step shows: the SetTriggering status and its
// add results, and the values each linked node notified.
type triggered struct {
	status string
	adds   []string
	linked map[string][]string
}

// runTrigger runs triggerScenario and checks that the write of v reached
// the server and was notified by the triggering item.
func runTrigger(t *testing.T, endpoint string, v float64) triggered {
	t.Helper()
	r := opcuatest.RunClient(t, triggerScenario(endpoint, v))
	st := step(t, r, 0, "trigger")
	if len(st.Results) != 1 || !st.Results[0].Status.Good() {
		t.Fatalf("write of the triggering node: %+v", st.Results)
	}
	if !slices.ContainsFunc(st.TriggerValues, func(x opcuatest.Value) bool { return x.Value == v }) {
		t.Fatalf("the triggering item did not report %v: %+v", v, st.TriggerValues)
	}
	out := triggered{status: st.Status.Name, linked: map[string][]string{}}
	for _, a := range st.AddResults {
		out.adds = append(out.adds, a.Name)
	}
	for _, x := range st.LinkedValues {
		out.linked[x.Node] = append(out.linked[x.Node], x.Status.Name+":"+fmtAny(x.Value))
	}
	return out
}

// SetTriggering through the gateway, node-opcua client and server: the
// links answer as on the direct connection and a change of the triggering
// node brings the linked items' samples; a policy that denies one link
// answers Bad_UserAccessDenied in its slot only, that item stays silent,
// and the denial is recorded with the nodes of both items.
func TestSetTriggering(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	direct := runTrigger(t, srv.Endpoint, 61.5)
	if direct.status != "Good" || !slices.Equal(direct.adds, []string{"Good", "Good"}) ||
		len(direct.linked[opcuatest.NodeCounter]) == 0 || len(direct.linked[opcuatest.NodePressure]) == 0 {
		t.Fatalf("direct: the server does not deliver linked items: %+v", direct)
	}

	allowed := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	through := runTrigger(t, allowed.endpoint, 62.5)
	if through.status != direct.status || !slices.Equal(through.adds, direct.adds) {
		t.Errorf("SetTriggering: direct %s %v, gateway %s %v", direct.status, direct.adds, through.status, through.adds)
	}
	for _, n := range []string{opcuatest.NodeCounter, opcuatest.NodePressure} {
		if !slices.Equal(direct.linked[n], through.linked[n]) {
			t.Errorf("linked %s: direct %v, gateway %v", n, direct.linked[n], through.linked[n])
		}
	}

	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: triggerPolicy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}})
	denied := runTrigger(t, g.endpoint, 63.5)
	if denied.status != "Good" || !slices.Equal(denied.adds, []string{"BadUserAccessDenied", "Good"}) {
		t.Errorf("SetTriggering with the Counter link denied: %s %v, want Good [BadUserAccessDenied Good]", denied.status, denied.adds)
	}
	if got := denied.linked[opcuatest.NodeCounter]; len(got) != 0 {
		t.Errorf("Counter notified through a denied link: %v", got)
	}
	if got, want := denied.linked[opcuatest.NodePressure], direct.linked[opcuatest.NodePressure]; !slices.Equal(got, want) {
		t.Errorf("Pressure through the allowed link: %v, direct %v", got, want)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) > 0 })
	links := map[string]record{}
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "set_triggering" {
			links[r.str("operation", "linked_node_id")] = r
		}
	}
	checkTriggerRecords(t, rs, links)
	removeLinks(t, g)
}

// removeLinks adds and removes links in one SetTriggering request through a
// gopcua client: each slot of AddResults and RemoveResults answers for its
// own link, the Counter link denied both ways, and the removal is recorded
// as such.
func removeLinks(t *testing.T, g *gw) {
	send := anonymousSender(t, g.endpoint)
	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	item := func(node string, mode ua.MonitoringMode, h uint32) *ua.MonitoredItemCreateRequest {
		return &ua.MonitoredItemCreateRequest{
			ItemToMonitor:  &ua.ReadValueID{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode: mode,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: h, SamplingInterval: 100, QueueSize: 1, DiscardOldest: true,
				Filter: ua.NewExtensionObject(nil)},
		}
	}
	mi := send(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{item(opcuatest.NodeSetpoint, ua.MonitoringModeReporting, 1),
			item(opcuatest.NodePressure, ua.MonitoringModeSampling, 2), item(opcuatest.NodeCounter, ua.MonitoringModeSampling, 3)}}).(*ua.CreateMonitoredItemsResponse)
	if len(mi.Results) != 3 {
		t.Fatalf("create monitored items: %+v", mi.Results)
	}
	trig, pressure, counter := mi.Results[0].MonitoredItemID, mi.Results[1].MonitoredItemID, mi.Results[2].MonitoredItemID
	st := send(&ua.SetTriggeringRequest{SubscriptionID: cs.SubscriptionID, TriggeringItemID: trig,
		LinksToAdd: []uint32{pressure, counter}}).(*ua.SetTriggeringResponse)
	if !slices.Equal(st.AddResults, []ua.StatusCode{ua.StatusOK, ua.StatusBadUserAccessDenied}) || len(st.RemoveResults) != 0 {
		t.Errorf("add Pressure and Counter: add %v remove %v", st.AddResults, st.RemoveResults)
	}
	st = send(&ua.SetTriggeringRequest{SubscriptionID: cs.SubscriptionID, TriggeringItemID: trig,
		LinksToAdd: []uint32{counter}, LinksToRemove: []uint32{counter, pressure}}).(*ua.SetTriggeringResponse)
	if !slices.Equal(st.AddResults, []ua.StatusCode{ua.StatusBadUserAccessDenied}) ||
		!slices.Equal(st.RemoveResults, []ua.StatusCode{ua.StatusBadUserAccessDenied, ua.StatusOK}) {
		t.Errorf("add Counter, remove Counter and Pressure: add %v remove %v", st.AddResults, st.RemoveResults)
	}
	rs := g.records(t, func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "link") == "remove" {
				n++
			}
		}
		return n == 2
	})
	removed := map[string]string{}
	for _, r := range events(rs, "call") {
		if r.str("operation", "link") == "remove" {
			removed[r.str("operation", "linked_node_id")] = r.str("decision", "allow")
		}
	}
	if removed[opcuatest.NodeCounter] != "false" || removed[opcuatest.NodePressure] != "true" {
		t.Errorf("decisions of the removals by linked node: %v", removed)
	}
}

// checkTriggerRecords checks the records of the trigger scenario with the
// Counter link denied: one call record per link naming both items' nodes.
func checkTriggerRecords(t *testing.T, rs []record, links map[string]record) {
	t.Helper()
	counter, pressure := links[opcuatest.NodeCounter], links[opcuatest.NodePressure]
	if len(links) != 2 || counter == nil || pressure == nil {
		t.Fatalf("set_triggering call records by linked node: %v", links)
	}
	for _, r := range []record{counter, pressure} {
		if r.str("operation", "node_id") != opcuatest.NodeSetpoint || r.str("operation", "link") != "add" ||
			r.str("operation", "access") != "subscribe" || r.str("operation", "subscription_id") == "" {
			t.Errorf("set_triggering call record: %v", r)
		}
	}
	if counter.str("decision", "allow") != "false" || pressure.str("decision", "allow") != "true" {
		t.Errorf("decisions: Counter link %v, Pressure link %v", counter["decision"], pressure["decision"])
	}
	results := map[string]string{}
	for _, r := range events(rs, "result") {
		results[r.str("call_id")] = r.str("status")
	}
	if results[pressure.str("call_id")] != "ok" {
		t.Errorf("result of the Pressure link: %q", results[pressure.str("call_id")])
	}
	if s, ok := results[counter.str("call_id")]; ok && s != "denied" {
		t.Errorf("result of the denied Counter link: %q", s)
	}
}

// transferScenario subscribes to Temperature as alice and transfers the
// subscription to a new session of to.
func transferScenario(endpoint string, to opcuatest.Identity) opcuatest.Scenario {
	return opcuatest.Scenario{Endpoint: endpoint, User: opcuatest.Engineer, Password: opcuatest.EngineerPassword,
		Steps: []opcuatest.Step{{Transfer: &opcuatest.Transfer{Node: opcuatest.NodeTemperature, Samples: 2, To: to, SendInitialValues: true}}}}
}

// transferred is what a transfer step shows.
type transferred struct {
	status   string
	results  []string
	moved    int // data changes received by the new session
	after    int // notifications of the old session after a refusal
	statuses []string
}

func runTransfer(t *testing.T, endpoint string, to opcuatest.Identity) transferred {
	t.Helper()
	st := step(t, opcuatest.RunClient(t, transferScenario(endpoint, to)), 0, "transfer")
	if len(st.Samples) == 0 {
		t.Fatalf("no notification before the transfer: %+v", st)
	}
	out := transferred{status: st.Status.Name, moved: len(st.Moved), after: len(st.After)}
	for _, s := range st.TransferResults {
		out.results = append(out.results, s.Name)
	}
	for _, s := range st.StatusChanges {
		out.statuses = append(out.statuses, s.Name)
	}
	return out
}

// TransferSubscriptions through the gateway, node-opcua client and server,
// gateway sessions of users from its users file, upstream sessions all
// logged in as one service account: a subscription moves to a new session
// of the same user and its notifications follow it, as on the direct
// connection; a session of another user is refused with
// Bad_UserAccessDenied (OPC UA Part 4 §5.13.7) by the gateway itself (the
// server sees the same account on both upstream sessions and would move
// it), the subscription stays with its owner, and both are recorded.
func TestTransferSubscriptions(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{DenyAnonymous: true, SecurityPolicies: []string{"None", "Basic256Sha256"}})
	alice := opcuatest.Identity{User: opcuatest.Engineer, Password: opcuatest.EngineerPassword}
	bob := opcuatest.Identity{User: opcuatest.Operator, Password: opcuatest.OperatorPassword}

	same := runTransfer(t, srv.Endpoint, alice)
	other := runTransfer(t, srv.Endpoint, bob)
	if !slices.Equal(same.results, []string{"Good"}) || same.moved < 2 || !slices.Contains(same.statuses, "GoodSubscriptionTransferred") {
		t.Fatalf("direct, same user: %+v", same)
	}
	if !slices.Equal(other.results, []string{"BadUserAccessDenied"}) || other.after < 2 {
		t.Fatalf("direct, other user: %+v", other)
	}

	pw := filepath.Join(t.TempDir(), "upstream.pw")
	if err := writeFile(pw, opcuatest.EngineerPassword+"\n"); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Users: usersFile(t),
		UpstreamIdentity: opcua.IdentityService, UpstreamUser: opcuatest.Engineer, UpstreamPasswordFile: pw,
	}})
	if got := runTransfer(t, g.endpoint, alice); got.status != same.status || !slices.Equal(got.results, same.results) ||
		got.moved < 2 || !slices.Contains(got.statuses, "GoodSubscriptionTransferred") {
		t.Errorf("gateway, same user: %+v, direct %+v", got, same)
	}
	if got := runTransfer(t, g.endpoint, bob); got.status != other.status || !slices.Equal(got.results, other.results) ||
		got.moved != 0 || got.after < 2 {
		t.Errorf("gateway, other user: %+v, direct %+v", got, other)
	}

	rs := g.records(t, func(rs []record) bool { return len(events(rs, "session.close")) >= 4 })
	var allowedCall record
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "transfer_subscriptions" {
			if allowedCall != nil || r.str("principal", "user") != opcuatest.Engineer || r.str("decision", "allow") != "true" {
				t.Errorf("transfer_subscriptions call record: %v", r)
			}
			allowedCall = r
		}
	}
	if allowedCall == nil || allowedCall.str("operation", "subscription_id") == "" {
		t.Fatalf("no transfer_subscriptions call record of alice: %v", allowedCall)
	}
	var res record
	for _, r := range events(rs, "result") {
		if r.str("call_id") == allowedCall.str("call_id") {
			res = r
		}
	}
	if res == nil || res.str("status") != "ok" {
		t.Errorf("result of alice's transfer: %v", res)
	}
	var refused []record
	for _, r := range events(rs, "request.rejected") {
		if r.str("operation", "function") == "transfer_subscriptions" {
			refused = append(refused, r)
		}
	}
	if len(refused) != 1 || refused[0].str("principal", "user") != opcuatest.Operator || refused[0].str("reason") != "not_owner" ||
		refused[0].str("operation", "subscription_id") == "" || refused[0].str("response") != "Bad_UserAccessDenied" {
		t.Errorf("request.rejected records of the transfer to bob: %v", refused)
	}

	// A subscription no session holds: the server's answer, given by the
	// gateway without asking it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	aliceSender := func(endpoint string) func(ua.Request) ua.Response {
		c, err := gopcuaClient(ctx, t, endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, alice.User, alice.Password, nil)
		if err != nil {
			t.Fatalf("%s: %v", endpoint, err)
		}
		return sender(ctx, t, c)
	}
	transfer := func(send func(ua.Request) ua.Response, id uint32) []ua.StatusCode {
		r := send(&ua.TransferSubscriptionsRequest{SubscriptionIDs: []uint32{id}}).(*ua.TransferSubscriptionsResponse)
		var out []ua.StatusCode
		for _, x := range r.Results {
			out = append(out, x.StatusCode)
		}
		return out
	}
	unknown := func(endpoint string) []ua.StatusCode { return transfer(aliceSender(endpoint), 4242) }
	want := []ua.StatusCode{ua.StatusBadSubscriptionIDInvalid}
	if got := unknown(srv.Endpoint); !slices.Equal(got, want) {
		t.Errorf("direct, unknown subscription: %v", got)
	}
	if got := unknown(g.endpoint); !slices.Equal(got, want) {
		t.Errorf("gateway, unknown subscription: %v", got)
	}
	rs = g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool { return r.str("reason") == "unknown_subscription" })
	})
	if !slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool {
		return r.str("reason") == "unknown_subscription" && r.str("operation", "subscription_id") == "4242"
	}) {
		t.Errorf("no request.rejected record of the unknown subscription")
	}

	// The nodes of the items move with the subscription: the new session's
	// later changes to them are decided with their node.
	a, b := aliceSender(g.endpoint), aliceSender(g.endpoint)
	cs := a(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	mi := a(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{{
			ItemToMonitor:       &ua.ReadValueID{NodeID: ua.MustParseNodeID(opcuatest.NodeTemperature), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode:      ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1, SamplingInterval: 100, QueueSize: 1, DiscardOldest: true, Filter: ua.NewExtensionObject(nil)},
		}}}).(*ua.CreateMonitoredItemsResponse)
	if len(mi.Results) != 1 || mi.Results[0].StatusCode != ua.StatusOK {
		t.Fatalf("create monitored item: %+v", mi.Results)
	}
	if got := transfer(b, cs.SubscriptionID); !slices.Equal(got, []ua.StatusCode{ua.StatusOK}) {
		t.Fatalf("gopcua, same user: %v", got)
	}
	sm := b(&ua.SetMonitoringModeRequest{SubscriptionID: cs.SubscriptionID, MonitoringMode: ua.MonitoringModeSampling,
		MonitoredItemIDs: []uint32{mi.Results[0].MonitoredItemID}}).(*ua.SetMonitoringModeResponse)
	if !slices.Equal(sm.Results, []ua.StatusCode{ua.StatusOK}) {
		t.Errorf("set monitoring mode in the new session: %v", sm.Results)
	}
	rs = g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "call"), func(r record) bool { return r.str("operation", "function") == "set_monitoring_mode" })
	})
	var modes []any
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "set_monitoring_mode" {
			modes = append(modes, r["operation"])
			if r.str("operation", "node_id") != opcuatest.NodeTemperature {
				t.Errorf("set_monitoring_mode after the transfer without the item's node: %v", r["operation"])
			}
		}
	}
	if len(modes) != 1 {
		t.Errorf("set_monitoring_mode call records: %v", modes)
	}

	// A subscription taken over counts against the receiving session's
	// max_subscriptions_per_session: refused while that session is full
	// (the subscription stays where it was), taken once there is room.
	g2 := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: allowAllPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Users: usersFile(t), Limits: opcua.LimitOptions{MaxSubscriptionsPerSession: 1},
		UpstreamIdentity: opcua.IdentityService, UpstreamUser: opcuatest.Engineer, UpstreamPasswordFile: pw,
	}})
	create := func(send func(ua.Request) ua.Response) uint32 {
		r := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60,
			RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
		if r.ResponseHeader.ServiceResult != ua.StatusOK {
			t.Fatalf("create subscription: %v", r.ResponseHeader.ServiceResult)
		}
		return r.SubscriptionID
	}
	a2, b2 := aliceSender(g2.endpoint), aliceSender(g2.endpoint)
	s1, s2 := create(a2), create(b2)
	if got := transfer(b2, s1); !slices.Equal(got, []ua.StatusCode{ua.StatusBadTooManySubscriptions}) {
		t.Errorf("transfer into a full session: %v, want Bad_TooManySubscriptions", got)
	}
	mod := a2(&ua.ModifySubscriptionRequest{SubscriptionID: s1, RequestedPublishingInterval: 200, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 10}).(*ua.ModifySubscriptionResponse)
	if mod.ResponseHeader.ServiceResult != ua.StatusOK {
		t.Errorf("the refused subscription no longer works in its session: %v", mod.ResponseHeader.ServiceResult)
	}
	del := b2(&ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{s2}}).(*ua.DeleteSubscriptionsResponse)
	if !slices.Equal(del.Results, []ua.StatusCode{ua.StatusOK}) {
		t.Fatalf("delete subscription: %v", del.Results)
	}
	if got := transfer(b2, s1); !slices.Equal(got, []ua.StatusCode{ua.StatusOK}) {
		t.Errorf("transfer with room: %v", got)
	}
	rs = g2.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool { return r.str("reason") == "limit" })
	})
	if !slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool {
		return r.str("reason") == "limit" && r.str("response") == "Bad_TooManySubscriptions" &&
			r.str("operation", "subscription_id") == fmt.Sprint(s1)
	}) {
		t.Errorf("no request.rejected record of the transfer into the full session")
	}
}

// itemsPolicy denies every operation on the nodes of data.lists.denied.
const itemsPolicy = `package interlock

default denied := []

denied := data.lists.denied

deny if input.operation.node_id in denied

default allow := false

allow if not deny

decision := {"allow": allow}
`

// A policy that comes to deny a monitored node stops its item: at the next
// Publish the gateway decides the session's items again (recorded, with
// recheck), and the server deletes the one now denied, so it delivers no
// more values; the item still allowed goes on.
func TestMonitoredItemsDecidedAgainAfterPolicyChange(t *testing.T) {
	_, g, _, send := anonymousThrough(t, itemsPolicy)

	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60, RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	item := func(node string, h uint32) *ua.MonitoredItemCreateRequest { return monitoredItem(node, h, 100, 1) }
	mi := send(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{item(opcuatest.NodeCounter, 1), item(opcuatest.NodePressure, 2)}}).(*ua.CreateMonitoredItemsResponse)
	if len(mi.Results) != 2 || mi.Results[0].StatusCode != ua.StatusOK || mi.Results[1].StatusCode != ua.StatusOK {
		t.Fatalf("create monitored items: %+v", mi.Results)
	}
	counterItem, pressureItem := mi.Results[0].MonitoredItemID, mi.Results[1].MonitoredItemID
	publish := func() { send(&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}}) }
	publish() // the same policy: nothing decided again

	if err := writeFile(filepath.Join(g.policyDir, "data.json"), `{"lists": {"denied": ["ns=1;s=Counter"]}}`); err != nil {
		t.Fatal(err)
	}
	if changed, err := g.policy.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	publish()

	modify := func(id uint32) *ua.MonitoredItemModifyRequest {
		return &ua.MonitoredItemModifyRequest{MonitoredItemID: id, RequestedParameters: &ua.MonitoringParameters{
			ClientHandle: id, SamplingInterval: 200, QueueSize: 1, DiscardOldest: true, Filter: ua.NewExtensionObject(nil)}}
	}
	mm := send(&ua.ModifyMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToModify: []*ua.MonitoredItemModifyRequest{modify(counterItem), modify(pressureItem)}}).(*ua.ModifyMonitoredItemsResponse)
	if len(mm.Results) != 2 || mm.Results[0].StatusCode != ua.StatusBadMonitoredItemIDInvalid || mm.Results[1].StatusCode != ua.StatusOK {
		t.Errorf("modify after the policy change: %v, %v; want the Counter item gone from the server, the Pressure item there",
			mm.Results[0].StatusCode, mm.Results[1].StatusCode)
	}

	rs := g.records(t, func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "recheck") == "true" {
				n++
			}
		}
		return n >= 2
	})
	got := map[string]string{}
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "create_monitored_items" && r.str("operation", "recheck") == "true" {
			got[r.str("operation", "node_id")] = r.str("decision", "allow")
		}
	}
	if got[opcuatest.NodeCounter] != "false" || got[opcuatest.NodePressure] != "true" || len(got) != 2 {
		t.Errorf("recheck decisions %v, want Counter denied and Pressure allowed", got)
	}
}

// monitoredItem asks for the Value of node under the client's handle h.
func monitoredItem(node string, h uint32, sampling float64, queue uint32) *ua.MonitoredItemCreateRequest {
	return &ua.MonitoredItemCreateRequest{
		ItemToMonitor:  &ua.ReadValueID{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
		MonitoringMode: ua.MonitoringModeReporting,
		RequestedParameters: &ua.MonitoringParameters{ClientHandle: h, SamplingInterval: sampling, QueueSize: queue, DiscardOldest: true,
			Filter: ua.NewExtensionObject(nil)},
	}
}

// handles counts the data change notifications of a Publish answer by
// client handle.
func handles(r *ua.PublishResponse) map[uint32]int {
	n := map[uint32]int{}
	if r == nil || r.NotificationMessage == nil {
		return n
	}
	for _, eo := range r.NotificationMessage.NotificationData {
		if dc, ok := eo.Value.(*ua.DataChangeNotification); ok {
			for _, m := range dc.MonitoredItems {
				n[m.ClientHandle]++
			}
		}
	}
	return n
}

// denyDuringPublish subscribes to Temperature (client handle 1) and
// Pressure (2) through a gateway, takes the first Publish, and denies
// Temperature by a policy reload while the next Publish waits upstream (the
// publishing interval is 1.5 s); it returns that Publish's answer.
func denyDuringPublish(t *testing.T) (context.Context, *gw, *gopcua.Client, func(ua.Request) ua.Response, uint32, *ua.PublishResponse) {
	t.Helper()
	ctx, g, c, send := anonymousThrough(t, itemsPolicy)
	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 1500, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 3, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	mi := send(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{
			monitoredItem(opcuatest.NodeTemperature, 1, 100, 50), monitoredItem(opcuatest.NodePressure, 2, 100, 50)}}).(*ua.CreateMonitoredItemsResponse)
	if len(mi.Results) != 2 || mi.Results[0].StatusCode != ua.StatusOK || mi.Results[1].StatusCode != ua.StatusOK {
		t.Fatalf("create monitored items: %+v", mi.Results)
	}
	first := send(&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}}).(*ua.PublishResponse)
	if h := handles(first); len(h) != 2 || h[1] == 0 || h[2] == 0 {
		t.Fatalf("first Publish: notifications by handle %v, want the client's handles 1 and 2", h)
	}
	waiting := make(chan *ua.PublishResponse, 1)
	go func() {
		var resp ua.Response
		_ = c.Send(ctx, &ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}},
			func(r ua.Response) error { resp = r; return nil })
		r, _ := resp.(*ua.PublishResponse)
		waiting <- r
	}()
	time.Sleep(400 * time.Millisecond)
	if err := writeFile(filepath.Join(g.policyDir, "data.json"), `{"lists": {"denied": ["ns=1;s=Temperature"]}}`); err != nil {
		t.Fatal(err)
	}
	if changed, err := g.policy.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	w := <-waiting
	if w == nil {
		t.Fatal("the Publish in flight got no answer")
	}
	return ctx, g, c, send, cs.SubscriptionID, w
}

// A Publish that waits upstream while the policy comes to deny a monitored
// node carries the values the server sampled meanwhile: the gateway
// decides the items again when the answer comes and withholds the denied
// item's notifications (the result record says how many); the allowed
// item's go through.
func TestNotificationsWithheldAfterPolicyChange(t *testing.T) {
	_, g, _, send, _, inFlight := denyDuringPublish(t)
	publish := func() *ua.PublishResponse {
		return send(&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{}}).(*ua.PublishResponse)
	}
	got := handles(inFlight)
	if got[1] != 0 {
		t.Errorf("the Publish in flight at the change delivered %d notifications of the now denied Temperature item", got[1])
	}
	if after := handles(publish()); after[1] != 0 {
		t.Errorf("the next Publish delivered %d notifications of the denied item", after[1])
	}

	rs := g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "result"), func(r record) bool {
			return strings.Contains(r.str("detail"), "withheld")
		})
	})
	withheld := 0
	for _, r := range events(rs, "result") {
		if d := r.str("detail"); strings.Contains(d, "withheld") {
			withheld++
			if r.str("function") != "publish" || !strings.HasSuffix(d, " notifications of monitored items the policy now denies, or not decided under it, withheld") {
				t.Errorf("withheld in the result of %s: %q", r.str("function"), d)
			}
			t.Logf("publish result: %s (the Publish in flight delivered %v by handle)", d, got)
		}
	}
	if withheld != 1 {
		t.Errorf("%d result records tell of withheld notifications, want 1 (the Publish in flight)", withheld)
	}
}

// max_monitored_items_per_session bounds the items a session holds, so
// that each is known and decided again when the policy changes: the items
// beyond it are refused with Bad_TooManyMonitoredItems and recorded.
func TestMonitoredItemsLimit(t *testing.T) {
	ctx, g, c, send := anonymousThroughLimits(t, itemsPolicy, opcua.LimitOptions{MaxMonitoredItemsPerSession: 3})
	cs := send(&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 500, RequestedLifetimeCount: 60,
		RequestedMaxKeepAliveCount: 10, PublishingEnabled: true}).(*ua.CreateSubscriptionResponse)
	create := func(nodes ...string) (*ua.CreateMonitoredItemsResponse, error) {
		var items []*ua.MonitoredItemCreateRequest
		for i, n := range nodes {
			items = append(items, monitoredItem(n, uint32(i+1), 100, 1))
		}
		var resp *ua.CreateMonitoredItemsResponse
		err := c.Send(ctx, &ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
			ItemsToCreate: items}, func(r ua.Response) error { resp, _ = r.(*ua.CreateMonitoredItemsResponse); return nil })
		return resp, err
	}
	if r, err := create(opcuatest.NodePressure, opcuatest.NodeCounter); err != nil || len(r.Results) != 2 {
		t.Fatalf("two items: %v %#v", err, r)
	}
	if _, err := create(opcuatest.NodeTemperature, opcuatest.NodeSetpoint); !errors.Is(err, ua.StatusBadTooManyMonitoredItems) {
		t.Fatalf("two more items (4 > 3): %v, want Bad_TooManyMonitoredItems", err)
	}
	if r, err := create(opcuatest.NodeTemperature); err != nil || len(r.Results) != 1 || r.Results[0].StatusCode != ua.StatusOK {
		t.Fatalf("a third item: %v %#v", err, r)
	}
	rs := g.records(t, func(rs []record) bool { return len(events(rs, "request.rejected")) > 0 })
	rej := events(rs, "request.rejected")
	if len(rej) != 1 || rej[0].str("reason") != "limit" || rej[0].str("response") != "Bad_TooManyMonitoredItems" ||
		!strings.Contains(rej[0].str("detail"), "max_monitored_items_per_session (3)") {
		t.Errorf("request.rejected records: %v", rej)
	}
}

// republish asks the server again for a notification message.
func republish(ctx context.Context, t *testing.T, c *gopcua.Client, sub, seq uint32) *ua.NotificationMessage {
	t.Helper()
	var resp ua.Response
	if err := c.Send(ctx, &ua.RepublishRequest{SubscriptionID: sub, RetransmitSequenceNumber: seq},
		func(r ua.Response) error { resp = r; return nil }); err != nil {
		t.Fatalf("republish %d: %v", seq, err)
	}
	return resp.(*ua.RepublishResponse).NotificationMessage
}

// Notifications withheld stay withheld whatever the client does with its
// client handles: the gateway gives every item a handle of its own
// upstream, never reused, so a Republish of a message sampled after the
// change cannot pass a denied item's values under a handle the client gave
// a new, allowed item. Upstream handles are the gateway's; the client sees
// its own.
func TestWithheldNotificationsStayWithheld(t *testing.T) {
	ctx, _, c, send, sub, w := denyDuringPublish(t)
	cs := &ua.CreateSubscriptionResponse{SubscriptionID: sub}
	seq := w.NotificationMessage.SequenceNumber
	if n := handles(w)[1]; n != 0 {
		t.Errorf("the Publish in flight delivered %d notifications of the denied item", n)
	}
	if n := handles(&ua.PublishResponse{NotificationMessage: republish(ctx, t, c, cs.SubscriptionID, seq)})[1]; n != 0 {
		t.Errorf("Republish(%d) delivered %d notifications of the denied item", seq, n)
	}
	// a new, allowed item under the denied item's handle, and Pressure
	// given it too
	mi := send(&ua.CreateMonitoredItemsRequest{SubscriptionID: cs.SubscriptionID, TimestampsToReturn: ua.TimestampsToReturnBoth,
		ItemsToCreate: []*ua.MonitoredItemCreateRequest{monitoredItem(opcuatest.NodeCounter, 1, 100, 1)}}).(*ua.CreateMonitoredItemsResponse)
	if mi.Results[0].StatusCode != ua.StatusOK {
		t.Fatalf("a Counter item under handle 1: %v", mi.Results[0].StatusCode)
	}
	if n := handles(&ua.PublishResponse{NotificationMessage: republish(ctx, t, c, cs.SubscriptionID, seq)})[1]; n != 0 {
		t.Errorf("Republish(%d) after handle 1 was given to an allowed item delivered %d notifications of the denied item", seq, n)
	}
}
