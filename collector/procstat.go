package collector

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
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
	// The same of its children that have ended and been waited for.
	ChildUser, ChildSystem time.Duration
	RSS                    uint64 // resident bytes now (VmRSS)
	PeakRSS                uint64 // highest resident bytes so far (VmHWM)
	Threads                int
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
		User:        ticks(st.UTime),
		System:      ticks(st.STime),
		ChildUser:   ticks(uint(max(st.CUTime, 0))),
		ChildSystem: ticks(uint(max(st.CSTime, 0))),
		RSS:         status.VmRSS,
		PeakRSS:     status.VmHWM,
		Threads:     st.NumThreads,
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

// Children returns the pids of the processes whose parent is pid: the
// children of each of its threads (/proc/PID/task/TID/children, which
// CONFIG_PROC_CHILDREN provides). A process gone, or a kernel without the
// files, gives none.
func Children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Descendants returns pid's children, their children and so on, as /proc
// shows them now.
func Descendants(pid int) []int {
	var out []int
	for todo := Children(pid); len(todo) > 0; {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if slices.Contains(out, c) || c == pid {
			continue
		}
		out = append(out, c)
		todo = append(todo, Children(c)...)
	}
	return out
}

// ReadProcIO reads the bytes a process (with the children it waited for)
// made the storage layer read and write, from /proc/PID/io.
func ReadProcIO(pid int) (read, write uint64, err error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, 0, procErr(pid, "open", err)
	}
	io, err := p.IO()
	if err != nil {
		return 0, 0, procErr(pid, "read io of", err)
	}
	return io.ReadBytes, io.WriteBytes, nil
}
