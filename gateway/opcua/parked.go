package opcua

import (
	"context"
	"errors"
	"sync"
)

// errStopping ends a Publish parked upstream when the gateway stops.
var errStopping = errors.New("the gateway is stopping: a Publish waiting upstream is answered at once, not held until the listener cuts it off")

// parked are the Publishes of one channel waiting upstream. A server holds a
// Publish until it has notifications or a keep-alive is due (minutes on a
// quiet subscription), so the stop ends them (Bad_Shutdown) rather than
// waiting for them as for other requests in flight.
type parked struct {
	mu       sync.Mutex
	stopping bool
	next     uint64
	cancels  map[uint64]context.CancelCauseFunc
}

// hold returns a ctx for a Publish that the stop cancels with errStopping
// (at once when the stop has begun), and the func that releases it.
func (p *parked) hold(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		cancel(errStopping)
		return ctx, func() {}
	}
	if p.cancels == nil {
		p.cancels = map[uint64]context.CancelCauseFunc{}
	}
	p.next++
	id := p.next
	p.cancels[id] = cancel
	return ctx, func() {
		p.mu.Lock()
		delete(p.cancels, id)
		p.mu.Unlock()
		cancel(nil)
	}
}

// stop cancels the Publishes held now and those held after.
func (p *parked) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	for _, cancel := range p.cancels {
		cancel(errStopping)
	}
}
