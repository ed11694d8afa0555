// Command sched measures what probe's scheduler tracer costs a
// context-switch-heavy workload: two processes bounce a byte over
// a pair of pipes, `perf bench sched pipe` when perf is installed and an
// equivalent of our own, alternately with no eBPF attached, with empty
// programs on the tracer's hooks (what any eBPF tracer of switches costs
// at least) and with collector.SchedWatch watching both processes. The
// slowdown of the median round is printed; the bound applies to perf's
// benchmark, or ours when perf is missing. Run as root: make bench-sched.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/probe-dev/probe/bench/internal/harness"
	"github.com/probe-dev/probe/collector"
)

// A workload runs loops round trips and returns their duration.
type workload struct {
	name string
	run  func(loops int) (time.Duration, error)
}

// tracer states, in the order each round runs them.
const (
	off = iota
	hooks
	traced
	states
)

func main() {
	if cpu := os.Getenv(childEnv); cpu != "" {
		n, _ := strconv.Atoi(cpu)
		echo(n)
		return
	}
	loops := flag.Int("loops", 100000, "round trips per round")
	rounds := flag.Int("rounds", 11, "rounds; each runs the workload in every tracer state")
	flag.Parse()
	if os.Geteuid() != 0 {
		harness.Fail("needs root to load eBPF")
	}
	var work []workload
	perf, perfErr := exec.LookPath("perf")
	if perfErr == nil {
		work = append(work,
			workload{"perf bench sched pipe", func(n int) (time.Duration, error) { return perfPipe(perf, n, -1) }},
			workload{"perf, one CPU", func(n int) (time.Duration, error) { return perfPipe(perf, n, 0) }})
	} else {
		fmt.Fprintln(os.Stderr, "bench: perf not found (apt-get install linux-perf); running our equivalent only")
	}
	work = append(work,
		workload{"ping-pong, unpinned", func(n int) (time.Duration, error) { return pingPong(n, -1) }},
		workload{"ping-pong, one CPU", func(n int) (time.Duration, error) { return pingPong(n, 0) }})

	fmt.Printf("pipe round trips, %d per round, median of %d rounds; states alternate in each round\n", *loops, *rounds)
	fmt.Printf("%-24s %10s %18s %18s\n", "workload", "off µs/rt", "empty hooks µs/rt", "tracer µs/rt")
	var bound float64
	for i, w := range work {
		var d [states][]time.Duration
		for range *rounds {
			for s := range states {
				t, err := measure(w, *loops, s)
				if err != nil {
					harness.Fail(fmt.Sprintf("%s: %v", w.name, err))
				}
				d[s] = append(d[s], t)
			}
		}
		m := [states]float64{}
		for s := range states {
			m[s] = float64(median(d[s]).Nanoseconds()) / float64(*loops) / 1e3
		}
		over := func(s int) float64 { return 100 * (m[s] - m[off]) / m[off] }
		fmt.Printf("%-24s %10.3f %10.3f %+6.2f%% %10.3f %+6.2f%%\n", w.name, m[off], m[hooks], over(hooks), m[traced], over(traced))
		fmt.Fprintf(os.Stderr, "%s: off %v\n  hooks %v\n  tracer %v\n", w.name, d[off], d[hooks], d[traced])
		if i == 0 {
			bound = over(traced)
		}
	}
	empty, tracer, err := programCost(*loops)
	if err != nil {
		harness.Fail("program cost: " + err.Error())
	}
	fmt.Printf("per switch (kernel's bpf_stats, ping-pong on one CPU): empty program %v, tracer %v: the tracer's own work %v\n",
		empty, tracer, tracer-empty)
	fmt.Printf("tracer overhead on %s: %+.2f %% (bound: ≤ 2 %%)\n", work[0].name, bound)
	if bound > 2 {
		os.Exit(1)
	}
}

// measure runs w once in tracer state s. The tracer watches this process
// before the workload starts, so the workload's processes join the watched
// set at fork.
func measure(w workload, loops, s int) (time.Duration, error) {
	switch s {
	case hooks:
		closeHooks, err := emptyHooks()
		if err != nil {
			return 0, err
		}
		defer closeHooks()
	case traced:
		sw, err := collector.NewSchedWatch()
		if err != nil {
			return 0, err
		}
		defer sw.Close()
		if err := sw.Watch(uint32(os.Getpid())); err != nil {
			return 0, err
		}
		d, err := w.run(loops)
		if err != nil {
			return 0, err
		}
		// A tracer that saw nothing would measure nothing.
		var n uint64
		for _, tgid := range sw.Watched() {
			if st, ok := sw.Process(tgid); ok && tgid != uint32(os.Getpid()) {
				n += st.Voluntary + st.Involuntary
			}
		}
		if n < uint64(loops) {
			return 0, fmt.Errorf("the tracer saw %d switches of the workload in %d round trips", n, loops)
		}
		return d, nil
	}
	return w.run(loops)
}

// perfPipe runs perf's benchmark and returns the time it reports; cpu ≥ 0
// pins it (as taskset would: the child inherits this thread's affinity).
func perfPipe(perf string, loops, cpu int) (time.Duration, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := pin(cpu); err != nil {
		return 0, err
	}
	out, err := exec.Command(perf, "bench", "sched", "pipe", "-l", strconv.Itoa(loops)).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	var usPerOp float64
	for _, line := range splitLines(string(out)) {
		if _, err := fmt.Sscanf(line, "%g usecs/op", &usPerOp); err == nil {
			return time.Duration(usPerOp * 1e3 * float64(loops)), nil
		}
	}
	return 0, fmt.Errorf("no usecs/op in perf's output: %s", out)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
