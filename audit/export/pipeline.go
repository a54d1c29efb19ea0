package export

import (
	"sync"

	"github.com/interlock-ics/interlock/audit/query"
)

// Pipeline runs an Encoder on a goroutine of its own, so that formatting
// overlaps reading and filtering: an OCSF event costs about twice what
// reading its record does, and the second core is otherwise idle. Matches
// and observed records keep their order.
type Pipeline struct {
	enc   *Encoder
	batch []entry
	full  chan []entry // batches to encode, in order
	free  chan []entry // encoded batches, to fill again
	done  chan struct{}

	mu  sync.Mutex
	err error // the encoder's first error; later entries are dropped
}

// entry is a copy of a match (Query reuses its records), or of a record to
// observe.
type entry struct {
	rec, res  query.Record
	hasResult bool
	observe   bool
}

const pipelineBatch = 256

// NewPipeline starts encoding with enc; Close ends it.
func NewPipeline(enc *Encoder) *Pipeline {
	p := &Pipeline{
		enc:  enc,
		full: make(chan []entry, 4),
		free: make(chan []entry, 6),
		done: make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *Pipeline) run() {
	defer close(p.done)
	for batch := range p.full {
		if p.failed() == nil {
			for i := range batch {
				e := &batch[i]
				if e.observe {
					p.enc.Observe(&e.rec)
					continue
				}
				if e.hasResult {
					e.rec.Result = &e.res
				}
				if err := p.enc.Write(&e.rec); err != nil {
					p.mu.Lock()
					p.err = err
					p.mu.Unlock()
					break
				}
			}
		}
		clear(batch) // drop the records' strings
		select {
		case p.free <- batch[:0]:
		default:
		}
	}
}

func (p *Pipeline) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Write queues a copy of r (a call with its result, or another record).
// It returns the encoder's error once one happened.
func (p *Pipeline) Write(r *query.Record) error {
	e := entry{rec: *r}
	if r.Result != nil {
		e.res, e.hasResult = *r.Result, true
		e.res.Result = nil
	}
	e.rec.Result = nil
	return p.add(e)
}

// Observe queues a record read for Encoder.Observe, in order with the
// matches: only gateway.start records tell the encoder anything.
func (p *Pipeline) Observe(r *query.Record) {
	if r.Event == query.EventGatewayStart {
		p.add(entry{rec: *r, observe: true})
	}
}

func (p *Pipeline) add(e entry) error {
	if p.batch == nil {
		select {
		case p.batch = <-p.free:
		default:
			p.batch = make([]entry, 0, pipelineBatch)
		}
	}
	p.batch = append(p.batch, e)
	if len(p.batch) == pipelineBatch {
		p.full <- p.batch
		p.batch = nil
		return p.failed()
	}
	return nil
}

// Close encodes what is queued, stops the goroutine and closes the encoder.
func (p *Pipeline) Close() error {
	if len(p.batch) > 0 {
		p.full <- p.batch
		p.batch = nil
	}
	close(p.full)
	<-p.done
	if err := p.failed(); err != nil {
		return err
	}
	return p.enc.Close()
}
