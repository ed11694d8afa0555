package probe

import (
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/prometheus/procfs"
)

// ProcessConfig says how to start and watch a Process.
type ProcessConfig struct {
	Name     string                // names the series
	Interval time.Duration         // sampling; default 100 ms
	Sched    *collector.SchedWatch // eBPF scheduler accounting; nil: /proc only
	// Start starts the command, e.g. inside a network namespace; nil:
	// (*exec.Cmd).Start.
	Start func(*exec.Cmd) error
}

// Process is a command watched from its first instruction and sampled until
// it ends (design §7): what the scenario runner keeps of each of its
// processes, on testbed hosts and, through run sessions, on agents.
type Process struct {
	cmd      *exec.Cmd
	sched    *collector.SchedWatch
	interval time.Duration
	exited   chan struct{} // closed once Wait returned
	sampled  chan struct{} // closed once series is final
	series   dump.ResourceSeries
	stop     sync.Once
}

// StartProcess starts cmd in a process group of its own, so that the caller
// and not a terminal decides when it stops. The command is held (see
// collector.StartHeld, which needs RunIfHeld in main) until cfg.Sched
// watches it, so that its first instants are accounted too. Its children
// join the eBPF watch, but only its own figures go into its series.
func StartProcess(cmd *exec.Cmd, cfg ProcessConfig) (*Process, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	release, err := collector.StartHeld(cmd, cfg.Start)
	if err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	if cfg.Sched != nil {
		if err := cfg.Sched.Watch(uint32(pid)); err != nil {
			cfg.Sched = nil // /proc figures only
		}
	}
	p := &Process{cmd: cmd, sched: cfg.Sched, interval: cfg.Interval,
		exited: make(chan struct{}), sampled: make(chan struct{}),
		series: dump.ResourceSeries{Name: cfg.Name, PID: pid}}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	if err := release(true); err != nil {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-p.exited
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	go p.sample()
	return p, nil
}

// PID is the process's id, also its process group's.
func (p *Process) PID() int { return p.series.PID }

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop asks the process group to end: SIGINT now and, if the process is
// still there after grace, SIGKILL. It returns at once; later calls do
// nothing.
func (p *Process) Stop(grace time.Duration) {
	p.stop.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		pgid := p.series.PID
		syscall.Kill(-pgid, syscall.SIGINT)
		go func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.exited:
			case <-t.C:
				syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}()
	})
}

// Wait waits for the process's end and its last sample, and returns its
// series and exit code (-1 when a signal ended it).
func (p *Process) Wait() (dump.ResourceSeries, int) {
	<-p.sampled
	return p.series, p.cmd.ProcessState.ExitCode()
}

// sample records the process every interval until it exits, then adds the
// kernel's final account of its CPU time.
func (p *Process) sample() {
	defer close(p.sampled)
	pid := p.series.PID
	start := time.Now()
	addSched := func(s *dump.ResourceSample) {
		if p.sched == nil {
			return
		}
		if st, ok := p.sched.Process(uint32(pid)); ok {
			s.OnCPU, s.Voluntary, s.Involuntary, s.RunQueue = st.OnCPU, st.Voluntary, st.Involuntary, st.RunQueue
		}
	}
	take := func() {
		ps, err := collector.ReadProcStat(pid)
		if err != nil {
			return
		}
		s := dump.ResourceSample{T: time.Since(start), User: ps.User, System: ps.System, RSS: ps.RSS, PeakRSS: ps.PeakRSS, Threads: ps.Threads}
		addSched(&s)
		// /proc/PID/net is the process's own namespace.
		if pr, err := procfs.NewProc(pid); err == nil {
			if nd, err := pr.NetDev(); err == nil {
				s.Net = make(map[string]dump.IfCounters, len(nd))
				for name, c := range nd {
					s.Net[name] = dump.IfCounters{RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxDrops: c.RxDropped,
						TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxDrops: c.TxDropped}
				}
			}
		}
		p.series.Samples = append(p.series.Samples, s)
	}
	take()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			take()
			continue
		case <-p.exited:
		}
		break
	}
	var last dump.ResourceSample
	if n := len(p.series.Samples); n > 0 {
		last = p.series.Samples[n-1]
	}
	last.T = time.Since(start)
	// User and system time are exact from wait4. Its ru_maxrss is not
	// taken: exec keeps in it the peak of the memory the process had
	// before, which is the starter's (Go forks with CLONE_VM) and the
	// shim's; VmHWM starts afresh at exec.
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		last.User = time.Duration(ru.Utime.Nano())
		last.System = time.Duration(ru.Stime.Nano())
	}
	addSched(&last)
	p.series.Samples = append(p.series.Samples, last)
}
