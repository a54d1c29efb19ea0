package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// CheckPath says whether Open could continue or create the log at path,
// creating nothing (`interlock check`): a path that is there must be a
// regular file this process can open and append to (nothing is written),
// and for one that is not, the nearest folder above it that is there must
// be one it may create the rest in. The kernel answers for this process's
// user: for root it refuses a folder only on a read-only file system, and
// Open finds out the rest.
func CheckPath(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("audit: %s is not a regular file", path)
	case err == nil:
		if err := appendable(path); err != nil {
			return fmt.Errorf("audit: %s cannot be written: %w", path, err)
		}
		return nil
	case !notThere(err):
		return fmt.Errorf("audit: %w", err)
	}
	for dir := filepath.Dir(path); ; {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("audit: %s cannot be created: %s is not a folder", path, dir)
		case err == nil:
			if err := writable(dir); err != nil {
				return fmt.Errorf("audit: %s cannot be created in %s: %w", path, dir, err)
			}
			return nil
		case !notThere(err):
			return fmt.Errorf("audit: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("audit: %s cannot be created: no folder above it exists", path)
		}
		dir = parent
	}
}

// appendable opens the file as Open does and writes nothing to it: a
// kernel file such as /proc/version opens for root but refuses any write,
// which asking for permission does not find.
func appendable(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(nil)
	return err
}

// notThere: the path does not exist, or a folder on the way to it is a file.
func notThere(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}
