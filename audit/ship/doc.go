// Package ship delivers the audit log to a SIEM: syslog (RFC 5424 over TCP
// or TLS, octet-counting framing) carrying the JSON record or CEF, or HTTP
// POSTs of JSON lines.
//
// # Spool
//
// The audit log itself is the spool. A Shipper follows the log's files in
// chain order (audit.LogFiles), reads complete lines only, hands them to its
// Sink in batches, and keeps its place in a cursor file beside the log
// (<log>.ship-<name>.cursor: file, offset, seq and hash of the last record
// delivered), replaced atomically after the sink took the records. It only
// reads files, so a slow or absent SIEM never slows a call; the log's disk,
// not memory, holds what is not shipped yet. When the live file is rotated,
// the shipper reads the rotated file to its end once the next file has
// begun, then goes on with the next file. Retention must keep every file
// that OldestNeeded names or that comes after it.
//
// # Delivery
//
// At least once, in order: records leave in log order, and after an outage,
// a broken connection or a restart the shipper starts again after the last
// record delivered, so a record may arrive twice but is never skipped.
// Receivers de-duplicate by seq (and gateway); a copy whose hash differs
// from an earlier one with the same seq is evidence that the log was
// rewritten. Checkpoint records travel like every other record, so a log cut
// short on the gateway shows off-box.
//
// "Delivered" depends on the sink. HTTP: a 2xx answer. Syslog has no
// acknowledgement: a batch counts as delivered when it was written and
// flushed without error, the receiver's TCP acknowledged its bytes (the
// socket's send queue, SIOCOUTQ, on Linux) and the connection was still
// open ConfirmAfter (1 s) after that; or when, at stop, the receiver closed
// its side after reading to the end. Bytes that never left the gateway (a
// network that stopped carrying packets keeps a connection "open" for many
// minutes) never count, and a connection on which nothing is acknowledged
// for 30 s is given up and its records sent again on a new one. A receiver
// that closes or resets the connection sooner gets everything after the
// cursor again on the next connection. A receiver that read records and
// then lost them itself (a crash before they were stored, a full queue it
// drops from, one that stopped reading and then died) cannot be told apart
// from one that kept them: use HTTP, or a syslog relay with a disk queue,
// where that matters.
//
// When the log no longer holds the record the cursor names (the file was
// truncated, rewritten or a new log begun), the shipper logs an error and
// ships again from the start of the file where that record was.
//
// # Refused records
//
// An HTTP receiver that refuses a batch with a 4xx (not 408, 429, nor those
// that mean a wrong URL or credentials) gets it again in halves until the
// one refused record is found; then the shipper stops (OnReject stop, the
// default: the cursor stays before it) or steps over it and writes an
// audit.ship_skipped record into the log (OnReject skip). Either way it is
// logged, and it never loops on the same records.
//
// # Outages
//
// While the receiver is down the shipper retries with back-off doubling
// from 250 ms to RetryMax (30 s) with jitter, honouring Retry-After; it logs
// once when an outage begins and once when it ends, and Stats reports what
// is delivered, how far behind it is (records and bytes) and the last error.
package ship
