package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// ErrProcessGone is returned (wrapped) by ReadProcStat when the process has
// exited: its /proc directory is missing or it is a zombie.
var ErrProcessGone = errors.New("process is gone")

// procUserHZ is USER_HZ, the unit of utime and stime in /proc/PID/stat; it is
// 100 on every Linux ABI, and procfs assumes the same.
const procUserHZ = 100

// ProcStat is a process's resource use as /proc reports it.
type ProcStat struct {
	User, System time.Duration // cumulative CPU time, in steps of 1/USER_HZ (10 ms)
	RSS          uint64        // resident bytes now (VmRSS)
	PeakRSS      uint64        // highest resident bytes so far (VmHWM)
	Threads      int
}

// ReadProcStat reads /proc/PID/stat and /proc/PID/status.
func ReadProcStat(pid int) (ProcStat, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return ProcStat{}, procErr(pid, "open", err)
	}
	st, err := p.Stat()
	if err != nil {
		return ProcStat{}, procErr(pid, "read stat of", err)
	}
	// A zombie keeps its /proc entry but has no memory left to report.
	if st.State == "Z" || st.State == "X" {
		return ProcStat{}, fmt.Errorf("read /proc of pid %d: %w (state %s)", pid, ErrProcessGone, st.State)
	}
	status, err := p.NewStatus()
	if err != nil {
		return ProcStat{}, procErr(pid, "read status of", err)
	}
	return ProcStat{
		User:    ticks(st.UTime),
		System:  ticks(st.STime),
		RSS:     status.VmRSS,
		PeakRSS: status.VmHWM,
		Threads: st.NumThreads,
	}, nil
}

func ticks(n uint) time.Duration {
	return time.Duration(n) * (time.Second / procUserHZ)
}

// procErr names the pid and turns a vanished process into ErrProcessGone; a
// process can exit between our two reads, which gives ENOENT or ESRCH.
func procErr(pid int, what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%s /proc of pid %d: %w: %w", what, pid, ErrProcessGone, err)
	}
	return fmt.Errorf("%s /proc of pid %d: %w", what, pid, err)
}
