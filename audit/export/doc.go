// Package export formats audit records for the tools of others: OCSF 1.x
// (API Activity, class 6003; docs/ocsf-mapping.md maps it field by field),
// ArcSight CEF, CSV, and the records as they are (JSONL).
//
// The formatters take query.Record: a call record with its result joined
// (query.Query does the joining), or any record on its own. CEF and the
// OCSF event of a single record are also what a SIEM shipper sends.
package export
