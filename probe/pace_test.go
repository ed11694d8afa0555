package probe

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector"
)

// slotLog is what a send callback saw: which slot, when it was due, when it
// went, and from which thread.
type slotLog struct {
	i        int
	at, sent int64
	policy   uint32
}

func logSlots(logs *[]slotLog) func(i int, at int64) {
	return func(i int, at int64) {
		l := slotLog{i: i, at: at, sent: collector.MonotonicNow()}
		if a, err := unix.SchedGetAttr(0, 0); err == nil {
			l.policy = a.Policy
		}
		*logs = append(*logs, l)
	}
}

// checkSlots fails unless the slots are 0..n-1 in order and none went
// early; it returns how many went more than late after their time, and in
// how many runs of consecutive slots (a stall makes one run).
func checkSlots(t *testing.T, logs []slotLog, n int, late time.Duration) (lateSlots, runs int) {
	t.Helper()
	if len(logs) != n {
		t.Fatalf("%d slots sent, want %d", len(logs), n)
	}
	for k, l := range logs {
		if l.i != k {
			t.Fatalf("slot %d sent %d-th", l.i, k)
		}
		if l.sent < l.at {
			t.Fatalf("slot %d sent %d ns early", l.i, l.at-l.sent)
		}
		if time.Duration(l.sent-l.at) > late {
			if lateSlots++; k == 0 || time.Duration(logs[k-1].sent-logs[k-1].at) <= late {
				runs++
			}
		}
	}
	return lateSlots, runs
}

// As root a 1 ms schedule is paced from SCHED_FIFO threads, in order and
// never early, and no thread is left real-time afterwards.
func TestPaceRealtime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: SCHED_FIFO")
	}
	if !realtimePacing(time.Millisecond) {
		t.Skip("needs two CPUs: one CPU never paces real-time")
	}
	var logs []slotLog
	sent, realtime, err := pace(context.Background(), collector.MonotonicNow(), time.Millisecond, 100, logSlots(&logs))
	if err != nil || sent != 100 || !realtime {
		t.Fatalf("sent %d, real-time %v, %v; want 100, true", sent, realtime, err)
	}
	checkSlots(t, logs, 100, time.Second)
	for _, l := range logs {
		if l.policy != unix.SCHED_FIFO {
			t.Fatalf("slot %d sent from a thread of policy %d, not SCHED_FIFO", l.i, l.policy)
		}
	}
	// The pacers' threads end with their goroutines, shortly after.
	deadline := time.Now().Add(2 * time.Second)
	for {
		fifo := fifoThreads(t)
		if len(fifo) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads %v still SCHED_FIFO after pace returned", fifo)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fifoThreads(t *testing.T) []int {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var fifo []int
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if a, err := unix.SchedGetAttr(tid, 0); err == nil && a.Policy == unix.SCHED_FIFO {
			fifo = append(fifo, tid)
		}
	}
	return fifo
}

// A CPU taken away for 5 ms at a time while its pacer sleeps (by a
// higher-priority real-time process, as a hypervisor is slow to run a vCPU
// that halted) makes a lone pacer there miss the slots of each stall; with a
// second pacer on another CPU every slot still goes on time.
//
// A stall that catches a pacer inside its send (a few µs of each slot)
// delays the other one too: sends are serialized. The hog stalls mid-sleep,
// as halted vCPUs do.
func TestPaceSurvivesAStalledCPU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: SCHED_FIFO")
	}
	cpus := allowedCPUs()
	if len(cpus) < 2 {
		t.Skip("needs two CPUs")
	}
	const n, every = 600, 25 // slots, and ms from a stall to the next
	run := func(pacers []int) (stalls int) {
		hog := exec.Command(os.Args[0], "-test.run=^$")
		hog.Env = append(os.Environ(), fmt.Sprintf("%s=%d %d", hogEnv, cpus[0], every))
		out, err := hog.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := hog.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			hog.Process.Kill()
			hog.Wait()
		}()
		if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
			t.Fatalf("the hog did not start: %v", err)
		}
		grid := every * int64(time.Millisecond)
		start := (collector.MonotonicNow()/grid + 1) * grid
		var logs []slotLog
		if _, _, err := paceOn(context.Background(), pacers, start, time.Millisecond, n, logSlots(&logs)); err != nil {
			t.Fatal(err)
		}
		_, stalls = checkSlots(t, logs, n, time.Millisecond)
		return stalls
	}
	// The truth: the stalls are real, a lone pacer under the hog misses
	// slots in most of the 24.
	lone := run(cpus[:1])
	if lone < n/every/2 {
		t.Fatalf("a lone pacer under the hog was late in %d stalls of %d; the hog did not stall its CPU", lone, n/every)
	}
	// The second pacer keeps the schedule through them. What still shows
	// is mostly the VM's own stalls of the other CPU, 0.2–0.6 % of slots
	// here: 0, 1, 2 and 3 stalls of 12 in 64, 42, 11 and 3 runs of 120.
	if late := run(cpus[:2]); late > n/every/4 {
		t.Errorf("two pacers, one CPU hogged: late in %d stalls of %d (a lone pacer: %d)", late, n/every, lone)
	}
}

// hogEnv makes the test binary the hog: "CPU EVERY" takes CPU from every
// thread below its real-time priority for 5 ms from 400 µs after each
// multiple of EVERY ms of CLOCK_MONOTONIC, until killed. It says "ready"
// once it runs real-time.
const hogEnv = "PROBE_TEST_HOG"

func runHog() {
	spec := os.Getenv(hogEnv)
	if spec == "" {
		return
	}
	var cpu int
	var every int64
	fmt.Sscan(spec, &cpu, &every)
	runtime.LockOSThread() // the policy and the CPU are the thread's
	var set unix.CPUSet
	set.Set(cpu)
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: rtPriority + 1}
	if unix.SchedSetaffinity(0, &set) != nil || unix.SchedSetAttr(0, &attr, 0) != nil {
		os.Exit(2)
	}
	fmt.Println("ready")
	grid := every * int64(time.Millisecond)
	for {
		from := (collector.MonotonicNow()/grid+1)*grid + int64(400*time.Microsecond)
		ts := unix.NsecToTimespec(from)
		unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		for collector.MonotonicNow() < from+int64(5*time.Millisecond) {
		}
	}
}

// Below rtMinInterval, or without the right to SCHED_FIFO, one pacer of
// the ordinary class keeps the schedule: in order, never early.
func TestPaceOrdinary(t *testing.T) {
	var logs []slotLog
	interval := rtMinInterval / 2
	sent, realtime, err := pace(context.Background(), collector.MonotonicNow(), interval, 50, logSlots(&logs))
	if err != nil || sent != 50 || realtime {
		t.Fatalf("sent %d, real-time %v, %v; want 50, false", sent, realtime, err)
	}
	checkSlots(t, logs, 50, time.Second)
	if p := logs[0].policy; p == unix.SCHED_FIFO {
		t.Fatal("real-time without asking")
	}
}

// A schedule cut short sends a prefix of its slots and stops.
func TestPaceInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	var logs []slotLog
	sent, _, err := pace(ctx, collector.MonotonicNow(), time.Millisecond, 1000, logSlots(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if sent == 0 || sent >= 1000 || sent != len(logs) {
		t.Fatalf("sent %d (logged %d) of 1000 in 30 ms", sent, len(logs))
	}
	checkSlots(t, logs, sent, time.Second)
	if !slices.IsSortedFunc(logs, func(a, b slotLog) int { return a.i - b.i }) {
		t.Fatal("slots out of order")
	}
}
