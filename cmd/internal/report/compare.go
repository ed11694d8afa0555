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
	ScenarioOptions
	CSV, JSON bool
	PlotDir   string // if set, bar and time plots go there
}

// ResourceCompare prints scenario A against scenario B.
func ResourceCompare(w io.Writer, a, b *Scenario, o CompareOptions) error {
	cs := Compare(Summarise(a, o.ScenarioOptions), Summarise(b, o.ScenarioOptions))
	if o.PlotDir != "" {
		skipped, err := PlotCompare(o.PlotDir, a, b, cs, o.ScenarioOptions)
		if err != nil {
			return err
		}
		for _, s := range skipped {
			fmt.Fprintf(os.Stderr, "probe: %s\n", s)
		}
	}
	switch {
	case o.JSON:
		return compareJSON(w, a, b, cs)
	case o.CSV:
		return compareCSV(w, cs)
	}
	fmt.Fprintf(w, "A = %s (test %s): %d iterations; B = %s (test %s): %d iterations\n", a.Label, a.Name, len(a.Dirs), b.Label, b.Name, len(b.Dirs))
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
			p = sig(c.P)
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
	if s.N < 2 {
		return num(s.Mean)
	}
	return num(s.Mean) + "±" + num(s.Std)
}

// SchemaCompare names probe compare's JSON document.
const SchemaCompare = "probe/compare/1"

// CompareDoc is the JSON document of probe compare.
type CompareDoc struct {
	Schema  string              `json:"schema"`
	A       CompareSetJSON      `json:"a"`
	B       CompareSetJSON      `json:"b"`
	Metrics []CompareMetricJSON `json:"metrics"`
}

// CompareSetJSON is one side of a comparison.
type CompareSetJSON struct {
	Label      string   `json:"label"`
	TestName   string   `json:"test_name"`
	Iterations []string `json:"iterations"`
}

// CompareMetricJSON is one metric of one role in both sets.
type CompareMetricJSON struct {
	Role           string   `json:"role"`
	Name           string   `json:"name"`
	Unit           string   `json:"unit"`
	LowerIsBetter  bool     `json:"lower_is_better"`
	AMean          *float64 `json:"a_mean"` // null: A lacks the metric
	AStd           *float64 `json:"a_std"`  // null for n < 2
	AN             int      `json:"a_n"`
	BMean          *float64 `json:"b_mean"`
	BStd           *float64 `json:"b_std"`
	BN             int      `json:"b_n"`
	ImprovementPct *float64 `json:"improvement_pct"` // positive: A is better
	WelchP         *float64 `json:"welch_p"`         // null unless both n ≥ 3
}

func compareJSON(w io.Writer, a, b *Scenario, cs []Comparison) error {
	doc := CompareDoc{Schema: SchemaCompare,
		A:       CompareSetJSON{a.Label, a.Name, nonNil(a.Dirs)},
		B:       CompareSetJSON{b.Label, b.Name, nonNil(b.Dirs)},
		Metrics: []CompareMetricJSON{}}
	for _, c := range cs {
		doc.Metrics = append(doc.Metrics, CompareMetricJSON{c.Role, c.Name, c.Unit, c.LowerIsBetter,
			orNull(c.A.Mean, c.A.N > 0), orNull(c.A.Std, c.A.N >= 2), c.A.N,
			orNull(c.B.Mean, c.B.N > 0), orNull(c.B.Std, c.B.N >= 2), c.B.N,
			orNull(c.Improvement, c.HasImprovement), orNull(c.P, c.HasP)})
	}
	return writeDoc(w, doc)
}

// compareCSV writes a row per role and metric; the improvement and p
// cells are empty where they are not given.
func compareCSV(w io.Writer, cs []Comparison) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"role", "metric", "unit", "lower_is_better", "a_mean", "a_std", "a_n", "b_mean", "b_std", "b_n", "improvement_pct", "welch_p"})
	// A cell a set cannot give (no values, one value's std) is empty.
	cell := func(v float64, ok bool) string {
		if !ok {
			return ""
		}
		return sig(v)
	}
	for _, c := range cs {
		p := ""
		if c.HasP {
			p = sig(c.P)
		}
		cw.Write([]string{c.Role, c.Name, c.Unit, strconv.FormatBool(c.LowerIsBetter),
			cell(c.A.Mean, c.A.N > 0), cell(c.A.Std, c.A.N >= 2), strconv.Itoa(c.A.N), cell(c.B.Mean, c.B.N > 0), cell(c.B.Std, c.B.N >= 2),
			strconv.Itoa(c.B.N), cell(c.Improvement, c.HasImprovement), p})
	}
	cw.Flush()
	return cw.Error()
}
