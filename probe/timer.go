package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector"
)

// spinBefore is how long before a scheduled send the sender stops sleeping
// and spins: a wake-up is tens of µs late, a spin is not.
const spinBefore = 100 * time.Microsecond

// schedTimer waits for absolute CLOCK_MONOTONIC times with a timerfd read
// through Go's poller. Go's own timers wake up to a millisecond late (the
// poller waits in whole milliseconds), the error that makes other tools miss
// a 1 ms schedule by a quarter.
//
// When the process may (root, or CAP_SYS_NICE), the sending goroutine's
// thread runs SCHED_FIFO instead and sleeps in clock_nanosleep itself: on a
// loaded host a thread of the ordinary class, and the poller thread that
// would wake it, wait behind every runnable task for milliseconds, while a
// real-time thread preempts them when its timer fires. Only the sender runs
// real-time, and only while it paces; it sleeps between sends, so it takes
// the CPU for its spin and its send (about a tenth at 1 ms), and the
// kernel's real-time throttling bounds even that.
type schedTimer struct {
	f        *os.File
	buf      [8]byte
	realtime bool
	old      *unix.SchedAttr // the thread's policy before, restored by close
}

// A host with one CPU never paces real-time: the sender's spin would take the
// only CPU from the goroutine that drains the replies (on 1-vCPU guests the
// client's socket then dropped replies).
//
// rtMinInterval is the shortest interval paced from a real-time thread:
// below it the sender would spin most of the time, and a real-time thread
// spinning most of a CPU starves everything else there (the receiving
// goroutine among them).
const rtMinInterval = 5 * spinBefore

// rtPriority is the sender's SCHED_FIFO priority: above every ordinary
// thread, below the kernel's own real-time threads (50 and up).
const rtPriority = 10

// newSchedTimer makes a timer for the calling goroutine; with realtime it
// tries SCHED_FIFO for the goroutine's thread (see schedTimer) and falls
// back to the timerfd when the kernel refuses. close undoes it, from the
// same goroutine.
func newSchedTimer(realtime bool) (*schedTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &schedTimer{f: os.NewFile(uintptr(fd), "timerfd")}
	if realtime {
		t.goRealtime()
	}
	return t, nil
}

// goRealtime locks the goroutine to its thread and makes the thread
// SCHED_FIFO; on any refusal it leaves both as they were.
func (t *schedTimer) goRealtime() {
	runtime.LockOSThread()
	old, err := unix.SchedGetAttr(0, 0)
	if err == nil {
		err = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: rtPriority}, 0)
	}
	if err != nil {
		runtime.UnlockOSThread()
		return
	}
	t.realtime, t.old = true, old
}

// sleep sleeps the real-time thread until next (CLOCK_MONOTONIC ns): the
// thread sleeps itself, since a poller wake-up would go through an ordinary
// thread. Go counts the sleep as a syscall, so the thread's P serves other
// goroutines meanwhile.
func (t *schedTimer) sleep(next int64) {
	ts := unix.NsecToTimespec(next)
	unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
}

// Realtime says whether the sender runs SCHED_FIFO.
func (t *schedTimer) Realtime() bool { return t.realtime }

func (t *schedTimer) close() {
	t.f.Close()
	if !t.realtime {
		return
	}
	t.old.Size = unix.SizeofSchedAttr
	if unix.SchedSetAttr(0, t.old, 0) != nil {
		// Still real-time: keep the thread locked, so that it ends with
		// the goroutine instead of running other goroutines at FIFO.
		return
	}
	runtime.UnlockOSThread()
}

// waitUntil sleeps until shortly before at, then spins to it; false when
// ctx ended first.
func (t *schedTimer) waitUntil(ctx context.Context, at int64) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		wake := at - int64(spinBefore)
		now := collector.MonotonicNow()
		if now >= wake {
			break
		}
		// At most 10 ms at a time, so that ctx is noticed.
		next := min(wake, now+int64(10*time.Millisecond))
		if t.realtime {
			t.sleep(next)
			continue
		}
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(next)}
		if err := unix.TimerfdSettime(int(t.f.Fd()), unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
			time.Sleep(time.Duration(next - now)) // coarser, but still a wait
			continue
		}
		t.f.Read(t.buf[:])
	}
	for collector.MonotonicNow() < at {
	}
	return true
}
