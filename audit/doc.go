// Package audit writes and verifies Interlock's record of truth: one JSON
// object per line (JSONL), encoded through zerolog, chained by SHA-256.
//
// # Record
//
// Every record starts with the envelope fields seq, time, event and gateway,
// carries the fields of its event, and ends with prev and hash:
//
//	{"seq":57,"time":"2026-11-26T02:14:27.123456789Z","event":"call","gateway":"site-a-gw1",…,"prev":"<64 hex>","hash":"<64 hex>"}
//
// seq starts at 1 and grows by exactly one per record; time is UTC with nine
// fractional digits, taken under the same lock as seq so that it never goes
// back along seq.
//
// # Hash chain
//
// This definition is the contract that Verify, `interlock audit verify` and
// outside tools rely on. A record is written as the line
//
//	{…,"prev":"<64 hex>","hash":"<64 hex>"}\n
//
// Its canonical bytes are the line without the `,"hash":"<64 hex>"` part and
// without the newline, so they end with `}`. hash is the lowercase hex SHA-256
// of the canonical bytes. prev is the hash of the record before it (64 zeros
// for the first record of a new log) and lies inside the canonical bytes, so
// changing, removing or reordering any record breaks the chain after it.
//
// Removing the tail of the log, or rewriting the log and every hash after a
// change, is not visible in the chain alone: that is what checkpoints kept
// off-box are for.
package audit
