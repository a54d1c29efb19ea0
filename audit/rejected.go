package audit

import (
	"context"
	"slices"

	"github.com/rs/zerolog"

	"github.com/interlock-ics/interlock/gateway"
)

var _ gateway.RejectionSummaryAuditor = (*Writer)(nil)

// RejectedSummary writes request.rejected_suppressed: the rejected requests
// of one source that a listener counted in a window rather than wrote one
// by one, by reason. With the request.rejected records of the source, the
// counts account for every rejection.
func (w *Writer) RejectedSummary(ctx context.Context, sum *gateway.RejectedSummary) {
	e, err := w.begin(EventRequestRejectedSuppressed)
	if err != nil {
		w.logFailure(EventRequestRejectedSuppressed, "", err)
		return
	}
	e.Str(FieldListener, sum.Listener).
		Str(FieldProtocol, sum.Protocol).
		Object(FieldSource, addressObject{&sum.Source}).
		Object(FieldTarget, targetObject{&sum.Target}).
		Int(FieldCount, sum.Count).
		Object(FieldReasons, reasonCounts(sum.Reasons))
	appendTime(e, FieldFirstTime, sum.First)
	appendTime(e, FieldLastTime, sum.Last)
	e.Int(FieldRecorded, sum.Recorded).
		Int(FieldLimit, sum.Limit)
	appendTime(e, FieldWindowStart, sum.WindowStart)
	e.Int64(FieldWindowMS, sum.Window.Milliseconds()).
		Str(FieldCause, sum.Cause)
	if err := w.commit(ctx, e, false); err != nil {
		w.logFailure(EventRequestRejectedSuppressed, "", err)
	}
}

// addressObject is a source without its port: a summary covers every
// connection of the address.
type addressObject struct{ s *gateway.Source }

func (o addressObject) MarshalZerologObject(e *zerolog.Event) {
	var b [64]byte
	e.Bytes(FieldIP, o.s.IP.AppendTo(b[:0]))
	if o.s.Name != "" {
		e.Str(FieldName, o.s.Name)
	}
	if o.s.Owner != "" {
		e.Str(FieldOwner, o.s.Owner)
	}
}

// reasonCounts writes reason: count in the order of the reasons' names,
// so that the same summary is always the same line.
type reasonCounts map[string]int

func (m reasonCounts) MarshalZerologObject(e *zerolog.Event) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		e.Int(k, m[k])
	}
}
