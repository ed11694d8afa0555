package monitor

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Scale is a graph's time span.
type Scale uint8

// Scales.
const (
	Hour Scale = iota
	Day
	Week
	Month
	numScales
)

var scaleNames = [numScales]string{"hour", "day", "week", "month"}
var scaleSpans = [numScales]time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}

func (s Scale) String() string {
	if s < numScales {
		return scaleNames[s]
	}
	return fmt.Sprintf("scale(%d)", uint8(s))
}

// Span is how far back the scale reaches.
func (s Scale) Span() time.Duration { return scaleSpans[s] }

// ParseScale reads a scale's name.
func ParseScale(s string) (Scale, error) {
	for i, n := range scaleNames {
		if n == s {
			return Scale(i), nil
		}
	}
	return 0, fmt.Errorf("unknown scale %q: want hour, day, week or month", s)
}

// maxGraphPoints is about as many points as a graph's width shows apart; a
// scale takes the finest aggregation period that stays under it.
const maxGraphPoints = 1000

// Series is one line of a graph: an instance's characteristic.
type Series struct {
	Instance string    `json:"instance"`
	Char     string    `json:"characteristic"`
	T        []int64   `json:"t"` // Unix seconds
	V        []float64 `json:"v"` // base units
	Cut      int       `json:"cut"`
	// Source says where the points come from: "raw" or an aggregation
	// period ("5m0s").
	Source string `json:"source"`
}

// query reads the points of a series on scale s up to now: raw values for
// the hour, else the means of the finest aggregation period that gives at
// most maxGraphPoints points.
func (a *Archive) query(ctx context.Context, t TestType, inst, char string, s Scale, now time.Time) (Series, error) {
	from := now.Add(-s.Span())
	out := Series{Instance: inst, Char: char}
	var pts []Point
	var err error
	if s == Hour {
		out.Source = "raw"
		pts, err = a.Raw(ctx, inst, char, from, now)
	} else {
		periods := a.periods[t]
		p := periods[len(periods)-1]
		for _, q := range periods {
			if s.Span()/q <= maxGraphPoints {
				p = q
				break
			}
		}
		out.Source = p.String()
		// A bucket that started before from still holds values after it.
		pts, err = a.Aggregated(ctx, inst, char, p, from.Add(-p+1), now)
	}
	if err != nil {
		return out, err
	}
	for _, p := range pts {
		out.T = append(out.T, p.T.Unix())
		out.V = append(out.V, p.Value)
	}
	return out, nil
}

// cutAbove95 leaves out the points above the series' 95th percentile (by
// nearest rank), which lets the rest of a spiky series fill the graph.
func (s *Series) cutAbove95() {
	if len(s.V) == 0 {
		return
	}
	sorted := slices.Clone(s.V)
	slices.Sort(sorted)
	p95 := nearestRank(sorted, 95)
	t, v := s.T[:0:0], s.V[:0:0]
	for i := range s.V {
		if s.V[i] <= p95 {
			t, v = append(t, s.T[i]), append(v, s.V[i])
		}
	}
	s.Cut = len(s.V) - len(v)
	s.T, s.V = t, v
}

// display picks a readable unit for values of unit u up to top: the factor
// to divide by and its name.
func display(u Unit, top float64) (float64, string) {
	switch u {
	case Seconds:
		switch {
		case top < 1e-3:
			return 1e-6, "µs"
		case top < 1:
			return 1e-3, "ms"
		}
		return 1, "s"
	case BitsPerSecond:
		switch {
		case top >= 1e9:
			return 1e9, "Gbit/s"
		case top >= 1e6:
			return 1e6, "Mbit/s"
		case top >= 1e3:
			return 1e3, "kbit/s"
		}
		return 1, "bit/s"
	case Ratio:
		return 0.01, "%"
	}
	return 1, ""
}

// palette tells up to ten lines apart, colour-blind friendly (Tableau 10).
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
}

// dashes tell a characteristic's lines from another's of the same instance.
var dashes = [][]vg.Length{nil, {vg.Points(6), vg.Points(3)}, {vg.Points(2), vg.Points(2)}, {vg.Points(8), vg.Points(2), vg.Points(2), vg.Points(2)}}

// legendItem is how a series is drawn, for the legend the page writes in
// HTML beside the graph (inside the plot it would cover lines).
type legendItem struct {
	Color, Dash, Name, Note string
}

// renderSVG draws series of one unit over [from, to] as an SVG of w×h
// points: a colour per instance, a dash per characteristic.
func renderSVG(series []Series, u Unit, from, to time.Time, w, h vg.Length, title string) ([]byte, []legendItem, error) {
	top := 0.0
	for _, s := range series {
		for _, v := range s.V {
			top = max(top, math.Abs(v))
		}
	}
	div, unitName := display(u, top)
	p := plot.New()
	for _, f := range []*font.Font{&p.Title.TextStyle.Font, &p.X.Label.TextStyle.Font, &p.Y.Label.TextStyle.Font,
		&p.X.Tick.Label.Font, &p.Y.Tick.Label.Font} {
		f.Variant = "Sans"
	}
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.Y.Label.Text = unitName
	p.Y.Min = 0
	p.X.Min, p.X.Max = float64(from.Unix()), float64(to.Unix())
	p.X.Tick.Marker = timeTicks(to.Sub(from))
	p.Y.Tick.Marker = plainTicks{}
	p.Add(plotter.NewGrid())
	insts, chars := []string{}, []string{}
	for _, s := range series {
		if !slices.Contains(insts, s.Instance) {
			insts = append(insts, s.Instance)
		}
		if !slices.Contains(chars, s.Char) {
			chars = append(chars, s.Char)
		}
	}
	var legend []legendItem
	for _, s := range series {
		xy := make(plotter.XYs, len(s.V))
		for i := range s.V {
			xy[i].X, xy[i].Y = float64(s.T[i]), s.V[i]/div
		}
		ci, di := slices.Index(insts, s.Instance), slices.Index(chars, s.Char)
		style := draw.LineStyle{Color: palette[ci%len(palette)], Width: vg.Points(1.5), Dashes: dashes[di%len(dashes)]}
		item := legendItem{Color: fmt.Sprintf("#%02x%02x%02x", style.Color.(color.RGBA).R, style.Color.(color.RGBA).G, style.Color.(color.RGBA).B),
			Name: s.Instance + " " + s.Char}
		var dash []string
		for _, d := range style.Dashes {
			dash = append(dash, fmt.Sprint(float64(d)))
		}
		item.Dash = strings.Join(dash, " ")
		switch {
		case len(xy) == 0:
			item.Note = "no data"
		case s.Cut > 0:
			item.Note = fmt.Sprintf("%d above p95 left out", s.Cut)
		}
		legend = append(legend, item)
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, nil, err
		}
		l.LineStyle = style
		p.Add(l)
		if len(xy) <= 120 {
			// Few points: mark each, so a lone one shows.
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return nil, nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: style.Color, Radius: vg.Points(1.8), Shape: draw.CircleGlyph{}}
			p.Add(sc)
		}
	}
	if top == 0 {
		p.Y.Max = 1
	}
	c := vgsvg.New(w, h)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, nil, err
	}
	// Inline in HTML: no XML prolog.
	svg := b.Bytes()
	if i := bytes.Index(svg, []byte("<svg")); i > 0 {
		svg = svg[i:]
	}
	return svg, legend, nil
}

// plainTicks are gonum's ticks labelled without trailing zeros (25, not
// 25.00).
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 6, 64)
		}
	}
	return ticks
}

// timeTicks marks round local times: every 10 minutes of an hour, 3 hours
// of a day, each day of a week, every 4th day of a month.
func timeTicks(span time.Duration) plot.Ticker {
	step, format := 4*24*time.Hour, "Jan 2"
	switch {
	case span <= 2*time.Hour:
		step, format = 10*time.Minute, "15:04"
	case span <= 36*time.Hour:
		step, format = 3*time.Hour, "15:04"
	case span <= 8*24*time.Hour:
		step, format = 24*time.Hour, "Mon Jan 2"
	}
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		t0 := time.Unix(int64(lo), 0).Local()
		day := time.Date(t0.Year(), t0.Month(), t0.Day(), 0, 0, 0, 0, time.Local)
		var ticks []plot.Tick
		for t := day; float64(t.Unix()) <= hi && len(ticks) < 100; {
			if float64(t.Unix()) >= lo {
				ticks = append(ticks, plot.Tick{Value: float64(t.Unix()), Label: t.Format(format)})
			}
			if step >= 24*time.Hour {
				t = t.AddDate(0, 0, int(step/(24*time.Hour)))
			} else {
				t = t.Add(step)
			}
		}
		return ticks
	})
}
