package audit

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/interlock-ics/interlock/gateway"
)

func TestConnRefusedRecord(t *testing.T) {
	line := oneRecord(t, func(w *Writer) {
		w.ConnRefused(context.Background(), testSession(), gateway.RefusedSourceLimit, 41)
	})
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	if _, ok := rec["decision"]; ok || rec["event"] != "session.open" || rec["success"] != false ||
		rec["reason"] != gateway.RefusedSourceLimit || rec["repeats_not_recorded"] != 41.0 || rec["source"] == nil {
		t.Errorf("refused connection with 41 not recorded: %s", line)
	}

	line = oneRecord(t, func(w *Writer) {
		w.ConnRefused(context.Background(), testSession(), gateway.RefusedConnLimit, 0)
	})
	rec = nil
	json.Unmarshal(line, &rec)
	if _, ok := rec["repeats_not_recorded"]; ok || rec["reason"] != gateway.RefusedConnLimit {
		t.Errorf("refused connection, none held back: %s", line)
	}
}
