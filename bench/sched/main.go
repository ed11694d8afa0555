// Command sched measures what probe's scheduler tracer costs a
// context-switch-heavy workload (issue 6): two processes bounce a byte over
// a pair of pipes, as `perf bench sched pipe` does, alternately without and
// with collector.SchedWatch loaded and watching them, and the slowdown of
// the median round is printed. Run as root: make bench-sched.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector"
)

const childEnv = "PROBE_BENCH_SCHED_CHILD"

func main() {
	if os.Getenv(childEnv) != "" {
		echo()
		return
	}
	loops := flag.Int("loops", 200000, "round trips per round")
	rounds := flag.Int("rounds", 5, "rounds with and without the tracer")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("needs root to load eBPF")
	}
	var off, on []time.Duration
	for r := range *rounds {
		d, err := round(*loops, false)
		if err != nil {
			fail(err.Error())
		}
		off = append(off, d)
		d, err = round(*loops, true)
		if err != nil {
			fail(err.Error())
		}
		on = append(on, d)
		fmt.Fprintf(os.Stderr, "round %d: off %v, on %v\n", r+1, off[r], on[r])
	}
	mOff, mOn := median(off), median(on)
	over := 100 * (float64(mOn) - float64(mOff)) / float64(mOff)
	perOff := float64(mOff.Nanoseconds()) / float64(*loops)
	perOn := float64(mOn.Nanoseconds()) / float64(*loops)
	fmt.Printf("pipe ping-pong, %d round trips, median of %d rounds alternating\n", *loops, *rounds)
	fmt.Printf("  tracer off  %v  (%.2f µs per round trip)\n", mOff, perOff/1e3)
	fmt.Printf("  tracer on   %v  (%.2f µs per round trip)\n", mOn, perOn/1e3)
	fmt.Printf("  overhead    %+.2f %%  (bound: ≤ 2 %%)\n", over)
	if over > 2 {
		os.Exit(1)
	}
}

// round runs one ping-pong of loops round trips and returns its duration;
// with trace, both processes are watched by a freshly loaded SchedWatch.
func round(loops int, trace bool) (time.Duration, error) {
	var w *collector.SchedWatch
	if trace {
		var err error
		if w, err = collector.NewSchedWatch(); err != nil {
			return 0, err
		}
		defer w.Close()
		if err := w.Watch(uint32(os.Getpid())); err != nil {
			return 0, err
		}
	}
	toChild, fromParent, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	fromChild, toParent, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.ExtraFiles = []*os.File{toChild, toParent}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	toChild.Close()
	toParent.Close()
	if w != nil {
		w.Watch(uint32(cmd.Process.Pid))
	}
	b := []byte{1}
	start := time.Now()
	for range loops {
		if _, err := fromParent.Write(b); err != nil {
			return 0, err
		}
		if _, err := fromChild.Read(b); err != nil {
			return 0, err
		}
	}
	d := time.Since(start)
	fromParent.Close()
	cmd.Wait()
	fromChild.Close()
	return d, nil
}

// echo is the child: it returns every byte until the parent hangs up.
func echo() {
	in, out := os.NewFile(3, "in"), os.NewFile(4, "out")
	b := make([]byte, 1)
	for {
		if _, err := in.Read(b); err != nil {
			return
		}
		if _, err := out.Write(b); err != nil {
			return
		}
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}
