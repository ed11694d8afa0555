package report

import (
	"errors"
	"fmt"
	"image/color"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// loadSeries reads the series.json of a scenario's first iteration; ok is
// false if there is none.
func loadSeries(s *Scenario) (IterationSeries, bool, error) {
	var out IterationSeries
	path := filepath.Join(s.Dirs[0], SeriesFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return out, false, nil
	}
	if err := readJSON(path, &out); err != nil {
		return out, false, err
	}
	return out, true, nil
}

// legendRoom raises a plot's top so that a legend in its upper corner
// sits above the data, not on it.
const legendRoom = 1.45

var (
	colorA = color.NRGBA{50, 100, 200, 255}
	colorB = color.NRGBA{230, 120, 20, 255}
)

// PlotCompare draws into dir, each as .png and .svg: bars-<role>, a panel
// per metric with A's and B's mean and ±1 std error bars; and from the
// series.json of each scenario's first iteration cpu (CPU % over time),
// memory (RSS over time) and network (each interface's rx and tx rate
// over time, seen by each role's first process). The time plots are
// skipped, and the reason returned, when a scenario has no series.json.
func PlotCompare(dir string, a, b *Scenario, cs []Comparison, o ScenarioOptions) (skipped []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	byRole := map[string][]Comparison{}
	for _, c := range cs {
		byRole[c.Role] = append(byRole[c.Role], c)
	}
	for _, role := range sortedKeys(byRole, roleLess) {
		if err := plotBars(filepath.Join(dir, "bars-"+role), role, a.Label, b.Label, byRole[role]); err != nil {
			return nil, err
		}
	}
	sa, okA, err := loadSeries(a)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	sb, okB, err := loadSeries(b)
	if err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	if !okA || !okB {
		return []string{fmt.Sprintf("no %s in %s or %s: no plots over time", SeriesFile, a.Dirs[0], b.Dirs[0])}, nil
	}
	return nil, plotSeries(dir, a.Label, b.Label, sa, sb, o.Loopback)
}

// PlotReport draws one scenario's bars with error bars, a panel per metric,
// into dir as bars-<role>.png and .svg.
func PlotReport(dir string, s *Scenario, stats []RoleStats) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for _, r := range stats {
		cs := make([]Comparison, len(r.Metrics))
		for i, m := range r.Metrics {
			cs[i] = Comparison{Role: r.Role, Metric: m.Metric, A: m.Stat}
		}
		if err := plotBars(filepath.Join(dir, "bars-"+r.Role), r.Role, s.Label, "", cs); err != nil {
			return err
		}
	}
	return nil
}

// errPoints are bar tops with their error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

func plotBars(base, role, nameA, nameB string, all []Comparison) error {
	// A metric that is zero in every iteration of both sets (on-CPU time
	// without eBPF, an idle interface) would be an empty panel.
	var cs []Comparison
	for _, c := range all {
		if denoise(c.A.Mean) != 0 || denoise(c.A.Std) != 0 || denoise(c.B.Mean) != 0 || denoise(c.B.Std) != 0 {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	const cols = 4
	rows := (len(cs) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for k, c := range cs {
		p := plot.New()
		p.Title.Text = c.Name
		p.Title.TextStyle.Font.Size = vg.Points(9)
		p.Y.Label.Text = c.Unit
		p.Y.Min = 0
		p.Y.Tick.Marker = plainTicks{}
		for i, s := range []struct {
			st  estimator.Stat
			clr color.Color
		}{{c.A, colorA}, {c.B, colorB}} {
			if s.st.N == 0 {
				continue
			}
			bar, err := plotter.NewBarChart(plotter.Values{s.st.Mean}, vg.Points(22))
			if err != nil {
				return fmt.Errorf("plot %s: %w", base, err)
			}
			bar.Color, bar.LineStyle.Width, bar.XMin = s.clr, 0, float64(i)
			p.Add(bar)
			eb, err := plotter.NewYErrorBars(errPoints{plotter.XYs{{X: float64(i), Y: s.st.Mean}}, plotter.YErrors{{Low: s.st.Std, High: s.st.Std}}})
			if err != nil {
				return fmt.Errorf("plot %s: %w", base, err)
			}
			p.Add(eb)
		}
		if nameB == "" { // one scenario: probe report
			p.NominalX(tickName("", nameA))
			p.X.Min, p.X.Max = -0.7, 0.7
		} else {
			p.NominalX(tickName("A", nameA), tickName("B", nameB))
			p.X.Min, p.X.Max = -0.7, 1.7
		}
		plots[k/cols][k%cols] = p
	}
	return savePanels(base, plots, 24*vg.Centimeter, vg.Length(rows)*5*vg.Centimeter)
}

// tickName labels a bar: the set's letter, and its label (the pattern or
// folder given) cut to what fits under a bar.
func tickName(letter, name string) string {
	const fits = 16
	name = filepath.Base(strings.TrimRight(strings.TrimSuffix(strings.TrimSuffix(name, "*"), "_iter"), "/"))
	if len([]rune(name)) > fits {
		name = string([]rune(name)[:fits-1]) + "…"
	}
	switch {
	case letter == "":
		return name
	case name == "" || name == letter:
		return letter
	}
	return letter + ": " + name
}

// plotSeries draws cpu, memory and network over time.
func plotSeries(dir, nameA, nameB string, sa, sb IterationSeries, loopback bool) error {
	type proc struct {
		ProcessSeries
		scen string
		clr  color.Color
	}
	byRole := map[string][]proc{}
	for _, x := range []struct {
		s    IterationSeries
		name string
		clr  color.Color
	}{{sa, tickName("A", nameA), colorA}, {sb, tickName("B", nameB), colorB}} {
		for _, p := range x.s.Processes {
			byRole[p.Role] = append(byRole[p.Role], proc{p, x.name, x.clr})
		}
	}
	roles := sortedKeys(byRole, roleLess)
	figures := []struct {
		name, ylabel string
		points       func(dump.ResourceSeries) plotter.XYs
	}{
		{"cpu", "CPU, % of one core", cpuOverTime},
		{"memory", "RSS, MiB", rssOverTime},
	}
	for _, f := range figures {
		plots := make([][]*plot.Plot, len(roles))
		for i, role := range roles {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s: %s of each process, first iteration", role, f.name)
			p.X.Label.Text, p.Y.Label.Text = "time, s", f.ylabel
			p.Y.Min = 0
			legend := map[string]bool{}
			for _, pr := range byRole[role] {
				pts := f.points(pr.Series)
				if len(pts) == 0 {
					continue
				}
				l, err := plotter.NewLine(pts)
				if err != nil {
					return fmt.Errorf("plot %s: %w", f.name, err)
				}
				l.Color = pr.clr
				p.Add(l)
				if !legend[pr.scen] {
					legend[pr.scen] = true
					p.Legend.Add(pr.scen, l)
				}
			}
			p.Legend.Top = true
			p.Y.Max *= legendRoom
			plots[i] = []*plot.Plot{p}
		}
		if err := savePanels(filepath.Join(dir, f.name), plots, 16*vg.Centimeter, vg.Length(len(roles))*8*vg.Centimeter); err != nil {
			return err
		}
	}

	plots := make([][]*plot.Plot, len(roles))
	for i, role := range roles {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: interface rates, first process, first iteration", role)
		p.X.Label.Text, p.Y.Label.Text = "time, s", "Mbit/s"
		p.Y.Min = 0
		done := map[string]bool{}
		k := 0
		ifColor := map[string]int{}
		for _, pr := range byRole[role] {
			if done[pr.scen] {
				continue // the first process of the role in each scenario
			}
			done[pr.scen] = true
			for _, name := range sortedKeys(netNames(pr.Series), func(a, b string) bool { return a < b }) {
				if name == "lo" && !loopback {
					continue
				}
				for _, dir := range []string{"rx", "tx"} {
					pts := netOverTime(pr.Series, name, dir == "rx")
					if len(pts) == 0 {
						continue
					}
					l, err := plotter.NewLine(pts)
					if err != nil {
						return fmt.Errorf("plot network: %w", err)
					}
					id := name + " " + dir
					if _, ok := ifColor[id]; !ok {
						ifColor[id] = k
						k++
					}
					l.Color = plotutil.Color(ifColor[id])
					if pr.clr == colorB {
						l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
					}
					p.Add(l)
					p.Legend.Add(fmt.Sprintf("%s: %s", pr.scen[:1], id), l)
				}
			}
		}
		p.Legend.Top = true
		p.Y.Max *= legendRoom
		plots[i] = []*plot.Plot{p}
	}
	return savePanels(filepath.Join(dir, "network"), plots, 16*vg.Centimeter, vg.Length(len(roles))*8*vg.Centimeter)
}

// cpuOverTime is the CPU % in each interval between samples, at its end:
// from the eBPF on-CPU time where the series has it (exact to the
// switch), else from /proc's user and system time, which moves in whole
// ticks (at 100 Hz and a 100 ms sample, in steps of 10 %).
func cpuOverTime(s dump.ResourceSeries) plotter.XYs {
	ebpf := len(s.Samples) > 0 && s.Samples[len(s.Samples)-1].OnCPU > 0
	var pts plotter.XYs
	for i := 1; i < len(s.Samples); i++ {
		a, b := s.Samples[i-1], s.Samples[i]
		dt := b.T - a.T
		if dt <= 0 {
			continue
		}
		cpu := b.User + b.System - a.User - a.System
		if ebpf {
			cpu = b.OnCPU - a.OnCPU
		}
		cpu = max(cpu, 0)
		pts = append(pts, plotter.XY{X: (b.T - s.Samples[0].T).Seconds(), Y: 100 * float64(cpu) / float64(dt)})
	}
	return pts
}

func rssOverTime(s dump.ResourceSeries) plotter.XYs {
	pts := make(plotter.XYs, 0, len(s.Samples))
	for _, x := range s.Samples {
		pts = append(pts, plotter.XY{X: (x.T - s.Samples[0].T).Seconds(), Y: mib(x.RSS)})
	}
	return pts
}

func netNames(s dump.ResourceSeries) map[string]bool {
	m := map[string]bool{}
	for _, x := range s.Samples {
		for name := range x.Net {
			m[name] = true
		}
	}
	return m
}

// netOverTime is an interface's rate in Mbit/s in each interval between
// samples that both have it.
func netOverTime(s dump.ResourceSeries, name string, rx bool) plotter.XYs {
	var pts plotter.XYs
	for i := 1; i < len(s.Samples); i++ {
		a, okA := s.Samples[i-1].Net[name]
		b, okB := s.Samples[i].Net[name]
		dt := s.Samples[i].T - s.Samples[i-1].T
		if !okA || !okB || dt <= 0 {
			continue
		}
		b0, b1 := a.TxBytes, b.TxBytes
		if rx {
			b0, b1 = a.RxBytes, b.RxBytes
		}
		var d uint64
		if b1 >= b0 {
			d = b1 - b0
		}
		pts = append(pts, plotter.XY{X: (s.Samples[i].T - s.Samples[0].T).Seconds(), Y: mbit(8 * float64(d) / dt.Seconds())})
	}
	return pts
}

// savePanels draws a grid of plots (nil cells stay empty) to base+".png"
// and base+".svg".
func savePanels(base string, plots [][]*plot.Plot, width, height vg.Length) error {
	for _, ext := range []string{".png", ".svg"} {
		if err := saveGrid(base+ext, plots, width, height); err != nil {
			return err
		}
	}
	return nil
}
