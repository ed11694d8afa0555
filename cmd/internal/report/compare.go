package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/probe-dev/probe/estimator"
)

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
