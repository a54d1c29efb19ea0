package ship

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/audit"
)

// Sink delivers audit records to a SIEM.
type Sink interface {
	// Send delivers recs in order. nil means the sink took all of them: an
	// HTTP sink got a 2xx answer; a syslog sink wrote and flushed them on a
	// connection that showed no error. A *RejectError means the receiver
	// refuses the content, and sending the same records again cannot help.
	Send(ctx context.Context, recs []Record) error
	// Close ends the connection. A sink without acknowledgements first
	// waits, until ctx is done, for the receiver to show it read everything
	// (syslog: close the sending side and wait for the receiver to close);
	// nil means it did.
	Close(ctx context.Context) error
}

// Unacked is a sink without an application-level acknowledgement (syslog
// over TCP or TLS): what it took is lost if the connection breaks before
// the receiver read it.
type Unacked interface {
	Sink
	// Probe reports, without blocking, whether the connection it last
	// wrote on is still open, and how many of the bytes written on it
	// (Written) the receiver acknowledged at the transport level.
	Probe() (acked int64, err error)
	// Written is how many bytes the sink wrote on its connection so far:
	// after a Send, where that batch ends.
	Written() int64
}

// RejectError is a receiver refusing records for what they are (an HTTP
// 4xx other than 408, 429 and those that mean a wrong URL or credentials).
type RejectError struct {
	Status int
	Detail string // the start of the answer's body
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("the receiver refuses the records: status %d: %s", e.Status, e.Detail)
}

// What to do with a record the receiver refuses (Options.OnReject).
const (
	RejectStop = "stop" // stop this shipper; the cursor stays before the record
	RejectSkip = "skip" // step over it and write an audit.ship_skipped record
)

// Audit events the shipper writes through Options.Note.
const (
	EventSkipped = "audit.ship_skipped"
	EventStopped = "audit.ship_stopped"
)

// Defaults of Options.
const (
	DefaultBatchRecords = 500
	DefaultBatchBytes   = 1 << 20
	DefaultPoll         = 200 * time.Millisecond
	DefaultRetryMax     = 30 * time.Second
	DefaultConfirmAfter = time.Second

	retryMin  = 250 * time.Millisecond
	saveEvery = 250 * time.Millisecond // the cursor is written at most this often, and at stop
)

// Options configure a Shipper.
type Options struct {
	Name       string // names the shipper in logs, notes and the cursor file
	Path       string // the live file of the audit log
	CursorPath string // default CursorPath(Path, Name)
	Sink       Sink

	BatchRecords int           // records per Send; default 500
	BatchBytes   int           // bytes per Send (one longer record goes alone); default 1 MiB
	Poll         time.Duration // how often to look for new records when all are shipped; default 200ms
	RetryMax     time.Duration // longest wait between attempts while the receiver is down; default 30s
	// ConfirmAfter is how long the connection of an Unacked sink must stay
	// open after a batch before the batch counts as delivered. Default 1s.
	ConfirmAfter time.Duration
	OnReject     string // RejectStop (default) or RejectSkip

	// Note writes an audit record (audit.ship_skipped, audit.ship_stopped)
	// into the log being shipped; nil writes none.
	Note func(event string, fields func(e *zerolog.Event)) error
	// Head returns the seq of the last record written, for Stats.LagRecords.
	Head func() uint64
	Log  zerolog.Logger
}

// CheckAndSetDefaults reports missing required options and fills in the rest.
func (o *Options) CheckAndSetDefaults() error {
	switch {
	case o.Name == "":
		return errors.New("ship: no name")
	case o.Path == "":
		return errors.New("ship: no audit log path")
	case o.Sink == nil:
		return errors.New("ship: no sink")
	}
	if o.CursorPath == "" {
		o.CursorPath = CursorPath(o.Path, o.Name)
	}
	if o.BatchRecords <= 0 {
		o.BatchRecords = DefaultBatchRecords
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = DefaultBatchBytes
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.ConfirmAfter <= 0 {
		o.ConfirmAfter = DefaultConfirmAfter
	}
	switch o.OnReject {
	case "":
		o.OnReject = RejectStop
	case RejectStop, RejectSkip:
	default:
		return fmt.Errorf("ship: on_reject %q is not one of stop, skip", o.OnReject)
	}
	return nil
}

// Stats are a shipper's counters, for metrics and tests.
type Stats struct {
	Name        string
	Shipped     uint64 // records the sink took, resends included
	Seq         uint64 // seq of the last record delivered (the cursor)
	LagRecords  uint64 // records written but not delivered yet (needs Options.Head)
	LagBytes    int64  // bytes of the log after the cursor
	Resent      uint64 // records sent again because a connection broke before they counted as delivered
	Skipped     uint64 // records the receiver refused and the shipper stepped over
	Errors      uint64 // failed attempts
	Gaps        uint64 // places where the log's seq jumps
	Diverged    uint64 // times the log no longer held the last shipped record
	Down        bool   // the receiver is unreachable or failing now
	Stopped     bool   // stopped on a refused record (on_reject: stop)
	LastError   string
	LastErrorAt time.Time
}

// mark is a batch an Unacked sink took that does not count as delivered yet.
type mark struct {
	pos   position
	at    time.Time
	n     int
	bytes int64     // where the batch ends on the connection (Unacked.Written)
	acked time.Time // when Probe first found those bytes acknowledged
}

// stallTimeout is how long a connection may go without the receiver
// acknowledging any of the bytes waiting on it before the shipper gives up
// on it and sends them again on a new one.
const stallTimeout = 30 * time.Second

// Shipper follows one audit log and delivers every record to one sink, in
// order, at least once. See the package documentation.
type Shipper struct {
	opts    Options
	unacked Unacked // opts.Sink when it has no acknowledgements
	fl      *follower
	log     zerolog.Logger

	// Owned by the run goroutine.
	marks    []mark
	acked    int64     // what Probe last reported acknowledged on the connection
	progress time.Time // when the connection last showed progress (or marks began)
	saved    position
	savedAt  time.Time
	limit    int    // records per batch now: halved while finding a refused record
	suspect  uint64 // seq of the last record of the batch last refused
	backoff  time.Duration
	downAt   time.Time
	attempts int

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	cancel   context.CancelFunc

	mu        sync.Mutex
	confirmed position // the cursor: delivered up to here
	stats     Stats
}

// New makes a shipper; Start starts it.
func New(opts Options) (*Shipper, error) {
	if err := opts.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	log := opts.Log.With().Str("ship", opts.Name).Logger()
	s := &Shipper{
		opts:  opts,
		fl:    newFollower(opts.Path, log),
		log:   log,
		limit: opts.BatchRecords,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	s.unacked, _ = opts.Sink.(Unacked)
	s.stats.Name = opts.Name
	s.fl.onRename = s.renamed
	return s, nil
}

// Start reads the cursor, finds its place in the log and starts shipping in
// a goroutine of its own. A cursor that cannot be read is reported and the
// whole log is shipped again: duplicates, never a loss.
func (s *Shipper) Start() error {
	c, ok, err := ReadCursor(s.opts.CursorPath)
	if err != nil {
		s.log.Error().Err(err).Msg("ship: the cursor cannot be read; shipping the whole audit log again")
		ok = false
	}
	if ok {
		s.confirmed = position{file: c.File, off: c.Offset, seq: c.Seq, hash: c.Hash}
		s.saved = s.confirmed
	}
	if err := s.fl.seek(s.confirmed); err != nil {
		return fmt.Errorf("ship: %s: %w", s.opts.Name, err)
	}
	if s.fl.f != nil {
		s.setConfirmed(s.fl.pos()) // the place found may name the file anew
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.log.Info().Str("cursor", s.opts.CursorPath).Uint64("seq", s.confirmed.seq).Msg("ship: shipping the audit log")
	go s.run(ctx)
	return nil
}

// Stop ships what the log holds now until ctx is done, then saves the
// cursor and closes the sink. Whatever is left is shipped after the next
// Start.
func (s *Shipper) Stop(ctx context.Context) {
	if s.cancel == nil {
		return // never started
	}
	s.stopOnce.Do(func() { close(s.stop) })
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
}

// Done is closed when the shipper has stopped: after Stop, or on its own
// when the receiver refused a record and OnReject is stop.
func (s *Shipper) Done() <-chan struct{} { return s.done }

func (s *Shipper) run(ctx context.Context) {
	defer close(s.done)
	defer s.cancel()
	draining := false
	poll := time.NewTimer(time.Hour)
	defer poll.Stop()
	wait := func(d time.Duration) {
		if draining {
			return
		}
		poll.Reset(d)
		select {
		case <-poll.C:
		case <-s.stop:
			draining = true
		}
	}
	// retry waits out the back-off after a failed attempt and goes back to
	// the cursor: what was sent after it goes again.
	retry := func(err error) {
		s.failed(err)
		wait(s.nextBackoff(err))
		s.rewind()
	}
	for ctx.Err() == nil {
		if !draining {
			select {
			case <-s.stop:
				draining = true
			default:
			}
		}
		recs, err := s.fl.read(s.limit, s.opts.BatchBytes)
		end := s.fl.pos()
		s.mu.Lock()
		s.stats.Gaps, s.stats.Diverged = s.fl.gaps, s.fl.diverged
		s.mu.Unlock()
		if err != nil {
			retry(fmt.Errorf("reading the audit log: %w", err))
			if draining {
				break
			}
			continue
		}
		if len(recs) == 0 {
			if err := s.confirm(time.Now()); err != nil {
				retry(err)
			}
			s.save(false)
			if draining {
				break
			}
			wait(s.opts.Poll)
			continue
		}
		err = s.opts.Sink.Send(ctx, recs)
		var rej *RejectError
		switch {
		case err == nil:
			err = s.sent(recs, end)
			if err == nil {
				continue
			}
			retry(err)
		case errors.Is(err, ErrConnectionClosed) && len(s.marks) == 0:
			// Closed while idle (a receiver's idle timeout): nothing was
			// at risk on it, and nothing of recs went out; go back to
			// them and connect again at once.
			s.log.Debug().Err(err).Msg("ship: the receiver closed an idle connection; connecting again")
			s.rewind()
			continue
		case errors.As(err, &rej) && s.unacked == nil:
			if !s.rejected(recs, end, rej) {
				s.finish(ctx)
				return
			}
		default:
			retry(err)
		}
		if draining {
			break // one attempt at stop: the cursor keeps the rest
		}
	}
	s.finish(ctx)
}

// sent counts a batch the sink took. For an Unacked sink it may find the
// connection of earlier batches closed: then they must go again.
func (s *Shipper) sent(recs []Record, end position) error {
	now := time.Now()
	if s.limit < s.opts.BatchRecords && end.seq >= s.suspect {
		s.limit = s.opts.BatchRecords // past the refused batch
	}
	s.mu.Lock()
	s.stats.Shipped += uint64(len(recs))
	s.mu.Unlock()
	if s.unacked == nil {
		s.recovered(now)
		s.setConfirmed(end)
		s.save(false)
		return nil
	}
	if len(s.marks) == 0 {
		s.progress = now
	}
	s.marks = append(s.marks, mark{pos: end, at: now, n: len(recs), bytes: s.unacked.Written()})
	err := s.confirm(now)
	s.save(false)
	return err
}

// confirm counts the batches of an Unacked sink as delivered once the
// receiver acknowledged their bytes and the connection stayed open
// ConfirmAfter after that. An error means the receiver closed the
// connection first, or stopped acknowledging anything for stallTimeout.
func (s *Shipper) confirm(now time.Time) error {
	if s.unacked == nil || len(s.marks) == 0 {
		return nil
	}
	acked, err := s.unacked.Probe()
	if err != nil {
		return fmt.Errorf("the receiver closed the connection before records sent on it counted as delivered: %w", err)
	}
	if acked != s.acked {
		s.acked, s.progress = acked, now
	}
	i := -1
	for j := range s.marks {
		m := &s.marks[j]
		if m.acked.IsZero() && m.bytes <= acked {
			m.acked = now
		}
		if !m.acked.IsZero() && now.Sub(m.acked) >= s.opts.ConfirmAfter {
			i = j
		}
	}
	if i < 0 {
		if s.marks[0].acked.IsZero() && now.Sub(s.progress) >= stallTimeout {
			return fmt.Errorf("the receiver acknowledged none of the %d bytes waiting on the connection for %s", s.unacked.Written()-acked, stallTimeout)
		}
		return nil
	}
	s.recovered(now)
	s.setConfirmed(s.marks[i].pos)
	s.marks = append(s.marks[:0], s.marks[i+1:]...)
	return nil
}

// rewind goes back to the cursor: what was sent after it is sent again.
func (s *Shipper) rewind() {
	n := 0
	for _, m := range s.marks {
		n += m.n
	}
	s.marks = s.marks[:0]
	s.mu.Lock()
	s.stats.Resent += uint64(n)
	p := s.confirmed
	s.mu.Unlock()
	if err := s.fl.seek(p); err != nil {
		s.log.Error().Err(err).Msg("ship: cannot find the cursor's place in the audit log")
	}
}

// rejected handles a batch the receiver refused: it halves the batch until
// the refused record is found, then stops or steps over it. It reports
// whether shipping goes on.
func (s *Shipper) rejected(recs []Record, end position, rej *RejectError) bool {
	s.recovered(time.Now()) // the receiver is up; it only dislikes this
	if len(recs) > 1 {
		s.limit, s.suspect = max(1, len(recs)/2), end.seq
		s.rewind()
		return true
	}
	r := recs[0]
	s.mu.Lock()
	s.stats.LastError, s.stats.LastErrorAt = rej.Error(), time.Now()
	s.mu.Unlock()
	if s.opts.OnReject == RejectSkip {
		s.log.Error().Uint64("seq", r.Seq).Str("event", r.Event).Int("status", rej.Status).Str("detail", rej.Detail).
			Msg("ship: the receiver refuses this audit record; skipping it (on_reject: skip) and recording that in the audit log")
		s.mu.Lock()
		s.stats.Skipped++
		s.mu.Unlock()
		s.setConfirmed(end)
		s.save(true)
		// A refused note is not noted again, or one refusal would feed the next.
		if r.Event != EventSkipped {
			s.note(EventSkipped, r, rej)
		}
		s.limit = s.opts.BatchRecords
		return true
	}
	s.log.Error().Uint64("seq", r.Seq).Str("event", r.Event).Int("status", rej.Status).Str("detail", rej.Detail).
		Msg("ship: the receiver refuses this audit record; shipping stopped (on_reject: stop) until the gateway restarts. Fix the receiver, or set on_reject: skip")
	s.mu.Lock()
	s.stats.Stopped = true
	s.mu.Unlock()
	s.note(EventStopped, r, rej)
	return false
}

func (s *Shipper) note(event string, r Record, rej *RejectError) {
	if s.opts.Note == nil {
		return
	}
	err := s.opts.Note(event, func(e *zerolog.Event) {
		e.Str("ship", s.opts.Name).Uint64("record_seq", r.Seq).Str("record_event", r.Event).
			Int("status", rej.Status).Str("error", rej.Detail)
	})
	if err != nil {
		s.log.Error().Err(err).Str("note", event).Msg("ship: cannot write the audit record")
	}
}

// failed counts a failed attempt; the first of an outage is logged.
func (s *Shipper) failed(err error) {
	now := time.Now()
	s.attempts++
	s.mu.Lock()
	s.stats.Errors++
	s.stats.Down = true
	s.stats.LastError, s.stats.LastErrorAt = err.Error(), now
	s.mu.Unlock()
	if s.downAt.IsZero() {
		s.downAt = now
		s.log.Warn().Err(err).Msg("ship: cannot deliver audit records; retrying with back-off (the audit log keeps them)")
		return
	}
	s.log.Debug().Err(err).Int("attempts", s.attempts).Msg("ship: still cannot deliver audit records")
}

// recovered ends an outage.
func (s *Shipper) recovered(now time.Time) {
	s.backoff = 0
	if s.downAt.IsZero() {
		return
	}
	s.log.Info().Int64("outage_ms", now.Sub(s.downAt).Milliseconds()).Int("attempts", s.attempts).Msg("ship: delivering audit records again")
	s.downAt, s.attempts = time.Time{}, 0
	s.mu.Lock()
	s.stats.Down = false
	s.mu.Unlock()
}

// nextBackoff doubles the wait up to RetryMax, with jitter so that many
// gateways do not return to a receiver in step; a receiver's Retry-After
// is honoured within the same bound.
func (s *Shipper) nextBackoff(err error) time.Duration {
	s.backoff = min(max(retryMin, 2*s.backoff), s.opts.RetryMax)
	d := s.backoff - time.Duration(rand.Int64N(int64(s.backoff)/4+1))
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > d {
		d = min(ra.RetryAfter(), s.opts.RetryMax)
	}
	return d
}

// finish confirms what it can, saves the cursor and closes the sink.
func (s *Shipper) finish(ctx context.Context) {
	if s.unacked != nil && len(s.marks) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := s.unacked.Close(cctx); err == nil {
			s.setConfirmed(s.marks[len(s.marks)-1].pos)
			s.marks = s.marks[:0]
		} else {
			s.log.Info().Err(err).Msg("ship: the receiver did not confirm the last records; they are sent again after the next start")
		}
		cancel()
	} else {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = s.opts.Sink.Close(cctx)
		cancel()
	}
	s.save(true)
	s.fl.close()
	st := s.Stats()
	s.log.Info().Uint64("seq", st.Seq).Uint64("shipped", st.Shipped).Uint64("resent", st.Resent).
		Uint64("errors", st.Errors).Msg("ship: stopped")
}

func (s *Shipper) setConfirmed(p position) {
	s.mu.Lock()
	s.confirmed = p
	s.stats.Seq = p.seq
	s.mu.Unlock()
}

// renamed learns that the file name in positions was rotated to newName.
func (s *Shipper) renamed(old, newName string) {
	for i := range s.marks {
		if s.marks[i].pos.file == old {
			s.marks[i].pos.file = newName
		}
	}
	s.mu.Lock()
	if s.confirmed.file == old {
		s.confirmed.file = newName
	}
	s.mu.Unlock()
}

// save writes the cursor when it moved, at most every saveEvery unless
// forced: a cursor that lags only means records sent twice.
func (s *Shipper) save(force bool) {
	s.mu.Lock()
	p := s.confirmed
	s.mu.Unlock()
	now := time.Now()
	if p == s.saved || (!force && now.Sub(s.savedAt) < saveEvery) {
		return
	}
	c := Cursor{File: p.file, Offset: p.off, Seq: p.seq, Hash: p.hash, Time: now.UTC()}
	if err := writeCursor(s.opts.CursorPath, c); err != nil {
		s.log.Error().Err(err).Msg("ship: cannot save the cursor; records may be sent again after a restart")
		return
	}
	s.saved, s.savedAt = p, now
}

// Stats returns the shipper's counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	st, p := s.stats, s.confirmed
	s.mu.Unlock()
	if s.opts.Head != nil {
		if head := s.opts.Head(); head > p.seq {
			st.LagRecords = head - p.seq
		}
	}
	st.LagBytes = lagBytes(s.opts.Path, p)
	return st
}

// lagBytes counts the bytes of the log after p.
func lagBytes(path string, p position) int64 {
	files, err := audit.LogFiles(path)
	if err != nil {
		return 0
	}
	var n int64
	after := p.file == ""
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		switch {
		case after:
			n += fi.Size()
		case filepath.Base(f) == p.file:
			n += max(0, fi.Size()-p.off)
			after = true
		}
	}
	return n
}
