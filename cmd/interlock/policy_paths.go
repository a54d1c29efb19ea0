package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// pathKind is what a command reads at a path it is given.
type pathKind int

const (
	aFile      pathKind = iota
	aDirectory          // a policy directory
	aPolicy             // a policy directory, bundle file or bundle URL
)

// checkPath says plainly, naming the command and the flag (none for an
// argument), when a path a command was given does not exist or is not what
// it reads.
func checkPath(cmd, flag, p string, kind pathKind) error {
	what := p
	if flag != "" {
		what = flag + " " + p
	}
	if kind == aPolicy && (strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://")) {
		return nil
	}
	fi, err := os.Stat(p)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist) && kind == aFile:
		return fmt.Errorf("%s: %s: no such file", cmd, what)
	case errors.Is(err, fs.ErrNotExist) && kind == aDirectory:
		return fmt.Errorf("%s: %s: no such directory", cmd, what)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %s: no such directory or bundle file", cmd, what)
	case errors.As(err, &pe):
		return fmt.Errorf("%s: %s: %v", cmd, what, pe.Err)
	case err != nil:
		return fmt.Errorf("%s: %s: %v", cmd, what, err)
	case kind == aFile && fi.IsDir():
		return fmt.Errorf("%s: %s: a directory, not a file", cmd, what)
	case kind == aDirectory && !fi.IsDir():
		return fmt.Errorf("%s: %s: not a directory", cmd, what)
	}
	return nil
}
