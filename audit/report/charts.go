package report

import (
	"fmt"
	"math"
	"time"
)

// Charts are drawn here as geometry and rendered as inline SVG by the
// template, so every label goes through the same HTML escaping as the
// tables.

// Class names and colours of the decision classes, in stacking order.
var classInfo = [numClasses]struct{ Name, CSS string }{
	{"allowed", "c-allow"},
	{"allowed with alert", "c-alert"},
	{"denied", "c-deny"},
}

type svgRect struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type svgText struct {
	X, Y   float64
	Anchor string
	Text   string
	Class  string
}

type svgLine struct{ X1, Y1, X2, Y2 float64 }

// chart is one SVG: a viewBox and its shapes.
type chart struct {
	W, H  float64
	Label string // aria-label
	Rects []svgRect
	Texts []svgText
	Lines []svgLine
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, and returns it
// with a step for four grid lines.
func niceMax(v int64) (top, step float64) {
	if v <= 0 {
		return 4, 1
	}
	raw := float64(v) / 4
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= raw {
			step = m * p
			break
		}
	}
	if step < 1 {
		step = 1
	}
	return step * 4, step
}

func fmtTick(v float64) string {
	switch {
	case v >= 1e6:
		return trimZero(fmt.Sprintf("%.1fM", v/1e6))
	case v >= 1e4:
		return trimZero(fmt.Sprintf("%.1fk", v/1e3))
	}
	return fmt.Sprintf("%.0f", v)
}

func trimZero(s string) string {
	if len(s) > 3 && s[len(s)-3:len(s)-1] == ".0" {
		return s[:len(s)-3] + s[len(s)-1:]
	}
	return s
}

// timeChart draws calls per bucket, stacked by decision class.
func timeChart(buckets []bucket, width time.Duration) chart {
	const (
		W, H                     = 960.0, 280.0
		left, right, top, bottom = 60.0, 12.0, 12.0, 46.0
	)
	c := chart{W: W, H: H, Label: "Calls over time by decision"}
	plotW, plotH := W-left-right, H-top-bottom
	var peak int64
	for _, b := range buckets {
		peak = max(peak, b.Total())
	}
	ymax, step := niceMax(peak)
	for v := 0.0; v <= ymax+step/2; v += step {
		y := top + plotH - v/ymax*plotH
		c.Lines = append(c.Lines, svgLine{left, y, W - right, y})
		c.Texts = append(c.Texts, svgText{X: left - 6, Y: y + 4, Anchor: "end", Text: fmtTick(v), Class: "tick"})
	}
	if len(buckets) == 0 {
		c.Texts = append(c.Texts, svgText{X: left + plotW/2, Y: top + plotH/2, Anchor: "middle", Text: "no calls in the period", Class: "empty"})
		return c
	}
	bw := plotW / float64(len(buckets))
	gap := math.Min(2, bw*0.15)
	layout := bucketLabel(width)
	labelEvery := int(math.Ceil(float64(len(buckets)) / 8))
	for i, b := range buckets {
		x := left + float64(i)*bw
		y := top + plotH
		title := fmt.Sprintf("%s – %s: %s (%d allowed, %d with alert, %d denied)",
			b.Start.Format("2006-01-02 15:04:05"), b.End.Format("2006-01-02 15:04:05 UTC"),
			plural(b.Total(), "call"), b.Counts[classAllowed], b.Counts[classAlerted], b.Counts[classDenied])
		for k := range numClasses {
			n := b.Counts[k]
			if n == 0 {
				continue
			}
			h := float64(n) / ymax * plotH
			y -= h
			c.Rects = append(c.Rects, svgRect{X: x + gap/2, Y: y, W: bw - gap, H: h, Class: classInfo[k].CSS, Title: title})
		}
		if i%labelEvery == 0 {
			c.Lines = append(c.Lines, svgLine{x, top + plotH, x, top + plotH + 4})
			c.Texts = append(c.Texts, svgText{X: x, Y: top + plotH + 18, Anchor: "start", Text: b.Start.Format(layout), Class: "tick"})
		}
	}
	c.Texts = append(c.Texts, svgText{X: left, Y: H - 6, Anchor: "start",
		Text: "UTC, one bar per " + perWidth(width), Class: "axis"})
	return c
}

func bucketLabel(w time.Duration) string {
	switch {
	case w < time.Second:
		return "15:04:05.000"
	case w < time.Minute:
		return "15:04:05"
	case w < 24*time.Hour:
		return "01-02 15:04"
	}
	return "2006-01-02"
}

// barRow is one bar of a horizontal bar chart.
type barRow struct {
	Label  string
	Counts [numClasses]int64
}

func (b barRow) Total() int64 { return b.Counts[0] + b.Counts[1] + b.Counts[2] }

// barChart draws one stacked horizontal bar per row.
func barChart(label string, rows []barRow) chart {
	const (
		W, rowH, left, right, top = 960.0, 24.0, 230.0, 90.0, 8.0
	)
	c := chart{W: W, H: top*2 + rowH*float64(max(len(rows), 1)), Label: label}
	var peak int64
	for _, r := range rows {
		peak = max(peak, r.Total())
	}
	if len(rows) == 0 {
		c.Texts = append(c.Texts, svgText{X: W / 2, Y: top + 16, Anchor: "middle", Text: "no calls in the period", Class: "empty"})
		return c
	}
	plotW := W - left - right
	for i, r := range rows {
		y := top + float64(i)*rowH
		c.Texts = append(c.Texts, svgText{X: left - 8, Y: y + rowH/2 + 4, Anchor: "end", Text: clip(r.Label, 30), Class: "lbl"})
		x := left
		title := fmt.Sprintf("%s: %d calls (%d allowed, %d with alert, %d denied)",
			r.Label, r.Total(), r.Counts[classAllowed], r.Counts[classAlerted], r.Counts[classDenied])
		for k := range numClasses {
			n := r.Counts[k]
			if n == 0 {
				continue
			}
			w := float64(n) / float64(peak) * plotW
			c.Rects = append(c.Rects, svgRect{X: x, Y: y + 4, W: math.Max(w, 1), H: rowH - 8, Class: classInfo[k].CSS, Title: title})
			x += w
		}
		c.Texts = append(c.Texts, svgText{X: x + 6, Y: y + rowH/2 + 4, Anchor: "start", Text: groupDigits(r.Total()), Class: "tick"})
	}
	return c
}
