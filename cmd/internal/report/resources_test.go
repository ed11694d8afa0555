package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// iter is the hand-made content of one iteration: one server, two clients.
type iter struct {
	serverCPU, serverVol float64
	clientCPU            [2]float64
	serverRSS            uint64 // MiB
	eth0TxBytes          float64
}

// Scenario A: server avg CPU 10, 20, 30 (mean 20, std 10); voluntary
// switches 0, 30, 60 (the zero counts: mean 30, std 30); clients' CPU per
// iteration (4+6)/2 = 5, (3+5)/2 = 4, (6+6)/2 = 6 (mean 5, std 1).
// Scenario B: server CPU 40, 50, 60 (mean 50, std 10).
var scenarioA = []iter{
	{10, 0, [2]float64{4, 6}, 100, 1000},
	{20, 30, [2]float64{3, 5}, 110, 2000},
	{30, 60, [2]float64{6, 6}, 120, 3000},
}

var scenarioB = []iter{
	{40, 10, [2]float64{8, 8}, 200, 1500},
	{50, 20, [2]float64{9, 9}, 210, 1500},
	{60, 30, [2]float64{10, 10}, 220, 1500},
}

func writeScenario(t *testing.T, root, name string, its []iter) {
	t.Helper()
	for k, it := range its {
		dir := filepath.Join(root, fmt.Sprintf("%s_iter%d_20250101T00000%d", name, k+1, k))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		server := estimator.ResourceSummary{Name: "srv", AvgCPU: it.serverCPU, Voluntary: uint64(it.serverVol),
			PeakRSS: it.serverRSS << 20, AvgRSS: it.serverRSS << 20, RunQueueP99: 8 * time.Microsecond,
			Net: map[string]estimator.IfSummary{"eth0": {Tx: estimator.DirSummary{AvgByteRate: it.eth0TxBytes}}}}
		sum := IterationSummary{TestName: name, Iteration: k + 1, Processes: []ProcessSummary{{Role: "server", Host: "h0", Summary: server}}}
		for c, cpu := range it.clientCPU {
			sum.Processes = append(sum.Processes, ProcessSummary{Role: "client", Host: "h1", Index: c, Summary: estimator.ResourceSummary{AvgCPU: cpu}})
		}
		writeJSON(t, filepath.Join(dir, SummaryFile), sum)
		if k == 0 {
			writeJSON(t, filepath.Join(dir, SeriesFile), fakeSeries(it))
		}
	}
}

func fakeSeries(it iter) IterationSeries {
	var out IterationSeries
	for _, role := range []string{"server", "client"} {
		var s dump.ResourceSeries
		for i := range 5 {
			d := time.Duration(i)
			s.Samples = append(s.Samples, dump.ResourceSample{T: d * 100 * time.Millisecond,
				User: d * 10 * time.Millisecond, RSS: it.serverRSS << 20,
				Net: map[string]dump.IfCounters{"eth0": {RxBytes: uint64(i) * 1000, TxBytes: uint64(i) * 500}}})
		}
		out.Processes = append(out.Processes, ProcessSeries{Role: role, Host: "h", Series: s})
	}
	return out
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func tree(t *testing.T) (root string, a, b *Scenario) {
	root = t.TempDir()
	writeScenario(t, root, "A", scenarioA)
	writeScenario(t, root, "B", scenarioB)
	a, err := LoadScenario(filepath.Join(root, "A_iter*"))
	if err != nil {
		t.Fatal(err)
	}
	b, err = LoadScenario(filepath.Join(root, "B_iter*"))
	if err != nil {
		t.Fatal(err)
	}
	return root, a, b
}

func metric(t *testing.T, rs []RoleStats, role, name string) MetricStat {
	t.Helper()
	for _, r := range rs {
		if r.Role != role {
			continue
		}
		for _, m := range r.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no %s %q", role, name)
	return MetricStat{}
}

func TestSummarise(t *testing.T) {
	_, a, _ := tree(t)
	if a.Name != "A" || len(a.Dirs) != 3 {
		t.Fatalf("scenario %q with %d iterations", a.Name, len(a.Dirs))
	}
	rs := Summarise(a, ScenarioOptions{})
	if rs[0].Role != "server" || rs[1].Role != "client" {
		t.Fatalf("roles %s, %s; want server, client", rs[0].Role, rs[1].Role)
	}
	for _, tc := range []struct {
		role, name string
		mean, std  float64
		n          int
		lower      bool
		values     []float64
	}{
		{"server", "avg CPU", 20, 10, 3, true, []float64{10, 20, 30}},
		{"server", "voluntary switches", 30, 30, 3, true, []float64{0, 30, 60}},
		{"server", "peak RSS", 110, 10, 3, true, nil},
		{"server", "run-queue p99", 8, 0, 3, true, nil},
		{"server", "eth0 tx rate", 0.016, 0.008, 3, false, nil}, // 2000 ± 1000 B/s in Mbit/s
		{"client", "avg CPU", 5, 1, 3, true, []float64{5, 4, 6}},
	} {
		m := metric(t, rs, tc.role, tc.name)
		if m.N != tc.n || math.Abs(m.Mean-tc.mean) > 1e-9 || math.Abs(m.Std-tc.std) > 1e-9 || m.LowerIsBetter != tc.lower {
			t.Errorf("%s %s: %+v; want mean %v std %v n %d lower %v", tc.role, tc.name, m, tc.mean, tc.std, tc.n, tc.lower)
		}
		if tc.values != nil && fmt.Sprint(m.Values) != fmt.Sprint(tc.values) {
			t.Errorf("%s %s: values %v, want %v", tc.role, tc.name, m.Values, tc.values)
		}
	}
}

func TestResourceReportTextAndJSON(t *testing.T) {
	_, a, _ := tree(t)
	var buf bytes.Buffer
	if err := ResourceReport(&buf, a, ReportOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"A_iter* (test A): 3 iterations", "server", "clients", "avg CPU", "20.00", "10.00", "Mbit/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	if err := ResourceReport(&buf, a, ReportOptions{JSON: true}); err != nil {
		t.Fatal(err)
	}
	var j struct {
		TestName string `json:"test_name"`
		Roles    []struct {
			Role    string `json:"role"`
			Metrics []struct {
				Name string   `json:"name"`
				Mean float64  `json:"mean"`
				Std  *float64 `json:"std"`
				N    int      `json:"n"`
			} `json:"metrics"`
		} `json:"roles"`
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil {
		t.Fatalf("%v:\n%s", err, buf.String())
	}
	m := j.Roles[0].Metrics[0]
	if j.TestName != "A" || j.Roles[0].Role != "server" || m.Name != "avg CPU" || m.Mean != 20 || m.Std == nil || *m.Std != 10 || m.N != 3 {
		t.Errorf("json: %+v", j)
	}
}

// pServerCPU is Welch's p for 10, 20, 30 against 40, 50, 60: t = 30/√(200/3),
// df = 4; mpmath: betainc(2, 1/2, 0, 4/(4+t²), regularized=True).
const pServerCPU = 0.0213116411287567258

func TestResourceCompare(t *testing.T) {
	root, a, b := tree(t)
	var buf bytes.Buffer
	if err := ResourceCompare(&buf, a, b, CompareOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// server avg CPU: (50 − 20)/50 = +60%; eth0 tx rate, higher is
	// better: (2000 − 1500)/1500 = +33.3%
	for _, want := range []string{"+60.0%", "0.0213", "20.00±10.00", "50.00±10.00", "+33.3%"} {
		if !strings.Contains(out, want) {
			t.Errorf("compare lacks %q:\n%s", want, out)
		}
	}

	buf.Reset()
	if err := ResourceCompare(&buf, a, b, CompareOptions{CSV: true}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 2 || rows[0][10] != "improvement_pct" || rows[0][11] != "welch_p" {
		t.Fatalf("csv header %v", rows[0])
	}
	var found bool
	for _, r := range rows[1:] {
		if r[0] == "server" && r[1] == "avg CPU" {
			found = true
			var imp, p float64
			fmt.Sscan(r[10], &imp)
			fmt.Sscan(r[11], &p)
			if math.Abs(imp-60) > 1e-9 || math.Abs(p-pServerCPU) > 1e-7 { // printed to 6 significant digits
				t.Errorf("csv row %v: improvement %v p %v", r, imp, p)
			}
		}
	}
	if !found {
		t.Error("csv has no server avg CPU row")
	}

	// two iterations of A: no p-value
	a2, err := LoadScenario(filepath.Join(root, "A_iter1_*"), filepath.Join(root, "A_iter2_*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range Compare(Summarise(a2, ScenarioOptions{}), Summarise(b, ScenarioOptions{})) {
		if c.HasP {
			t.Errorf("%s %s: p given with n = %d", c.Role, c.Name, c.A.N)
		}
	}
	buf.Reset()
	if err := ResourceCompare(&buf, a2, b, CompareOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "  –") {
		t.Errorf("no – for the missing p:\n%s", buf.String())
	}
}

func TestComparePlots(t *testing.T) {
	_, a, b := tree(t)
	dir := filepath.Join(t.TempDir(), "plots")
	var buf bytes.Buffer
	if err := ResourceCompare(&buf, a, b, CompareOptions{PlotDir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bars-server", "bars-client", "cpu", "memory", "network"} {
		for _, ext := range []string{".png", ".svg"} {
			fi, err := os.Stat(filepath.Join(dir, name+ext))
			if err != nil || fi.Size() == 0 {
				t.Errorf("%s%s: %v", name, ext, err)
			}
		}
	}
}

func TestLoadScenarioEmptyGlob(t *testing.T) {
	_, err := LoadScenario(filepath.Join(t.TempDir(), "nothing_iter*"))
	if err == nil || !strings.Contains(err.Error(), "no iteration folders match") || strings.Contains(err.Error(), "\n") {
		t.Errorf("err = %v; want one line naming the pattern", err)
	}
}

func TestLoadScenarioMissingSummary(t *testing.T) {
	root := t.TempDir()
	writeScenario(t, root, "A", scenarioA)
	if err := os.Mkdir(filepath.Join(root, "A_iter4_x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadScenario(filepath.Join(root, "A_iter*")); err == nil {
		t.Error("an iteration folder without summary.json was passed over")
	}
}

// The report counts the processes that failed and names them; their
// figures stay in the aggregates.
func TestResourceReportFailed(t *testing.T) {
	root := t.TempDir()
	writeScenario(t, root, "A", scenarioA)
	// Iteration 2's second client exited with 1.
	dir, _ := filepath.Glob(filepath.Join(root, "A_iter2_*"))
	var sum IterationSummary
	if err := readJSON(filepath.Join(dir[0], SummaryFile), &sum); err != nil {
		t.Fatal(err)
	}
	sum.Processes[2].Failed, sum.Processes[2].Exit = true, "exit code 1"
	writeJSON(t, filepath.Join(dir[0], SummaryFile), sum)
	a, err := LoadScenario(filepath.Join(root, "A_iter*"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ResourceReport(&buf, a, ReportOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := "failed: 1 of 9 runs (counted below all the same): iteration 2 client-h1-1 (exit code 1)\n"; !strings.Contains(buf.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, buf.String())
	}
	if m := metric(t, Summarise(a, ScenarioOptions{}), "client", "avg CPU"); m.N != 3 {
		t.Errorf("client avg CPU over %d iterations, want all 3", m.N)
	}
	buf.Reset()
	if err := ResourceReport(&buf, a, ReportOptions{JSON: true}); err != nil {
		t.Fatal(err)
	}
	var j struct {
		Runs   int         `json:"runs"`
		Failed []FailedRun `json:"failed"`
	}
	if err := json.Unmarshal(buf.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if j.Runs != 9 || len(j.Failed) != 1 || j.Failed[0] != (FailedRun{Iteration: 2, Dir: dir[0], Process: "client-h1-1", Exit: "exit code 1"}) {
		t.Errorf("json: runs %d, failed %+v", j.Runs, j.Failed)
	}
	_, ok, _ := tree(t)
	buf.Reset()
	ResourceReport(&buf, ok, ReportOptions{})
	if !strings.Contains(buf.String(), "failed: 0 of 9 runs\n") {
		t.Errorf("report of a run without failures:\n%s", buf.String())
	}
}

// Both documents agree with docs/json.md; one iteration gives no std.
func TestReportAndCompareSchema(t *testing.T) {
	root, a, b := tree(t)
	s := loadSchema(t)
	one, err := LoadScenario(filepath.Join(root, "A_iter1_*"))
	if err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func(*bytes.Buffer) error{
		"report":       func(w *bytes.Buffer) error { return ResourceReport(w, a, ReportOptions{JSON: true}) },
		"report, n=1":  func(w *bytes.Buffer) error { return ResourceReport(w, one, ReportOptions{JSON: true}) },
		"compare":      func(w *bytes.Buffer) error { return ResourceCompare(w, a, b, CompareOptions{JSON: true}) },
		"compare, n=1": func(w *bytes.Buffer) error { return ResourceCompare(w, one, b, CompareOptions{JSON: true}) },
	} {
		var buf bytes.Buffer
		if err := run(&buf); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckDoc(buf.Bytes()); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.HasSuffix(name, "n=1") && !strings.Contains(buf.String(), `"std": null`) && !strings.Contains(buf.String(), `"a_std": null`) {
			t.Errorf("%s: a std from one value:\n%s", name, buf.String())
		}
	}
	var buf bytes.Buffer
	if err := ResourceReport(&buf, one, ReportOptions{}); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`avg CPU +% +10\.00 +– +1`).MatchString(buf.String()) {
		t.Errorf("a std from one iteration:\n%s", buf.String())
	}
}

// A results folder reads its iteration folders; one that holds two tests
// says so; sets are labelled by what was given.
func TestLoadResultsFolder(t *testing.T) {
	root := t.TempDir()
	writeScenario(t, filepath.Join(root, "one"), "ux", scenarioA)
	writeScenario(t, filepath.Join(root, "two"), "ux", scenarioB)
	a, err := LoadScenario(filepath.Join(root, "one"))
	if err != nil || len(a.Dirs) != 3 || a.Label != filepath.Join(root, "one") {
		t.Fatalf("results folder: %v, %+v", err, a)
	}
	b, _ := LoadScenario(filepath.Join(root, "two") + "/")
	var out bytes.Buffer
	if err := ResourceCompare(&out, a, b, CompareOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "A = "+filepath.Join(root, "one")) || !strings.Contains(out.String(), "B = "+filepath.Join(root, "two")) {
		t.Errorf("sets not told apart:\n%s", out.String())
	}
	writeScenario(t, filepath.Join(root, "one"), "other", scenarioB[:1])
	if _, err := LoadScenario(filepath.Join(root, "one")); err == nil || !strings.Contains(err.Error(), "iterations of 2 tests") {
		t.Errorf("two tests in one folder: %v", err)
	}
}

// The CPU drawn over time is the eBPF on-CPU time where a series has it:
// /proc's user and system time moves in whole ticks.
func TestCPUOverTimeFromOnCPU(t *testing.T) {
	ms := time.Millisecond
	samples := []dump.ResourceSample{{T: 0}, {T: 100 * ms, User: 10 * ms, OnCPU: 4 * ms}, {T: 200 * ms, User: 10 * ms, OnCPU: 8 * ms}}
	for _, c := range []struct {
		name  string
		onCPU bool
		want  []float64
	}{{"eBPF", true, []float64{4, 4}}, {"/proc", false, []float64{10, 0}}} {
		s := dump.ResourceSeries{Samples: slices.Clone(samples)}
		if !c.onCPU {
			for i := range s.Samples {
				s.Samples[i].OnCPU = 0
			}
		}
		pts := cpuOverTime(s)
		if len(pts) != len(c.want) {
			t.Fatalf("%s: %d points, want %d", c.name, len(pts), len(c.want))
		}
		for i, p := range pts {
			if math.Abs(p.Y-c.want[i]) > 1e-9 {
				t.Errorf("%s: point %d at %.3f %%, want %.3f", c.name, i, p.Y, c.want[i])
			}
		}
	}
}
