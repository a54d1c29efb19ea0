package audit

import (
	"context"

	"github.com/interlock-ics/interlock/gateway"
)

// FieldRepeatsNotRecorded counts the like events not recorded before this
// one (a refusing listener records one per source and reason per interval).
const FieldRepeatsNotRecorded = "repeats_not_recorded"

var _ gateway.RefusalAuditor = (*Writer)(nil)

// ConnRefused writes the session.open record of a connection refused before
// any session (a connection limit): SessionStart's record without a
// decision, with repeats_not_recorded when repeats is not 0.
func (w *Writer) ConnRefused(ctx context.Context, s *gateway.Session, reason string, repeats int) {
	w.sessionOpen(ctx, s, nil, reason, repeats)
}
