package opcua_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/channel"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// fuzzRequests are the requests FuzzEngine starts from: one of each
// service the gateway passes on, on the node-opcua server's nodes.
func fuzzRequests() []ua.Request {
	n := func(s string) *ua.NodeID { return ua.MustParseNodeID(s) }
	rv := func(node string, attr ua.AttributeID) *ua.ReadValueID {
		return &ua.ReadValueID{NodeID: n(node), AttributeID: attr, DataEncoding: &ua.QualifiedName{}}
	}
	view := &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}
	return []ua.Request{
		&ua.ReadRequest{NodesToRead: []*ua.ReadValueID{rv(opcuatest.NodeSetpoint, ua.AttributeIDValue), rv("i=2258", ua.AttributeIDValue), rv("ns=1;s=Counter", ua.AttributeIDBrowseName)}, TimestampsToReturn: ua.TimestampsToReturnBoth},
		&ua.WriteRequest{NodesToWrite: []*ua.WriteValue{
			{NodeID: n(opcuatest.NodeSetpoint), AttributeID: ua.AttributeIDValue, Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(12.5)}},
			{NodeID: n("ns=1;s=Counter"), AttributeID: ua.AttributeIDValue, IndexRange: "0:1", Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant([]int32{1, 2})}},
		}},
		&ua.CallRequest{MethodsToCall: []*ua.CallMethodRequest{{ObjectID: n("ns=1;s=PLC"), MethodID: n("ns=1;s=Start"), InputArguments: []*ua.Variant{ua.MustVariant(int32(100))}}}},
		&ua.BrowseRequest{View: view, RequestedMaxReferencesPerNode: 2, NodesToBrowse: []*ua.BrowseDescription{{NodeID: n("i=85"), ReferenceTypeID: n("i=33"), IncludeSubtypes: true, BrowseDirection: ua.BrowseDirectionForward, ResultMask: 63}}},
		&ua.BrowseNextRequest{ContinuationPoints: [][]byte{{1, 2, 3}}},
		&ua.TranslateBrowsePathsToNodeIDsRequest{BrowsePaths: []*ua.BrowsePath{{StartingNode: n("i=85"), RelativePath: &ua.RelativePath{Elements: []*ua.RelativePathElement{{ReferenceTypeID: n("i=33"), IncludeSubtypes: true, TargetName: &ua.QualifiedName{NamespaceIndex: 1, Name: "PLC"}}}}}}},
		&ua.RegisterNodesRequest{NodesToRegister: []*ua.NodeID{n(opcuatest.NodeSetpoint)}},
		&ua.UnregisterNodesRequest{NodesToUnregister: []*ua.NodeID{n(opcuatest.NodeSetpoint)}},
		&ua.HistoryReadRequest{HistoryReadDetails: ua.NewExtensionObject(&ua.ReadRawModifiedDetails{StartTime: time.Unix(0, 0), EndTime: time.Unix(1e9, 0), NumValuesPerNode: 10}), TimestampsToReturn: ua.TimestampsToReturnBoth, NodesToRead: []*ua.HistoryReadValueID{{NodeID: n(opcuatest.NodeSetpoint), DataEncoding: &ua.QualifiedName{}}}},
		&ua.CreateSubscriptionRequest{RequestedPublishingInterval: 100, RequestedLifetimeCount: 60, RequestedMaxKeepAliveCount: 10, PublishingEnabled: true},
		&ua.CreateMonitoredItemsRequest{SubscriptionID: 1, TimestampsToReturn: ua.TimestampsToReturnBoth, ItemsToCreate: []*ua.MonitoredItemCreateRequest{{ItemToMonitor: rv("ns=1;s=Temperature", ua.AttributeIDValue), MonitoringMode: ua.MonitoringModeReporting, RequestedParameters: &ua.MonitoringParameters{ClientHandle: 1, SamplingInterval: 100, Filter: ua.NewExtensionObject(nil), QueueSize: 1}}}},
		&ua.PublishRequest{SubscriptionAcknowledgements: []*ua.SubscriptionAcknowledgement{{SubscriptionID: 1, SequenceNumber: 1}}},
		&ua.DeleteSubscriptionsRequest{SubscriptionIDs: []uint32{1}},
		&ua.AddNodesRequest{NodesToAdd: []*ua.AddNodesItem{{ParentNodeID: ua.NewExpandedNodeID(n("i=85"), "", 0), ReferenceTypeID: n("i=35"), RequestedNewNodeID: ua.NewExpandedNodeID(n("ns=1;s=New"), "", 0), BrowseName: &ua.QualifiedName{NamespaceIndex: 1, Name: "New"}, NodeClass: ua.NodeClassObject, NodeAttributes: ua.NewExtensionObject(nil), TypeDefinition: ua.NewExpandedNodeID(n("i=58"), "", 0)}}},
		&ua.DeleteNodesRequest{NodesToDelete: []*ua.DeleteNodesItem{{NodeID: n("ns=1;s=New"), DeleteTargetReferences: true}}},
	}
}

// fuzzInput joins request bodies into one FuzzEngine input: each body
// (its type id and the request) after its length as two bytes.
func fuzzInput(bodies ...[]byte) []byte {
	var b []byte
	for _, body := range bodies {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
		b = append(b, body...)
	}
	return b
}

// FuzzEngine sends a gateway in front of node-opcua the requests of one
// anonymous session over SecurityPolicy None: up to 8 request bodies of the
// input, each sent as the session's request when it decodes (its header
// made the session's) and dropped when it does not (the channel's own
// fuzz targets have the undecodable ones). Whatever the requests, every
// one must be answered with its own response type or a ServiceFault in
// time (Publish excepted), the gateway must close the connection when the
// client does, and no request may end in a recovered panic.
func FuzzEngine(f *testing.F) {
	srv := opcuatest.StartServer(f, opcuatest.ServerOptions{})
	g := startGateway(f, gwOpts{upstream: srv.Endpoint, limits: gateway.Limits{RequestTimeout: 2 * time.Second}, opts: opcua.Options{
		SecurityPolicies: []string{"None"}, Anonymous: true,
	}})
	var bodies [][]byte
	for _, r := range fuzzRequests() {
		r.SetHeader(&ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)})
		b, err := ua.Encode(r)
		if err != nil {
			f.Fatalf("%T: %v", r, err)
		}
		tid, _ := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(r)).Encode()
		bodies = append(bodies, append(tid, b...))
	}
	for _, b := range bodies {
		f.Add(fuzzInput(b))
	}
	f.Add(fuzzInput(bodies...))
	f.Add(fuzzInput(bodies[9], bodies[10], bodies[11], bodies[11], bodies[12])) // a subscription's life
	// the seeds reach the server: a Read, a Write, a Call and a Browse of
	// the session are answered Good
	got := runSession(f, g.endpoint, fuzzInput(bodies[:4]...))
	for i, want := range []string{"*ua.ReadResponse", "*ua.WriteResponse", "*ua.CallResponse", "*ua.BrowseResponse"} {
		if i >= len(got) || fmt.Sprintf("%T", got[i]) != want || got[i].Header().ServiceResult != ua.StatusOK {
			f.Fatalf("answer %d: %#v, want a %s with Good", i, got, want)
		}
	}
	if r := got[0].(*ua.ReadResponse); len(r.Results) != 3 || r.Results[0].Status != ua.StatusOK {
		f.Fatalf("Read results %+v", r.Results)
	}
	audit := &auditTail{path: g.auditPath}
	f.Fuzz(func(t *testing.T, data []byte) {
		runSession(t, g.endpoint, data)
		if rec := audit.panics(t); rec != "" {
			t.Fatalf("a request panicked: %s", rec)
		}
	})
}

// runSession opens an anonymous session at endpoint, sends the requests
// of data, closes the connection and returns the answers.
func runSession(t testing.TB, endpoint string, data []byte) []ua.Response {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "opc.tcp://"))
	if err != nil {
		t.Fatalf("the gateway no longer accepts: %v", err)
	}
	ch, err := channel.Dial(ctx, conn, &channel.ClientConfig{EndpointURL: endpoint, PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone})
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	token := openSession(t, ctx, ch, endpoint)
	var answers []ua.Response
	for i := 0; i < 8 && len(data) >= 2; i++ {
		n := int(binary.LittleEndian.Uint16(data))
		body := data[2:min(2+n, len(data))]
		data = data[min(2+n, len(data)):]
		req, err := channel.DecodeRequest(body, 1<<20)
		if err != nil {
			continue
		}
		h := req.Header()
		h.AuthenticationToken, h.RequestHandle, h.TimeoutHint = token, uint32(i+10), 0
		_, publish := req.(*ua.PublishRequest)
		wait := 5 * time.Second // the gateway's request timeout is 2 s
		if publish {
			wait = time.Second
		}
		cctx, ccancel := context.WithTimeout(ctx, wait)
		resp, err := ch.Call(cctx, req)
		ccancel()
		switch {
		case err != nil && ch.Err() != nil:
			// the gateway refused the request by closing the channel (an
			// ERR message): nothing more can be sent
			closed(t, conn)
			return answers
		case errors.Is(err, context.DeadlineExceeded) && publish:
			// a Publish waits for notifications or the keep-alive
		case errors.Is(err, context.DeadlineExceeded), channel.StatusOf(err) == ua.StatusBadUnknownResponse:
			t.Fatalf("%T not answered: %v", req, err)
		case err != nil:
			// refused before it was sent: over the gateway's limits
		case resp.(ua.Response).Header().RequestHandle != uint32(i+10):
			t.Fatalf("%T answered with handle %d, sent %d", req, resp.(ua.Response).Header().RequestHandle, i+10)
		default:
			answers = append(answers, resp.(ua.Response))
		}
	}
	// the session ends (each left open would hold its subscriptions on the
	// server for the session timeout), and the client goes away without
	// closing the channel: the gateway must close it too
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := ch.Call(cctx, &ua.CloseSessionRequest{DeleteSubscriptions: true, RequestHeader: &ua.RequestHeader{
		AuthenticationToken: token, Timestamp: time.Now(), AdditionalHeader: ua.NewExtensionObject(nil)}}); err != nil {
		t.Fatalf("CloseSession not answered: %v", err)
	}
	ccancel()
	conn.(*net.TCPConn).CloseWrite()
	closed(t, conn)
	ch.Close()
	return answers
}

// closed reads conn until the gateway closes it, at most 5 s.
func closed(t testing.TB, conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [4096]byte
	for {
		_, err := conn.Read(buf[:])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("the gateway kept the connection 5 s after the client closed its side")
		}
		return
	}
}

// openSession runs CreateSession and ActivateSession (anonymous) on ch and
// returns the session's authentication token.
func openSession(t testing.TB, ctx context.Context, ch *channel.ClientChannel, endpoint string) *ua.NodeID {
	t.Helper()
	hdr := func() *ua.RequestHeader {
		return &ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), Timestamp: time.Now(), AdditionalHeader: ua.NewExtensionObject(nil)}
	}
	v, err := ch.Call(ctx, &ua.CreateSessionRequest{RequestHeader: hdr(),
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:interlock:fuzz", ApplicationName: &ua.LocalizedText{}, ApplicationType: ua.ApplicationTypeClient},
		EndpointURL:       endpoint, SessionName: "fuzz", ClientNonce: make([]byte, 32), RequestedSessionTimeout: 60000})
	cs, ok := v.(*ua.CreateSessionResponse)
	if err != nil || !ok {
		t.Fatalf("CreateSession: %T %v", v, err)
	}
	var policyID string
	for _, ep := range cs.ServerEndpoints {
		for _, p := range ep.UserIdentityTokens {
			if p.TokenType == ua.UserTokenTypeAnonymous {
				policyID = p.PolicyID
			}
		}
	}
	h := hdr()
	h.AuthenticationToken = cs.AuthenticationToken
	v, err = ch.Call(ctx, &ua.ActivateSessionRequest{RequestHeader: h, ClientSignature: &ua.SignatureData{},
		UserIdentityToken: ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: policyID}), UserTokenSignature: &ua.SignatureData{}})
	if _, ok := v.(*ua.ActivateSessionResponse); err != nil || !ok {
		t.Fatalf("ActivateSession: %T %v", v, err)
	}
	return cs.AuthenticationToken
}

// auditTail reads an audit log from where it last stopped.
type auditTail struct {
	path string
	off  int64
}

// panics returns the first record since the last call that tells of a
// recovered panic, or "".
func (a *auditTail) panics(t *testing.T) string {
	// the result records of the last requests may still be on their way
	time.Sleep(20 * time.Millisecond)
	b, err := os.ReadFile(a.path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < a.off {
		a.off = 0 // rotated
	}
	fresh := b[a.off:]
	if i := bytes.LastIndexByte(fresh, '\n'); i >= 0 {
		a.off += int64(i + 1)
		fresh = fresh[:i+1]
	} else {
		return ""
	}
	for line := range bytes.Lines(fresh) {
		if bytes.Contains(line, []byte(`"reason":"panic"`)) {
			return string(line)
		}
	}
	return ""
}
