package opcua

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/interlock-ics/interlock/gateway"
)

// uaSession is one OPC UA session of a client: created on a secure channel,
// bound to it, and activated with a user identity.
type uaSession struct {
	e     *Engine
	id    *ua.NodeID
	token *ua.NodeID // authentication token, from crypto/rand
	key   string     // tokenKey(token), the table key
	// conn is the secure channel the session is bound to; nil while it has
	// none (its channel closed, awaiting an ActivateSession on a new one
	// or its timeout). policyURI and mode are those of the channel that
	// created it, which a new one must have too.
	conn      atomic.Pointer[conn]
	policyURI string
	mode      ua.MessageSecurityMode

	clientCert []byte
	clientKey  *rsa.PublicKey // nil under None
	clientDesc *ua.ApplicationDescription
	appUntil   time.Time // when clientCert stops passing by time alone (zero under None)
	// certsDue is when the session's certificates (application, X.509
	// user) are to be validated again, unix nanoseconds (0: never): just
	// after the first of them expires, so that no session outlives them.
	certsDue atomic.Int64
	timeout  time.Duration
	source   netip.Addr   // the address that created the session
	lastUsed atomic.Int64 // unix nanoseconds of the last request
	created  time.Time
	// live is set at the first activation; until then the session holds a
	// slot of the table only for ActivationTimeout.
	live atomic.Bool

	// decide serializes the session's policy decisions: the policy engine
	// keeps per-session state in gateway.Session.Cache.
	decide sync.Mutex
	// activation serializes the session's ActivateSessions.
	activation sync.Mutex
	// recheck serializes deciding the monitored items again, so that a
	// Publish answer waits for one under way rather than passing on values
	// of items it has not decided yet.
	recheck sync.Mutex

	mu          sync.Mutex
	nonce       []byte // the last server nonce
	activated   bool
	closed      bool
	endCause    error            // why it closed (closeSession), for an activation that finds it closed
	gs          *gateway.Session // set at activation, replaced (never changed) when the session moves to a new channel
	userCert    []byte           // the X.509 user token's certificate of the last activation, if any
	up          *upstream
	subs        map[uint32]bool    // subscription ids created through this session
	subsPending int                // CreateSubscription requests on their way
	items       map[itemKey]string // monitored item -> node id
	itemAttrs   map[itemKey]string // monitored item -> attribute name
	itemHandles map[itemKey]uint32 // monitored item -> the gateway's handle for it upstream
	// handles maps, per subscription, the gateway's client handles upstream
	// to the items they stand for: a notification is passed on (with the
	// client's own handle) only through an entry decided under the
	// policy in force. The gateway's handles are never reused, so a
	// notification names one item, whatever handles the client chose.
	handles map[uint32]map[uint32]*itemHandle
	// itemsPending counts the monitored items of CreateMonitoredItems
	// requests on their way (held against max_monitored_items_per_session).
	itemsPending int
	itemsRev     string            // the policy revision the items were decided under
	cps          map[string]string // browse continuation point -> node id
}

// newToken returns an opaque node id of 32 random bytes.
func newToken() *ua.NodeID {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on supported platforms
	return ua.NewByteStringNodeID(1, b)
}

func newNonce() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

func (s *uaSession) touch() { s.lastUsed.Store(time.Now().UnixNano()) }

// session returns the gateway session of an activated session.
func (s *uaSession) session() *gateway.Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gs
}

// bounded maps: a session keeps at most this many entries of each kind.
const maxSessionMap = 10000

func putBounded[K comparable, V any](m map[K]V, k K, v V) {
	if len(m) >= maxSessionMap {
		clear(m)
	}
	m[k] = v
}

// itemKey names a monitored item: its id is unique within its subscription.
type itemKey struct{ sub, item uint32 }

// itemHandle is what a gateway's client handle stands for.
type itemHandle struct {
	client uint32 // the client's handle for the item
	// rev is the policy revision the item was last allowed under; a
	// notification passes only while it is the one in force ("" or
	// denied: none).
	rev string
}

func (s *uaSession) nodeOfItem(sub, item uint32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[itemKey{sub, item}]
}

// sessionTable holds the listener's sessions by authentication token.
type sessionTable struct {
	mu        sync.Mutex
	max       int
	perSource int
	byToken   map[string]*uaSession
}

func newSessionTable(max, perSource int) *sessionTable {
	return &sessionTable{max: max, perSource: perSource, byToken: map[string]*uaSession{}}
}

// MaxPendingPerChannel is how many sessions one secure channel may have
// created and not yet activated (a failed activation leaves the session for
// the client to try again, so a few wrong passwords count here too); ActivationTimeout is how long such a
// session holds its slot. Clients create a session and activate it at once,
// so neither bounds them, while a client that only creates sessions cannot
// fill max_sessions for the others.
const (
	MaxPendingPerChannel = 8
	ActivationTimeout    = 10 * time.Second
)

// add puts s in the table, or says which bound refuses it (evicted nil,
// bound set): its channel already has MaxPendingPerChannel sessions
// waiting for their activation, or the table (max_sessions), or its
// source's share of it (max_sessions_per_source), is full of sessions on
// channels. A full table, or share, gives up its session that has waited
// longest for a new secure channel: it is taken out and returned with the
// bound reached, for the caller to end, so that clients that log in and
// drop their connections cannot hold the slots until the sessions'
// timeouts.
func (t *sessionTable) add(s *uaSession) (evicted *uaSession, bound string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pending, fromSource := 0, 0
	var waiting, waitingOfSource *uaSession // the longest between channels
	for _, o := range t.byToken {
		if o.conn.Load() == s.conn.Load() && !o.live.Load() {
			pending++
		}
		between := o.live.Load() && o.conn.Load() == nil
		longer := func(w *uaSession) bool { return w == nil || o.lastUsed.Load() < w.lastUsed.Load() }
		if between && longer(waiting) {
			waiting = o
		}
		if o.source == s.source {
			fromSource++
			if between && longer(waitingOfSource) {
				waitingOfSource = o
			}
		}
	}
	switch {
	case pending >= MaxPendingPerChannel:
		return nil, fmt.Sprintf("%d sessions of the secure channel await their activation", pending)
	case fromSource >= t.perSource:
		evicted, bound = waitingOfSource, fmt.Sprintf("max_sessions_per_source (%d) reached by %s", t.perSource, s.source)
	case len(t.byToken) >= t.max:
		evicted, bound = waiting, fmt.Sprintf("max_sessions (%d) reached", t.max)
	}
	if bound != "" && evicted == nil {
		return nil, bound
	}
	if evicted != nil {
		delete(t.byToken, evicted.key)
	}
	t.byToken[s.key] = s
	return evicted, bound
}

// tokenKey is the table key of an authentication token: its binary
// encoding, which names one NodeId as exactly as its text form and costs a
// fraction of it on every request.
func tokenKey(token *ua.NodeID) string {
	b, err := token.Encode()
	if err != nil {
		return "" // no session has this key: an unencodable token finds none
	}
	return string(b)
}

func (t *sessionTable) get(token *ua.NodeID) *uaSession {
	if token == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byToken[tokenKey(token)]
}

// remove reports whether s was in the table (so only one caller ends it).
func (t *sessionTable) remove(s *uaSession) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byToken[s.key] != s {
		return false
	}
	delete(t.byToken, s.key)
	return true
}

func (t *sessionTable) all() []*uaSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*uaSession, 0, len(t.byToken))
	for _, s := range t.byToken {
		out = append(out, s)
	}
	return out
}

func (t *sessionTable) ofConn(c *conn) []*uaSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*uaSession
	for _, s := range t.byToken {
		if s.conn.Load() == c {
			out = append(out, s)
		}
	}
	return out
}

func (t *sessionTable) expired(now time.Time) []*uaSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*uaSession
	for _, s := range t.byToken {
		idle := now.Sub(time.Unix(0, s.lastUsed.Load())) > s.timeout
		unactivated := !s.live.Load() && now.Sub(s.created) > min(s.timeout, ActivationTimeout)
		if idle || unactivated {
			out = append(out, s)
		}
	}
	return out
}

// subscriptionOwner returns the open session that holds the subscription
// (created in it or transferred to it through this listener), or nil.
func (t *sessionTable) subscriptionOwner(id uint32) *uaSession {
	for _, s := range t.all() {
		s.mu.Lock()
		owns := s.subs[id]
		s.mu.Unlock()
		if owns {
			return s
		}
	}
	return nil
}

// Count is the number of open sessions.
func (t *sessionTable) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byToken)
}
