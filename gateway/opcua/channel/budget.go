package channel

import "sync/atomic"

// PartialBudget bounds the bytes the channels sharing it (those of one
// listener) hold together in requests still arriving in chunks. Each
// channel is held to MaxMessageSize on its own; without a shared bound,
// clients that never send a message's final chunk pin that much per
// connection, before any session or login. A chunk that would take the
// channels over the budget is refused with Bad_TcpNotEnoughResources and
// its channel closed. A channel returns its share when its message
// completes or is aborted, and when the channel ends. Safe for concurrent
// use.
type PartialBudget struct {
	max  int64
	used atomic.Int64
}

// NewPartialBudget is a budget of max bytes.
func NewPartialBudget(max int64) *PartialBudget { return &PartialBudget{max: max} }

// Max is the budget's size in bytes.
func (b *PartialBudget) Max() int64 { return b.max }

// Used is the bytes the channels hold in requests not yet complete.
func (b *PartialBudget) Used() int64 { return b.used.Load() }

// take takes n bytes from the budget; false (and nothing taken) when that
// would go over it. A nil budget has no bound.
func (b *PartialBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// give returns n bytes taken.
func (b *PartialBudget) give(n int64) {
	if b != nil && n != 0 {
		b.used.Add(-n)
	}
}
