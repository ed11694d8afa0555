package report

import (
	"encoding/json"
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
			TestName   string      `json:"test_name"`
			Iterations []string    `json:"iterations"`
			Runs       int         `json:"runs"`
			Failed     []FailedRun `json:"failed"`
			Roles      []roleJSON  `json:"roles"`
		}{TestName: s.Name, Iterations: s.Dirs, Runs: s.Runs, Failed: s.Failed}
		if out.Failed == nil {
			out.Failed = []FailedRun{}
		}
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
	fmt.Fprintln(w, failedLine(s))
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
