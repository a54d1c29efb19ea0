package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"time"
)

// head is what the chain needs of one record.
type head struct {
	seq   uint64
	prev  [sha256.Size]byte
	hash  [sha256.Size]byte
	event string
	time  time.Time
}

// fault is why one line is not a valid record on its own.
type fault struct {
	kind BreakKind
	msg  string
}

// parseRecord checks one line (without its newline) on its own: shape, hash,
// envelope fields. line is modified during the call and restored.
func parseRecord(line []byte) (head, *fault) {
	var h head
	if !bytes.HasPrefix(line, []byte(recordPrefix)) {
		return h, &fault{BreakMalformed, "not an audit record: it does not start with " + recordPrefix}
	}
	recorded, ok := splitHash(line)
	if !ok {
		if _, crlf := splitHash(bytes.TrimRight(line, "\r")); crlf {
			return h, &fault{BreakMalformed, "not an audit record as written: the line ends with a carriage return (CR LF), so the file's line endings were converted, by a copy or an editor"}
		}
		return h, &fault{BreakMalformed, "not an audit record: it does not end with the hash field"}
	}
	if canonicalSum(line) != recorded {
		return h, &fault{BreakHashMismatch, "hash does not match the record: the record was changed"}
	}
	var v struct {
		Seq   *uint64 `json:"seq"`
		Time  *string `json:"time"`
		Event *string `json:"event"`
		Prev  *string `json:"prev"`
	}
	if err := json.Unmarshal(line, &v); err != nil {
		return h, &fault{BreakMalformed, "not a valid JSON object: " + err.Error()}
	}
	switch {
	case v.Seq == nil:
		return h, &fault{BreakMalformed, "no seq"}
	case v.Event == nil || *v.Event == "":
		return h, &fault{BreakMalformed, "no event"}
	case v.Time == nil:
		return h, &fault{BreakMalformed, "no time"}
	case v.Prev == nil:
		return h, &fault{BreakMalformed, "no prev"}
	}
	ts, err := time.Parse(time.RFC3339Nano, *v.Time)
	if err != nil {
		return h, &fault{BreakMalformed, "time is not RFC 3339: " + strconv.Quote(*v.Time)}
	}
	prev, ok := decodeHex([]byte(*v.Prev))
	if !ok {
		return h, &fault{BreakMalformed, "prev is not 64 lowercase hex digits"}
	}
	h.seq, h.prev, h.hash, h.event, h.time = *v.Seq, prev, recorded, *v.Event, ts
	return h, nil
}

// peekSeq reads seq from the start of a line without checking the rest, to
// name the record in a message or to look ahead for a missing seq.
func peekSeq(line []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(line, []byte(recordPrefix))
	if !ok {
		return 0, false
	}
	n := 0
	for n < len(rest) && n < 20 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	return seq, err == nil
}
