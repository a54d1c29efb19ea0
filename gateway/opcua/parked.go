package opcua

import (
	"context"
	"errors"
	"sync"
)

var (
	// errStopping ends a Publish parked upstream when the gateway stops.
	errStopping = errors.New("the gateway is stopping: a Publish waiting upstream is answered at once, not held until the listener cuts it off")
	// errChannelGone ends a Publish parked upstream when the client's
	// secure channel has closed: no one is left to answer.
	errChannelGone = errors.New("the client's secure channel closed: a Publish waiting upstream is abandoned, not held until the server answers it")
)

// parked are the Publishes of one channel waiting upstream. A server holds a
// Publish until it has notifications or a keep-alive is due (minutes on a
// quiet subscription), so the gateway's stop (Bad_Shutdown) and the end of
// the client's channel end them rather than waiting for them as for other
// requests in flight.
type parked struct {
	mu      sync.Mutex
	cause   error // why the Publishes end; nil until stop
	next    uint64
	cancels map[uint64]context.CancelCauseFunc
}

// hold returns a ctx for a Publish that stop cancels with its cause (at
// once when stop was called), and the func that releases it.
func (p *parked) hold(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cause != nil {
		cancel(p.cause)
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

// stop cancels the Publishes held now and those held after with cause
// (errStopping or errChannelGone); the first cause stays.
func (p *parked) stop(cause error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cause == nil {
		p.cause = cause
	}
	for _, cancel := range p.cancels {
		cancel(p.cause)
	}
}

// ended reports whether err is the cause a Publish was ended with by stop.
func ended(cause error) bool { return cause == errStopping || cause == errChannelGone }
