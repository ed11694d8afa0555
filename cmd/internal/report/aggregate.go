package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/probe-dev/probe/estimator"
)

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
func processMetrics(s estimator.ResourceSummary, o ScenarioOptions) ([]Metric, []float64) {
	var ms []Metric
	var vs []float64
	for _, b := range baseMetrics {
		ms = append(ms, b.Metric)
		vs = append(vs, b.value(s))
	}
	for name, ifs := range s.Net {
		if name == "lo" && !o.Loopback {
			continue
		}
		for _, d := range []struct {
			dir string
			s   estimator.DirSummary
		}{{"rx", ifs.Rx}, {"tx", ifs.Tx}} {
			ms = append(ms, Metric{fmt.Sprintf("%s %s packets/s", name, d.dir), "pkt/s", false},
				Metric{fmt.Sprintf("%s %s rate", name, d.dir), "Mbit/s", false})
			vs = append(vs, d.s.AvgPktRate, 8*d.s.AvgByteRate/1e6)
		}
	}
	return ms, vs
}

// ScenarioOptions say what a report or comparison includes.
type ScenarioOptions struct {
	Loopback bool // the lo interface's rates; mostly the host talking to itself
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
func Summarise(s *Scenario, o ScenarioOptions) []RoleStats {
	values := map[string]map[string][]float64{} // role, metric
	metrics := map[string]Metric{}
	for _, it := range s.Iterations {
		sums := map[string]map[string][]float64{}
		for _, p := range it.Processes {
			ms, vs := processMetrics(p.Summary, o)
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

// SchemaReport names probe report's JSON document.
const SchemaReport = "probe/report/1"

// ReportDoc is the JSON document of probe report.
type ReportDoc struct {
	Schema     string           `json:"schema"`
	Label      string           `json:"label"`
	TestName   string           `json:"test_name"`
	Iterations []string         `json:"iterations"`
	Runs       int              `json:"runs"`
	Failed     []FailedRun      `json:"failed"` // processes that exited non-zero; still counted in the figures
	Roles      []ReportRoleJSON `json:"roles"`
}

// ReportRoleJSON is every metric of one role.
type ReportRoleJSON struct {
	Role    string             `json:"role"`
	Metrics []ReportMetricJSON `json:"metrics"`
}

// ReportMetricJSON is one metric over the iterations.
type ReportMetricJSON struct {
	Name          string    `json:"name"`
	Unit          string    `json:"unit"`
	LowerIsBetter bool      `json:"lower_is_better"`
	Mean          float64   `json:"mean"`
	Std           *float64  `json:"std"` // sample standard deviation; null for n < 2
	N             int       `json:"n"`
	Values        []float64 `json:"values"`
}

// ReportOptions say how to print a scenario's aggregate.
type ReportOptions struct {
	ScenarioOptions
	JSON, CSV bool
	PlotDir   string
}

// ResourceReport prints a scenario's aggregate: per role, each metric's
// mean, sample standard deviation and n.
func ResourceReport(w io.Writer, s *Scenario, o ReportOptions) error {
	stats := Summarise(s, o.ScenarioOptions)
	if o.PlotDir != "" {
		if err := PlotReport(o.PlotDir, s, stats); err != nil {
			return err
		}
	}
	switch {
	case o.JSON:
		out := ReportDoc{Schema: SchemaReport, Label: s.Label, TestName: s.Name, Iterations: nonNil(s.Dirs), Runs: s.Runs,
			Failed: nonNil(s.Failed), Roles: []ReportRoleJSON{}}
		for _, r := range stats {
			rj := ReportRoleJSON{Role: r.Role, Metrics: []ReportMetricJSON{}}
			for _, m := range r.Metrics {
				rj.Metrics = append(rj.Metrics, ReportMetricJSON{m.Name, m.Unit, m.LowerIsBetter, m.Mean, orNull(m.Std, m.N >= 2), m.N, nonNil(m.Values)})
			}
			out.Roles = append(out.Roles, rj)
		}
		return writeDoc(w, out)
	case o.CSV:
		cw := csv.NewWriter(w)
		cw.Write([]string{"role", "metric", "unit", "lower_is_better", "mean", "std", "n"})
		for _, r := range stats {
			for _, m := range r.Metrics {
				std := ""
				if m.N >= 2 {
					std = sig(m.Std)
				}
				cw.Write([]string{r.Role, m.Name, m.Unit, strconv.FormatBool(m.LowerIsBetter), sig(m.Mean), std, strconv.Itoa(m.N)})
			}
		}
		cw.Flush()
		return cw.Error()
	}
	fmt.Fprintf(w, "%s (test %s): %d iterations (%s)\n", s.Label, s.Name, len(s.Dirs), strings.Join(s.Dirs, ", "))
	fmt.Fprintln(w, failedLine(s))
	for _, r := range stats {
		fmt.Fprintf(w, "\n%s\n", roleTitle(r.Role))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "metric\tunit\tmean\tstd\tn\t")
		for _, m := range r.Metrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t\n", m.Name, m.Unit, num(m.Mean), stdText(m.Stat), m.N)
		}
		tw.Flush()
	}
	return nil
}

// failedLine says how many processes failed, and which; their figures are
// in the aggregates all the same, as no value is dropped silently.
func failedLine(s *Scenario) string {
	line := fmt.Sprintf("failed: %d of %d runs", len(s.Failed), s.Runs)
	if len(s.Failed) == 0 {
		return line
	}
	var which []string
	for _, f := range s.Failed {
		which = append(which, fmt.Sprintf("iteration %d %s (%s)", f.Iteration, f.Process, f.Exit))
	}
	return line + " (counted below all the same): " + strings.Join(which, "; ")
}

// stdText is a sample standard deviation, or "–" where one value gives none.
func stdText(s estimator.Stat) string {
	if s.N < 2 {
		return "–"
	}
	return num(s.Std)
}

// sig rounds to six significant digits, what an aggregate of a few runs
// can mean, and prints without an exponent.
func sig(v float64) string {
	v = denoise(v)
	r, _ := strconv.ParseFloat(strconv.FormatFloat(v, 'g', 6, 64), 64)
	return strconv.FormatFloat(r, 'f', -1, 64)
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
	v = denoise(v)
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

// denoise zeroes what is float rounding left over from a sum of equal
// values (a std of 1.4e-16), not a measured figure.
func denoise(v float64) float64 {
	if math.Abs(v) < 1e-12 {
		return 0
	}
	return v
}
