package opcua

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/ua"
)

// pathCache resolves node ids to browse paths (/Objects/PLC/Setpoint) from
// the upstream's address space, by following inverse hierarchical
// references up to the Root folder, and keeps what it found. Changes to the
// address space through the gateway (AddNodes, DeleteNodes …) clear it.
type pathCache struct {
	mu sync.Mutex
	m  map[string]string
	// unknown holds, until when, the nodes the upstream does not know, and
	// those whose lookup failed, so that reads of a missing node do not
	// look it up every time and the requests after a lookup that waited in
	// vain do not wait again.
	unknown map[string]time.Time
}

const (
	maxPathCache = 50000
	maxPathDepth = 16
	// pathTimeout bounds the lookups of one request's uncached paths; they
	// take their time from the request's budget, at most half of what is
	// left of it (lookupShare), so that the request itself is still sent.
	pathTimeout = 2 * time.Second
	// unknownFor is how long a node the upstream does not know keeps its
	// empty path.
	unknownFor = 30 * time.Second
	// failedFor is how long a node whose lookup got no usable answer (the
	// upstream did not answer in time, or answered with a fault) keeps its
	// empty path: short, so that a path-based decision is right again soon
	// after the upstream recovers.
	failedFor = 5 * time.Second
)

func newPathCache() *pathCache {
	return &pathCache{m: map[string]string{}, unknown: map[string]time.Time{}}
}

func (p *pathCache) isUnknown(id string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.unknown[id]
	if ok && !now.Before(until) {
		delete(p.unknown, id)
		return false
	}
	return ok
}

func (p *pathCache) putUnknown(id string, now time.Time) { p.putMiss(id, now.Add(unknownFor)) }

func (p *pathCache) putFailed(id string, now time.Time) { p.putMiss(id, now.Add(failedFor)) }

func (p *pathCache) putMiss(id string, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.unknown) >= maxPathCache {
		clear(p.unknown)
	}
	if u, ok := p.unknown[id]; !ok || u.Before(until) {
		p.unknown[id] = until
	}
}

func (p *pathCache) get(id string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.m[id]
	return v, ok
}

func (p *pathCache) put(id, path string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) >= maxPathCache {
		clear(p.m)
	}
	p.m[id] = path
}

func (p *pathCache) clear() {
	p.mu.Lock()
	clear(p.m)
	clear(p.unknown)
	p.mu.Unlock()
}

// lookupShare is how much of the request's time left at deadline the
// lookups of its uncached paths may take.
func lookupShare(now, deadline time.Time) time.Time {
	return now.Add(min(pathTimeout, deadline.Sub(now)/2))
}

// fullShare reports whether lookups that end at until had (nearly) the
// time a request of the listener's request timeout gives them: only then
// is a lookup that waited in vain worth remembering.
func fullShare(now, until time.Time, requestTimeout time.Duration) bool {
	return until.Sub(now) >= min(pathTimeout, requestTimeout/2)*9/10
}

// paths returns the browse path of each node id ("" when it could not be
// resolved: unknown node, no parent, upstream unavailable). The lookups
// end at until. A lookup that waited in vain is remembered (for every
// session, failedFor) only when remember is set: when the lookup had the
// time a request of the listener's own timeout gives it. One cut short by
// a client's short TimeoutHint says nothing about the server, and must not
// leave the node without its path for other clients.
func (p *pathCache) paths(ctx context.Context, up *upstream, ids []string, until time.Time, remember bool) map[string]string {
	out := make(map[string]string, len(ids))
	var todo []string
	now := time.Now()
	for _, id := range ids {
		if id == "" {
			continue
		}
		if _, seen := out[id]; seen {
			continue
		}
		if v, ok := p.get(id); ok {
			out[id] = v
			continue
		}
		out[id] = ""
		if !p.isUnknown(id, now) {
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 || up == nil {
		return out
	}
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	found, err := p.resolve(ctx, up, todo, 0)
	for id, v := range found {
		out[id] = v
	}
	if err != nil && remember && lookupWaited(err) {
		for _, id := range todo {
			if _, ok := found[id]; !ok {
				p.putFailed(id, now)
			}
		}
	}
	return out
}

// errLookupAnswer is a lookup the upstream answered with a fault or a
// response that does not fit.
var errLookupAnswer = errors.New("opcua: the upstream's answer to a browse path lookup is not usable")

// lookupWaited reports whether a failed lookup is worth remembering: the
// upstream took the lookup's whole time or answered it unusably. A lookup
// that failed at once (no connection, a connect in progress, the session
// ending) is not: the next request costs no wait and may find the upstream
// back.
func lookupWaited(err error) bool {
	if _, ok := errors.AsType[*errConnect](err); ok {
		return false
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errLookupAnswer)
}

var (
	rootID    = ua.NewNumericNodeID(0, id.RootFolder).String()
	hierarchy = ua.NewNumericNodeID(0, id.HierarchicalReferences)
)

// resolve finds the paths of ids, one Read of their BrowseNames and one
// inverse Browse per level of the tree. The error is the first lookup that
// got no usable answer.
func (p *pathCache) resolve(ctx context.Context, up *upstream, ids []string, depth int) (map[string]string, error) {
	out := map[string]string{}
	var nodes []*ua.NodeID
	var keep []string
	for _, s := range ids {
		if s == rootID {
			out[s] = ""
			continue
		}
		n, err := ua.ParseNodeID(s)
		if err != nil {
			continue
		}
		nodes = append(nodes, n)
		keep = append(keep, s)
	}
	if len(nodes) == 0 || depth > maxPathDepth {
		return out, nil
	}
	read := &ua.ReadRequest{TimestampsToReturn: ua.TimestampsToReturnNeither}
	browse := &ua.BrowseRequest{View: &ua.ViewDescription{ViewID: ua.NewTwoByteNodeID(0)}}
	for _, n := range nodes {
		read.NodesToRead = append(read.NodesToRead, &ua.ReadValueID{NodeID: n, AttributeID: ua.AttributeIDBrowseName, DataEncoding: &ua.QualifiedName{}})
		browse.NodesToBrowse = append(browse.NodesToBrowse, &ua.BrowseDescription{
			NodeID: n, BrowseDirection: ua.BrowseDirectionInverse, ReferenceTypeID: hierarchy,
			IncludeSubtypes: true, ResultMask: uint32(ua.BrowseResultMaskBrowseName),
		})
	}
	rr, err := up.send(ctx, read)
	if err != nil {
		return out, err
	}
	br, err := up.send(ctx, browse)
	if err != nil {
		return out, err
	}
	reads, ok1 := rr.(*ua.ReadResponse)
	browses, ok2 := br.(*ua.BrowseResponse)
	if !ok1 || !ok2 || len(reads.Results) != len(nodes) || len(browses.Results) != len(nodes) {
		return out, errLookupAnswer
	}
	names := make([]string, len(nodes))
	parents := make([]string, len(nodes))
	var need []string
	for i := range nodes {
		dv := reads.Results[i]
		if dv != nil && (dv.Status == ua.StatusBadNodeIDUnknown || dv.Status == ua.StatusBadNodeIDInvalid) {
			p.putUnknown(keep[i], time.Now())
		}
		if dv == nil || dv.Status != ua.StatusOK || dv.Value == nil {
			continue
		}
		qn, ok := dv.Value.Value().(*ua.QualifiedName)
		if !ok {
			continue
		}
		names[i] = qn.Name
		b := browses.Results[i]
		if b == nil || b.StatusCode != ua.StatusOK || len(b.References) == 0 || b.References[0].NodeID == nil {
			continue
		}
		parents[i] = expandedString(b.References[0].NodeID)
		if _, ok := p.get(parents[i]); !ok && parents[i] != rootID {
			need = append(need, parents[i])
		}
	}
	found := map[string]string{}
	if len(need) > 0 {
		found, err = p.resolve(ctx, up, need, depth+1)
	}
	for i, s := range keep {
		if names[i] == "" || parents[i] == "" {
			continue
		}
		var base string
		if parents[i] == rootID {
			base = ""
		} else if v, ok := found[parents[i]]; ok {
			base = v
		} else if v, ok := p.get(parents[i]); ok {
			base = v
		} else {
			continue
		}
		if parents[i] != rootID && base == "" {
			continue // the parent's path is unknown
		}
		path := base + "/" + names[i]
		out[s] = path
		p.put(s, path)
	}
	return out, err
}
