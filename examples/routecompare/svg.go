package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

var colors = []string{"#9e9e9e", "#795548", "#ff9800", "#2196f3", "#4caf50", "#e91e63", "#000000"}

// plot writes an SVG line chart of TTFT p90 (log scale) against arrival rate
// (axis label xlabel), one line per policy.
func plot(w io.Writer, title, xlabel string, rates []float64, outs []*outcome) error {
	const (
		width, height          = 760.0, 460.0
		left, right, top, bott = 70.0, 170.0, 40.0, 50.0
	)
	pw, ph := width-left-right, height-top-bott
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, o := range outs {
		for _, st := range o.perStage {
			if v := st.TTFT.P90.Seconds(); v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0.01, 1
	}
	ylo, yhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if yhi == ylo {
		yhi++
	}
	xmin, xmax := rates[0], rates[len(rates)-1]
	if xmax == xmin {
		xmax = xmin + 1
	}
	x := func(r float64) float64 { return left + (r-xmin)/(xmax-xmin)*pw }
	y := func(v float64) float64 { return top + ph - (math.Log10(v)-ylo)/(yhi-ylo)*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" text-anchor="middle">%s</text>`+"\n", left+pw/2, html.EscapeString(title))
	// Axes and grid.
	for e := ylo; e <= yhi; e++ {
		v := math.Pow(10, e)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, y(v), left+pw, y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%gs</text>`+"\n", left-6, y(v)+4, v)
	}
	for _, r := range rates {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x(r), top, x(r), top+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%g</text>`+"\n", x(r), top+ph+18, r)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", left+pw/2, height-12, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">TTFT p90 (log)</text>`+"\n", top+ph/2)
	// Lines and legend.
	for i, o := range outs {
		c := colors[i%len(colors)]
		var pts []string
		for j, st := range o.perStage {
			if v := st.TTFT.P90.Seconds(); v > 0 && j < len(rates) {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(rates[j]), y(v)))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		for _, p := range pts {
			var px, py float64
			fmt.Sscanf(p, "%f,%f", &px, &py)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px, py, c)
		}
		ly := top + 10 + float64(i)*20
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/>`+"\n", left+pw+14, ly, left+pw+38, ly, c)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", left+pw+44, ly+4, html.EscapeString(o.policy))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
