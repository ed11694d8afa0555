package probe

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/probe-dev/probe/collector"
)

// spinBefore is how long before a scheduled send a pacer stops sleeping and
// spins: a wake-up is tens of µs late (65 µs median on a VM), a spin is not.
const spinBefore = 100 * time.Microsecond

// rtMinInterval is the shortest interval paced from real-time threads:
// below it a pacer would spin most of the time, and a real-time thread
// spinning most of a CPU starves everything else there (the receiving
// goroutine among them).
const rtMinInterval = 5 * spinBefore

// rtPriority is the pacers' SCHED_FIFO priority: above every ordinary
// thread, below the kernel's own real-time threads (50 and up).
const rtPriority = 10

// rtPacers is how many real-time threads pace a schedule, each on a CPU of
// its own. On a VM a real-time thread still wakes late whenever its vCPU
// has halted and the hypervisor is slow to run it again: cyclictest read
// 20–61 wake-ups of 1 ms or later in 10 000 on an idle 2-vCPU guest, which
// alone misses more slots than a 0.1 % bound allows. The two vCPUs rarely
// stall at once, so two threads race for every slot and the first one
// there sends it: a slot then misses only when both stall. The cost is a
// second spin per slot (about a tenth of a CPU at 1 ms).
const rtPacers = 2

// realtimePacing says whether a schedule at interval paces from real-time
// threads when the kernel allows it. A host with one CPU never does: the
// spin would take the only CPU from the goroutine that drains the replies
// (on 1-vCPU guests the client's socket then dropped replies).
func realtimePacing(interval time.Duration) bool {
	return interval >= rtMinInterval && len(allowedCPUs()) > 1
}

// allowedCPUs is the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	var cpus []int
	for c := 0; len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// pace calls send(i, at) for every slot i in [0, n), at = start + i·interval
// (CLOCK_MONOTONIC ns): in order, once each, serialized, as close to at as
// it can. The schedule is absolute: a late slot does not delay the rest,
// and it is sent at once, never skipped. It returns how many slots were
// sent (fewer when ctx ends first) and whether they were paced in real
// time (see realtimePacing; SCHED_FIFO needs root or CAP_SYS_NICE).
func pace(ctx context.Context, start int64, interval time.Duration, n int, send func(i int, at int64)) (sent int, realtime bool, err error) {
	cpus := []int{-1} // one pacer of the ordinary class, anywhere
	if realtimePacing(interval) {
		cpus = allowedCPUs()[:rtPacers]
	}
	return paceOn(ctx, cpus, start, interval, n, send)
}

// paceOn is pace from a pacer per CPU in cpus: real-time and pinned there
// where the CPU is ≥ 0 and the kernel allows it, else of the ordinary
// class, unpinned.
func paceOn(ctx context.Context, cpus []int, start int64, interval time.Duration, n int, send func(i int, at int64)) (sent int, realtime bool, err error) {
	s := &schedule{start: start, interval: int64(interval), n: n, send: send}
	pacers := make([]*pacer, len(cpus))
	for k := range cpus {
		if pacers[k], err = newPacer(); err != nil {
			for _, p := range pacers[:k] {
				p.close()
			}
			return 0, false, err
		}
	}
	var wg sync.WaitGroup
	for k, p := range pacers {
		wg.Go(func() {
			defer p.close()
			if cpus[k] >= 0 && p.goRealtime(cpus[k]) {
				s.realtime.Store(true)
			}
			s.run(ctx, p)
		})
	}
	wg.Wait()
	return int(s.next.Load()), s.realtime.Load(), nil
}

// schedule is the slots the pacers race for.
type schedule struct {
	start, interval int64
	n               int
	send            func(i int, at int64)

	mu       sync.Mutex   // held while a slot is sent
	next     atomic.Int64 // the first slot not sent
	realtime atomic.Bool  // a pacer went real-time
}

// run paces slots from p until every one is sent or ctx ends. A pacer
// that finds its slot sent, or being sent, by another goes on to the next
// one without waiting: a goroutine blocked on the lock would be woken
// through the Go scheduler, tens of µs on a VM, every slot.
func (s *schedule) run(ctx context.Context, p *pacer) {
	for i := 0; ; i++ {
		i = max(i, int(s.next.Load()))
		if i >= s.n {
			return
		}
		at := s.start + int64(i)*s.interval
		if !p.waitUntil(ctx, at) {
			return
		}
		if !s.mu.TryLock() {
			continue
		}
		if s.next.Load() == int64(i) && ctx.Err() == nil {
			s.send(i, at)
			s.next.Add(1)
		}
		s.mu.Unlock()
	}
}

// pacer waits for absolute CLOCK_MONOTONIC times from one goroutine.
//
// In the ordinary class it waits on a timerfd read through Go's poller. Go's
// own timers wake up to a millisecond late (the poller waits in whole
// milliseconds), the error that makes other tools miss a 1 ms schedule by a
// quarter.
//
// When the process may (root, or CAP_SYS_NICE), a pacer's thread runs
// SCHED_FIFO on one CPU instead and sleeps in clock_nanosleep itself: on a
// loaded host a thread of the ordinary class, and the poller thread that
// would wake it, wait behind every runnable task for milliseconds, while a
// real-time thread preempts them when its timer fires. It sleeps between
// sends, so it takes the CPU for its spin and its send only, and the
// kernel's real-time throttling bounds even that.
type pacer struct {
	f        *os.File
	buf      [8]byte
	realtime bool
	old      *unix.SchedAttr // the thread's policy before, restored by close
	oldCPUs  unix.CPUSet     // and its CPUs
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &pacer{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

// goRealtime locks the calling goroutine to its thread and makes the thread
// SCHED_FIFO on cpu; on a refusal it leaves the thread as it was. close
// undoes it, from the same goroutine.
func (p *pacer) goRealtime(cpu int) bool {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: rtPriority}
	old, err := unix.SchedGetAttr(0, 0)
	if err == nil {
		err = unix.SchedGetaffinity(0, &p.oldCPUs)
	}
	if err == nil {
		err = unix.SchedSetaffinity(0, &set)
	}
	if err == nil {
		if err = unix.SchedSetAttr(0, &attr, 0); err != nil {
			unix.SchedSetaffinity(0, &p.oldCPUs)
		}
	}
	if err != nil {
		runtime.UnlockOSThread()
		return false
	}
	p.realtime, p.old = true, old
	return true
}

// close puts a real-time thread back as it was and closes the timerfd.
func (p *pacer) close() {
	p.f.Close()
	if !p.realtime {
		return
	}
	p.old.Size = unix.SizeofSchedAttr
	if unix.SchedSetAttr(0, p.old, 0) != nil || unix.SchedSetaffinity(0, &p.oldCPUs) != nil {
		// Still real-time or pinned: keep the thread locked, so that it
		// ends with the goroutine instead of running other goroutines so.
		return
	}
	runtime.UnlockOSThread()
}

// waitUntil sleeps until shortly before at, then spins to it; false when
// ctx ended first.
func (p *pacer) waitUntil(ctx context.Context, at int64) bool {
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
		if p.realtime {
			// The thread sleeps itself: a poller wake-up would go
			// through an ordinary thread. Go counts the sleep as a
			// syscall, so the thread's P serves other goroutines
			// meanwhile.
			ts := unix.NsecToTimespec(next)
			unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
			continue
		}
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(next)}
		if err := unix.TimerfdSettime(int(p.f.Fd()), unix.TFD_TIMER_ABSTIME, &spec, nil); err != nil {
			time.Sleep(time.Duration(next - now)) // coarser, but still a wait
			continue
		}
		p.f.Read(p.buf[:])
	}
	for collector.MonotonicNow() < at {
	}
	return true
}
