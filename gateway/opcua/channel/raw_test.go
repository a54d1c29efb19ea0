package channel

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uacp"
	"github.com/gopcua/opcua/uapolicy"
	"github.com/gopcua/opcua/uasc"
)

// rawClient speaks UA TCP byte by byte, to send what a real client never would.
type rawClient struct {
	t       *testing.T
	c       net.Conn
	chanID  uint32
	tokenID uint32
	seq     uint32
}

func dialRaw(t *testing.T, srv *testServer) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", srv.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, seq: 1}
}

func (r *rawClient) write(b []byte) error {
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(b)
	return err
}

func (r *rawClient) mustWrite(b []byte) {
	r.t.Helper()
	if err := r.write(b); err != nil {
		r.t.Fatal(err)
	}
}

func tcpMessage(typ string, body []byte) []byte {
	b := make([]byte, 8, 8+len(body))
	copy(b, typ)
	binary.LittleEndian.PutUint32(b[4:], uint32(8+len(body)))
	return append(b, body...)
}

func (r *rawClient) hello() {
	r.t.Helper()
	body, _ := (&uacp.Hello{ReceiveBufSize: 65535, SendBufSize: 65535, EndpointURL: "opc.tcp://test"}).Encode()
	r.mustWrite(tcpMessage("HELF", body))
	typ, _, err := r.readFrame()
	if err != nil || typ != "ACKF" {
		r.t.Fatalf("after Hello: %s %v", typ, err)
	}
}

// readFrame reads one message; the ERR body is returned decoded as error.
func (r *rawClient) readFrame() (string, []byte, error) {
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [8]byte
	if _, err := io.ReadFull(r.c, h[:]); err != nil {
		return "", nil, err
	}
	n := binary.LittleEndian.Uint32(h[4:])
	b := make([]byte, n)
	copy(b, h[:])
	if _, err := io.ReadFull(r.c, b[8:]); err != nil {
		return "", nil, err
	}
	if string(h[:4]) == "ERRF" {
		e := new(uacp.Error)
		e.Decode(b[8:])
		return "ERRF", b, e
	}
	return string(h[:4]), b, nil
}

// expectERR reads until an ERR message, checks its code and that the
// server then closes the socket.
func (r *rawClient) expectERR(want ua.StatusCode) {
	r.t.Helper()
	for {
		typ, _, err := r.readFrame()
		if typ == "ERRF" {
			if got := StatusOf(err); got != want {
				r.t.Fatalf("ERR %v, want %v", got, want)
			}
			break
		}
		if err != nil {
			r.t.Fatalf("no ERR message (want %v): %v", want, err)
		}
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, r.c); err != nil && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			r.t.Fatal("socket not closed after ERR")
		}
	}
}

func opnRequest(rt ua.SecurityTokenRequestType, lifetimeMS uint32) []byte {
	body, err := encodeService(id.OpenSecureChannelRequest_Encoding_DefaultBinary, &ua.OpenSecureChannelRequest{
		RequestHeader:     requestHeader(1),
		RequestType:       rt,
		SecurityMode:      ua.MessageSecurityModeNone,
		RequestedLifetime: lifetimeMS,
	})
	if err != nil {
		panic(err)
	}
	return body
}

// opn builds an OPN chunk with the given asymmetric header and body.
func opnChunk(chanID uint32, hdr *uasc.AsymmetricSecurityHeader, seq, reqID uint32, body []byte) []byte {
	ah, _ := hdr.Encode()
	b := make([]byte, 12)
	copy(b, "OPNF")
	binary.LittleEndian.PutUint32(b[8:], chanID)
	b = append(b, ah...)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, reqID)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func (r *rawClient) openNone(rt ua.SecurityTokenRequestType, lifetimeMS uint32) *ua.OpenSecureChannelResponse {
	r.t.Helper()
	r.mustWrite(opnChunk(r.chanID, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, r.seq, 1, opnRequest(rt, lifetimeMS)))
	r.seq++
	typ, b, err := r.readFrame()
	if err != nil || typ != "OPNF" {
		r.t.Fatalf("OPN answered with %s: %v", typ, err)
	}
	var hdr uasc.AsymmetricSecurityHeader
	n, _ := hdr.Decode(b[12:])
	_, svc, err := ua.DecodeService(b[12+n+8:])
	if err != nil {
		r.t.Fatal(err)
	}
	resp := svc.(*ua.OpenSecureChannelResponse)
	r.chanID, r.tokenID = resp.SecurityToken.ChannelID, resp.SecurityToken.TokenID
	return resp
}

func symChunk(typ string, chunk byte, chanID, tokenID, seq, reqID uint32, body []byte) []byte {
	b := make([]byte, 0, 24+len(body))
	b = append(b, typ...)
	b = append(b, chunk, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, chanID)
	b = binary.LittleEndian.AppendUint32(b, tokenID)
	b = binary.LittleEndian.AppendUint32(b, seq)
	b = binary.LittleEndian.AppendUint32(b, reqID)
	b = append(b, body...)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(b)))
	return b
}

func readBody(handle uint32) []byte {
	r := readRequest(ua.NewNumericNodeID(0, 2258))
	r.RequestHeader.RequestHandle = handle
	b, err := encodeService(id.ReadRequest_Encoding_DefaultBinary, r)
	if err != nil {
		panic(err)
	}
	return b
}

// read sends a Read secured with tokenID and returns the answer and the
// token the answer was secured with.
func (r *rawClient) read(tokenID, handle uint32) (ua.Response, uint32) {
	r.t.Helper()
	r.mustWrite(symChunk("MSG", 'F', r.chanID, tokenID, r.seq, handle, readBody(handle)))
	r.seq++
	return r.response()
}

func (r *rawClient) response() (ua.Response, uint32) {
	r.t.Helper()
	typ, b, err := r.readFrame()
	if err != nil || typ != "MSGF" {
		r.t.Fatalf("answer %s: %v", typ, err)
	}
	_, svc, err := ua.DecodeService(b[24:])
	if err != nil {
		r.t.Fatal(err)
	}
	return svc.(ua.Response), binary.LittleEndian.Uint32(b[12:])
}

func noneServer(t *testing.T) *testServer {
	cfg := baseConfig(t)
	cfg.MaxChunkCount = 8
	cfg.HelloTimeout = 300 * time.Millisecond
	return startServer(t, cfg)
}

func TestRawBadInput(t *testing.T) {
	srv := noneServer(t)
	tests := []struct {
		name string
		run  func(r *rawClient)
		want ua.StatusCode
	}{
		{"bytes before Hello", func(r *rawClient) {
			r.write(symChunk("MSG", 'F', 1, 1, 1, 1, readBody(1)))
		}, ua.StatusBadTCPMessageTypeInvalid},
		{"garbage before Hello", func(r *rawClient) {
			r.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, ua.StatusBadTCPMessageTooLarge},
		{"message size 4", func(r *rawClient) {
			r.write([]byte{'H', 'E', 'L', 'F', 4, 0, 0, 0})
		}, ua.StatusBadDecodingError},
		{"message size 1<<31", func(r *rawClient) {
			r.write([]byte{'H', 'E', 'L', 'F', 0, 0, 0, 0x80})
		}, ua.StatusBadTCPMessageTooLarge},
		{"no Hello in time", func(r *rawClient) {}, ua.StatusBadTimeout},
		{"tiny client buffers", func(r *rawClient) {
			body, _ := (&uacp.Hello{ReceiveBufSize: 1024, SendBufSize: 1024}).Encode()
			r.write(tcpMessage("HELF", body))
		}, ua.StatusBadTCPNotEnoughResources},
		{"MSG before OPN", func(r *rawClient) {
			r.hello()
			r.write(symChunk("MSG", 'F', 0, 0, 1, 1, readBody(1)))
		}, ua.StatusBadTCPMessageTypeInvalid},
		{"message size 1<<31 after OPN", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write([]byte{'M', 'S', 'G', 'F', 0, 0, 0, 0x80})
		}, ua.StatusBadTCPMessageTooLarge},
		{"unknown message type", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(tcpMessage("XYZF", make([]byte, 16)))
		}, ua.StatusBadTCPMessageTypeInvalid},
		{"second Hello", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			body, _ := (&uacp.Hello{ReceiveBufSize: 65535, SendBufSize: 65535}).Encode()
			r.write(tcpMessage("HELF", body))
		}, ua.StatusBadTCPMessageTypeInvalid},
		{"garbage after OPN", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write([]byte("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"))
		}, ua.StatusBadTCPMessageTooLarge},
		{"wrong secure channel id", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(symChunk("MSG", 'F', r.chanID+1, r.tokenID, r.seq, 1, readBody(1)))
		}, ua.StatusBadTCPSecureChannelUnknown},
		{"unknown token id", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(symChunk("MSG", 'F', r.chanID, r.tokenID+7, r.seq, 1, readBody(1)))
		}, ua.StatusBadSecureChannelTokenUnknown},
		{"repeated sequence number", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq-1, 1, readBody(1)))
		}, ua.StatusBadSequenceNumberInvalid},
		{"sequence number skipped", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq+1, 1, readBody(1)))
		}, ua.StatusBadSequenceNumberInvalid},
		{"wrap before the limit", func(r *rawClient) {
			r.seq = 1 << 20
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(symChunk("MSG", 'F', r.chanID, r.tokenID, 1, 1, readBody(1)))
		}, ua.StatusBadSequenceNumberInvalid},
		{"endless intermediate chunks", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			for i := 0; i < 1000; i++ {
				if r.write(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 9, make([]byte, 1000))) != nil {
					return
				}
				r.seq++
			}
		}, ua.StatusBadRequestTooLarge},
		{"OPN with an unknown policy", func(r *rawClient) {
			r.hello()
			r.write(opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15"}, 1, 1, opnRequest(ua.SecurityTokenRequestTypeIssue, 1000)))
		}, ua.StatusBadSecurityPolicyRejected},
		{"renewal on an unopened channel id", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(opnChunk(r.chanID+1, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, r.seq, 2, opnRequest(ua.SecurityTokenRequestTypeRenew, 60000)))
		}, ua.StatusBadTCPSecureChannelUnknown},
		{"issue on an open channel", func(r *rawClient) {
			r.hello()
			r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
			r.write(opnChunk(r.chanID, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, r.seq, 2, opnRequest(ua.SecurityTokenRequestTypeIssue, 60000)))
		}, ua.StatusBadRequestTypeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, srv)
			tc.run(r)
			r.expectERR(tc.want)
		})
	}
}

// A request body that does not decode is answered with a ServiceFault
// carrying its RequestHandle, and the channel goes on.
func TestRawUndecodableBody(t *testing.T) {
	srv := noneServer(t)
	r := dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)

	body := readBody(77)
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 5, body[:len(body)-6]))
	r.seq++
	resp, _ := r.response()
	if f, ok := resp.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadDecodingError || f.ResponseHeader.RequestHandle != 77 {
		t.Fatalf("truncated body answered with %#v", resp)
	}

	// an unknown service type
	unknown := append([]byte{0x01, 0x00, 0x39, 0x30}, body[4:]...) // i=12345
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 6, unknown))
	r.seq++
	resp, _ = r.response()
	if f, ok := resp.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadServiceUnsupported || f.ResponseHeader.RequestHandle != 77 {
		t.Fatalf("unknown service answered with %#v", resp)
	}

	// a response type sent as a request
	rb, _ := encodeService(id.ReadResponse_Encoding_DefaultBinary, &ua.ReadResponse{ResponseHeader: responseHeader(3, ua.StatusOK)})
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 7, rb))
	r.seq++
	resp, _ = r.response()
	if f, ok := resp.(*ua.ServiceFault); !ok || f.ResponseHeader.ServiceResult != ua.StatusBadServiceUnsupported {
		t.Fatalf("response type answered with %#v", resp)
	}

	// an aborted message is dropped, the channel goes on
	r.mustWrite(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 8, body[:20]))
	r.seq++
	ab, _ := (&uasc.MessageAbort{ErrorCode: uint32(ua.StatusBadRequestTooLarge), Reason: "test"}).Encode()
	r.mustWrite(symChunk("MSG", 'A', r.chanID, r.tokenID, r.seq, 8, ab))
	r.seq++

	// a request in three chunks
	r.mustWrite(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 9, body[:10]))
	r.mustWrite(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq+1, 9, body[10:30]))
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq+2, 9, body[30:]))
	r.seq += 3
	resp, _ = r.response()
	if rr, ok := resp.(*ua.ReadResponse); !ok || rr.ResponseHeader.RequestHandle != 77 {
		t.Fatalf("chunked request answered with %#v", resp)
	}
	if resp, _ := r.read(r.tokenID, 78); resp.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("read after the faults: %v", resp.Header().ServiceResult)
	}
}

// Sequence numbers wrap after UInt32.MaxValue-1024 to a value below 1024.
func TestRawSequenceWrap(t *testing.T) {
	srv := noneServer(t)
	r := dialRaw(t, srv)
	r.seq = 1<<32 - 3
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	for i := 0; i < 2; i++ { // 2^32-2, 2^32-1
		if resp, _ := r.read(r.tokenID, uint32(i+1)); resp.Header().ServiceResult != ua.StatusOK {
			t.Fatalf("read before the wrap: %v", resp.Header().ServiceResult)
		}
	}
	r.seq = 3
	if resp, _ := r.read(r.tokenID, 3); resp.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("read after the wrap: %v", resp.Header().ServiceResult)
	}
}

// Part 6 §6.7.4 / Part 4 §5.5.2: a renewal issues a new token id; the old
// token stays valid, and keeps securing responses, until the client first
// uses the new one; after that the old token is refused.
func TestRawRenewalTokenSwitch(t *testing.T) {
	srv := noneServer(t)
	r := dialRaw(t, srv)
	r.hello()
	first := r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	old := first.SecurityToken.TokenID
	second := r.openNone(ua.SecurityTokenRequestTypeRenew, 60000)
	if second.SecurityToken.ChannelID != first.SecurityToken.ChannelID {
		t.Fatal("renewal changed the channel id")
	}
	renewed := second.SecurityToken.TokenID
	if renewed == old {
		t.Fatalf("renewal kept token id %d", old)
	}
	if _, tok := r.read(old, 1); tok != old {
		t.Fatalf("before the switch the answer is secured with token %d, want the old %d", tok, old)
	}
	if _, tok := r.read(renewed, 2); tok != renewed {
		t.Fatalf("after the switch the answer is secured with token %d, want %d", tok, renewed)
	}
	r.mustWrite(symChunk("MSG", 'F', r.chanID, old, r.seq, 3, readBody(3)))
	r.expectERR(ua.StatusBadSecureChannelTokenUnknown)
}

// A channel whose token expires without renewal is closed.
func TestRawTokenExpiry(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MinTokenLifetime, cfg.MaxTokenLifetime = 400*time.Millisecond, 400*time.Millisecond
	srv := startServer(t, cfg)
	r := dialRaw(t, srv)
	r.hello()
	resp := r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	if resp.SecurityToken.RevisedLifetime != 400 {
		t.Fatalf("revised lifetime %d ms, want the 400 ms maximum", resp.SecurityToken.RevisedLifetime)
	}
	r.expectERR(ua.StatusBadSecureChannelClosed)
}

// openSecured sends a signed and encrypted OPN (Issue) as cert's owner and
// returns the response, or the ERR the server answered with. It also returns
// the symmetric keys of the client side.
func (r *rawClient) openSecured(policy string, mode ua.MessageSecurityMode, cert testCert) (*ua.OpenSecureChannelResponse, *uapolicy.EncryptionAlgorithm, error) {
	r.t.Helper()
	return r.renewSecured(policy, mode, cert, ua.SecurityTokenRequestTypeIssue)
}

// renewSecured is openSecured with a request type.
func (r *rawClient) renewSecured(policy string, mode ua.MessageSecurityMode, cert testCert, rt ua.SecurityTokenRequestType) (*ua.OpenSecureChannelResponse, *uapolicy.EncryptionAlgorithm, error) {
	r.t.Helper()
	a, nonce := r.sendSecuredOPN(policy, mode, cert, rt)
	typ, b, err := r.readFrame()
	if err != nil {
		return nil, nil, err
	}
	if typ != "OPNF" {
		r.t.Fatalf("OPN answered with %s", typ)
	}
	var rh uasc.AsymmetricSecurityHeader
	n, _ := rh.Decode(b[12:])
	plain, err := a.open(b, 12+n)
	if err != nil {
		r.t.Fatalf("OPN response does not verify: %v", err)
	}
	_, svc, err := ua.DecodeService(plain[8:])
	if err != nil {
		r.t.Fatal(err)
	}
	resp := svc.(*ua.OpenSecureChannelResponse)
	r.chanID, r.tokenID = resp.SecurityToken.ChannelID, resp.SecurityToken.TokenID
	sym, err := uapolicy.Symmetric(policy, nonce, resp.ServerNonce)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, sym, nil
}

// A secured channel refuses chunks whose signature or padding does not
// verify, with Bad_SecurityChecksFailed.
func TestRawBadSignature(t *testing.T) {
	srv := noneServer(t)
	for _, mode := range []ua.MessageSecurityMode{ua.MessageSecurityModeSign, ua.MessageSecurityModeSignAndEncrypt} {
		for _, spot := range []string{"body", "signature"} {
			t.Run(mode.String()+"_"+spot, func(t *testing.T) {
				r := dialRaw(t, srv)
				r.hello()
				_, sym, err := r.openSecured(ua.SecurityPolicyURIBasic256Sha256, mode, clientCert)
				if err != nil {
					t.Fatal(err)
				}
				chunk, err := sealSym(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 1, readBody(1)), mode, sym)
				if err != nil {
					t.Fatal(err)
				}
				r.seq++
				r.mustWrite(chunk)
				typ, b, err := r.readFrame()
				if err != nil || typ != "MSGF" {
					t.Fatalf("read answered with %s: %v", typ, err)
				}
				plain, err := openSym(b, mode, sym)
				if err != nil {
					t.Fatalf("answer does not verify: %v", err)
				}
				if _, svc, err := ua.DecodeService(plain[8:]); err != nil {
					t.Fatal(err)
				} else if _, ok := svc.(*ua.ReadResponse); !ok {
					t.Fatalf("answer %T", svc)
				}
				chunk, _ = sealSym(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 2, readBody(2)), mode, sym)
				if spot == "body" {
					chunk[30] ^= 1
				} else {
					chunk[len(chunk)-1] ^= 1
				}
				r.mustWrite(chunk)
				r.expectERR(ua.StatusBadSecurityChecksFailed)
			})
		}
	}
}

// openSecuredNoRead sends the OPN of openSecured and returns its crypto and nonce.
func (r *rawClient) openSecuredNoRead(policy string, mode ua.MessageSecurityMode, cert testCert) (*asymmetric, []byte) {
	r.t.Helper()
	return r.sendSecuredOPN(policy, mode, cert, ua.SecurityTokenRequestTypeIssue)
}

func (r *rawClient) sendSecuredOPN(policy string, mode ua.MessageSecurityMode, cert testCert, rt ua.SecurityTokenRequestType) (*asymmetric, []byte) {
	r.t.Helper()
	serverPub := &serverCert.key.PublicKey
	algo, err := uapolicy.Asymmetric(policy, cert.key, serverPub)
	if err != nil {
		r.t.Fatal(err)
	}
	a := &asymmetric{algo: algo, localKeySize: cert.key.Size(), remoteKeySize: serverPub.Size()}
	nonce := make([]byte, algo.NonceLength())
	rand.Read(nonce)
	body, err := encodeService(id.OpenSecureChannelRequest_Encoding_DefaultBinary, &ua.OpenSecureChannelRequest{
		RequestHeader:     requestHeader(1),
		RequestType:       rt,
		SecurityMode:      mode,
		ClientNonce:       nonce,
		RequestedLifetime: 60000,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	hdr := &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: policy, SenderCertificate: cert.der, ReceiverCertificateThumbprint: uapolicy.Thumbprint(serverCert.der)}
	ah, _ := hdr.Encode()
	chunk, err := a.seal(opnChunk(r.chanID, hdr, r.seq, 1, body), 12+len(ah))
	if err != nil {
		r.t.Fatal(err)
	}
	r.seq++
	r.mustWrite(chunk)
	return a, nonce
}

// secureRead sends a Read secured with sym under tokenID and returns the
// token id of the answer and whether it verifies with verify.
func (r *rawClient) secureRead(mode ua.MessageSecurityMode, tokenID uint32, sym, verify *uapolicy.EncryptionAlgorithm, handle uint32) uint32 {
	r.t.Helper()
	chunk, err := sealSym(symChunk("MSG", 'F', r.chanID, tokenID, r.seq, handle, readBody(handle)), mode, sym)
	if err != nil {
		r.t.Fatal(err)
	}
	r.seq++
	r.mustWrite(chunk)
	typ, b, err := r.readFrame()
	if err != nil || typ != "MSGF" {
		r.t.Fatalf("read answered with %s: %v", typ, err)
	}
	plain, err := openSym(b, mode, verify)
	if err != nil {
		r.t.Fatalf("answer secured with token %d does not verify with the expected keys", binary.LittleEndian.Uint32(b[12:]))
	}
	if _, svc, err := ua.DecodeService(plain[8:]); err != nil {
		r.t.Fatal(err)
	} else if rr, ok := svc.(*ua.ReadResponse); !ok || rr.ResponseHeader.RequestHandle != handle {
		r.t.Fatalf("answer %#v", svc)
	}
	return binary.LittleEndian.Uint32(b[12:])
}

// Renewal under SignAndEncrypt and Sign (Part 6 §6.7.4): a new token id and
// new keys; the old keys keep working, and keep securing answers, until the
// client uses the new token; then the old token is refused.
func TestRawSecuredRenewal(t *testing.T) {
	srv := noneServer(t)
	for _, o := range allOffers[1:] {
		t.Run(shortPolicy(o.PolicyURI)+"_"+o.Mode.String(), func(t *testing.T) {
			r := dialRaw(t, srv)
			r.hello()
			first, oldKeys, err := r.openSecured(o.PolicyURI, o.Mode, clientCert)
			if err != nil {
				t.Fatal(err)
			}
			old := first.SecurityToken.TokenID
			for i := 0; i < 3; i++ {
				second, newKeys, err := r.renewSecured(o.PolicyURI, o.Mode, clientCert, ua.SecurityTokenRequestTypeRenew)
				if err != nil {
					t.Fatal(err)
				}
				renewed := second.SecurityToken.TokenID
				if renewed == old || second.SecurityToken.ChannelID != first.SecurityToken.ChannelID {
					t.Fatalf("renewal gave token %d on channel %d after token %d on %d", renewed, second.SecurityToken.ChannelID, old, first.SecurityToken.ChannelID)
				}
				if tok := r.secureRead(o.Mode, old, oldKeys, oldKeys, 1); tok != old {
					t.Fatalf("answer before the switch secured with token %d, want %d", tok, old)
				}
				if tok := r.secureRead(o.Mode, renewed, newKeys, newKeys, 2); tok != renewed {
					t.Fatalf("answer after the switch secured with token %d, want %d", tok, renewed)
				}
				old, oldKeys = renewed, newKeys
			}
			chunk, _ := sealSym(symChunk("MSG", 'F', r.chanID, old-1, r.seq, 3, readBody(3)), o.Mode, oldKeys)
			r.mustWrite(chunk)
			r.expectERR(ua.StatusBadSecureChannelTokenUnknown)
		})
	}
}

// A request whose chunks together exceed MaxMessageSize is refused with
// Bad_RequestTooLarge, and so is a single chunk that does.
func TestRawMessageSizeLimit(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxMessageSize = 4000
	srv := startServer(t, cfg)
	r := dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	for i := 0; i < 10; i++ {
		if r.write(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 9, make([]byte, 1000))) != nil {
			break
		}
		r.seq++
	}
	r.expectERR(ua.StatusBadRequestTooLarge)

	r = dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 9, make([]byte, 5000)))
	r.expectERR(ua.StatusBadRequestTooLarge)
}

// What a client sends right behind its OpenSecureChannel request, in the
// same segment, is read as the next message: here a message type that does
// not exist, answered with Bad_TcpMessageTypeInvalid, not lost while the
// channel waits for more.
func TestRawBytesBehindOPN(t *testing.T) {
	srv := noneServer(t)
	r := dialRaw(t, srv)
	r.hello()
	opn := opnChunk(0, &uasc.AsymmetricSecurityHeader{SecurityPolicyURI: ua.SecurityPolicyURINone}, r.seq, 1,
		opnRequest(ua.SecurityTokenRequestTypeIssue, 60000))
	r.mustWrite(append(opn, tcpMessage("XYZF", make([]byte, 16))...))
	if typ, _, err := r.readFrame(); err != nil || typ != "OPNF" {
		t.Fatalf("OPN answered with %s: %v", typ, err)
	}
	r.expectERR(ua.StatusBadTCPMessageTypeInvalid)
}

// Refuse answers the Hello of a connection that will not be served with an
// ERR message and closes it.
func TestRawRefuse(t *testing.T) {
	ln := listen(t)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go Refuse(conn, ua.StatusBadTCPNotEnoughResources, "busy")
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &rawClient{t: t, c: c, seq: 1}
	body, _ := (&uacp.Hello{ReceiveBufSize: 65535, SendBufSize: 65535, EndpointURL: "opc.tcp://test"}).Encode()
	r.mustWrite(tcpMessage("HELF", body))
	r.expectERR(ua.StatusBadTCPNotEnoughResources)
}
