package channel

import (
	"fmt"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
	"github.com/gopcua/opcua/uasc"
)

// waitUsed waits until the budget holds want bytes.
func waitUsed(t *testing.T, b *PartialBudget, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.Used() != want {
		if time.Now().After(deadline) {
			t.Fatalf("budget holds %d bytes, want %d", b.Used(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bigReadBody is a Read request of just over 3000 bytes.
func bigReadBody(t *testing.T, handle uint32) []byte {
	t.Helper()
	var nodes []*ua.NodeID
	for {
		nodes = append(nodes, ua.NewStringNodeID(1, fmt.Sprintf("node-with-a-long-name-%04d", len(nodes))))
		r := readRequest(nodes...)
		r.RequestHeader.RequestHandle = handle
		b, err := encodeService(id.ReadRequest_Encoding_DefaultBinary, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 3000 {
			return b
		}
	}
}

// The channels sharing a PartialBudget hold no more than it in requests
// still in chunks: the chunk that would go over it is refused with
// Bad_TcpNotEnoughResources and its channel closed. A channel returns its
// share when its message completes, is aborted or the channel ends, so
// the budget is whole again for others.
func TestPartialBudgetAcrossChannels(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxMessageSize = 8000
	budget := NewPartialBudget(4000)
	cfg.PartialBudget = budget
	srv := startServer(t, cfg)

	a := dialRaw(t, srv)
	a.hello()
	a.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	body := bigReadBody(t, 77)
	for i := 0; i < 3; i++ {
		a.mustWrite(symChunk("MSG", 'C', a.chanID, a.tokenID, a.seq, 5, body[i*1000:(i+1)*1000]))
		a.seq++
	}
	waitUsed(t, budget, 3000)

	// a second channel fills the budget, and its next chunk is refused
	b := dialRaw(t, srv)
	b.hello()
	b.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	b.mustWrite(symChunk("MSG", 'C', b.chanID, b.tokenID, b.seq, 5, make([]byte, 1000)))
	b.seq++
	waitUsed(t, budget, 4000)
	b.mustWrite(symChunk("MSG", 'C', b.chanID, b.tokenID, b.seq, 5, make([]byte, 1)))
	b.expectERR(ua.StatusBadTCPNotEnoughResources)
	waitUsed(t, budget, 3000) // the refused channel returned its share

	// the first channel completes its request and returns its share
	a.mustWrite(symChunk("MSG", 'F', a.chanID, a.tokenID, a.seq, 5, body[3000:]))
	a.seq++
	resp, _ := a.response()
	if rr, ok := resp.(*ua.ReadResponse); !ok || rr.ResponseHeader.RequestHandle != 77 {
		t.Fatalf("chunked request answered with %#v", resp)
	}
	if n := budget.Used(); n != 0 {
		t.Fatalf("budget holds %d bytes after the message completed", n)
	}

	// an aborted message returns its share
	a.mustWrite(symChunk("MSG", 'C', a.chanID, a.tokenID, a.seq, 6, make([]byte, 1000)))
	a.seq++
	waitUsed(t, budget, 1000)
	ab, _ := (&uasc.MessageAbort{ErrorCode: uint32(ua.StatusBadRequestTooLarge), Reason: "test"}).Encode()
	a.mustWrite(symChunk("MSG", 'A', a.chanID, a.tokenID, a.seq, 6, ab))
	a.seq++
	if resp, _ := a.read(a.tokenID, 78); resp.Header().ServiceResult != ua.StatusOK {
		t.Fatalf("read after the abort: %v", resp.Header().ServiceResult)
	}
	if n := budget.Used(); n != 0 {
		t.Fatalf("budget holds %d bytes after the abort", n)
	}

	// a channel that ends returns its share
	a.mustWrite(symChunk("MSG", 'C', a.chanID, a.tokenID, a.seq, 7, make([]byte, 1000)))
	a.seq++
	waitUsed(t, budget, 1000)
	a.c.Close()
	waitUsed(t, budget, 0)

	// and so does one the server closes
	c := dialRaw(t, srv)
	c.hello()
	c.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	c.mustWrite(symChunk("MSG", 'C', c.chanID, c.tokenID, c.seq, 5, make([]byte, 2000)))
	waitUsed(t, budget, 2000)
	srv.lastChannel().Close()
	waitUsed(t, budget, 0)
}

// Until SessionActivated, a request is held to MaxMessageSizeBeforeSession,
// in chunks or in one; after it, to MaxMessageSize.
func TestMaxMessageSizeBeforeSession(t *testing.T) {
	cfg := baseConfig(t)
	cfg.MaxMessageSize = 8000
	cfg.MaxMessageSizeBeforeSession = 2000
	srv := startServer(t, cfg)
	body := bigReadBody(t, 77)

	r := dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	for i := 0; i < 3; i++ {
		if r.write(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 5, body[i*1000:(i+1)*1000])) != nil {
			break
		}
		r.seq++
	}
	r.expectERR(ua.StatusBadRequestTooLarge)

	r = dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq, 5, body))
	r.expectERR(ua.StatusBadRequestTooLarge)

	r = dialRaw(t, srv)
	r.hello()
	r.openNone(ua.SecurityTokenRequestTypeIssue, 60000)
	if resp, _ := r.read(r.tokenID, 1); resp.Header().ServiceResult != ua.StatusOK { // the channel is served, and known
		t.Fatalf("small read: %v", resp.Header().ServiceResult)
	}
	srv.lastChannel().SessionActivated()
	r.mustWrite(symChunk("MSG", 'C', r.chanID, r.tokenID, r.seq, 5, body[:2500]))
	r.mustWrite(symChunk("MSG", 'F', r.chanID, r.tokenID, r.seq+1, 5, body[2500:]))
	r.seq += 2
	resp, _ := r.response()
	if rr, ok := resp.(*ua.ReadResponse); !ok || rr.ResponseHeader.RequestHandle != 77 {
		t.Fatalf("request after SessionActivated answered with %#v", resp)
	}
}
