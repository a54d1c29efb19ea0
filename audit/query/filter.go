package query

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/interlock-ics/interlock/audit"
)

// Filter selects records. Kinds combine with AND; the values of one kind
// with OR. A record that lacks the field a kind looks at does not match it
// (a gateway.start record has no user). The zero Filter matches everything.
//
// A call and its result are one unit: the call record's fields and the
// result's status decide together, and both are written or neither.
type Filter struct {
	From, To  time.Time // From inclusive, To exclusive; zero for open
	Users     []string  // principal.user, or who changed a ticket and whom it is for; * globs
	Sources   []SourceMatch
	Targets   []string // target.name, else the listener; * globs
	Protocols []string
	Functions []string // operation.function (* globs) or its code (16)
	Accesses  []string
	Decisions []string // allow, alert, deny
	Statuses  []string // ok, denied, exception, error
	NodeIDs   []string // operation.node_id, or the method_id of a Call; * globs
	Addresses []Span   // registers overlapping any of these
	Events    []string // * globs; a call unit is both "call" and "result"
	CallIDs   []string

	fromText, toText string // the bounds in the writer's time layout
}

// SourceMatch is one --source value: a source name, an address, or a CIDR
// block.
type SourceMatch struct {
	Name   string
	Prefix netip.Prefix // an address is a /32 or /128
}

// Values accepted by the kinds that have a fixed set.
var (
	Verdicts = []string{"allow", "alert", "deny"}
	Statuses = []string{"ok", "denied", "exception", "error"}
	Accesses = []string{"read", "write", "execute", "browse", "subscribe", "session", "diagnostic", "program"}
	// Events are the events the gateway writes (README.md, "Audit log"),
	// for --event: a name that is none of them would match nothing.
	Events = []string{
		audit.EventGatewayStart, audit.EventGatewayStop, audit.EventGatewayStartFailed,
		"ticket.open", "ticket.approve", "ticket.close", "ticket.load", "ticket.load_refused", EventTicketRefused,
		"policy.load", "policy.load_failed", "users.load", "users.load_failed", "tls.load", "tls.load_failed",
		"pki.load", "pki.load_failed", "upstream_tls.load", "upstream_tls.load_failed",
		audit.EventSessionOpen, audit.EventCall, audit.EventResult, audit.EventRequestRejected, audit.EventRequestRejectedSuppressed,
		audit.EventSessionClose,
		audit.EventSessionAuthFailed,
		audit.EventRecovered, audit.EventCheckpoint, audit.EventRotated, audit.EventRetention, audit.EventCapacity,
		audit.EventWriteFailed, "audit.ship_skipped", "audit.ship_stopped",
	}
)

// Glob reports whether s matches pattern, in which * matches any run of
// characters: how the filters match names.
func Glob(pattern, s string) bool { return glob(pattern, s) }

// ParseSource reads a --source value.
func ParseSource(v string) (SourceMatch, error) {
	if v == "" {
		return SourceMatch{}, fmt.Errorf("empty source")
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return SourceMatch{}, fmt.Errorf("source %q: not a CIDR block: %v", v, err)
		}
		return SourceMatch{Prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(v); err == nil {
		a = a.Unmap()
		return SourceMatch{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
	}
	return SourceMatch{Name: v}, nil
}

// ParseSpan reads an --address value: N or N-M (inclusive), 0..65535.
func ParseSpan(v string) (Span, error) {
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return Span{}, fmt.Errorf("address %q: want N or N-M, N and M in 0..65535", v)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil || b < a {
			return Span{}, fmt.Errorf("address %q: want N-M with N ≤ M, both in 0..65535", v)
		}
	}
	return Span{int(a), int(b)}, nil
}

// ParseTime reads a --from or --to value relative to now: RFC 3339
// (2026-11-26T02:00:00Z, fractions and offsets allowed), a date
// (2026-11-26, midnight UTC), "now", or an offset from now such as -2h,
// -30m, -7d or -1d12h.
func ParseTime(v string, now time.Time) (time.Time, error) {
	v = strings.TrimSpace(v)
	switch {
	case v == "now":
		return now, nil
	case strings.HasPrefix(v, "-") || strings.HasPrefix(v, "+"):
		d, err := parseOffset(v[1:])
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: %v", v, err)
		}
		if v[0] == '-' {
			d = -d
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-26T02:00:00Z), a date (2026-11-26), now, or an offset such as -2h or -7d", v)
}

// parseOffset is time.ParseDuration with days (d) and weeks (w) in front.
func parseOffset(s string) (time.Duration, error) {
	var total time.Duration
	for _, unit := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		if i := strings.IndexByte(s, unit.suffix); i >= 0 {
			n, err := strconv.ParseFloat(s[:i], 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("bad %c offset", unit.suffix)
			}
			total += time.Duration(n * float64(unit.d))
			s = s[i+1:]
		}
	}
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("bad offset")
		}
		total += d
	}
	return total, nil
}

// prepare fills in the derived fields; Query.Run calls it.
func (f *Filter) prepare() {
	f.fromText, f.toText = "", ""
	if !f.From.IsZero() {
		f.fromText = f.From.UTC().Format(recordTimeLayout)
	}
	if !f.To.IsZero() {
		f.toText = f.To.UTC().Format(recordTimeLayout)
	}
}

// matchCall applies every kind but status to a call record.
func (f *Filter) matchCall(r *Record) bool {
	return f.matchTime(r.Time) &&
		f.matchUser(r) &&
		f.matchSource(&r.Source) &&
		anyGlob(f.Targets, r.TargetName()) &&
		anyEqual(f.Protocols, r.Protocol) &&
		f.matchFunction(r) &&
		anyEqual(f.Accesses, r.Operation.Access) &&
		f.matchDecision(&r.Decision) &&
		(anyGlob(f.NodeIDs, r.Operation.NodeID) || r.Operation.MethodID != "" && anyGlob(f.NodeIDs, r.Operation.MethodID)) &&
		f.matchAddress(&r.Operation) &&
		f.matchEvent(EventCall, EventResult) &&
		anyEqual(f.CallIDs, r.CallID)
}

// matchStatus applies the status kind to a call's outcome ("" unknown).
func (f *Filter) matchStatus(status string) bool {
	return anyEqual(f.Statuses, status)
}

// matchRecord applies every kind to a record that is not part of a call
// unit.
func (f *Filter) matchRecord(r *Record) bool {
	return f.matchTime(r.Time) &&
		f.matchUser(r) &&
		f.matchSource(&r.Source) &&
		anyGlob(f.Targets, r.TargetName()) &&
		anyEqual(f.Protocols, r.Protocol) &&
		f.matchFunction(r) &&
		anyEqual(f.Accesses, r.Operation.Access) &&
		f.matchDecision(&r.Decision) &&
		anyEqual(f.Statuses, r.Status) &&
		(anyGlob(f.NodeIDs, r.Operation.NodeID) || r.Operation.MethodID != "" && anyGlob(f.NodeIDs, r.Operation.MethodID)) &&
		f.matchAddress(&r.Operation) &&
		f.matchEvent(r.Event, "") &&
		anyEqual(f.CallIDs, r.CallID)
}

// matchTime compares as text when the time is in the writer's fixed layout,
// which orders like time, and parses otherwise.
func (f *Filter) matchTime(s string) bool {
	if f.fromText == "" && f.toText == "" {
		return true
	}
	if s == "" {
		return false
	}
	if len(s) == len(recordTimeLayout)-5 && s[len(s)-1] == 'Z' && s[19] == '.' {
		return (f.fromText == "" || s >= f.fromText) && (f.toText == "" || s < f.toText)
	}
	t := parseTime(s)
	if t.IsZero() {
		return false
	}
	return (f.From.IsZero() || !t.Before(f.From)) && (f.To.IsZero() || t.Before(f.To))
}

func (f *Filter) matchUser(r *Record) bool {
	if len(f.Users) == 0 {
		return true
	}
	return anyGlob(f.Users, r.Principal.User) || (r.Principal.User == "" && anyGlob(f.Users, r.By)) ||
		(r.Ticket != nil && r.Ticket.User != "" && anyGlob(f.Users, r.Ticket.User))
}

func (f *Filter) matchSource(s *Source) bool {
	if len(f.Sources) == 0 {
		return true
	}
	var ip netip.Addr
	parsed := false
	for _, m := range f.Sources {
		if m.Name != "" {
			if s.Name != "" && glob(m.Name, s.Name) {
				return true
			}
			continue
		}
		if !parsed {
			parsed = true
			if a, err := netip.ParseAddr(s.IP); err == nil {
				ip = a.Unmap()
			}
		}
		if ip.IsValid() && m.Prefix.Contains(ip) {
			return true
		}
	}
	return false
}

func (f *Filter) matchFunction(r *Record) bool {
	if len(f.Functions) == 0 {
		return true
	}
	fn := r.FunctionName()
	for _, v := range f.Functions {
		if n, err := strconv.Atoi(v); err == nil {
			if r.Operation.HasCode && r.Operation.Code == n {
				return true
			}
			continue
		}
		if fn != "" && glob(v, fn) {
			return true
		}
	}
	return false
}

func (f *Filter) matchDecision(d *Decision) bool {
	if len(f.Decisions) == 0 {
		return true
	}
	if !d.Present {
		return false
	}
	for _, v := range f.Decisions {
		switch v {
		case "allow":
			if d.Allow && !d.Alert {
				return true
			}
		case "alert":
			if d.Alert {
				return true
			}
		case "deny":
			if !d.Allow {
				return true
			}
		}
	}
	return false
}

func (f *Filter) matchAddress(o *Operation) bool {
	if len(f.Addresses) == 0 {
		return true
	}
	for _, s := range o.Spans() {
		for _, a := range f.Addresses {
			if s.Lo <= a.Hi && a.Lo <= s.Hi {
				return true
			}
		}
	}
	return false
}

// matchEvent matches the record's event, or for a call unit either of its
// two events.
func (f *Filter) matchEvent(event, alt string) bool {
	if len(f.Events) == 0 {
		return true
	}
	for _, v := range f.Events {
		if glob(v, event) || (alt != "" && glob(v, alt)) {
			return true
		}
	}
	return false
}

// anyEqual: no values match everything; otherwise s must be one of them.
func anyEqual(values []string, s string) bool {
	return len(values) == 0 || (s != "" && slices.Contains(values, s))
}

func anyGlob(values []string, s string) bool {
	if len(values) == 0 {
		return true
	}
	if s == "" {
		return false
	}
	for _, v := range values {
		if glob(v, s) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern where * stands for any run of
// characters (slashes and dots included: node ids and event names have
// them); without a * it is equality.
func glob(pattern, s string) bool {
	star := strings.IndexByte(pattern, '*')
	if star < 0 {
		return pattern == s
	}
	if !strings.HasPrefix(s, pattern[:star]) {
		return false
	}
	s = s[star:]
	parts := strings.Split(pattern[star+1:], "*")
	last := parts[len(parts)-1]
	for _, p := range parts[:len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}
