package report

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Files the scenario runner writes into every iteration folder.
const (
	SummaryFile = "summary.json"
	SeriesFile  = "series.json"
)

// IterationSummary is an iteration folder's summary.json.
type IterationSummary struct {
	TestName  string           `json:"test_name"`
	Iteration int              `json:"iteration"`
	Processes []ProcessSummary `json:"processes"`
}

// ProcessSummary is one process of an iteration. Role is "server" or
// "client"; Summary is encoded by encoding/json as is (Go field names,
// durations in nanoseconds).
type ProcessSummary struct {
	Role    string                    `json:"role"`
	Host    string                    `json:"host"`
	Index   int                       `json:"index"`
	Summary estimator.ResourceSummary `json:"summary"`
}

// IterationSeries is an iteration folder's series.json: every sample of
// every process, for the plots over time.
type IterationSeries struct {
	Processes []ProcessSeries `json:"processes"`
}

// ProcessSeries is one process's samples; Series is encoded by
// encoding/json as is (Go field names, durations in nanoseconds).
type ProcessSeries struct {
	Role   string              `json:"role"`
	Host   string              `json:"host"`
	Index  int                 `json:"index"`
	Series dump.ResourceSeries `json:"series"`
}

// Scenario is the iterations of one test, read from their folders.
type Scenario struct {
	Name       string   // the test names found, joined by "+" if they differ
	Dirs       []string // iteration folders, in iteration order
	Iterations []IterationSummary
}

// LoadScenario reads the summary.json of every folder that one of the glob
// patterns matches (files that match are not iteration folders and are
// passed over). A folder without a readable summary is an error: leaving
// it out would silently drop an iteration.
func LoadScenario(patterns ...string) (*Scenario, error) {
	seen := map[string]bool{}
	var dirs []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		for _, d := range m {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() || seen[d] {
				continue
			}
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no iteration folders match %s", strings.Join(quoteAll(patterns), " "))
	}
	type loaded struct {
		dir string
		it  IterationSummary
	}
	its := make([]loaded, 0, len(dirs))
	for _, d := range dirs {
		var it IterationSummary
		if err := readJSON(filepath.Join(d, SummaryFile), &it); err != nil {
			return nil, err
		}
		its = append(its, loaded{d, it})
	}
	sort.SliceStable(its, func(i, j int) bool {
		if its[i].it.Iteration != its[j].it.Iteration {
			return its[i].it.Iteration < its[j].it.Iteration
		}
		return its[i].dir < its[j].dir
	})
	s := &Scenario{}
	var names []string
	for _, l := range its {
		s.Dirs = append(s.Dirs, l.dir)
		s.Iterations = append(s.Iterations, l.it)
		if !slices.Contains(names, l.it.TestName) {
			names = append(names, l.it.TestName)
		}
	}
	s.Name = strings.Join(names, "+")
	return s, nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = strconv.Quote(x)
	}
	return out
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// Metric is one figure of a process's summary.
type Metric struct {
	Name          string
	Unit          string
	LowerIsBetter bool // CPU, memory, switches, latency; false for traffic rates
}

// baseMetrics are the figures every summary has, in the order printed;
// interface rates follow them, by interface name.
var baseMetrics = []struct {
	Metric
	value func(estimator.ResourceSummary) float64
}{
	{Metric{"avg CPU", "%", true}, func(s estimator.ResourceSummary) float64 { return s.AvgCPU }},
	{Metric{"peak CPU", "%", true}, func(s estimator.ResourceSummary) float64 { return s.PeakCPU }},
	{Metric{"user", "s", true}, func(s estimator.ResourceSummary) float64 { return s.User.Seconds() }},
	{Metric{"system", "s", true}, func(s estimator.ResourceSummary) float64 { return s.System.Seconds() }},
	{Metric{"on-CPU", "s", true}, func(s estimator.ResourceSummary) float64 { return s.OnCPU.Seconds() }},
	{Metric{"avg RSS", "MiB", true}, func(s estimator.ResourceSummary) float64 { return mib(s.AvgRSS) }},
	{Metric{"peak RSS", "MiB", true}, func(s estimator.ResourceSummary) float64 { return mib(s.PeakRSS) }},
	{Metric{"voluntary switches", "count", true}, func(s estimator.ResourceSummary) float64 { return float64(s.Voluntary) }},
	{Metric{"involuntary switches", "count", true}, func(s estimator.ResourceSummary) float64 { return float64(s.Involuntary) }},
	{Metric{"run-queue p50", "µs", true}, func(s estimator.ResourceSummary) float64 { return usf(s.RunQueueP50) }},
	{Metric{"run-queue p99", "µs", true}, func(s estimator.ResourceSummary) float64 { return usf(s.RunQueueP99) }},
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// processMetrics lists the metrics of one process's summary with values.
func processMetrics(s estimator.ResourceSummary) ([]Metric, []float64) {
	var ms []Metric
	var vs []float64
	for _, b := range baseMetrics {
		ms = append(ms, b.Metric)
		vs = append(vs, b.value(s))
	}
	for name, ifs := range s.Net {
		for _, d := range []struct {
			dir string
			s   estimator.DirSummary
		}{{"rx", ifs.Rx}, {"tx", ifs.Tx}} {
			ms = append(ms, Metric{fmt.Sprintf("%s %s packets/s", name, d.dir), "pkt/s", false},
				Metric{fmt.Sprintf("%s %s bytes/s", name, d.dir), "B/s", false})
			vs = append(vs, d.s.AvgPktRate, d.s.AvgByteRate)
		}
	}
	return ms, vs
}

var baseRank = func() map[string]int {
	m := map[string]int{}
	for i, b := range baseMetrics {
		m[b.Name] = i
	}
	return m
}()

// metricLess orders the base metrics as listed, then the interface rates
// by name.
func metricLess(a, b string) bool {
	ra, oka := baseRank[a]
	rb, okb := baseRank[b]
	switch {
	case oka && okb:
		return ra < rb
	case oka != okb:
		return oka
	}
	return a < b
}

func roleLess(a, b string) bool {
	rank := func(r string) int {
		switch r {
		case "server":
			return 0
		case "client":
			return 1
		}
		return 2
	}
	if rank(a) != rank(b) {
		return rank(a) < rank(b)
	}
	return a < b
}

// MetricStat is one metric of one role over a scenario's iterations.
type MetricStat struct {
	Metric
	estimator.Stat
	Values []float64 // one per iteration that has the metric, in iteration order
}

// RoleStats is every metric of one role.
type RoleStats struct {
	Role    string
	Metrics []MetricStat
}

// Summarise aggregates a scenario. A role's value in one iteration is the
// mean over the role's processes that have the metric (for a lone server,
// its own figure; for clients, the mean over the iteration's clients);
// across iterations every such value counts, zeros included.
func Summarise(s *Scenario) []RoleStats {
	values := map[string]map[string][]float64{} // role, metric
	metrics := map[string]Metric{}
	for _, it := range s.Iterations {
		sums := map[string]map[string][]float64{}
		for _, p := range it.Processes {
			ms, vs := processMetrics(p.Summary)
			if sums[p.Role] == nil {
				sums[p.Role] = map[string][]float64{}
			}
			for i, m := range ms {
				metrics[m.Name] = m
				sums[p.Role][m.Name] = append(sums[p.Role][m.Name], vs[i])
			}
		}
		for role, byMetric := range sums {
			if values[role] == nil {
				values[role] = map[string][]float64{}
			}
			for name, vs := range byMetric {
				values[role][name] = append(values[role][name], estimator.Aggregate(vs).Mean)
			}
		}
	}
	roles := sortedKeys(values, roleLess)
	out := make([]RoleStats, 0, len(roles))
	for _, role := range roles {
		rs := RoleStats{Role: role}
		for _, name := range sortedKeys(values[role], metricLess) {
			vs := values[role][name]
			rs.Metrics = append(rs.Metrics, MetricStat{Metric: metrics[name], Stat: estimator.Aggregate(vs), Values: vs})
		}
		out = append(out, rs)
	}
	return out
}

func sortedKeys[V any](m map[string]V, less func(a, b string) bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return less(keys[i], keys[j]) })
	return keys
}

// ResourceReport prints a scenario's aggregate: per role, each metric's
// mean, sample standard deviation and n; as JSON if asJSON.
func ResourceReport(w io.Writer, s *Scenario, asJSON bool) error {
	stats := Summarise(s)
	if asJSON {
		type metricJSON struct {
			Name          string    `json:"name"`
			Unit          string    `json:"unit"`
			LowerIsBetter bool      `json:"lower_is_better"`
			Mean          float64   `json:"mean"`
			Std           float64   `json:"std"`
			N             int       `json:"n"`
			Values        []float64 `json:"values"`
		}
		type roleJSON struct {
			Role    string       `json:"role"`
			Metrics []metricJSON `json:"metrics"`
		}
		out := struct {
			TestName   string     `json:"test_name"`
			Iterations []string   `json:"iterations"`
			Roles      []roleJSON `json:"roles"`
		}{TestName: s.Name, Iterations: s.Dirs}
		for _, r := range stats {
			rj := roleJSON{Role: r.Role}
			for _, m := range r.Metrics {
				rj.Metrics = append(rj.Metrics, metricJSON{m.Name, m.Unit, m.LowerIsBetter, m.Mean, m.Std, m.N, m.Values})
			}
			out.Roles = append(out.Roles, rj)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(w, "%s: %d iterations (%s)\n", s.Name, len(s.Dirs), strings.Join(s.Dirs, ", "))
	for _, r := range stats {
		fmt.Fprintf(w, "\n%s\n", roleTitle(r.Role))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "metric\tunit\tmean\tstd\tn\t")
		for _, m := range r.Metrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t\n", m.Name, m.Unit, num(m.Mean), num(m.Std), m.N)
		}
		tw.Flush()
	}
	return nil
}

func roleTitle(role string) string {
	if role == "client" {
		return "clients (mean over each iteration's clients)"
	}
	return role
}

// num prints a figure with about four significant digits, without
// exponents for the large rates.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 1 || a == 0:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Comparison is one metric of one role in two scenarios.
type Comparison struct {
	Role string
	Metric
	A, B estimator.Stat
	// Improvement is estimator.Improvement, in %: positive means A is
	// better. HasImprovement is false when either side lacks the metric.
	Improvement    float64
	HasImprovement bool
	P              float64 // Welch's two-sided p; HasP only when both n ≥ 3
	HasP           bool
}

// Compare pairs every metric of every role found in either scenario.
func Compare(a, b []RoleStats) []Comparison {
	type key struct{ role, metric string }
	sa, sb := map[key]MetricStat{}, map[key]MetricStat{}
	roles := map[string]map[string]Metric{}
	for _, x := range []struct {
		rs []RoleStats
		m  map[key]MetricStat
	}{{a, sa}, {b, sb}} {
		for _, r := range x.rs {
			if roles[r.Role] == nil {
				roles[r.Role] = map[string]Metric{}
			}
			for _, m := range r.Metrics {
				x.m[key{r.Role, m.Name}] = m
				roles[r.Role][m.Name] = m.Metric
			}
		}
	}
	var out []Comparison
	for _, role := range sortedKeys(roles, roleLess) {
		for _, name := range sortedKeys(roles[role], metricLess) {
			k := key{role, name}
			c := Comparison{Role: role, Metric: roles[role][name], A: sa[k].Stat, B: sb[k].Stat}
			if c.A.N > 0 && c.B.N > 0 {
				c.Improvement, c.HasImprovement = estimator.Improvement(c.A, c.B, c.LowerIsBetter), true
			}
			c.P, c.HasP = estimator.WelchP(c.A, c.B)
			out = append(out, c)
		}
	}
	return out
}

// CompareOptions say how to print a comparison.
type CompareOptions struct {
	CSV     bool
	PlotDir string // if set, bar and time plots go there
}

// ResourceCompare prints scenario A against scenario B.
func ResourceCompare(w io.Writer, a, b *Scenario, o CompareOptions) error {
	cs := Compare(Summarise(a), Summarise(b))
	if o.PlotDir != "" {
		skipped, err := PlotCompare(o.PlotDir, a, b, cs)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(os.Stderr, "probe: %s\n", s)
		}
	}
	if o.CSV {
		return compareCSV(w, cs)
	}
	fmt.Fprintf(w, "A = %s: %d iterations; B = %s: %d iterations\n", a.Name, len(a.Dirs), b.Name, len(b.Dirs))
	fmt.Fprintln(w, "improvement: positive means A is better; (B − A)/B for lower-is-better metrics, (A − B)/B for higher-is-better ones")
	role := ""
	var tw *tabwriter.Writer
	for _, c := range cs {
		if c.Role != role {
			if tw != nil {
				tw.Flush()
			}
			role = c.Role
			fmt.Fprintf(w, "\n%s\n", roleTitle(role))
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "metric\tunit\tbetter\tA mean±std\tn\tB mean±std\tn\timprovement\tWelch p\t")
		}
		better := "higher"
		if c.LowerIsBetter {
			better = "lower"
		}
		imp, p := "–", "–"
		if c.HasImprovement {
			imp = fmt.Sprintf("%+.1f%%", c.Improvement)
		}
		if c.HasP {
			p = strconv.FormatFloat(c.P, 'g', 3, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t\n", c.Name, c.Unit, better,
			meanStd(c.A), c.A.N, meanStd(c.B), c.B.N, imp, p)
	}
	if tw != nil {
		tw.Flush()
	}
	return nil
}

func meanStd(s estimator.Stat) string {
	if s.N == 0 {
		return "–"
	}
	return num(s.Mean) + "±" + num(s.Std)
}

// compareCSV writes a row per role and metric; the improvement and p
// cells are empty where they are not given.
func compareCSV(w io.Writer, cs []Comparison) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"role", "metric", "unit", "lower_is_better", "a_mean", "a_std", "a_n", "b_mean", "b_std", "b_n", "improvement_pct", "welch_p"})
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, c := range cs {
		imp, p := "", ""
		if c.HasImprovement {
			imp = g(c.Improvement)
		}
		if c.HasP {
			p = g(c.P)
		}
		cw.Write([]string{c.Role, c.Name, c.Unit, strconv.FormatBool(c.LowerIsBetter),
			g(c.A.Mean), g(c.A.Std), strconv.Itoa(c.A.N), g(c.B.Mean), g(c.B.Std), strconv.Itoa(c.B.N), imp, p})
	}
	cw.Flush()
	return cw.Error()
}

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
func PlotCompare(dir string, a, b *Scenario, cs []Comparison) (skipped []string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	byRole := map[string][]Comparison{}
	for _, c := range cs {
		byRole[c.Role] = append(byRole[c.Role], c)
	}
	for _, role := range sortedKeys(byRole, roleLess) {
		if err := plotBars(filepath.Join(dir, "bars-"+role), role, a.Name, b.Name, byRole[role]); err != nil {
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
	return nil, plotSeries(dir, a.Name, b.Name, sa, sb)
}

// errPoints are bar tops with their error bars.
type errPoints struct {
	plotter.XYs
	plotter.YErrors
}

func plotBars(base, role, nameA, nameB string, cs []Comparison) error {
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
		p.NominalX(tickName("A", nameA), tickName("B", nameB))
		p.X.Min, p.X.Max = -0.7, 1.7
		plots[k/cols][k%cols] = p
	}
	return savePanels(base, plots, 24*vg.Centimeter, vg.Length(rows)*5*vg.Centimeter)
}

// tickName labels a bar: the scenario's letter, and its name if short.
func tickName(letter, name string) string {
	if name == "" || name == letter || len(name) > 12 {
		return letter
	}
	return letter + ": " + name
}

// plotSeries draws cpu, memory and network over time.
func plotSeries(dir, nameA, nameB string, sa, sb IterationSeries) error {
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
		plots[i] = []*plot.Plot{p}
	}
	return savePanels(filepath.Join(dir, "network"), plots, 16*vg.Centimeter, vg.Length(len(roles))*8*vg.Centimeter)
}

// cpuOverTime is the CPU % in each interval between samples, at its end.
func cpuOverTime(s dump.ResourceSeries) plotter.XYs {
	var pts plotter.XYs
	for i := 1; i < len(s.Samples); i++ {
		a, b := s.Samples[i-1], s.Samples[i]
		dt := b.T - a.T
		if dt <= 0 {
			continue
		}
		cpu := max(b.User+b.System-a.User-a.System, 0)
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
		var c draw.Canvas
		var out io.WriterTo
		if ext == ".png" {
			img := vgimg.New(width, height)
			c, out = draw.New(img), vgimg.PngCanvas{Canvas: img}
		} else {
			svg := vgsvg.New(width, height)
			c, out = draw.New(svg), svg
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
		if err := saveTo(base+ext, out); err != nil {
			return fmt.Errorf("plot %s: %w", base+ext, err)
		}
	}
	return nil
}
