package opcua_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// eventsPolicy lets anyone subscribe to the Server object's events, and to
// nothing else.
const eventsPolicy = `package interlock

default allow := false

allow if input.operation.access in {"session", "read", "browse"}

allow if {
	input.operation.access == "subscribe"
	input.operation.function != "create_monitored_items"
}

allow if {
	input.operation.function == "create_monitored_items"
	input.operation.node_id == "i=2253"
	input.operation.attribute == "EventNotifier"
}

decision := {"allow": allow, "reasons": reasons}

reasons := [] if allow
reasons := ["not_allowed"] if not allow
`

// gopcua client -> gateway -> node-opcua server: an event subscription
// (the EventNotifier of the Server object, with an EventFilter) delivers
// the server's events through the gateway with the selected fields, and
// the monitored item is decided with its node and attribute; a data change
// item the policy does not allow is refused in its slot.
func TestEventSubscriptionThroughGateway(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: eventsPolicy, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := anonymousClient(ctx, t, g.endpoint)
	notes := make(chan *gopcua.PublishNotificationData, 16)
	sub, err := c.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, notes)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	field := func(name string) *ua.SimpleAttributeOperand {
		return &ua.SimpleAttributeOperand{TypeDefinitionID: ua.NewNumericNodeID(0, id.BaseEventType),
			BrowsePath: []*ua.QualifiedName{{Name: name}}, AttributeID: ua.AttributeIDValue}
	}
	filter := ua.NewExtensionObject(&ua.EventFilter{
		SelectClauses: []*ua.SimpleAttributeOperand{field("EventType"), field("Message"), field("Severity")},
		WhereClause:   &ua.ContentFilter{},
	})
	res, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth,
		&ua.MonitoredItemCreateRequest{
			ItemToMonitor:       &ua.ReadValueID{NodeID: ua.NewNumericNodeID(0, id.Server), AttributeID: ua.AttributeIDEventNotifier, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode:      ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: 7, QueueSize: 100, DiscardOldest: true, Filter: filter},
		},
		&ua.MonitoredItemCreateRequest{
			ItemToMonitor:       &ua.ReadValueID{NodeID: ua.MustParseNodeID(opcuatest.NodeTemperature), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
			MonitoringMode:      ua.MonitoringModeReporting,
			RequestedParameters: &ua.MonitoringParameters{ClientHandle: 8, SamplingInterval: 100, QueueSize: 10, DiscardOldest: true, Filter: ua.NewExtensionObject(nil)},
		})
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	if len(res.Results) != 2 || res.Results[0].StatusCode != ua.StatusOK || res.Results[1].StatusCode != ua.StatusBadUserAccessDenied {
		t.Fatalf("monitored items: %+v", res.Results)
	}

	var ticks []string
	for len(ticks) < 3 {
		select {
		case n := <-notes:
			if n.Error != nil {
				t.Fatalf("notification error: %v", n.Error)
			}
			switch v := n.Value.(type) {
			case *ua.EventNotificationList:
				for _, e := range v.Events {
					if e.ClientHandle != 7 || len(e.EventFields) != 3 {
						t.Fatalf("event %+v", e)
					}
					typ, _ := e.EventFields[0].Value().(*ua.NodeID)
					msg, _ := e.EventFields[1].Value().(*ua.LocalizedText)
					sev, _ := e.EventFields[2].Value().(uint16)
					if typ == nil || typ.IntID() != id.BaseEventType || msg == nil || !strings.HasPrefix(msg.Text, "line1 tick ") || sev != 300 {
						t.Fatalf("event fields %v, %v, %v", e.EventFields[0].Value(), e.EventFields[1].Value(), e.EventFields[2].Value())
					}
					ticks = append(ticks, msg.Text)
				}
			case *ua.DataChangeNotification:
				t.Fatalf("a data change of the refused item: %+v", v)
			}
		case <-ctx.Done():
			t.Fatalf("events: %v, want 3", ticks)
		}
	}
	sub.Cancel(ctx)

	rs := g.records(t, nil)
	var items []record
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "create_monitored_items" {
			items = append(items, r)
		}
	}
	if len(items) != 2 || items[0].str("operation", "node_id") != "i=2253" || items[0].str("operation", "attribute") != "EventNotifier" ||
		items[0].str("decision", "allow") != "true" || items[1].str("operation", "node_id") != opcuatest.NodeTemperature || items[1].str("decision", "allow") != "false" {
		t.Errorf("create_monitored_items call records: %v", items)
	}
}
