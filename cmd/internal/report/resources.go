package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
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
	Exit    string                    `json:"exit"`   // how it ended: "exit code 1"
	Failed  bool                      `json:"failed"` // as the runner judged: see scenario.ProcessSummary
	Summary estimator.ResourceSummary `json:"summary"`
}

// Name is the process's name in its iteration folder: "server", or
// "client-HOST-INDEX".
func (p ProcessSummary) Name() string {
	if p.Role == "server" {
		return "server"
	}
	return fmt.Sprintf("%s-%s-%d", p.Role, p.Host, p.Index)
}

// FailedRun is a process of an iteration that failed.
type FailedRun struct {
	Iteration int    `json:"iteration"`
	Dir       string `json:"dir"`
	Process   string `json:"process"`
	Exit      string `json:"exit"`
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
	Name       string   // the test name found in the summaries
	Label      string   // the patterns or folder the user gave, to tell sets apart
	Dirs       []string // iteration folders, in iteration order
	Iterations []IterationSummary
	Runs       int         // processes run, over all iterations
	Failed     []FailedRun // those that failed; their figures count all the same
}

// LoadScenario reads the summary.json of every folder that one of the glob
// patterns matches (files that match are not iteration folders and are
// passed over). A folder named as it is, without a summary.json of its
// own, is a results folder: its iteration folders are read. A folder
// without a readable summary is an error: leaving it out would silently
// drop an iteration.
func LoadScenario(patterns ...string) (*Scenario, error) {
	seen := map[string]bool{}
	var dirs []string
	for _, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if len(m) == 1 && filepath.Clean(m[0]) == filepath.Clean(p) && isResultsDir(p) {
			if m, err = filepath.Glob(filepath.Join(p, "*", SummaryFile)); err != nil {
				return nil, fmt.Errorf("folder %q: %w", p, err)
			}
			for i := range m {
				m[i] = filepath.Dir(m[i])
			}
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
		for _, p := range l.it.Processes {
			s.Runs++
			if p.Failed {
				s.Failed = append(s.Failed, FailedRun{Iteration: l.it.Iteration, Dir: l.dir, Process: p.Name(), Exit: p.Exit})
			}
		}
		if !slices.Contains(names, l.it.TestName) {
			names = append(names, l.it.TestName)
		}
	}
	s.Name = strings.Join(names, "+")
	s.Label = strings.Join(patterns, " ")
	if len(names) > 1 {
		return nil, fmt.Errorf("%s holds iterations of %d tests (%s): give one test's, e.g. %q", s.Label, len(names),
			strings.Join(names, ", "), filepath.Join(filepath.Dir(s.Dirs[0]), names[0]+"_iter*"))
	}
	return s, nil
}

// isResultsDir says whether dir is a folder of iteration folders rather
// than one iteration.
func isResultsDir(dir string) bool {
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, SummaryFile))
	return errors.Is(err, fs.ErrNotExist)
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
