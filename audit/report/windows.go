package report

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/interlock-ics/interlock/policy"
)

// Window is one maintenance window from the policy data, as the quickstart
// and the policy library write them: one-off (start, end) or recurring
// (cron, duration, tz), for some targets, and in the library also for some
// access kinds, users and roles. An absent list, or "*" in it, means any.
type Window struct {
	Name    string   `json:"name"`
	Start   string   `json:"start"`
	End     string   `json:"end"`
	Cron    string   `json:"cron"`
	Dur     string   `json:"duration"`
	TZ      string   `json:"tz"`
	Targets []string `json:"targets"`
	Access  []string `json:"access"`
	Users   []string `json:"users"`
	Roles   []string `json:"roles"`

	// Err is why the window cannot be evaluated (the gateway's policy
	// denies calls that reach a malformed window); it is then never open.
	Err string `json:"-"`
}

func (w *Window) spec() policy.WindowSpec {
	return policy.WindowSpec{Start: w.Start, End: w.End, Cron: w.Cron, Duration: w.Dur, TZ: w.TZ}
}

// When says when the window is open, for the report.
func (w *Window) When() string {
	if w.Cron != "" {
		tz := w.TZ
		if tz == "" {
			tz = "UTC"
		}
		return fmt.Sprintf("cron %q for %s (%s)", w.Cron, w.Dur, tz)
	}
	return w.Start + " to " + w.End
}

// Windows are the maintenance windows the report judges calls by, and
// where they came from.
type Windows struct {
	From string // the policy directory or bundle read
	Key  string // the data path they were found under, such as data.maintenance_windows
	List []Window
}

func anyOf(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, "*") || slices.Contains(list, v)
}

// covers reports whether w applies to a call by user with roles on target
// with access, ignoring time.
func (w *Window) covers(target, access, user string, roles []string) bool {
	if !anyOf(w.Targets, target) || !anyOf(w.Access, access) || !anyOf(w.Users, user) {
		return false
	}
	if len(w.Roles) == 0 || slices.Contains(w.Roles, "*") {
		return true
	}
	for _, r := range roles {
		if slices.Contains(w.Roles, r) {
			return true
		}
	}
	return false
}

// openFor returns the name of a window open at t for the call, or "".
func (ws *Windows) openFor(t time.Time, target, access, user string, roles []string) string {
	for i := range ws.List {
		w := &ws.List[i]
		if w.Err != "" || !w.covers(target, access, user, roles) {
			continue
		}
		if open, err := w.spec().OpenAt(t); err == nil && open {
			return w.Name
		}
	}
	return ""
}

// LoadWindows reads the maintenance windows from a policy directory or
// bundle file (.tar.gz) in OPA layout: every .json and .yaml data file,
// merged under its directory path. It looks for a key named
// maintenance_windows holding a list of windows, or an object with such a
// list under "windows" (the policy library's form). It returns nil and no
// error when the data has no such key.
func LoadWindows(policyPath string) (*Windows, error) {
	data := map[string]any{}
	fi, err := os.Stat(policyPath)
	if err != nil {
		return nil, fmt.Errorf("report: policy data: %w", err)
	}
	if fi.IsDir() {
		err = readDataDir(policyPath, data)
	} else {
		err = readDataBundle(policyPath, data)
	}
	if err != nil {
		return nil, fmt.Errorf("report: policy data in %s: %w", policyPath, err)
	}
	key, raw := findWindows(data, "data")
	if raw == nil {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	ws := &Windows{From: policyPath, Key: key}
	if err := json.Unmarshal(b, &ws.List); err != nil {
		return nil, fmt.Errorf("report: %s in %s is not a list of windows: %w", key, policyPath, err)
	}
	for i := range ws.List {
		w := &ws.List[i]
		if w.Name == "" {
			w.Name = fmt.Sprintf("window %d", i+1)
		}
		// A window that cannot say whether it is open is reported, not guessed.
		if _, err := w.spec().OpenAt(time.Unix(0, 0)); err != nil {
			w.Err = err.Error()
		}
	}
	return ws, nil
}

// findWindows looks for maintenance_windows, breadth first so that the
// shallowest one wins, and returns its data path and its list.
func findWindows(doc map[string]any, at string) (string, any) {
	if v, ok := doc["maintenance_windows"]; ok {
		switch w := v.(type) {
		case []any:
			return at + ".maintenance_windows", w
		case map[string]any:
			if l, ok := w["windows"].([]any); ok {
				return at + ".maintenance_windows.windows", l
			}
		}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if m, ok := doc[k].(map[string]any); ok {
			if p, l := findWindows(m, at+"."+k); l != nil {
				return p, l
			}
		}
	}
	return "", nil
}

func isDataFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	switch path.Ext(name) {
	case ".json", ".yaml", ".yml":
		return true
	}
	return false
}

func readDataDir(dir string, data map[string]any) error {
	return filepath.WalkDir(dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !isDataFile(d.Name()) || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, name)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		return mergeData(data, filepath.ToSlash(rel), b)
	})
}

// maxBundleData bounds what is read of a bundle's data files.
const maxBundleData = 64 << 20

func readDataBundle(file string, data map[string]any) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a directory or a .tar.gz bundle: %w", err)
	}
	tr := tar.NewReader(gz)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if h.Typeflag != tar.TypeReg || !isDataFile(path.Base(name)) || strings.HasPrefix(path.Base(name), ".") {
			continue
		}
		total += h.Size
		if total > maxBundleData {
			return fmt.Errorf("data files larger than %d bytes", maxBundleData)
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxBundleData))
		if err != nil {
			return err
		}
		if err := mergeData(data, name, b); err != nil {
			return err
		}
	}
}

// mergeData merges one data file under its directory path, as OPA does
// (sites/a/data.json becomes data.sites.a).
func mergeData(data map[string]any, rel string, b []byte) error {
	var v any
	var err error
	if path.Ext(rel) == ".json" {
		err = json.Unmarshal(b, &v)
	} else {
		err = yaml.Unmarshal(b, &v)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	v = normalizeYAML(v)
	obj, ok := v.(map[string]any)
	if !ok {
		return nil // not an object: nothing the windows could be under
	}
	node := data
	if dir := path.Dir(rel); dir != "." {
		for _, d := range strings.Split(dir, "/") {
			next, ok := node[d].(map[string]any)
			if !ok {
				next = map[string]any{}
				node[d] = next
			}
			node = next
		}
	}
	for k, v := range obj {
		node[k] = v
	}
	return nil
}

// normalizeYAML turns YAML's map[any]any and friends into JSON shapes.
func normalizeYAML(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeYAML(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = normalizeYAML(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = normalizeYAML(e)
		}
		return t
	}
	return v
}
