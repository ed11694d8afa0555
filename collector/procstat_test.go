package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The ProcStat tests re-execute the test binary as a child whose workload the
// test controls: it prints "ready", waits for a line on stdin, does its work,
// prints "done [figure]" and then blocks until stdin closes.
const procStatHelperEnv = "PROBE_PROCSTAT_HELPER"

const (
	touchBytes = 256 << 20
	burnCPU    = 300 * time.Millisecond
	extraTasks = 8
)

// TestProcStatHelperProcess is not a test: it is the child's workload.
func TestProcStatHelperProcess(t *testing.T) {
	mode := os.Getenv(procStatHelperEnv)
	if mode == "" {
		t.Skip("helper process for the ProcStat tests, run only as their child")
	}
	in := bufio.NewReader(os.Stdin)
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(0) // the parent only wanted the idle child
	}
	var keep []byte
	if mode == "threads" {
		// Each "go" locks extraTasks more goroutines to threads of their own;
		// the first also uses up the idle threads the runtime had in reserve.
		for {
			tids := make(chan int)
			for range extraTasks {
				go func() {
					runtime.LockOSThread()
					tids <- unix.Gettid()
					select {} // hold the thread for the life of the process
				}()
			}
			line := "done"
			for range extraTasks {
				line += " " + strconv.Itoa(<-tids)
			}
			fmt.Println(line)
			if _, err := in.ReadString('\n'); err != nil {
				os.Exit(0)
			}
		}
	}
	switch mode {
	case "touch":
		keep = make([]byte, touchBytes)
		for i := 0; i < len(keep); i += os.Getpagesize() {
			keep[i] = 1
		}
		fmt.Println("done")
	case "burn":
		start := processCPU()
		x := 1.0
		for processCPU()-start < burnCPU {
			for range 10000 {
				x = x*1.0000001 + 1e-9
			}
		}
		fmt.Println("done", int64(processCPU()), x > 0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		os.Exit(2)
	}
	_, _ = io.Copy(io.Discard, in)
	runtime.KeepAlive(keep)
	os.Exit(0)
}

func processCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

type procHelper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startProcHelper(t *testing.T, mode string) *procHelper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcStatHelperProcess$")
	cmd.Env = append(os.Environ(), procStatHelperEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &procHelper{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = h.stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if got := h.line(t); got != "ready" {
		t.Fatalf("helper said %q, want ready", got)
	}
	return h
}

func (h *procHelper) line(t *testing.T) string {
	t.Helper()
	s, err := h.out.ReadString('\n')
	if err != nil {
		t.Fatalf("read from helper: %v", err)
	}
	return strings.TrimSpace(s)
}

// run tells the helper to do its work and returns the fields after "done".
func (h *procHelper) run(t *testing.T) []string {
	t.Helper()
	if _, err := io.WriteString(h.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(h.line(t))
	if len(f) == 0 || f[0] != "done" {
		t.Fatalf("helper said %q, want done", f)
	}
	return f[1:]
}

func readProcStat(t *testing.T, pid int) ProcStat {
	t.Helper()
	s, err := ReadProcStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestProcStatMemory(t *testing.T) {
	h := startProcHelper(t, "touch")
	before := readProcStat(t, h.cmd.Process.Pid)
	h.run(t)
	after := readProcStat(t, h.cmd.Process.Pid)
	t.Logf("before %+v after %+v", before, after)
	for _, c := range []struct {
		name          string
		before, after uint64
	}{
		{"RSS", before.RSS, after.RSS},
		{"PeakRSS", before.PeakRSS, after.PeakRSS},
	} {
		d := float64(c.after) - float64(c.before)
		rel := d/touchBytes - 1
		t.Logf("256 MiB touch: %s delta %.1f MB = %+.2f %%", c.name, d/1e6, 100*rel)
		// Touching 256 MiB also maps its page tables (0.5 MiB) and may grow
		// the helper's runtime: RSS grows by at least the touched bytes less
		// 2 %, and by at most 3 % more.
		if rel < -0.02 || rel > 0.03 {
			t.Errorf("%s grew by %.0f bytes, want %d −2 %% … +3 %%", c.name, d, touchBytes)
		}
	}
	if after.PeakRSS < after.RSS {
		t.Errorf("PeakRSS %d < RSS %d", after.PeakRSS, after.RSS)
	}
}

func TestProcStatCPU(t *testing.T) {
	h := startProcHelper(t, "burn")
	f := h.run(t)
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("helper's CPU time %q: %v", f[0], err)
	}
	want := time.Duration(ns)
	s := readProcStat(t, h.cmd.Process.Pid)
	got := s.User + s.System
	rel := float64(got-want) / float64(want)
	t.Logf("%v burn: User %v + System %v = %v, child's CLOCK_PROCESS_CPUTIME_ID %v: %+.2f %%",
		burnCPU, s.User, s.System, got, want, 100*rel)
	// /proc truncates utime and stime to whole ticks of 10 ms each, so at
	// 300 ms the sum may read up to 20 ms (6.7 %) low; allow that as well.
	tol := max(want/20, 2*time.Second/procUserHZ)
	if d := got - want; d > tol || d < -tol {
		t.Errorf("User+System %v, want %v ± %v (5 %% or two ticks)", got, want, tol)
	}
}

func TestProcStatThreads(t *testing.T) {
	h := startProcHelper(t, "threads")
	pid := h.cmd.Process.Pid
	// The Go runtime keeps idle threads that a locked goroutine may take
	// instead of a new one; the first round uses most of them up.
	h.run(t)
	before, _ := settledThreads(t, pid)
	tids := h.run(t)
	after, tasks := settledThreads(t, pid)
	t.Logf("threads: %d before, %d after %d more locked goroutines; /proc/PID/task has %d",
		before, after, extraTasks, len(tasks))
	if after != len(tasks) {
		t.Errorf("Threads %d, /proc/%d/task lists %d", after, pid, len(tasks))
	}
	seen := map[string]bool{}
	for _, tid := range tids {
		if !tasks[tid] || seen[tid] {
			t.Errorf("locked thread %s missing from /proc/%d/task or reported twice", tid, pid)
		}
		seen[tid] = true
	}
	// The runtime may hand a locked goroutine an idle thread or start a spare
	// one, so the growth is extraTasks give or take a thread or two.
	if d := after - before; d < extraTasks-2 || d > extraTasks+2 {
		t.Errorf("Threads grew by %d, want %d ± 2", d, extraTasks)
	}
}

// settledThreads waits until the runtime stops starting threads, then
// returns ReadProcStat's count and the tids listed in /proc/PID/task.
func settledThreads(t *testing.T, pid int) (int, map[string]bool) {
	t.Helper()
	var n int
	tasks := map[string]bool{}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		n = readProcStat(t, pid).Threads
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			t.Fatal(err)
		}
		clear(tasks)
		for _, e := range ents {
			tasks[e.Name()] = true
		}
		if n == len(tasks) && n == readProcStat(t, pid).Threads {
			break
		}
	}
	return n, tasks
}

func TestProcStatGone(t *testing.T) {
	h := startProcHelper(t, "touch")
	pid := h.cmd.Process.Pid
	if err := h.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Unreaped, the child is a zombie: its /proc entry stays.
	var err error
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if _, err = ReadProcStat(pid); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrProcessGone) {
		t.Errorf("zombie: err %v, want ErrProcessGone", err)
	}
	_ = h.cmd.Wait()
	_, err = ReadProcStat(pid)
	t.Logf("reaped: %v", err)
	if !errors.Is(err, ErrProcessGone) {
		t.Errorf("reaped: err %v, want ErrProcessGone", err)
	}
}
