package opcua_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
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
		SecurityPolicies: []string{"None"}, Anonymous: true, Users: usersFile(f),
	}})
	encode := func(r ua.Request) []byte {
		r.SetHeader(&ua.RequestHeader{AuthenticationToken: ua.NewTwoByteNodeID(0), AdditionalHeader: ua.NewExtensionObject(nil)})
		b, err := ua.Encode(r)
		if err != nil {
			f.Fatalf("%T: %v", r, err)
		}
		tid, _ := ua.NewFourByteExpandedNodeID(0, ua.ServiceTypeID(r)).Encode()
		return append(tid, b...)
	}
	var bodies [][]byte
	for _, r := range fuzzRequests() {
		bodies = append(bodies, encode(r))
	}
	for _, b := range bodies {
		f.Add(fuzzInput(b))
	}
	f.Add(fuzzInput(bodies...))
	f.Add(fuzzInput(bodies[9], bodies[10], bodies[11], bodies[11], bodies[12])) // a subscription's life
	// sessions opened by the input: anonymous, not activated, user names
	// in plain and garbled, a garbled certificate, then closed
	create, read := encode(createRequest(g.endpoint)), bodies[0]
	activate := func(token any) []byte {
		a := activateRequest("")
		a.UserIdentityToken = ua.NewExtensionObject(token)
		return encode(a)
	}
	anonymous := activate(&ua.AnonymousIdentityToken{PolicyID: "anonymous"})
	notActivated := fuzzInput(create, read)
	f.Add(fuzzInput(create, anonymous, read))
	f.Add(notActivated)
	f.Add(fuzzInput(create, activate(&ua.UserNameIdentityToken{PolicyID: "username", UserName: opcuatest.Engineer, Password: []byte(opcuatest.EngineerPassword)}), read))
	f.Add(fuzzInput(create, activate(&ua.UserNameIdentityToken{PolicyID: "username", UserName: opcuatest.Engineer, Password: make([]byte, 256), EncryptionAlgorithm: "http://www.w3.org/2001/04/xmlenc#rsa-oaep"}), read))
	f.Add(fuzzInput(create, activate(&ua.X509IdentityToken{PolicyID: "x509", CertificateData: []byte{0x30, 0x82, 0x01, 0x00}}), read))
	f.Add(fuzzInput(anonymous, read))
	f.Add(fuzzInput(create, anonymous, encode(&ua.CloseSessionRequest{DeleteSubscriptions: true}), read))
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
	// a Write of a structure of a type gopcua does not know: the gateway
	// forwards its bytes, and the server takes them
	audit := &auditTail{path: g.auditPath}
	unknown := &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID(opcuatest.NodeRecipe), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(&ua.ExtensionObject{
			TypeID: ua.NewFourByteExpandedNodeID(1, 5001), EncodingMask: ua.ExtensionObjectBinary,
			Value: &channel.Opaque{Body: []byte("recipe 9")}})},
	}}}
	f.Add(fuzzInput(encode(unknown)))
	got = runSession(f, g.endpoint, nil, unknown)
	if w, ok := got[0].(*ua.WriteResponse); len(got) != 1 || !ok || len(w.Results) != 1 || w.Results[0] != ua.StatusOK {
		f.Fatalf("a Write of an unknown structure answered %#v", got)
	}
	if rec := audit.panics(f); rec != "" {
		f.Fatalf("a Write of an unknown structure panicked: %s", rec)
	}
	// and a session the input opens and does not activate gets its Read
	// refused
	got = runSession(f, g.endpoint, notActivated)
	if fault, ok := got[0].(*ua.ServiceFault); len(got) != 1 || !ok || fault.ResponseHeader.ServiceResult != ua.StatusBadSessionNotActivated {
		f.Fatalf("a Read on a session not activated answered %#v", got)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runSession(t, g.endpoint, data)
		if rec := audit.panics(t); rec != "" {
			t.Fatalf("a request panicked: %s", rec)
		}
	})
}

// runSession opens a session at endpoint, sends the requests of data and
// then also (as they are, not decoded from bytes), closes the connection
// and returns the answers.
func runSession(t testing.TB, endpoint string, data []byte, also ...ua.Request) []ua.Response {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Failed logins hold a source address back (1 s, 2 s … 5 min): an input
	// that logs in by itself comes from one of 127.0.0.2-254 in turn, so
	// that 127.0.0.1 sees only the anonymous logins that must succeed.
	own := ownLogin(data)
	d := net.Dialer{}
	if own {
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+loginSources.Add(1)%253))}
	}
	conn, err := d.DialContext(ctx, "tcp", strings.TrimPrefix(endpoint, "opc.tcp://"))
	if err != nil {
		t.Fatalf("the gateway no longer accepts: %v", err)
	}
	ch, err := channel.Dial(ctx, conn, &channel.ClientConfig{EndpointURL: endpoint, PolicyURI: ua.SecurityPolicyURINone, Mode: ua.MessageSecurityModeNone})
	if err != nil {
		t.Fatalf("channel: %v", err)
	}
	token, activated, data, open := openSession(t, ctx, ch, endpoint, data, own)
	if !open {
		closed(t, conn)
		return nil
	}
	var answers []ua.Response
	for i := 0; i < 8 && (len(data) >= 2 || len(also) > 0); i++ {
		var req ua.Request
		if len(data) >= 2 {
			var body []byte
			body, data = nextBody(data)
			if req, err = channel.DecodeRequest(body, 1<<20); err != nil {
				continue
			}
		} else {
			req, also = also[0], also[1:]
			req.SetHeader(&ua.RequestHeader{AdditionalHeader: ua.NewExtensionObject(nil)})
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
			_, fault := resp.(*ua.ServiceFault)
			switch {
			case !activated && !fault && !sessionless[reflect.TypeOf(req)]:
				t.Fatalf("%T on a session that is not activated answered with %T", req, resp)
			case fault || resp.(ua.Response).Header().ServiceResult != ua.StatusOK:
			case reflect.TypeOf(req) == reflect.TypeOf(&ua.ActivateSessionRequest{}):
				activated = true
			case reflect.TypeOf(req) == reflect.TypeOf(&ua.CloseSessionRequest{}):
				activated = false
			}
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

// createRequest and activateRequest open an anonymous session, unless the
// input brings its own.
func createRequest(endpoint string) *ua.CreateSessionRequest {
	return &ua.CreateSessionRequest{
		ClientDescription: &ua.ApplicationDescription{ApplicationURI: "urn:interlock:fuzz", ApplicationName: &ua.LocalizedText{}, ApplicationType: ua.ApplicationTypeClient},
		EndpointURL:       endpoint, SessionName: "fuzz", ClientNonce: make([]byte, 32), RequestedSessionTimeout: 60000}
}

func activateRequest(policyID string) *ua.ActivateSessionRequest {
	return &ua.ActivateSessionRequest{ClientSignature: &ua.SignatureData{},
		UserIdentityToken: ua.NewExtensionObject(&ua.AnonymousIdentityToken{PolicyID: policyID}), UserTokenSignature: &ua.SignatureData{}}
}

// anonymousPolicy is the policy id of the anonymous token of a
// CreateSession response's endpoints.
func anonymousPolicy(cs *ua.CreateSessionResponse) string {
	for _, ep := range cs.ServerEndpoints {
		for _, p := range ep.UserIdentityTokens {
			if p.TokenType == ua.UserTokenTypeAnonymous {
				return p.PolicyID
			}
		}
	}
	return ""
}

// nextBody takes the next request body of a FuzzEngine input: its length
// as two bytes, then the body.
func nextBody(data []byte) (body, rest []byte) {
	n := int(binary.LittleEndian.Uint16(data))
	return data[2:min(2+n, len(data))], data[min(2+n, len(data)):]
}

// peekRequest decodes the next body of data, if there is one.
func peekRequest(data []byte) (ua.Request, []byte) {
	if len(data) < 2 {
		return nil, data
	}
	body, rest := nextBody(data)
	req, err := channel.DecodeRequest(body, 1<<20)
	if err != nil {
		return nil, data
	}
	return req, rest
}

// tooMany reports whether v refuses a session for max_sessions.
func tooMany(v any) bool {
	f, ok := v.(*ua.ServiceFault)
	return ok && f.ResponseHeader.ServiceResult == ua.StatusBadTooManySessions
}

// loginSources counts the inputs that log in by themselves.
var loginSources atomic.Uint32

// ownLogin reports whether an input has an ActivateSession of its own.
func ownLogin(data []byte) bool {
	for i := 0; i < 10 && len(data) >= 2; i++ {
		var body []byte
		body, data = nextBody(data)
		if req, err := channel.DecodeRequest(body, 1<<20); err == nil {
			if _, ok := req.(*ua.ActivateSessionRequest); ok {
				return true
			}
		}
	}
	return false
}

// openSession opens the session of an input on ch: with the input's own
// CreateSession and ActivateSession when its first bodies are those, with
// an anonymous session's otherwise. An input that brings its own
// CreateSession and no ActivateSession leaves the session unactivated; so
// does an anonymous login refused on a source address that own logins
// (held) failed from. It returns the session's token, whether it is
// activated and the rest of the input; ok is false when the gateway closed
// the channel.
func openSession(t testing.TB, ctx context.Context, ch *channel.ClientChannel, endpoint string, data []byte, held bool) (token *ua.NodeID, activated bool, rest []byte, ok bool) {
	t.Helper()
	hdr := func(token *ua.NodeID) *ua.RequestHeader {
		return &ua.RequestHeader{AuthenticationToken: token, Timestamp: time.Now(), AdditionalHeader: ua.NewExtensionObject(nil)}
	}
	create := createRequest(endpoint)
	req, after := peekRequest(data)
	own, _ := req.(*ua.CreateSessionRequest)
	if own != nil {
		create, data = own, after
	}
	create.RequestHeader = hdr(ua.NewTwoByteNodeID(0))
	v, err := ch.Call(ctx, create)
	cs, created := v.(*ua.CreateSessionResponse)
	switch {
	case err != nil && ch.Err() != nil:
		return nil, false, nil, false
	case own == nil && !created && !tooMany(v):
		// (sessions the inputs create along the way live out their
		// timeout: they may fill max_sessions for a while)
		t.Fatalf("CreateSession: %T %v", v, err)
	case !created:
		return ua.NewTwoByteNodeID(0), false, data, true
	}
	activate := activateRequest(anonymousPolicy(cs))
	req, after = peekRequest(data)
	ownActivate, _ := req.(*ua.ActivateSessionRequest)
	switch {
	case ownActivate != nil:
		activate, data = ownActivate, after
	case own != nil:
		return cs.AuthenticationToken, false, data, true
	}
	activate.RequestHeader = hdr(cs.AuthenticationToken)
	v, err = ch.Call(ctx, activate)
	_, activated = v.(*ua.ActivateSessionResponse)
	switch {
	case err != nil && ch.Err() != nil:
		return nil, false, nil, false
	case own == nil && ownActivate == nil && !activated && !held:
		t.Fatalf("ActivateSession: %T %v", v, err)
	}
	return cs.AuthenticationToken, activated, data, true
}

// sessionless are the services a session need not be activated for.
var sessionless = map[reflect.Type]bool{}

func init() {
	for _, r := range []ua.Request{&ua.CreateSessionRequest{}, &ua.ActivateSessionRequest{}, &ua.CloseSessionRequest{}, &ua.CancelRequest{},
		&ua.GetEndpointsRequest{}, &ua.FindServersRequest{}, &ua.FindServersOnNetworkRequest{}, &ua.RegisterServerRequest{}, &ua.RegisterServer2Request{}} {
		sessionless[reflect.TypeOf(r)] = true
	}
}

// auditTail reads an audit log from where it last stopped.
type auditTail struct {
	path string
	off  int64
}

// panics returns the first record since the last call that tells of a
// recovered panic, or "".
func (a *auditTail) panics(t testing.TB) string {
	// the result records of the last requests may still be on their way
	time.Sleep(20 * time.Millisecond)
	f, err := os.Open(a.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < a.off {
		a.off = 0 // rotated
	}
	fresh, err := io.ReadAll(io.NewSectionReader(f, a.off, 1<<40))
	if err != nil {
		t.Fatal(err)
	}
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
