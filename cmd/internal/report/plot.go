package report

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/probe-dev/probe/estimator"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// plainTicks are gonum's default ticks labelled without trailing zeros:
// 250, not 250.00.
type plainTicks struct{}

func (plainTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if l := ts[i].Label; strings.Contains(l, ".") && !strings.ContainsAny(l, "eE") {
			ts[i].Label = strings.TrimRight(strings.TrimRight(l, "0"), ".")
		}
	}
	return ts
}

// CheckPlotPath says, before a measurement, whether its plots can go to
// path: a directory for echo's several plots, else a .png or .svg file.
func CheckPlotPath(path string, dir bool) error {
	ext := strings.ToLower(filepath.Ext(path))
	isFile := ext == ".png" || ext == ".svg"
	switch {
	case path == "":
		return nil
	case dir && isFile:
		return fmt.Errorf("--plot %s: echo draws several plots; give a directory", path)
	case !dir && !isFile:
		return fmt.Errorf("--plot %s: want a .png or .svg file", path)
	}
	return nil
}

// PlotCapacity draws the histogram of the dispersion samples (Phase I, or
// the preliminary trains) and of the Phase II tail rates, with every mode
// marked and the chosen one in red, to a .png or .svg file.
func PlotCapacity(path string, i CapacityInfo, c estimator.Capacity) error {
	ext := strings.ToLower(filepath.Ext(path))
	if ext != ".png" && ext != ".svg" {
		return fmt.Errorf("plot %s: want a .png or .svg file", path)
	}
	if len(c.Hist) == 0 && len(c.Tails) == 0 {
		return fmt.Errorf("plot %s: no samples to draw", path)
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("capacity %s → %s: %.2f Mbit/s (%s)", i.From, i.To, mbit(c.Estimate), c.Verdict)
	p.X.Label.Text = "rate, Mbit/s at the IP layer"
	p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
	p.Y.Label.Text = "samples"

	grid := gridFor(mbit(c.BinWidth), c.Hist, c.Tails)
	add := func(samples []float64, name string, fill color.Color) {
		if len(samples) == 0 {
			return
		}
		h := &plotter.Histogram{Bins: grid.count(samples), Width: grid.width, FillColor: fill}
		p.Add(h)
		p.Legend.Add(name, h)
	}
	add(c.Hist, fmt.Sprintf("short trains (Phase I, or preliminary), bins of %.3g Mbit/s", grid.width), color.NRGBA{70, 110, 200, 180})
	add(c.Tails, "long trains, tail rate (Phase II)", color.NRGBA{120, 190, 90, 180})
	// A bin's room on either side, so that the outer bars show their edges.
	p.X.Min, p.X.Max = grid.start-grid.width, grid.start+float64(grid.n+1)*grid.width
	// The bars' top is raised so that the legend, in the upper left,
	// stays above them; the lines end at the bars' top, below it.
	p.Y.Min = 0
	barTop := max(p.Y.Max, 1)
	p.Y.Max *= legendRoom
	for k, m := range c.Modes {
		if k == c.Chosen && math.Abs(m.Value-c.Estimate) < c.BinWidth/2 {
			continue // the estimate's line below marks it
		}
		if err := vline(p, barTop, mbit(m.Value), color.Gray{120}, fmt.Sprintf("mode %.2f", mbit(m.Value)), true); err != nil {
			return err
		}
	}
	if err := vline(p, barTop, mbit(c.Estimate), color.RGBA{220, 30, 30, 255}, fmt.Sprintf("estimate %.2f Mbit/s", mbit(c.Estimate)), false); err != nil {
		return err
	}
	if c.Sustained > 0 {
		if err := vline(p, barTop, mbit(c.Sustained), color.RGBA{20, 140, 20, 255}, fmt.Sprintf("sustained %.2f Mbit/s", mbit(c.Sustained)), true); err != nil {
			return err
		}
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// binGrid is the bins the capacity histogram is drawn in: the estimator's
// width, aligned to its multiples, or a tenth of the samples' span where
// that is narrower, so that an easy path's samples, all in one or two of
// the estimator's bins, still show their shape rather than one block. At
// most maxPlotBins bins span the samples, whatever width was asked for
// (--bin-width, or a dump's).
type binGrid struct {
	start, width float64 // Mbit/s
	n            int
}

const maxPlotBins = 2000

func gridFor(width float64, sets ...[]float64) binGrid {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range sets {
		if len(s) > 0 { // sorted, in bit/s
			lo, hi = min(lo, mbit(s[0])), max(hi, mbit(s[len(s)-1]))
		}
	}
	if span := hi - lo; span > 0 && (width <= 0 || span/width < 10) {
		width = span / 10
	} else if span/width > maxPlotBins {
		width = span / maxPlotBins
	}
	if width <= 0 {
		width = max(math.Abs(lo)/100, 0.001) // every sample at one rate
	}
	start := math.Floor(lo/width) * width
	return binGrid{start: start, width: width, n: int(math.Floor((hi-start)/width)) + 1}
}

// count bins samples (bit/s) on the grid.
func (g binGrid) count(samples []float64) []plotter.HistogramBin {
	bins := make([]plotter.HistogramBin, g.n)
	for k := range bins {
		bins[k].Min = g.start + float64(k)*g.width
		bins[k].Max = bins[k].Min + g.width
	}
	for _, s := range samples {
		k := min(max(int((mbit(s)-g.start)/g.width), 0), g.n-1)
		bins[k].Weight++
	}
	return bins
}

// vline marks x with a vertical line from 0 to top, dashed or solid.
func vline(p *plot.Plot, top, x float64, clr color.Color, label string, dashed bool) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
	if err != nil {
		return err
	}
	l.Color = clr
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	}
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// PlotEcho draws into dir: rate.png and rate.svg, the rate replies arrived
// at against the swept variable (the wait between probes, or the payload
// size when only sizes were swept), a line per value of the other;
// rtt-cdf.png and rtt-cdf.svg, the CDF of the kernel RTT on a log axis, a
// line per measurement (at most twelve: the first ones).
func PlotEcho(dir string, info EchoInfo, points []EchoMeasurement, rows []echoRow) error {
	if err := CheckPlotPath(dir, true); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	sizes, waits := map[int]bool{}, map[time.Duration]bool{}
	for _, r := range rows {
		sizes[r.Point.Size], waits[r.Point.Wait] = true, true
	}
	bySize := len(waits) == 1 && len(sizes) > 1 // a size sweep: sizes on x
	rate := plot.New()
	rate.Title.Text = fmt.Sprintf("echo to %s: rate the replies arrived at, at the client", info.Agent)
	rate.Title.TextStyle.Font.Size = vg.Points(10)
	rate.Y.Label.Text = "received, Mbit/s of UDP payload"
	rate.X.Label.Text = "wait between probes, µs"
	if bySize {
		rate.X.Label.Text = "UDP payload per probe, bytes"
	}
	lines := map[string]plotter.XYs{}
	var names []string
	for _, r := range rows {
		if r.Stats.RecvRate <= 0 {
			continue
		}
		name, x := fmt.Sprintf("%d B", r.Point.Size), usf(r.Point.Wait)
		if bySize {
			name, x = fmt.Sprintf("wait %s µs", us(r.Point.Wait)), float64(r.Point.Size)
		}
		if _, ok := lines[name]; !ok {
			names = append(names, name)
		}
		lines[name] = append(lines[name], plotter.XY{X: x, Y: r.Stats.RecvRate / 1e6})
	}
	for k, name := range names {
		pts := lines[name]
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		l, sc, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.Color, sc.Color = plotutil.Color(k), plotutil.Color(k)
		rate.Add(l, sc)
		rate.Legend.Add(name, l, sc)
	}
	rate.Y.Min = 0
	rate.Y.Max *= legendRoom
	rate.Legend.Top = true
	rate.X.Tick.Marker, rate.Y.Tick.Marker = plainTicks{}, plainTicks{}

	cdf := plot.New()
	cdf.Title.Text = fmt.Sprintf("echo to %s: RTT (%s timestamps, agent turnaround subtracted)", info.Agent, rows[0].Stats.Kernel.Source())
	cdf.Title.TextStyle.Font.Size = vg.Points(10)
	cdf.X.Label.Text = "RTT, µs (log scale)"
	cdf.Y.Label.Text = "fraction of replies"
	cdf.X.Scale, cdf.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	drawn := 0
	for k, r := range rows {
		if k == 12 {
			break
		}
		rtts := r.Stats.KernelRTTs(points[k].Records)
		var pts plotter.XYs
		for i, d := range rtts {
			if d > 0 { // a log axis has no place for 0
				pts = append(pts, plotter.XY{X: usf(d), Y: float64(i+1) / float64(len(rtts))})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.Color = plotutil.Color(k)
		cdf.Add(l)
		cdf.Legend.Add(fmt.Sprintf("%d B, wait %s µs, n=%d", r.Point.Size, us(r.Point.Wait), len(rtts)), l)
		drawn++
	}
	// The legend goes above the curves, which all end at 1, in its own
	// band at the top left.
	cdf.Y.Min, cdf.Y.Max = 0, 1+0.075*float64(drawn+1)
	cdf.Y.Tick.Marker = plot.ConstantTicks([]plot.Tick{{Value: 0, Label: "0"}, {Value: 0.25}, {Value: 0.5, Label: "0.5"}, {Value: 0.75}, {Value: 1, Label: "1"}})
	cdf.Legend.Top, cdf.Legend.Left = true, true
	cdf.Legend.TextStyle.Font.Size = vg.Points(8)
	outs := []struct {
		p    *plot.Plot
		name string
	}{{rate, "rate"}}
	if drawn > 0 {
		outs = append(outs, struct {
			p    *plot.Plot
			name string
		}{cdf, "rtt-cdf"})
	}
	for _, out := range outs {
		for _, ext := range []string{".png", ".svg"} {
			if err := out.p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, out.name+ext)); err != nil {
				return fmt.Errorf("plot: %w", err)
			}
		}
	}
	return nil
}

// saveStacked draws plots one above the other, aligned on a shared x axis,
// to a .png or .svg file.
func saveStacked(path string, plots []*plot.Plot) error {
	rows := make([][]*plot.Plot, len(plots))
	for i, p := range plots {
		rows[i] = []*plot.Plot{p}
	}
	return saveGrid(path, rows, 16*vg.Centimeter, 18*vg.Centimeter)
}

// saveGrid draws a grid of plots (nil cells stay empty), aligned, to a .png
// or .svg file.
func saveGrid(path string, plots [][]*plot.Plot, width, height vg.Length) error {
	var c draw.Canvas
	var out io.WriterTo
	switch {
	case strings.HasSuffix(strings.ToLower(path), ".png"):
		img := vgimg.New(width, height)
		c, out = draw.New(img), vgimg.PngCanvas{Canvas: img}
	case strings.HasSuffix(strings.ToLower(path), ".svg"):
		svg := vgsvg.New(width, height)
		c, out = draw.New(svg), svg
	default:
		return fmt.Errorf("plot %s: want a .png or .svg file", path)
	}
	cols := 0
	for _, r := range plots {
		cols = max(cols, len(r))
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: cols, PadX: vg.Millimeter * 3, PadY: vg.Millimeter * 3}
	canvases := plot.Align(plots, tiles, c)
	for i, r := range plots {
		for j, p := range r {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	if err := saveTo(path, out); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// saveTo writes a canvas (PNG or SVG) to a file.
func saveTo(path string, w io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
