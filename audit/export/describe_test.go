package export

import (
	"encoding/json"
	"strings"
	"testing"
)

// A request.rejected_suppressed record stands for many rejections: its CEF
// msg (and OCSF message) give the count, the source and each reason with
// its count, not the event's name alone; CEF's cnt carries the count.
func TestSummaryRejectedSuppressed(t *testing.T) {
	const want = "495 rejected requests not recorded one by one from 10.0.6.9 on plc1: bad_protocol_id 195, quantity_out_of_range 300"
	rec := parse(t, lineRejectedCount)
	cef := CEF(rec, "v")
	if !strings.Contains(cef, " cnt=495 msg="+want+" cs2Label=reasons ") {
		t.Errorf("CEF msg:\n%s\nwant msg=%s", cef, want)
	}
	var ocsf struct{ Message string }
	if err := json.Unmarshal(AppendOCSF(nil, rec, "v"), &ocsf); err != nil || ocsf.Message != want {
		t.Errorf("OCSF message %q (%v), want %q", ocsf.Message, err, want)
	}

	// A source with its inventory name; the shared count of sources without
	// an address (or beyond those counted apart); one reason.
	named := strings.Replace(lineRejectedCount, `"source":{"ip":"10.0.6.9"}`, `"source":{"ip":"10.0.6.9","name":"hmi-3"}`, 1)
	noAddr := strings.Replace(lineRejectedCount, `"source":{"ip":"10.0.6.9"}`, `"source":{"ip":""}`, 1)
	oneReason := strings.Replace(lineRejectedCount, `"count":495,"reasons":{"bad_protocol_id":195,"quantity_out_of_range":300}`, `"count":7,"reasons":{"other":7}`, 1)
	for line, want := range map[string]string{
		named:     "495 rejected requests not recorded one by one from hmi-3 (10.0.6.9) on plc1: bad_protocol_id 195, quantity_out_of_range 300",
		noAddr:    "495 rejected requests not recorded one by one from sources without an address or beyond the ones counted apart on plc1: bad_protocol_id 195, quantity_out_of_range 300",
		oneReason: "7 rejected requests not recorded one by one from 10.0.6.9 on plc1: other 7",
	} {
		if got := Summary(parse(t, line)); got != want {
			t.Errorf("Summary:\n got %q\nwant %q", got, want)
		}
	}
}
