package certs

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// reject copies an untrusted certificate to rejected/certs/<thumbprint>.der
// (refreshing its time when it is there already), then removes the oldest
// files beyond MaxRejected.
func (s *Store) reject(c *x509.Certificate) (string, error) {
	s.rejectMu.Lock()
	defer s.rejectMu.Unlock()
	p := s.Path(RejectedCertsDir, Thumbprint(c.Raw)+".der")
	now := time.Now()
	if err := os.Chtimes(p, now, now); err == nil {
		return p, nil
	}
	if err := writeFileAtomic(p, c.Raw, 0o600); err != nil {
		return "", err
	}
	return p, s.pruneRejected(p)
}

// pruneRejected keeps the newest MaxRejected certificate files of
// rejected/certs, and keep, the one just written.
func (s *Store) pruneRejected(keep string) error {
	limit := s.MaxRejected
	if limit <= 0 {
		limit = DefaultMaxRejected
	}
	dir := s.Path(RejectedCertsDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, file{filepath.Join(dir, e.Name()), fi.ModTime()})
	}
	if len(files) <= limit {
		return nil
	}
	slices.SortFunc(files, func(a, b file) int {
		if a.path == keep {
			return 1
		}
		if b.path == keep {
			return -1
		}
		if c := a.mod.Compare(b.mod); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	var errs []error
	for _, f := range files[:len(files)-limit] {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
