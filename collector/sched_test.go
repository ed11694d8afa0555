package collector

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The SchedWatch tests re-execute the test binary, through
// TestSchedHelperProcess. Each child waits on a pipe (fd 3) until the test
// has watched it, so that nothing it does is missed, and reports on stdout
// in "key=value" lines.
const schedHelperEnv = "PROBE_SCHED_HELPER"

// TestSchedHelperProcess is not a test: it is the child's workload.
func TestSchedHelperProcess(t *testing.T) {
	mode := os.Getenv(schedHelperEnv)
	if mode == "" {
		t.Skip("helper process for the SchedWatch tests, run only as their child")
	}
	// One thread does the work, so that its CPU clock is the truth.
	runtime.LockOSThread()
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(2)
	}
	if cpu := os.Getenv("PROBE_SCHED_CPU"); cpu != "" {
		n, _ := strconv.Atoi(cpu)
		var set unix.CPUSet
		set.Set(n)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fail("pin", err)
		}
	}
	if os.Getenv("PROBE_SCHED_GATE") != "" {
		// A blocking read: returns at EOF, when the test closes its end.
		if _, err := os.NewFile(3, "gate").Read(make([]byte, 1)); err != nil && err.Error() != "EOF" {
			fail("gate", err)
		}
	}
	ms, _ := strconv.Atoi(os.Getenv("PROBE_SCHED_MS"))
	switch mode {
	case "burn":
		// Busy until this thread has had ms of CPU since the gate opened.
		start := threadCPU()
		for threadCPU()-start < time.Duration(ms)*time.Millisecond {
		}
		fmt.Printf("tid=%d\nthread_cpu_ns=%d\n", unix.Gettid(), int64(threadCPU()-start))
	case "sleep":
		for range ms {
			req := unix.Timespec{Nsec: 1e6}
			for {
				var rem unix.Timespec
				err := unix.Nanosleep(&req, &rem)
				if err == unix.EINTR { // the runtime's preemption signal
					req = rem
					continue
				}
				if err != nil {
					fail("nanosleep", err)
				}
				break
			}
		}
	case "spin":
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
		}
	case "fork":
		// The grandchild is not gated: it must be watched through the fork.
		cmd := exec.Command(os.Args[0], "-test.run=^TestSchedHelperProcess$")
		cmd.Env = append(os.Environ(), schedHelperEnv+"=burn", "PROBE_SCHED_GATE=")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			fail("grandchild", err)
		}
		fmt.Printf("child=%d\n", cmd.Process.Pid)
	}
	os.Exit(0)
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// schedHelper is a started helper, blocked until release.
type schedHelper struct {
	cmd  *exec.Cmd
	gate *os.File
	out  bytes.Buffer
	pid  uint32
}

func startSchedHelper(t *testing.T, mode string, env ...string) *schedHelper {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &schedHelper{gate: w}
	h.cmd = exec.Command(os.Args[0], "-test.run=^TestSchedHelperProcess$")
	h.cmd.Env = append(os.Environ(), append(env, schedHelperEnv+"="+mode, "PROBE_SCHED_GATE=1", "GOMAXPROCS=1")...)
	h.cmd.Stdout = &h.out
	h.cmd.Stderr = os.Stderr
	h.cmd.ExtraFiles = []*os.File{r}
	err = h.cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	h.pid = uint32(h.cmd.Process.Pid)
	t.Cleanup(func() {
		w.Close()
		if h.cmd.ProcessState == nil {
			h.cmd.Process.Kill()
			h.cmd.Wait()
		}
	})
	return h
}

func (h *schedHelper) release() { h.gate.Close() }

// wait reaps the helper and returns its utime+stime as /proc reported them
// just before (clock ticks, for information), the same from wait4's rusage
// (µs, the kernel's exact runtime split into user and system) and the
// helper's output lines. Both cover the whole run, start-up included.
func (h *schedHelper) wait(t *testing.T) (procCPU, rusageCPU time.Duration, out map[string]string) {
	t.Helper()
	// WNOWAIT: the exited process stays in /proc until Wait reaps it.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, int(h.pid), &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatalf("waitid %d: %v", h.pid, err)
	}
	procCPU = procStatCPU(t, h.pid)
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %d: %v", h.pid, err)
	}
	// The parent is told of the exit before the child's last switch out,
	// which ends its last slice of CPU: give that a moment.
	time.Sleep(20 * time.Millisecond)
	rusageCPU = h.cmd.ProcessState.UserTime() + h.cmd.ProcessState.SystemTime()
	out = make(map[string]string)
	for _, line := range strings.Split(h.out.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			out[k] = v
		}
	}
	return procCPU, rusageCPU, out
}

// procStatCPU reads utime+stime of a process from /proc/<pid>/stat.
func procStatCPU(t *testing.T, pid uint32) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Logf("read /proc stat of %d: %v", pid, err)
		return 0
	}
	// Fields after the command, which may hold spaces, in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on every Linux architecture Go supports
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

func newKernelSchedWatch(t *testing.T) *SchedWatch {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON) to load eBPF programs")
	}
	w, err := NewSchedWatch()
	if errors.Is(err, unix.EPERM) {
		t.Skipf("root without the capabilities (CAP_BPF, CAP_PERFMON): %v", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the scheduler watch needs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close scheduler watch: %v", err)
		}
	})
	return w
}

func watchAndRelease(t *testing.T, w *SchedWatch, hs ...*schedHelper) {
	t.Helper()
	for _, h := range hs {
		if err := w.Watch(h.pid); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hs {
		h.release()
	}
}

func within(got, want time.Duration, frac float64) bool {
	d := float64(got - want)
	return d <= frac*float64(want) && -d <= frac*float64(want)
}

func TestSchedWatchOnCPU(t *testing.T) {
	w := newKernelSchedWatch(t)
	h := startSchedHelper(t, "burn", "PROBE_SCHED_MS=500")
	watchAndRelease(t, w, h)
	procCPU, rusageCPU, out := h.wait(t)

	const want = 500 * time.Millisecond
	tid, _ := strconv.ParseUint(out["tid"], 10, 32)
	// Under load the exiting thread may wait a while for the CPU before its
	// last switch out, which credits its last slice: read until it settles.
	for last, deadline := time.Duration(-1), time.Now().Add(2*time.Second); time.Now().Before(deadline); {
		now := w.Threads(h.pid)[uint32(tid)].OnCPU
		if now == last {
			break
		}
		last = now
		time.Sleep(100 * time.Millisecond)
	}
	got, ok := w.Process(h.pid)
	if !ok {
		t.Fatalf("no stats for the helper (tgid %d)", h.pid)
	}
	thread, ok := w.Threads(h.pid)[uint32(tid)]
	if !ok {
		t.Errorf("no stats for the burning thread %d of %d: %v", tid, h.pid, w.Threads(h.pid))
	}
	t.Logf("500 ms burn: burning thread on-CPU %v (its own clock %s ns), process on-CPU %v; whole run, start-up included: rusage %v, /proc utime+stime %v; switches %d voluntary, %d involuntary",
		thread.OnCPU, out["thread_cpu_ns"], got.OnCPU, rusageCPU, procCPU, got.Voluntary, got.Involuntary)
	// The thread's clock is read as its burn ends; the tracer counts on
	// until the thread's last switch-out (Go parks a spinning thread a few
	// ms later), so the figure may exceed the burn a little but never fall
	// short of it.
	if thread.OnCPU < want*98/100 || thread.OnCPU > want*110/100 {
		t.Errorf("burning thread on-CPU %v, want %v −2 %% … +10 %%", thread.OnCPU, want)
	}
	// The process also ran the Go runtime's other threads and its exit:
	// at least the burn, at most what the kernel charged the whole run.
	if got.OnCPU < want*98/100 || got.OnCPU > rusageCPU*102/100 {
		t.Errorf("process on-CPU %v, want between %v and the whole run's %v (+2%%)", got.OnCPU, want*98/100, rusageCPU)
	}
}

func TestSchedWatchVoluntary(t *testing.T) {
	w := newKernelSchedWatch(t)
	h := startSchedHelper(t, "sleep", "PROBE_SCHED_MS=1000")
	watchAndRelease(t, w, h)
	h.wait(t)
	got, ok := w.Process(h.pid)
	if !ok {
		t.Fatalf("no stats for the helper (tgid %d)", h.pid)
	}
	t.Logf("1000 sleeps of 1 ms: %d voluntary, %d involuntary, on-CPU %v, %d run-queue waits",
		got.Voluntary, got.Involuntary, got.OnCPU, got.Waits())
	if got.Voluntary < 1000 {
		t.Errorf("voluntary switches %d, want >= 1000", got.Voluntary)
	}
	// Each wakeup is followed by a wait on the run queue, however short.
	if got.Waits() < 1000 {
		t.Errorf("run-queue waits %d, want >= 1000 (one per wakeup)", got.Waits())
	}
}

func TestSchedWatchInvoluntary(t *testing.T) {
	w := newKernelSchedWatch(t)
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Fatal(err)
	}
	cpu := -1
	for i := range 1024 {
		if allowed.IsSet(i) {
			cpu = i
			break
		}
	}
	if cpu < 0 {
		t.Fatal("no CPU in our affinity mask")
	}
	// Two busy loops on one CPU: each waits while the other runs.
	env := []string{"PROBE_SCHED_MS=300", "PROBE_SCHED_CPU=" + strconv.Itoa(cpu)}
	a := startSchedHelper(t, "spin", env...)
	b := startSchedHelper(t, "spin", env...)
	watchAndRelease(t, w, a, b)
	a.wait(t)
	b.wait(t)
	for _, h := range []*schedHelper{a, b} {
		got, ok := w.Process(h.pid)
		if !ok {
			t.Fatalf("no stats for helper tgid %d", h.pid)
		}
		longest := -1
		for k, n := range got.RunQueue {
			if n > 0 {
				longest = k
			}
		}
		t.Logf("spinner %d on cpu %d: %d involuntary, %d voluntary, on-CPU %v, run queue %v",
			h.pid, cpu, got.Involuntary, got.Voluntary, got.OnCPU, got.RunQueue)
		if got.Involuntary == 0 {
			t.Errorf("tgid %d: no involuntary switches, though it shared cpu %d with another busy process", h.pid, cpu)
		}
		// Waiting for the other spinner's slice takes far more than 64 µs.
		if longest < 6 {
			t.Errorf("tgid %d: longest run-queue wait in bucket %d, want one >= 64 µs (bucket 6)", h.pid, longest)
		}
	}
}

func TestSchedWatchFollowsFork(t *testing.T) {
	w := newKernelSchedWatch(t)
	h := startSchedHelper(t, "fork", "PROBE_SCHED_MS=200")
	watchAndRelease(t, w, h)
	_, _, out := h.wait(t)
	child64, err := strconv.ParseUint(out["child"], 10, 32)
	if err != nil {
		t.Fatalf("helper output %q: no child pid", h.out.String())
	}
	child := uint32(child64)
	watched := w.Watched()
	if !slices.Contains(watched, child) {
		t.Errorf("forked child %d not in the watched set %v", child, watched)
	}
	got, ok := w.Process(child)
	if !ok {
		t.Fatalf("no stats for forked child %d", child)
	}
	t.Logf("forked child %d burning 200 ms: on-CPU %v, watched %v", child, got.OnCPU, watched)
	if got.OnCPU < 190*time.Millisecond {
		t.Errorf("forked child on-CPU %v, want >= 190 ms", got.OnCPU)
	}
}

func TestSchedWatchUnknownProcess(t *testing.T) {
	w := newKernelSchedWatch(t)
	if got, ok := w.Process(1 << 23); ok {
		t.Errorf("stats %+v for a tgid that cannot exist", got)
	}
	if got := w.Watched(); len(got) != 0 {
		t.Errorf("watched %v before any Watch", got)
	}
}

// One watch serves several trees: each counts its own process and the
// children it forked, and nothing of the other's.
func TestSchedWatchTrees(t *testing.T) {
	w := newKernelSchedWatch(t)
	a := startSchedHelper(t, "fork", "PROBE_SCHED_MS=300")
	b := startSchedHelper(t, "fork", "PROBE_SCHED_MS=100")
	watchAndRelease(t, w, a, b)
	child := map[*schedHelper]uint32{}
	for _, h := range []*schedHelper{a, b} {
		_, _, out := h.wait(t)
		c, err := strconv.ParseUint(out["child"], 10, 32)
		if err != nil {
			t.Fatalf("helper output %q: no child pid", h.out.String())
		}
		child[h] = uint32(c)
	}
	for _, tc := range []struct {
		h    *schedHelper
		burn time.Duration
	}{{a, 300 * time.Millisecond}, {b, 100 * time.Millisecond}} {
		own, _ := w.Process(tc.h.pid)
		kid, _ := w.Process(child[tc.h])
		tree := w.Tree(tc.h.pid)
		t.Logf("tree of %d: on-CPU %v = itself %v + its child %d burning %v: %v", tc.h.pid, tree.OnCPU, own.OnCPU, child[tc.h], tc.burn, kid.OnCPU)
		// The Go runtime of the helper may start a process of its own too,
		// which is part of the tree; the other tree's child burned 100 ms
		// or more, and must not be.
		if extra := tree.OnCPU - own.OnCPU - kid.OnCPU; extra < 0 || extra > 50*time.Millisecond {
			t.Errorf("tree of %d: %v on CPU; want its process's and its child's, %v + %v, and little else",
				tc.h.pid, tree.OnCPU, own.OnCPU, kid.OnCPU)
		}
		if kid.OnCPU < tc.burn*98/100 {
			t.Errorf("child %d burned %v, seen %v", child[tc.h], tc.burn, kid.OnCPU)
		}
	}
	// The two trees share out every watched process.
	var all time.Duration
	for _, tgid := range w.Watched() {
		st, _ := w.Process(tgid)
		all += st.OnCPU
	}
	if ta, tb := w.Tree(a.pid).OnCPU, w.Tree(b.pid).OnCPU; ta+tb != all || w.Tree(a.pid, b.pid).OnCPU != all {
		t.Errorf("trees %v + %v, both %v; every watched process %v", ta, tb, w.Tree(a.pid, b.pid).OnCPU, all)
	}
}

// A thread on a CPU is counted up to now, not only up to its last switch
// out: between two reads, no more CPU than the wall time between them plus
// the kernel's lag in updating a running thread's runtime (one tick, at
// most 10 ms with HZ=100), and the whole burn by its end.
func TestSchedWatchRunningThread(t *testing.T) {
	w := newKernelSchedWatch(t)
	h := startSchedHelper(t, "burn", "PROBE_SCHED_MS=600")
	watchAndRelease(t, w, h)
	// A running thread's runtime is brought up to date at scheduler ticks, so
	// a reading may lag by a tick, and on a loaded VM a tick can come late:
	// two ticks of slack still catch a run counted twice (~2× the wall time
	// of each 50 ms step).
	const tick = 10 * time.Millisecond
	const slack = 2 * tick
	var prev time.Duration
	prevStart := time.Now()
	for h.cmd.ProcessState == nil {
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		cur := w.Tree(h.pid).OnCPU
		end := time.Now()
		if d, wall := cur-prev, end.Sub(prevStart); d > wall+slack {
			t.Errorf("%v on CPU in %v of wall time: one thread cannot", d, wall)
		}
		prev, prevStart = cur, start
		var st unix.Siginfo
		if unix.Waitid(unix.P_PID, int(h.pid), &st, unix.WEXITED|unix.WNOWAIT|unix.WNOHANG, nil) == nil && st.Signo != 0 {
			break
		}
	}
	h.wait(t)
	if got := w.Tree(h.pid).OnCPU; got < 590*time.Millisecond {
		t.Errorf("on-CPU %v after a 600 ms burn", got)
	}
}
