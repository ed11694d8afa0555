package collector

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as a child with a known workload and
// a known tgid (its pid), through TestSwitchHelperProcess.
const switchHelperEnv = "PROBE_SWITCH_HELPER"

// TestSwitchHelperProcess is not a test: it is the child's workload.
func TestSwitchHelperProcess(t *testing.T) {
	mode := os.Getenv(switchHelperEnv)
	if mode == "" {
		t.Skip("helper process for the SwitchCounter tests, run only as their child")
	}
	runtime.LockOSThread()
	switch mode {
	case "sleep":
		// A plain nanosleep blocks this thread every time: 300 voluntary switches.
		for range 300 {
			req := unix.Timespec{Nsec: 1e6}
			// The Go runtime's preemption signals may cut a sleep short.
			for {
				var rem unix.Timespec
				err := unix.Nanosleep(&req, &rem)
				if err == unix.EINTR {
					req = rem
					continue
				}
				if err != nil {
					fmt.Fprintln(os.Stderr, "nanosleep:", err)
					os.Exit(2)
				}
				break
			}
		}
	case "spin":
		cpu, _ := strconv.Atoi(os.Getenv("PROBE_SWITCH_CPU"))
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			fmt.Fprintln(os.Stderr, "pin:", err)
			os.Exit(2)
		}
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		}
	}
	os.Exit(0)
}

func startSwitchHelper(t *testing.T, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSwitchHelperProcess$")
	cmd.Env = append(os.Environ(), append(env, switchHelperEnv+"="+mode, "GOMAXPROCS=1")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func newKernelSwitchCounter(t *testing.T) *SwitchCounter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_BPF, CAP_PERFMON) to load eBPF programs")
	}
	c, err := NewSwitchCounter()
	if errors.Is(err, unix.EPERM) {
		t.Skipf("root without the capabilities (CAP_BPF, CAP_PERFMON): %v", err)
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("kernel lacks a feature the sched_switch counter needs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close switch counter: %v", err)
		}
	})
	return c
}

func TestSwitchCounterVoluntary(t *testing.T) {
	c := newKernelSwitchCounter(t)
	cmd := startSwitchHelper(t, "sleep")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	got, ok := c.Counts(uint32(cmd.Process.Pid))
	if !ok {
		t.Fatalf("no counts for the helper (tgid %d)", cmd.Process.Pid)
	}
	t.Logf("sleeper: %+v", got)
	if got.Voluntary < 300 {
		t.Errorf("voluntary switches %d, want >= 300 (300 sleeps of 1 ms)", got.Voluntary)
	}
}

func TestSwitchCounterInvoluntary(t *testing.T) {
	c := newKernelSwitchCounter(t)
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
	// Two busy loops on one CPU: the scheduler must preempt them.
	env := "PROBE_SWITCH_CPU=" + strconv.Itoa(cpu)
	a := startSwitchHelper(t, "spin", env)
	b := startSwitchHelper(t, "spin", env)
	for _, cmd := range []*exec.Cmd{a, b} {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	for _, cmd := range []*exec.Cmd{a, b} {
		got, ok := c.Counts(uint32(cmd.Process.Pid))
		if !ok {
			t.Fatalf("no counts for helper tgid %d", cmd.Process.Pid)
		}
		t.Logf("spinner %d on cpu %d: %+v", cmd.Process.Pid, cpu, got)
		if got.Involuntary == 0 {
			t.Errorf("tgid %d: no involuntary switches, though it shared cpu %d with another busy process", cmd.Process.Pid, cpu)
		}
	}
}

func TestSwitchCounterUnknownProcess(t *testing.T) {
	c := newKernelSwitchCounter(t)
	// Above pid_max (at most 2^22): no such process.
	if got, ok := c.Counts(1 << 23); ok {
		t.Errorf("counts %+v for a tgid that cannot exist", got)
	}
}
