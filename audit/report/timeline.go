package report

import "time"

// bucketWidths are the widths a timeline can have; each divides the next,
// so buckets merge exactly when the timeline widens.
var bucketWidths = []time.Duration{
	10 * time.Millisecond, 100 * time.Millisecond, time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute,
	time.Hour, 6 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 28 * 24 * time.Hour, 364 * 24 * time.Hour,
}

// maxBuckets bounds a timeline while the log is read; it widens its buckets
// rather than grow past this.
const maxBuckets = 4096

// Classes of a call in the timeline: stacked in this order.
const (
	classAllowed = iota // allowed, no alert
	classAlerted        // allowed with an alert
	classDenied         // denied (whatever the alert)
	numClasses
)

// timeline counts calls per time bucket and class. Buckets are aligned to
// multiples of their width since the Unix epoch, in UTC.
type timeline struct {
	width  int // index into bucketWidths
	base   int64
	counts [][numClasses]int64
}

func (tl *timeline) w() int64 { return int64(bucketWidths[tl.width]) }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (tl *timeline) add(t time.Time, class int) {
	ns := t.UnixNano()
	if tl.counts == nil {
		tl.base = floorDiv(ns, tl.w()) * tl.w()
	}
	for {
		idx := floorDiv(ns-tl.base, tl.w())
		switch {
		case idx >= 0 && idx < int64(len(tl.counts)):
			tl.counts[idx][class]++
			return
		case idx >= 0 && idx < maxBuckets:
			for int64(len(tl.counts)) <= idx {
				tl.counts = append(tl.counts, [numClasses]int64{})
			}
			tl.counts[idx][class]++
			return
		case idx < 0 && int64(len(tl.counts))-idx <= maxBuckets:
			grown := make([][numClasses]int64, int64(len(tl.counts))-idx)
			copy(grown[-idx:], tl.counts)
			tl.counts, tl.base = grown, tl.base+idx*tl.w()
			tl.counts[0][class]++
			return
		}
		if !tl.widen() {
			// The widest buckets cannot hold the span either: clamp.
			if idx < 0 {
				tl.counts[0][class]++
			} else {
				tl.counts[len(tl.counts)-1][class]++
			}
			return
		}
	}
}

// widen merges the buckets into the next wider width.
func (tl *timeline) widen() bool {
	if tl.width+1 >= len(bucketWidths) {
		return false
	}
	old, oldBase, oldW := tl.counts, tl.base, tl.w()
	tl.width++
	tl.base = floorDiv(oldBase, tl.w()) * tl.w()
	tl.counts = nil
	for i, c := range old {
		idx := floorDiv(oldBase+int64(i)*oldW-tl.base, tl.w())
		for int64(len(tl.counts)) <= idx {
			tl.counts = append(tl.counts, [numClasses]int64{})
		}
		for k := range c {
			tl.counts[idx][k] += c[k]
		}
	}
	return true
}

// bucket is one bar of the calls-over-time chart.
type bucket struct {
	Start, End time.Time
	Counts     [numClasses]int64
}

func (b bucket) Total() int64 { return b.Counts[0] + b.Counts[1] + b.Counts[2] }

// view returns the buckets covering [from, to), widened until there are at
// most maxBars; from and to are rounded out to the bucket width.
func (tl *timeline) view(from, to time.Time, maxBars int) ([]bucket, time.Duration) {
	t := *tl
	t.counts = append([][numClasses]int64(nil), tl.counts...)
	if from.IsZero() || !to.After(from) {
		return nil, 0
	}
	for {
		w := t.w()
		start := floorDiv(from.UnixNano(), w) * w
		end := floorDiv(to.UnixNano()-1, w)*w + w
		n := (end - start) / w
		if n <= int64(maxBars) || !t.widen() {
			if n > int64(maxBars) {
				n = int64(maxBars)
			}
			out := make([]bucket, n)
			for i := range out {
				s := start + int64(i)*w
				out[i] = bucket{Start: time.Unix(0, s).UTC(), End: time.Unix(0, s+w).UTC()}
			}
			for i, c := range t.counts {
				idx := (t.base + int64(i)*w - start) / w
				if t.base+int64(i)*w < start || idx >= n {
					continue
				}
				for k := range c {
					out[idx].Counts[k] += c[k]
				}
			}
			return out, time.Duration(w)
		}
	}
}
