package probe

import (
	"context"
	"fmt"
	"os"
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
// a 1 ms schedule by a quarter; a blocking clock_nanosleep would hold a
// scheduler P meanwhile and stall the receiving goroutine.
type schedTimer struct {
	f   *os.File
	buf [8]byte
}

func newSchedTimer() (*schedTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	return &schedTimer{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (t *schedTimer) close() { t.f.Close() }

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
