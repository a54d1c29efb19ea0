package opcua_test

import (
	"context"
	"errors"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/certs"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// gopcuaClient connects a gopcua client to the gateway with a user name
// ("" for anonymous) at the given policy and mode; cert and key are the
// client's application instance certificate (nil under None); extra
// options go last (they win).
func gopcuaClient(ctx context.Context, t *testing.T, endpoint, policy string, mode ua.MessageSecurityMode, user, password string, st *certs.Store,
	extra ...gopcua.Option) (*gopcua.Client, error) {
	t.Helper()
	eps, err := gopcua.GetEndpoints(ctx, endpoint)
	if err != nil {
		t.Fatalf("GetEndpoints: %v", err)
	}
	var ep *ua.EndpointDescription
	for _, e := range eps {
		if e.SecurityPolicyURI == policy && e.SecurityMode == mode {
			ep = e
		}
	}
	if ep == nil {
		t.Fatalf("no endpoint %s %v among %d", policy, mode, len(eps))
	}
	opts := []gopcua.Option{gopcua.AutoReconnect(false), gopcua.RequestTimeout(5 * time.Second)}
	if user != "" {
		opts = append(opts, gopcua.AuthUsername(user, password), gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeUserName))
	} else {
		opts = append(opts, gopcua.AuthAnonymous(), gopcua.SecurityFromEndpoint(ep, ua.UserTokenTypeAnonymous))
	}
	if st != nil {
		cert, key, err := st.Own()
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, gopcua.Certificate(cert), gopcua.PrivateKey(key))
	}
	return connectClient(ctx, t, endpoint, append(opts, extra...)...)
}

// connectClient connects a gopcua client with opts, closed when the test
// ends; an error is the connect's.
func connectClient(ctx context.Context, t *testing.T, endpoint string, opts ...gopcua.Option) (*gopcua.Client, error) {
	t.Helper()
	c, err := gopcua.NewClient(endpoint, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, nil
}

func readValue(ctx context.Context, t *testing.T, c *gopcua.Client, node string) *ua.DataValue {
	t.Helper()
	resp, err := c.Read(ctx, &ua.ReadRequest{NodesToRead: []*ua.ReadValueID{{NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue}}})
	if err != nil || len(resp.Results) != 1 {
		t.Fatalf("read %s: %v %+v", node, err, resp)
	}
	return resp.Results[0]
}

func writeValue(ctx context.Context, t *testing.T, c *gopcua.Client, node string, v any) ua.StatusCode {
	t.Helper()
	resp, err := c.Write(ctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID(node), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(v)},
	}}})
	if err != nil || len(resp.Results) != 1 {
		t.Fatalf("write %s: %v %+v", node, err, resp)
	}
	return resp.Results[0]
}

// A gopcua client through the gateway to node-opcua, at None and at
// Basic256Sha256 SignAndEncrypt (and the Aes policies): reads, denied and allowed writes, a call
// with arguments, browse, a data-change subscription, a wrong password.
func TestGopcuaClient(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	pkiDir, store := gatewayPKI(t)
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, pkiDir: pkiDir, store: store, opts: opcua.Options{
		SecurityPolicies: []string{"None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"},
		Users:            usersFile(t), Anonymous: true,
	}})
	clientPKI, err := certs.Init(t.TempDir(), certs.InitOptions{ApplicationURI: "urn:interlock:test:gopcua-client", Hosts: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, _, _ := clientPKI.Own()
	trust(t, store, cc)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name   string
		policy string
		mode   ua.MessageSecurityMode
		st     *certs.Store
	}{
		{"None", ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, nil},
		{"Basic256Sha256", ua.SecurityPolicyURIBasic256Sha256, ua.MessageSecurityModeSignAndEncrypt, clientPKI},
		{"Aes128_Sha256_RsaOaep-Sign", ua.SecurityPolicyURIAes128Sha256RsaOaep, ua.MessageSecurityModeSign, clientPKI},
		{"Aes256_Sha256_RsaPss", ua.SecurityPolicyURIAes256Sha256RsaPss, ua.MessageSecurityModeSignAndEncrypt, clientPKI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			anon, err := gopcuaClient(ctx, t, g.endpoint, tc.policy, tc.mode, "", "", tc.st)
			if err != nil {
				t.Fatalf("anonymous connect: %v", err)
			}
			if dv := readValue(ctx, t, anon, opcuatest.NodePressure); dv.Status != ua.StatusOK || dv.Value.Value() != 1.013 {
				t.Errorf("read Pressure: %+v", dv)
			}

			bob, err := gopcuaClient(ctx, t, g.endpoint, tc.policy, tc.mode, opcuatest.Operator, opcuatest.OperatorPassword, tc.st)
			if err != nil {
				t.Fatalf("bob connect: %v", err)
			}
			before := srv.Value(opcuatest.NodeSetpoint)
			if sc := writeValue(ctx, t, bob, opcuatest.NodeSetpoint, 77.0); sc != ua.StatusBadUserAccessDenied {
				t.Errorf("operator write: %v", sc)
			}
			if after := srv.Value(opcuatest.NodeSetpoint); after != before {
				t.Errorf("Setpoint changed by a denied write: %v -> %v", before, after)
			}

			alice, err := gopcuaClient(ctx, t, g.endpoint, tc.policy, tc.mode, opcuatest.Engineer, opcuatest.EngineerPassword, tc.st)
			if err != nil {
				t.Fatalf("alice connect: %v", err)
			}
			if sc := writeValue(ctx, t, alice, opcuatest.NodeSetpoint, 55.5); sc != ua.StatusOK {
				t.Errorf("engineer write: %v", sc)
			}
			if dv := readValue(ctx, t, alice, opcuatest.NodeSetpoint); dv.Value.Value() != 55.5 {
				t.Errorf("read back: %+v", dv.Value)
			}
			res, err := alice.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
				MethodID: ua.MustParseNodeID(opcuatest.NodeStart), InputArguments: []*ua.Variant{ua.MustVariant(int32(250))}})
			if err != nil || res.StatusCode != ua.StatusOK || len(res.OutputArguments) != 1 || res.OutputArguments[0].Value() != true {
				t.Errorf("Start(250): %v %+v", err, res)
			}
			res, err = alice.Call(ctx, &ua.CallMethodRequest{ObjectID: ua.MustParseNodeID(opcuatest.NodePLC),
				MethodID: ua.MustParseNodeID(opcuatest.NodeStart), InputArguments: []*ua.Variant{ua.MustVariant(int32(900))}})
			if err != nil || res.StatusCode != ua.StatusBadUserAccessDenied {
				t.Errorf("Start(900): %v %+v, want BadUserAccessDenied", err, res)
			}
			br, err := alice.Browse(ctx, &ua.BrowseRequest{NodesToBrowse: []*ua.BrowseDescription{{
				NodeID: ua.MustParseNodeID(opcuatest.NodePLC), BrowseDirection: ua.BrowseDirectionForward,
				IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)}}})
			if err != nil || len(br.Results) != 1 || len(br.Results[0].References) < 6 {
				t.Errorf("browse PLC: %v %+v", err, br)
			}

			notes := make(chan *gopcua.PublishNotificationData, 16)
			sub, err := anon.Subscribe(ctx, &gopcua.SubscriptionParameters{Interval: 100 * time.Millisecond}, notes)
			if err != nil {
				t.Fatalf("subscribe: %v", err)
			}
			if _, err := sub.Monitor(ctx, ua.TimestampsToReturnBoth, &ua.MonitoredItemCreateRequest{
				ItemToMonitor:  &ua.ReadValueID{NodeID: ua.MustParseNodeID(opcuatest.NodeTemperature), AttributeID: ua.AttributeIDValue, DataEncoding: &ua.QualifiedName{}},
				MonitoringMode: ua.MonitoringModeReporting,
				RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1, SamplingInterval: 100, QueueSize: 10, DiscardOldest: true,
					Filter: ua.NewExtensionObject(nil)},
			}); err != nil {
				t.Fatalf("monitor: %v", err)
			}
			got := 0
			for got < 2 {
				select {
				case n := <-notes:
					if n.Error != nil {
						t.Fatalf("notification error: %v", n.Error)
					}
					if dc, ok := n.Value.(*ua.DataChangeNotification); ok && len(dc.MonitoredItems) > 0 {
						got++
					}
				case <-ctx.Done():
					t.Fatalf("data changes: %d, want 2", got)
				}
			}
			sub.Cancel(ctx)

			_, err = gopcuaClient(ctx, t, g.endpoint, tc.policy, tc.mode, opcuatest.Engineer, "wrong", tc.st)
			if !errors.Is(err, ua.StatusBadUserAccessDenied) {
				t.Errorf("wrong password: %v, want BadUserAccessDenied", err)
			}
		})
	}
}

// sender returns a function that sends one request through c and fails the
// test when no response comes (a ServiceFault included).
// anonymousClient connects an anonymous gopcua client at SecurityPolicy None.
func anonymousClient(ctx context.Context, t *testing.T, endpoint string) *gopcua.Client {
	t.Helper()
	c, err := gopcuaClient(ctx, t, endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// anonymousSender connects an anonymous gopcua client for the rest of the
// test and returns its sender.
func anonymousSender(t *testing.T, endpoint string) func(ua.Request) ua.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return sender(ctx, t, anonymousClient(ctx, t, endpoint))
}

func sender(ctx context.Context, t *testing.T, c *gopcua.Client) func(ua.Request) ua.Response {
	return func(req ua.Request) ua.Response {
		t.Helper()
		var resp ua.Response
		if err := c.Send(ctx, req, func(r ua.Response) error { resp = r; return nil }); err != nil {
			t.Fatalf("%T: %v", req, err)
		}
		return resp
	}
}

// anonymousThrough starts a node-opcua server and a gateway in front of it
// with policy (SecurityPolicy None, anonymous logins), and connects an
// anonymous gopcua client through it; ctx ends with the test or after a
// minute.
func anonymousThrough(t *testing.T, policy string) (context.Context, *gw, *gopcua.Client, func(ua.Request) ua.Response) {
	t.Helper()
	return anonymousThroughLimits(t, policy, opcua.LimitOptions{})
}

// anonymousThroughLimits is anonymousThrough with the listener's limits.
func anonymousThroughLimits(t *testing.T, policy string, limits opcua.LimitOptions) (context.Context, *gw, *gopcua.Client, func(ua.Request) ua.Response) {
	t.Helper()
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, policy: policy,
		opts: opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true, Limits: limits}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	c := anonymousClient(ctx, t, g.endpoint)
	return ctx, g, c, sender(ctx, t, c)
}
