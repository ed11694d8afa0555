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

	"github.com/probe-dev/probe/estimator"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

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
	p.Y.Label.Text = "samples"

	width := mbit(c.BinWidth)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range [][]float64{c.Hist, c.Tails} {
		if len(s) > 0 {
			lo, hi = min(lo, mbit(s[0])), max(hi, mbit(s[len(s)-1]))
		}
	}
	bins := 50
	if width > 0 {
		bins = int(min(max((hi-lo)/width, 1), 2000))
	}
	add := func(samples []float64, name string, fill color.Color) error {
		if len(samples) == 0 {
			return nil
		}
		v := make(plotter.Values, len(samples))
		for k, s := range samples {
			v[k] = mbit(s)
		}
		h, err := plotter.NewHist(v, bins)
		if err != nil {
			return err
		}
		h.FillColor = fill
		h.LineStyle.Width = 0
		p.Add(h)
		p.Legend.Add(name, h)
		return nil
	}
	if err := add(c.Hist, "short trains (Phase I, or preliminary)", color.NRGBA{70, 110, 200, 180}); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	if err := add(c.Tails, "long trains, tail rate (Phase II)", color.NRGBA{120, 190, 90, 180}); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	for k, m := range c.Modes {
		clr, label := color.Color(color.Gray{110}), fmt.Sprintf("mode %.2f", mbit(m.Value))
		if k == c.Chosen {
			clr, label = color.RGBA{220, 30, 30, 255}, fmt.Sprintf("capacity mode %.2f", mbit(m.Value))
		}
		if err := vline(p, mbit(m.Value), clr, label); err != nil {
			return err
		}
	}
	if c.Sustained > 0 {
		if err := vline(p, mbit(c.Sustained), color.RGBA{20, 140, 20, 255}, fmt.Sprintf("sustained %.2f", mbit(c.Sustained))); err != nil {
			return err
		}
	}
	p.Legend.Top = true
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// vline marks x with a vertical dashed line across the plot's height.
func vline(p *plot.Plot, x float64, clr color.Color, label string) error {
	p.Y.Min = 0
	top := p.Y.Max
	if top <= 0 {
		top = 1
	}
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
	if err != nil {
		return err
	}
	l.Color = clr
	l.Width = vg.Points(1.5)
	l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
	p.Add(l)
	p.Legend.Add(label, l)
	return nil
}

// PlotEcho draws into dir: rate.png and rate.svg, the receive data rate
// against the wait between probes, a line per payload size; rtt-cdf.png and
// rtt-cdf.svg, the CDF of the kernel RTT, a line per measurement (at most
// twelve: the first ones).
func PlotEcho(dir string, info EchoInfo, points []EchoMeasurement, rows []echoRow) error {
	if err := CheckPlotPath(dir, true); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	rate := plot.New()
	rate.Title.Text = fmt.Sprintf("echo to %s: receive data rate", info.Agent)
	rate.X.Label.Text = "wait between probes, µs"
	rate.Y.Label.Text = "received, Mbit/s of UDP payload"
	bySize := map[int]plotter.XYs{}
	var sizes []int
	for _, r := range rows {
		if r.Stats.Received == 0 {
			continue
		}
		if _, ok := bySize[r.Point.Size]; !ok {
			sizes = append(sizes, r.Point.Size)
		}
		bySize[r.Point.Size] = append(bySize[r.Point.Size], plotter.XY{X: usf(r.Point.Wait), Y: r.Stats.RecvRate / 1e6})
	}
	for k, size := range sizes {
		pts := bySize[size]
		sort.Slice(pts, func(i, j int) bool { return pts[i].X < pts[j].X })
		l, s, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.Color, s.Color = plotutil.Color(k), plotutil.Color(k)
		rate.Add(l, s)
		rate.Legend.Add(fmt.Sprintf("%d B", size), l, s)
	}
	rate.Legend.Top = true

	cdf := plot.New()
	cdf.Title.Text = fmt.Sprintf("echo to %s: RTT (%s timestamps, agent turnaround subtracted)", info.Agent, rows[0].Stats.Kernel.Source())
	cdf.X.Label.Text = "RTT, µs"
	cdf.Y.Label.Text = "fraction of replies"
	for k, r := range rows {
		if k == 12 {
			break
		}
		rtts := r.Stats.KernelRTTs(points[k].Records)
		if len(rtts) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(rtts))
		for i, d := range rtts {
			pts[i] = plotter.XY{X: usf(d), Y: float64(i+1) / float64(len(rtts))}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		l.Color = plotutil.Color(k)
		cdf.Add(l)
		cdf.Legend.Add(fmt.Sprintf("%d B, wait %s µs", r.Point.Size, us(r.Point.Wait)), l)
	}
	cdf.Legend.Top, cdf.Legend.Left = false, false
	for _, out := range []struct {
		p    *plot.Plot
		name string
	}{{rate, "rate"}, {cdf, "rtt-cdf"}} {
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
