package opcua_test

import (
	"context"
	"slices"
	"testing"
	"time"

	gopcua "github.com/gopcua/opcua"
	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway/opcua"
	"github.com/interlock-ics/interlock/gateway/opcua/opcuatest"
)

// browsePaged asks for node's hierarchical references, at most max at a
// time.
func browsePaged(node string, max uint32) *ua.BrowseRequest {
	return &ua.BrowseRequest{RequestedMaxReferencesPerNode: max, NodesToBrowse: []*ua.BrowseDescription{{
		NodeID: ua.MustParseNodeID(node), BrowseDirection: ua.BrowseDirectionForward,
		ReferenceTypeID: ua.NewNumericNodeID(0, id.HierarchicalReferences), IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskAll),
	}}}
}

// browseAll browses node two references at a time, following continuation
// points with BrowseNext; it returns the references' node ids and the
// continuation points it followed.
func browseAll(ctx context.Context, t *testing.T, c *gopcua.Client, node string) (refs []string, cps int) {
	t.Helper()
	resp, err := c.Browse(ctx, browsePaged(node, 2))
	if err != nil || len(resp.Results) != 1 || resp.Results[0].StatusCode != ua.StatusOK {
		t.Fatalf("browse %s: %v %+v", node, err, resp)
	}
	r := resp.Results[0]
	for {
		for _, ref := range r.References {
			refs = append(refs, ref.NodeID.NodeID.String())
		}
		if len(r.ContinuationPoint) == 0 {
			break
		}
		cps++
		next, err := c.BrowseNext(ctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{r.ContinuationPoint}})
		if err != nil || len(next.Results) != 1 || next.Results[0].StatusCode != ua.StatusOK {
			t.Fatalf("browse next %s (continuation %d): %v %+v", node, cps, err, next)
		}
		r = next.Results[0]
	}
	slices.Sort(refs)
	return refs, cps
}

// TestBrowseNext: a gopcua client browses the PLC object of node-opcua two
// references at a time, through the gateway and directly: the same
// references after the same number of continuation points, and every
// BrowseNext is decided and recorded as browse_next of the node whose browse
// it continues. Releasing a continuation point answers Good; an unknown one
// is decided with no node and passed on, and the server's
// Bad_ContinuationPointInvalid comes back in its slot. Under a policy that
// refuses browse_next, a continuation gets Bad_UserAccessDenied in its slot.
func TestBrowseNext(t *testing.T) {
	srv := opcuatest.StartServer(t, opcuatest.ServerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	anon := opcua.Options{SecurityPolicies: []string{"None"}, Anonymous: true}
	g := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: anon})
	direct, err := gopcuaClient(ctx, t, srv.Endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	through, err := gopcuaClient(ctx, t, g.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}

	want, wantCPs := browseAll(ctx, t, direct, opcuatest.NodePLC)
	got, gotCPs := browseAll(ctx, t, through, opcuatest.NodePLC)
	if !slices.Equal(got, want) || gotCPs != wantCPs || gotCPs < 2 {
		t.Fatalf("through the gateway: %v after %d continuations; directly: %v after %d", got, gotCPs, want, wantCPs)
	}
	rs := g.records(t, func(rs []record) bool {
		n := 0
		for _, r := range events(rs, "call") {
			if r.str("operation", "function") == "browse_next" {
				n++
			}
		}
		return n >= gotCPs
	})
	n := 0
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") != "browse_next" {
			continue
		}
		n++
		if r.str("operation", "node_id") != opcuatest.NodePLC || r.str("decision", "allow") != "true" {
			t.Errorf("browse_next record: node %q, allow %s; want %s, true", r.str("operation", "node_id"), r.str("decision", "allow"), opcuatest.NodePLC)
		}
	}
	if n != gotCPs {
		t.Errorf("%d browse_next records for %d continuations", n, gotCPs)
	}

	// release a continuation point; then one the server never gave
	resp, err := through.Browse(ctx, browsePaged(opcuatest.NodePLC, 1))
	if err != nil || len(resp.Results[0].ContinuationPoint) == 0 {
		t.Fatalf("browse with one reference: %v %+v", err, resp)
	}
	cp := resp.Results[0].ContinuationPoint
	rel, err := through.BrowseNext(ctx, &ua.BrowseNextRequest{ReleaseContinuationPoints: true, ContinuationPoints: [][]byte{cp}})
	if err != nil || len(rel.Results) != 1 || rel.Results[0].StatusCode != ua.StatusOK || len(rel.Results[0].References) != 0 {
		t.Fatalf("release: %v %+v", err, rel)
	}
	bad, err := through.BrowseNext(ctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{[]byte("not a continuation point")}})
	if err != nil || len(bad.Results) != 1 || bad.Results[0].StatusCode != ua.StatusBadContinuationPointInvalid {
		t.Fatalf("an unknown continuation point: %v %+v", err, bad)
	}
	// the gateway refuses it itself: recorded, not decided or forwarded
	// (and so is the one released above, used already)
	rs = g.records(t, func(rs []record) bool {
		return slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool { return r.str("reason") == "unknown_continuation_point" })
	})
	if !slices.ContainsFunc(events(rs, "request.rejected"), func(r record) bool {
		return r.str("reason") == "unknown_continuation_point" && r.str("response") == "Bad_ContinuationPointInvalid"
	}) {
		t.Errorf("no request.rejected record of the unknown continuation point")
	}
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "browse_next" && r.str("operation", "node_id") == "" {
			t.Errorf("a browse_next call decided without its node: %v", r)
		}
	}

	// a policy that lets clients browse but not continue
	refuse := `package interlock

decision := {"allow": input.operation.function != "browse_next", "reasons": []}
`
	g2 := startGateway(t, gwOpts{upstream: srv.Endpoint, opts: anon, policy: refuse})
	c2, err := gopcuaClient(ctx, t, g2.endpoint, ua.SecurityPolicyURINone, ua.MessageSecurityModeNone, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c2.Browse(ctx, browsePaged(opcuatest.NodePLC, 2))
	if err != nil || resp.Results[0].StatusCode != ua.StatusOK || len(resp.Results[0].ContinuationPoint) == 0 {
		t.Fatalf("browse under the refusing policy: %v %+v", err, resp)
	}
	next, err := c2.BrowseNext(ctx, &ua.BrowseNextRequest{ContinuationPoints: [][]byte{resp.Results[0].ContinuationPoint}})
	if err != nil || len(next.Results) != 1 || next.Results[0].StatusCode != ua.StatusBadUserAccessDenied || len(next.Results[0].References) != 0 {
		t.Fatalf("browse next under the refusing policy: %v %+v", err, next)
	}
	rs = g2.records(t, func(rs []record) bool {
		for _, r := range events(rs, "call") {
			if r.str("operation", "function") == "browse_next" {
				return true
			}
		}
		return false
	})
	for _, r := range events(rs, "call") {
		if r.str("operation", "function") == "browse_next" &&
			(r.str("decision", "allow") != "false" || r.str("operation", "node_id") != opcuatest.NodePLC) {
			t.Errorf("refused browse_next record: allow %s, node %q", r.str("decision", "allow"), r.str("operation", "node_id"))
		}
	}
}
