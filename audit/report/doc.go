// Package report turns an audit log into evidence an auditor can read
// without the tool: one self-contained HTML page (`interlock audit report`).
//
// Build reads the log's files once, in chain order, and aggregates every
// record as it goes, in bounded memory: tables keep their first
// Options.MaxRows rows and an exact total, tallies a bounded number of keys
// and count the rest as "other". The chain verifier (audit.VerifyLog) reads
// the same files beside it. WriteHTML renders the result: inline CSS, charts
// as inline SVG drawn here, a content security policy that allows only the
// page's own style and its small table-sorting script, so that nothing is
// fetched and no text from the log can run. PrintPDF prints the page with
// headless Chromium.
//
// Definitions the page states too: a call is one `call` record; denied means
// decision.allow is false (in monitor mode such a call was still forwarded);
// an alert is decision.alert, allowed or not; a state-changing call has any
// access but read, browse and subscribe (gateway.Access.ChangesState).
// Records are placed in the period by their `time`.
package report
