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
// change, is not visible in the chain alone: that is what signed checkpoints,
// and checkpoints kept off-box, are for.
//
// # Checkpoints
//
// With a signing key (an Ed25519 key made by `interlock audit keygen`), the
// writer appends an audit.checkpoint record that covers the record right
// before it:
//
//	{"seq":1001,"time":"T","event":"audit.checkpoint","gateway":"G",
//	 "checkpoint":{"seq":1000,"hash":"<hash of seq 1000>","time":"T","boot_id":"B",
//	   "key_id":"K","reason":"count","every":1000,"interval_ms":60000},
//	 "signature":"<base64>","prev":"<hash of seq 1000>","hash":"…"}
//
// checkpoint.seq and checkpoint.hash are the seq and hash of the covered
// record (so checkpoint.hash equals the record's own prev, and checkpoint.seq
// is its seq minus one); checkpoint.time equals the record's time; gateway is
// the record's gateway. The first checkpoint of a new log covers seq 0 and
// the 64 zeros of GenesisPrev. key_id is the first 16 lowercase hex digits of
// the SHA-256 of the 32-byte Ed25519 public key. signature is the standard,
// padded base64 of the Ed25519 signature (RFC 8032) over these bytes, one
// line per field, each line `name=value` ended by a newline (0x0A), values
// exactly as in the record after JSON decoding, numbers in decimal:
//
//	interlock-audit-checkpoint-v1
//	gateway=<gateway>
//	seq=<checkpoint.seq>
//	hash=<checkpoint.hash>
//	time=<checkpoint.time>
//	boot_id=<checkpoint.boot_id>
//	key_id=<checkpoint.key_id>
//	reason=<checkpoint.reason>
//	every=<checkpoint.every>
//	interval_ms=<checkpoint.interval_ms>
//
// Values never hold a line break (a gateway id with one is refused when
// signing). Because the covered hash chains back to the first record, a
// valid signature vouches for every record up to and including the covered
// one.
//
// A checkpoint is written when a record would otherwise be the
// (every+1)-th after the last checkpoint, or would be written more than
// interval_ms after the first record after it (reason count or interval;
// the writer refuses the record when the checkpoint cannot be written, so
// these bounds always hold); every interval while records are unsigned and
// none comes (interval); as the last record of a file rotated out
// (rotation); when the gateway opens the log, vouching for what it found
// (open); and at Close (shutdown). boot_id names one start of the gateway:
// a new one is a restart, clean when the boot before it ended with
// gateway.stop or a shutdown checkpoint. Checkpoints by count or interval in
// front of a record reach the disk with the next fsync, as the records
// around them; a rotation checkpoint with its file, before any durable
// record of the next file is acknowledged; the others (open, interval while
// idle, shutdown) before the writer goes on.
//
// # Rotation and retention
//
// The live file is rotated out by size or age: its last record is a
// rotation checkpoint (when signing), it is renamed to RotatedName (files.go)
// and a new live file begins with an audit.rotated record whose prev is the
// rotated file's last hash:
//
//	{"seq":1003,…,"event":"audit.rotated",…,"reason":"size","previous_file":"audit-20261126T051000Z-000000000000001.jsonl",
//	 "previous_first_seq":1,"previous_last_seq":1002,"prev":"<hash of seq 1002>","hash":"…"}
//
// LogFiles lists the files in chain order. Retention deletes the oldest
// rotated files only, each after a durable audit.retention record naming the
// file, its first_seq, last_seq and last_hash, so that a log whose first file
// continues a deleted one still verifies.
//
// # Capacity
//
// The fill level of the audit filesystem is checked periodically; crossing
// the warning level writes audit.capacity (state warning, and state ok once
// it drops again). When the filesystem is full a write fails and is cut
// back: no partial record stays, the chain does not advance, and the next
// record is written where the failed one would have been. After the first
// record written again, audit.write_failed says how many records were lost
// since when.
package audit
