package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
)

// Pieces of the hash field that ends every line (see the package doc).
const (
	hashKey    = `,"hash":"`
	hashEnd    = `"}`
	hashHexLen = 2 * sha256.Size
	// hashFieldLen is the length of `,"hash":"<64 hex>"}` at the end of a line.
	hashFieldLen = len(hashKey) + hashHexLen + len(hashEnd)
)

// recordPrefix starts every record: seq is the first field.
const recordPrefix = `{"` + FieldSeq + `":`

// maxRecordSize bounds one line, so that recovery and Verify never read
// without end; the writer refuses larger records.
const maxRecordSize = 16 << 20

// GenesisPrev is prev of the first record of a new log: a log that does not
// begin with it is missing its beginning.
const GenesisPrev = "0000000000000000000000000000000000000000000000000000000000000000"

// splitHash checks that line (without its newline) ends in the hash field
// and returns the recorded hash.
func splitHash(line []byte) (sum [sha256.Size]byte, ok bool) {
	n := len(line)
	if n < len(recordPrefix)+hashFieldLen {
		return sum, false
	}
	field := line[n-hashFieldLen:]
	if !bytes.HasPrefix(field, []byte(hashKey)) || !bytes.HasSuffix(field, []byte(hashEnd)) {
		return sum, false
	}
	return decodeHex(field[len(hashKey) : len(hashKey)+hashHexLen])
}

// canonicalSum returns the SHA-256 of the canonical bytes of line (without
// its newline, already checked by splitHash). It borrows the first byte of
// the hash field to end the canonical bytes with '}' instead of copying.
func canonicalSum(line []byte) [sha256.Size]byte {
	i := len(line) - hashFieldLen
	line[i] = '}'
	sum := sha256.Sum256(line[:i+1])
	line[i] = ','
	return sum
}

// decodeHex decodes 64 lowercase hex digits; uppercase is not the canonical
// form and is refused.
func decodeHex(h []byte) (sum [sha256.Size]byte, ok bool) {
	if len(h) != hashHexLen {
		return sum, false
	}
	for _, c := range h {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return sum, false
		}
	}
	_, err := hex.Decode(sum[:], h)
	return sum, err == nil
}
