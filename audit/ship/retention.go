package ship

import (
	"github.com/interlock-ics/interlock/audit"
)

// ShippedSeq returns the seq up to which every shipper whose cursor file is
// named in cursors has delivered the log: the least of their cursors, 0
// when one has none yet (it needs the whole log).
func ShippedSeq(cursors []string) (uint64, error) {
	least := ^uint64(0)
	for _, path := range cursors {
		c, ok, err := ReadCursor(path)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, nil
		}
		least = min(least, c.Seq)
	}
	return least, nil
}

// OldestNeeded returns the oldest file of the log at logPath that a shipper
// (named by its cursor file, Options.CursorPath) has not finished, or ""
// when there are no shippers. Retention may delete a rotated file only when
// it comes before this one in the order of audit.LogFiles; the live file is
// never finished.
//
// A file is finished when every record in it has a seq at or below
// ShippedSeq: the first seq of the file after it tells.
func OldestNeeded(logPath string, cursors []string) (string, error) {
	if len(cursors) == 0 {
		return "", nil
	}
	shipped, err := ShippedSeq(cursors)
	if err != nil {
		return "", err
	}
	files, err := audit.LogFiles(logPath)
	if err != nil {
		return "", err
	}
	for i, f := range files {
		if i == len(files)-1 {
			return f, nil
		}
		next, begun := firstSeq(files[i+1])
		if !begun || next == 0 || next-1 > shipped {
			return f, nil
		}
	}
	return "", nil
}
