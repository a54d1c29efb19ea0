package policy

import (
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/interlock-ics/interlock/gateway"
)

// Decision cache defaults.
const (
	DefaultCacheTTL     = time.Second
	DefaultCacheEntries = 65536
)

// decisionCache keeps verdicts keyed by the policy input without its time
// and ids, so a polling HMI reading the same registers every 100 ms does not
// pay a full evaluation each time. An entry made for call time t answers
// calls in [t, t+ttl): a time-based rule (a window closing) takes effect
// within ttl. Entries belong to one policy revision; a reload empties the
// cache. It assumes a decision depends only on the input, the policy's data
// and the time: a policy that asks the network (http.send) must run with the
// cache off.
type decisionCache struct {
	ttl time.Duration
	max int

	mu  sync.Mutex
	rev string
	m   map[string]cachedVerdict
}

type cachedVerdict struct {
	at       time.Time
	until    time.Time // at+ttl, or earlier when the input's tickets change then
	allow    bool
	alert    bool
	reasons  []string // clipped: an append by the caller copies
	ticket   string
	oldValue bool
}

func newDecisionCache(ttl time.Duration, max int) *decisionCache {
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if max <= 0 {
		max = DefaultCacheEntries
	}
	return &decisionCache{ttl: ttl, max: max, m: make(map[string]cachedVerdict)}
}

func (dc *decisionCache) get(rev string, key []byte, at time.Time) (cachedVerdict, bool) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.rev != rev {
		return cachedVerdict{}, false
	}
	v, ok := dc.m[string(key)]
	if !ok || at.Before(v.at) || !at.Before(v.until) {
		return cachedVerdict{}, false
	}
	return v, true
}

// put keeps d for calls in [at, at+ttl), cut short at until (the next change
// of the open tickets) when that is earlier and not zero.
func (dc *decisionCache) put(rev string, key []byte, at, until time.Time, d gateway.Decision) {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if dc.rev != rev {
		clear(dc.m)
		dc.rev = rev
	}
	if len(dc.m) >= dc.max {
		clear(dc.m) // bounded memory; the next calls refill what is in use
	}
	end := at.Add(dc.ttl)
	if !until.IsZero() && until.Before(end) {
		end = until
	}
	dc.m[string(key)] = cachedVerdict{at: at, until: end, allow: d.Allow, alert: d.Alert,
		reasons: slices.Clip(d.Reasons), ticket: d.Ticket, oldValue: d.RecordOldValue}
}

// appendSessionKey encodes the session part of the cache key: everything of
// the session in the input except its id and start time.
func appendSessionKey(b []byte, gatewayID string, s *gateway.Session) []byte {
	b = appendStr(b, gatewayID)
	b = appendStr(b, s.Listener)
	b = appendStr(b, s.Protocol)
	b = appendStr(b, s.SecurityPolicy)
	b = appendStr(b, s.SecurityMode)
	b = binary.AppendUvarint(b, uint64(s.Resumed))
	b = appendStr(b, s.Source.IP.String())
	b = binary.AppendUvarint(b, uint64(s.Source.Port))
	b = appendStr(b, s.Source.Name)
	b = appendStr(b, s.Source.Owner)
	p := &s.Principal
	b = appendStr(b, p.User)
	b = appendStr(b, p.Auth)
	b = binary.AppendUvarint(b, uint64(len(p.Roles)))
	for _, r := range p.Roles {
		b = appendStr(b, r)
	}
	b = appendStr(b, p.CertThumbprint)
	return appendStr(b, p.ApplicationURI)
}

// appendCallKey encodes the call part of the cache key, with the generation
// of the ticket set the input holds. A call with a field of KindAny is not
// cached (ok is false): nested values have no cheap key.
func appendCallKey(b []byte, c *gateway.Call, ticketGen uint64) (_ []byte, ok bool) {
	b = binary.AppendUvarint(b, ticketGen)
	b = appendStr(b, c.Target.Name)
	b = appendStr(b, c.Target.Upstream)
	b = binary.AppendVarint(b, int64(c.Target.UnitID))
	b = appendStr(b, c.Operation.Function)
	b = appendStr(b, string(c.Operation.Access))
	for i := range c.Operation.Fields {
		f := &c.Operation.Fields[i]
		b = appendStr(b, f.Key)
		b = append(b, byte(f.Kind))
		switch f.Kind {
		case gateway.KindInt:
			b = binary.AppendVarint(b, f.Int)
		case gateway.KindString:
			b = appendStr(b, f.Str)
		case gateway.KindBool:
			if f.Bool {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case gateway.KindInts:
			b = binary.AppendUvarint(b, uint64(len(f.Ints)))
			for _, n := range f.Ints {
				b = binary.AppendVarint(b, n)
			}
		case gateway.KindStrings:
			b = binary.AppendUvarint(b, uint64(len(f.Strs)))
			for _, s := range f.Strs {
				b = appendStr(b, s)
			}
		default:
			return b, false
		}
	}
	return b, true
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
