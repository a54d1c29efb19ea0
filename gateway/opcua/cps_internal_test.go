package opcua

import (
	"context"
	"testing"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// A session keeps only the browse continuation points still open: each is
// used once (BrowseNext replaces or releases it), so a long session's
// browsing does not fill the map until it is cleared and a continuation
// point in use loses its node.
func TestContinuationPointsForgottenOnceUsed(t *testing.T) {
	h, c, cs := activatedOnTestServer(t)
	s := h.e.sessions.get(cs.AuthenticationToken)
	open := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.cps)
	}
	ctx := context.Background()
	resp := c.handle(ctx, &ua.BrowseRequest{RequestHeader: hdr(cs.AuthenticationToken), RequestedMaxReferencesPerNode: 1,
		View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)},
		NodesToBrowse: []*ua.BrowseDescription{{NodeID: ua.MustParseNodeID(opcuatest.NodePLC), BrowseDirection: ua.BrowseDirectionForward,
			ReferenceTypeID: ua.NewTwoByteNodeID(0), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll)}}})
	r, ok := resp.(*ua.BrowseResponse)
	if !ok || len(r.Results) != 1 || len(r.Results[0].ContinuationPoint) == 0 {
		t.Fatalf("browse: %v %#v", resp.Header().ServiceResult, resp)
	}
	cp, pages := r.Results[0].ContinuationPoint, 1
	for len(cp) > 0 {
		if n := open(); n != 1 {
			t.Fatalf("after page %d: %d continuation points kept, want 1", pages, n)
		}
		resp := c.handle(ctx, &ua.BrowseNextRequest{RequestHeader: hdr(cs.AuthenticationToken), ContinuationPoints: [][]byte{cp}})
		next, ok := resp.(*ua.BrowseNextResponse)
		if !ok || len(next.Results) != 1 || next.Results[0].StatusCode != ua.StatusOK {
			t.Fatalf("browse next: %v %#v", resp.Header().ServiceResult, resp)
		}
		cp = next.Results[0].ContinuationPoint
		pages++
	}
	if n := open(); n != 0 || pages < 3 {
		t.Errorf("after %d pages: %d continuation points kept, want 0", pages, n)
	}
}
