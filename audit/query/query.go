package query

import (
	"io"
	"time"
)

// timeSlack is how far around the time range a query still decodes
// records: a result comes within the request timeout of its call, far
// less, and is joined to it (or dropped with it) only when both are read.
const timeSlack = 10 * time.Minute

// DefaultWindow is how many records after a call its result record is
// looked for. Results follow their call within milliseconds; the window
// bounds the memory a call whose result never came (a crash) can hold.
const DefaultWindow = 1 << 16

// Query streams records through a Filter, joining each call to its result.
type Query struct {
	Filter Filter
	// Limit stops after this many matches (a call and its result are one);
	// 0 for no limit.
	Limit int
	// Window is how many records after a call its result may come; 0 for
	// DefaultWindow.
	Window int
	// LogOrder emits the result record of a matching call at its own place
	// in the log, after the records written between the two, instead of
	// joined to the call: the records come out as the log has them. A
	// call and its result still match, and count, as one.
	LogOrder bool
	// Observe, when set, sees every record read, before the filter, and must
	// not keep the Record (exporters learn each gateway's version from it).
	Observe func(*Record)
}

// Stats describes one run.
type Stats struct {
	Records      int // records read
	Matched      int // records written: a call and its result count two
	Items        int // matches: calls (with their result) and other records
	Calls        int // matches that are calls
	SkippedLines int // lines that were not whole records
	BadLines     int // of them, whole lines that are not audit records (a damaged log)
	PassedOver   int // records well outside From and To, not decoded (Reader.PassOverOutside)
	Unjoined     int // matching calls whose result record was not found in the window
	Files        int
	Bytes        int64
	Elapsed      time.Duration
}

// RecordsPerSecond is the read rate of the run.
func (s Stats) RecordsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Records) / s.Elapsed.Seconds()
}

// item is a match waiting to be written in order, or a call waiting for its
// result (which may then turn out not to match).
type item struct {
	rec     *Record // nil for a call that failed the filter: its result is dropped
	id      string
	gateway string
	idx     int // the record number of the call, for the window
	waiting bool
	match   bool
	written bool
	result  bool  // LogOrder: the call's result record is queued after it
	call    *item // LogOrder: the call of a result record, which it goes out with
}

// Run reads r to the end (or the limit) and calls emit for each match in
// log order: a call with its result joined as rec.Result, or any other
// record; in LogOrder a call and, at its own place, its result. The Record
// is reused once emit returns (Clone keeps a copy); its strings and slices
// are not.
func (q *Query) Run(r *Reader, emit func(rec *Record) error) (Stats, error) {
	start := time.Now()
	f := &q.Filter
	f.prepare()
	window := q.Window
	if window <= 0 {
		window = DefaultWindow
	}
	var (
		st      Stats
		spare   *Record
		queue   []*item              // matches in log order, waiting ones included
		calls   []*item              // calls in log order, for the window
		pending = map[string]*item{} // calls waiting for their result
		direct  item                 // a match written as it is read
		n       int                  // records read
		owed    int                  // LogOrder: results of calls written, still to write
		stop    bool
		free    []*Record // records written out, to read into again
	)
	// next gives a record to read into, reusing one written out: a scan of
	// millions of matches then allocates next to nothing.
	next := func() *Record {
		if k := len(free); k > 0 {
			r := free[k-1]
			free = free[:k-1]
			return r
		}
		return new(Record)
	}
	recycle := func(r *Record) {
		if r.Result != nil {
			free = append(free, r.Result)
			r.Result = nil
		}
		free = append(free, r)
	}
	write := func(it *item) error {
		rec := it.rec
		it.written = true
		st.Matched++
		switch {
		case it.call != nil: // a result in LogOrder: part of its call's match
			owed--
		case rec.Event == EventCall:
			st.Items++
			st.Calls++
			if it.result {
				owed++
			}
		default:
			st.Items++
		}
		if rec.Result != nil {
			st.Matched++
		}
		if err := emit(rec); err != nil {
			return err
		}
		if q.Limit > 0 && st.Items >= q.Limit && owed == 0 {
			stop = true
		}
		return nil
	}
	// flush writes the matches at the head of the queue that wait for
	// nothing.
	flush := func() error {
		for len(queue) > 0 && !queue[0].waiting && !stop {
			it := queue[0]
			queue[0] = nil
			queue = queue[1:]
			if it.call != nil {
				it.match = it.call.written // past the limit, only the results owed
			} else if q.Limit > 0 && st.Items >= q.Limit {
				it.match = false
			}
			if it.match {
				if err := write(it); err != nil {
					return err
				}
			}
			if it.rec != nil {
				recycle(it.rec)
			}
		}
		return nil
	}
	// giveUp ends the wait of a call whose result did not come.
	giveUp := func(it *item) {
		it.waiting = false
		delete(pending, it.id)
		if it.rec != nil {
			st.Unjoined++
			if len(f.Statuses) > 0 {
				it.match = false // its status is unknown
			}
		}
	}

	// Records well outside the time range are passed over undecoded. Every
	// file is read to its end: a gateway restarted with its clock set back
	// writes earlier times after later ones, so no file and no place in one
	// is known to hold only records past To, or before From.
	if !f.From.IsZero() || !f.To.IsZero() {
		var from, to time.Time
		if !f.From.IsZero() {
			from = f.From.Add(-timeSlack)
		}
		if !f.To.IsZero() {
			to = f.To.Add(timeSlack)
		}
		r.PassOverOutside(from, to)
	}
	spare = next()
	var err error
	for !stop {
		if err = r.Read(spare); err != nil {
			break
		}
		n++
		rec := spare
		if rec.Event == EventGatewayStart {
			// A restart: calls of the gateway's previous run that still wait
			// lost their result in a crash. They go out before the restart
			// is observed.
			for _, it := range calls {
				if it.waiting && it.gateway == rec.Gateway {
					giveUp(it)
				}
			}
			if err = flush(); err != nil || stop {
				break
			}
		}
		if q.Observe != nil {
			q.Observe(rec)
		}
		for len(calls) > 0 && (!calls[0].waiting || calls[0].idx < n-window) {
			if calls[0].waiting {
				giveUp(calls[0])
			}
			calls[0] = nil
			calls = calls[1:]
		}
		switch {
		case rec.Event == EventCall && rec.CallID != "":
			it := &item{idx: n, waiting: true, gateway: rec.Gateway}
			if f.matchCall(rec) {
				it.id, it.rec, it.match = rec.CallID, rec, true
				queue = append(queue, it)
				spare = next()
			} else {
				it.id = rec.CallID
			}
			if old := pending[it.id]; old != nil {
				giveUp(old) // a repeated id: the earlier call gets no result
			}
			pending[it.id] = it
			calls = append(calls, it)
		case rec.Event == EventResult && pending[rec.CallID] != nil:
			it := pending[rec.CallID]
			delete(pending, it.id)
			it.waiting = false
			if it.rec != nil {
				it.match = f.matchStatus(rec.Status)
				if q.LogOrder {
					it.result = true
					queue = append(queue, &item{rec: rec, call: it})
				} else {
					it.rec.Result = rec
				}
				spare = next()
			}
		case f.matchRecord(rec):
			if len(queue) == 0 {
				direct = item{rec: rec, match: true}
				err = write(&direct)
			} else {
				queue = append(queue, &item{rec: rec, match: true})
				spare = next()
			}
		}
		if err == nil {
			err = flush()
		}
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if err == nil && !stop {
		for _, it := range calls {
			if it.waiting {
				giveUp(it)
			}
		}
		err = flush()
	}
	st.Records, st.SkippedLines, st.BadLines, st.Files, st.Bytes = r.Records(), r.SkippedLines(), r.BadLines(), r.Files(), r.Bytes()
	st.PassedOver = r.PassedOver()
	st.Elapsed = time.Since(start)
	return st, err
}
