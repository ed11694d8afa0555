package resources

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// shLoop is a shell busy for n rounds of its loop on one thread, without a
// system call to sleep in: about 1 µs of CPU a round.
func shLoop(n int) string {
	return fmt.Sprintf("i=0; while [ $i -lt %d ]; do i=$((i+1)); done", n)
}

// run starts cmd with cfg, waits for its end and returns its series,
// summary and exit.
func run(t *testing.T, cmd *exec.Cmd, cfg Config) (dump.ResourceSeries, estimator.ResourceSummary, Exit, *os.ProcessState) {
	t.Helper()
	p, err := Start(cmd, cfg)
	if err != nil {
		t.Fatal(err)
	}
	series := p.Wait()
	exit, ok := p.Exit()
	if !ok {
		t.Fatal("no exit status after Wait")
	}
	s := estimator.SummariseResources(series)
	t.Logf("%s: %s, %d samples over %v; CPU avg %.1f %%, peak %.1f %% over %v (%s); user %v, system %v, on CPU %v; RSS peak %.1f MiB",
		cfg.Name, exit, s.Samples, s.Duration, s.AvgCPU, s.PeakCPU, s.PeakWindow, s.CPUSource, s.User, s.System, s.OnCPU, float64(s.PeakRSS)/(1<<20))
	return series, s, exit, cmd.ProcessState
}

// One thread never runs more than 100 % of a core, however busy the
// machine: with eBPF, the busiest window of the sampled series stays
// within what a running thread's lagging runtime (one kernel tick) and the
// sample's dating (maxReadTime) allow. From /proc, over 1 s windows, the
// 10 ms steps allow 2 %.
func TestOneThreadPeak(t *testing.T) {
	sched := newSched(t)
	tick := kernelTick(t)
	for _, tc := range []struct {
		name  string
		sched *collector.SchedWatch
	}{{"ebpf", sched}, {"proc", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			_, s, exit, ps := run(t, exec.Command("sh", "-c", shLoop(600_000)), Config{Name: "loop", Sched: tc.sched})
			if exit.Code != 0 {
				t.Fatalf("loop: %s", exit)
			}
			limit := 100 * (1 + float64(tick+maxReadTime)/float64(s.PeakWindow))
			if tc.sched == nil {
				limit = 102 + 100*float64(2*maxReadTime)/float64(s.PeakWindow)
			}
			if s.Samples < 4 || s.PeakCPU > limit || s.AvgCPU > limit {
				t.Errorf("one thread: peak %.1f %%, average %.1f %% over %d samples; want both at most %.1f %%", s.PeakCPU, s.AvgCPU, s.Samples, limit)
			}
			// The totals are the kernel's (wait4), less the shim's start.
			cpu := ps.UserTime() + ps.SystemTime()
			if tc.sched != nil && (s.OnCPU > cpu || s.OnCPU < cpu*90/100) {
				t.Errorf("on CPU %v, the whole run %v (the shim's start included)", s.OnCPU, cpu)
			}
		})
	}
}

// sleep costs next to nothing, and the shim that held it (a Go program,
// tens of ms of CPU to start on a busy machine) is not counted.
func TestSleepCostsNothing(t *testing.T) {
	sched := newSched(t)
	_, s, exit, _ := run(t, exec.Command("sleep", "1"), Config{Name: "sleep", Sched: sched})
	if exit.Code != 0 {
		t.Fatalf("sleep: %s", exit)
	}
	// What it does cost is its exec (with the end of the shim's other
	// threads) and the dynamic loader: 8 to 10 ms on a busy machine, up
	// to 13 % of a first window of 75 ms.
	if s.PeakCPU > 15 || s.AvgCPU > 2 || s.OnCPU > 20*time.Millisecond {
		t.Errorf("sleep 1: peak %.1f %%, average %.1f %%, on CPU %v; want next to nothing", s.PeakCPU, s.AvgCPU, s.OnCPU)
	}
}

// A child's costs are its parent's: a shell that only waits for a subshell
// burning CPU shows the subshell's time, with eBPF and from /proc, and the
// shell's own process shows almost none of it.
func TestChildrenCounted(t *testing.T) {
	sched := newSched(t)
	script := "(" + shLoop(300_000) + "); true"
	for _, tc := range []struct {
		name  string
		sched *collector.SchedWatch
	}{{"ebpf", sched}, {"proc", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			series, s, _, ps := run(t, exec.Command("sh", "-c", script), Config{Name: "parent", Sched: tc.sched})
			// wait4's: the shell and the subshell it waited for, and the
			// shim that held the shell (its user and system time are the
			// first sample's), which the tree's figures leave out.
			first := series.Samples[0]
			cpu := ps.UserTime() + ps.SystemTime() - first.User - first.System
			if cpu < 100*time.Millisecond {
				t.Fatalf("the subshell burned %v: too little to judge", cpu)
			}
			if got := s.User + s.System; got < cpu*80/100 {
				t.Errorf("user+system %v, the tree's %v", got, cpu)
			}
			if tc.sched != nil {
				own, _ := sched.Process(uint32(series.PID))
				t.Logf("the shell's own process: on CPU %v", own.OnCPU)
				// The shim runs on from measuring itself to its exec, on
				// the tracer's side of the baseline: a little over wait4's.
				if s.OnCPU < cpu*90/100 || s.OnCPU > cpu+5*time.Millisecond || own.OnCPU > s.OnCPU/4 {
					t.Errorf("tree on CPU %v, the shell's own %v; wait4 %v", s.OnCPU, own.OnCPU, cpu)
				}
			}
		})
	}
}

// Every child counts, however short: a shell starts 300 subshells that
// exit at once, and each is credited with the CPU it used. The tracer
// once counted a thread's runs from the switch-ins it saw, and now and
// then one was not seen (the switch out came with no switch in before
// it): a child that ran once had nothing, and a busy subshell on an idle
// CPU, never preempted, took its whole tree's time with it.
func TestShortChildrenCounted(t *testing.T) {
	sched := newSched(t)
	const children = 300
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do (:); i=$((i+1)); done", children)
	series, _, exit, _ := run(t, exec.Command("sh", "-c", script), Config{Name: "forks", Sched: sched})
	if exit.Code != 0 {
		t.Fatalf("forks: %s", exit)
	}
	procs := sched.TreeProcesses(uint32(series.PID))
	var none []uint32
	for tgid, st := range procs {
		if st.OnCPU == 0 {
			none = append(none, tgid)
		}
	}
	if len(procs) < children+1 || len(none) > 0 {
		t.Errorf("%d processes in the tree, want %d; %d credited with no CPU: %v", len(procs), children+1, len(none), none)
	}
}

// The traffic is that of the process's own network namespace: a helper
// started in a namespace of its own sends 100 datagrams to itself, and its
// loopback carries exactly those, whatever this namespace's does.
func TestNetworkOwnNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip (iproute2)")
	}
	// sh execs the helper: the sampled pid is the helper's, in the new
	// namespace from its start.
	cmd := helperCmd("udp")
	cmd.Path = "/bin/sh"
	cmd.Args = []string{"sh", "-c", fmt.Sprintf("%s link set lo up && exec %s", ip, os.Args[0])}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	cmd.Stderr = os.Stderr
	_, s, exit, _ := run(t, cmd, Config{Name: "udp", Interval: 20 * time.Millisecond})
	if exit.Code != 0 {
		t.Fatalf("helper: %s", exit)
	}
	lo, ok := s.Net["lo"]
	if !ok {
		t.Fatalf("no lo in %v", s.Net)
	}
	t.Logf("lo: rx %d packets, tx %d", lo.Rx.Packets, lo.Tx.Packets)
	if lo.Tx.Packets != udpDatagrams || lo.Rx.Packets != udpDatagrams {
		t.Errorf("lo carried %d packets out, %d in; want %d each", lo.Tx.Packets, lo.Rx.Packets, udpDatagrams)
	}
	if len(s.Net) != 1 {
		t.Errorf("interfaces %v: a new namespace has only lo", s.Net)
	}
}

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		script string
		want   Exit
		text   string
	}{
		{"exit 0", Exit{}, "exit code 0"},
		{"exit 3", Exit{Code: 3}, "exit code 3"},
		{"kill -9 $$", Exit{Code: 137, Signal: syscall.SIGKILL}, "killed by signal 9 (killed)"},
		{"kill -TERM $$", Exit{Code: 143, Signal: syscall.SIGTERM}, "killed by signal 15 (terminated)"},
	} {
		t.Run(tc.script, func(t *testing.T) {
			_, _, exit, _ := run(t, exec.Command("sh", "-c", tc.script), Config{Name: "sh"})
			if exit != tc.want || exit.String() != tc.text {
				t.Errorf("%+v (%s), want %+v (%s)", exit, exit, tc.want, tc.text)
			}
		})
	}
}

// Stop ends the command's whole group with Config.Group: the shell and the
// sleep it waits for.
func TestStopGroup(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 100; echo not stopped")
	var out strings.Builder
	cmd.Stdout = &out
	p, err := Start(cmd, Config{Name: "sh", Group: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	p.Stop(time.Second)
	p.Wait()
	exit, _ := p.Exit()
	if exit.Signal != syscall.SIGINT || time.Since(start) > 900*time.Millisecond || out.Len() > 0 {
		t.Errorf("after Stop: %s in %v, output %q; want SIGINT at once", exit, time.Since(start), out.String())
	}
}
