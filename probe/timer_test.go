package probe

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector"
)

// As root the pacing thread runs SCHED_FIFO while the timer is open, never
// sends early, and is back in the ordinary class after close.
func TestSchedTimerRealtime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: SCHED_FIFO")
	}
	tm, err := newSchedTimer(true)
	if err != nil {
		t.Fatal(err)
	}
	if !tm.Realtime() {
		tm.close()
		t.Fatal("root, but the timer did not go real-time")
	}
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil || a.Policy != unix.SCHED_FIFO || a.Priority != rtPriority {
		tm.close()
		t.Fatalf("policy %+v, %v; want SCHED_FIFO %d", a, err, rtPriority)
	}
	start := collector.MonotonicNow()
	for i := 1; i <= 50; i++ {
		at := start + int64(i)*int64(time.Millisecond)
		if !tm.waitUntil(context.Background(), at) {
			t.Fatal("waitUntil gave up")
		}
		if now := collector.MonotonicNow(); now < at {
			t.Fatalf("woke %d ns early", at-now)
		}
	}
	tm.close()
	// After close the goroutine may move: ask every thread of the process.
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		var tid int
		for _, c := range e.Name() {
			tid = tid*10 + int(c-'0')
		}
		if a, err := unix.SchedGetAttr(tid, 0); err == nil && a.Policy == unix.SCHED_FIFO {
			t.Errorf("thread %d still SCHED_FIFO after close", tid)
		}
	}
}

// Without the right to it the timer stays in the ordinary class.
func TestSchedTimerOrdinary(t *testing.T) {
	tm, err := newSchedTimer(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.close()
	if tm.Realtime() {
		t.Fatal("real-time without asking")
	}
	at := collector.MonotonicNow() + int64(2*time.Millisecond)
	if !tm.waitUntil(context.Background(), at) || collector.MonotonicNow() < at {
		t.Fatal("woke early")
	}
}
