package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Cursor is how far a shipper got: the last record its sink took (and, for
// syslog, kept its connection open long enough to count as delivered). It
// is kept in a small JSON file beside the log, replaced atomically.
type Cursor struct {
	File   string    `json:"file"`   // base name of the file that holds the record
	Offset int64     `json:"offset"` // just past the record's newline in File
	Seq    uint64    `json:"seq"`    // the record's seq; 0: nothing shipped yet
	Hash   string    `json:"hash"`   // the record's hash, to tell a rewritten log
	Time   time.Time `json:"time"`   // when the cursor was saved
}

// CursorPath is where the shipper called name keeps its cursor for the log
// whose live file is logPath.
func CursorPath(logPath, name string) string {
	return logPath + ".ship-" + name + ".cursor"
}

// ReadCursor reads a cursor file; ok is false when there is none.
func ReadCursor(path string) (c Cursor, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("ship: cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("ship: cursor %s: %w", path, err)
	}
	if c.Offset < 0 || (c.Seq > 0 && c.File == "") || filepath.Base(c.File) != c.File {
		return c, false, fmt.Errorf("ship: cursor %s: not a valid cursor", path)
	}
	return c, true, nil
}

// writeCursor replaces the cursor file so that a crash leaves the old or the
// new one, never a mix: write a temporary file, fsync, rename, fsync the
// directory.
func writeCursor(path string, c Cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("ship: cursor: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("ship: cursor: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("ship: cursor: fsync directory: %w", err)
		}
	}
	return nil
}
