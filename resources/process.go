// Package resources samples what a process tree costs: CPU, memory, context
// switches, run-queue latency and the traffic of its network namespace. It
// is the one sampler of probe watch, of the processes of scenarios and of
// the agent's run sessions (docs/resources.md says what each figure means).
package resources

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// DefaultInterval is the sampling interval when Config leaves it 0.
const DefaultInterval = 100 * time.Millisecond

// Config says how to start and sample a Process.
type Config struct {
	Name     string                // names the series
	Interval time.Duration         // between samples; 0: DefaultInterval
	Sched    *collector.SchedWatch // eBPF scheduler accounting; nil: /proc only
	// Start starts the command, e.g. inside a network namespace; nil:
	// (*exec.Cmd).Start.
	Start func(*exec.Cmd) error
	// Group starts the command in a process group of its own, which Stop
	// signals whole: the caller, not a terminal, decides when it ends.
	Group bool
	// OnSample sees every sample as soon as it is taken, from the
	// sampler's goroutine (for live output); it must not keep the sampler
	// long.
	OnSample func(dump.ResourceSample)
}

// Exit is how a started command ended.
type Exit struct {
	Code   int            // its exit status; 128+signal when a signal ended it, as shells say
	Signal syscall.Signal // the signal that ended it; 0 when it exited
}

func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

// ExitOf reads how a waited-for process ended.
func ExitOf(ps *os.ProcessState) Exit {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return Exit{Code: ps.ExitCode()}
}

// Process is a process tree sampled until its process ends: a command
// started by Start and watched from its first instruction, or a running
// process found by Attach.
type Process struct {
	cfg   Config
	cmd   *exec.Cmd // nil when attached
	pid   int
	roots []uint32 // its trees in cfg.Sched
	netns *os.File // its network namespace, from the first sample
	// What the shim that held it cost: the first sample's CPU time, as
	// its rusage counts it from there on.
	shim   collector.Shim
	atExec collector.SchedStats
	start  time.Time // the series' time 0

	exited   chan struct{} // closed when the process has ended
	detach   chan struct{} // closed by Detach
	sampled  chan struct{} // closed once series is final
	series   dump.ResourceSeries
	stop     sync.Once
	detached sync.Once
}

func newProcess(pid int, cfg Config) *Process {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	return &Process{cfg: cfg, pid: pid, roots: []uint32{uint32(pid)},
		exited: make(chan struct{}), detach: make(chan struct{}), sampled: make(chan struct{}),
		series: dump.ResourceSeries{Name: cfg.Name, PID: pid}}
}

// Start starts cmd held (see collector.StartHeld, which needs
// collector.RunIfHeld in main) until cfg.Sched watches it, so that its
// first instants are accounted too, and samples it and its descendants
// from the moment its program runs: the shim that held it is not counted.
func Start(cmd *exec.Cmd, cfg Config) (*Process, error) {
	if cfg.Group {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Setpgid = true
	}
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
	p := newProcess(pid, cfg)
	p.cmd = cmd
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	// The eBPF figures at the command's start are the baseline of its
	// series, as the shim's are that of user and system time: both are
	// taken before the exec, which is the command's.
	atExec := func() {
		p.start = time.Now()
		if cfg.Sched != nil {
			p.atExec = cfg.Sched.Tree(p.roots...)
		}
	}
	if p.shim, err = release(true, atExec); err != nil {
		syscall.Kill(pid, syscall.SIGKILL)
		<-p.exited
		return nil, fmt.Errorf("start %s: %w", cfg.Name, err)
	}
	if p.start.IsZero() {
		p.start = time.Now()
	}
	go p.sample()
	return p, nil
}

// Attach samples the running process pid and its descendants: those of
// now, and, with eBPF, every child they start from now on.
func Attach(pid int, cfg Config) (*Process, error) {
	if _, err := collector.ReadProcStat(pid); err != nil {
		return nil, fmt.Errorf("attach to pid %d: %w", pid, err)
	}
	p := newProcess(pid, cfg)
	p.start = time.Now()
	if s := cfg.Sched; s != nil {
		if err := s.Watch(uint32(pid)); err != nil {
			return nil, err
		}
		// Children already running are roots of their own in the watch;
		// those they start from now on join their trees.
		for _, c := range collector.Descendants(pid) {
			if s.Watch(uint32(c)) == nil {
				p.roots = append(p.roots, uint32(c))
			}
		}
	}
	go func() {
		// Not our child: look for its end.
		t := time.NewTicker(p.cfg.Interval)
		defer t.Stop()
		for {
			if _, err := collector.ReadProcStat(pid); errors.Is(err, collector.ErrProcessGone) {
				close(p.exited)
				return
			}
			select {
			case <-t.C:
			case <-p.detach:
				return
			}
		}
	}()
	go p.sample()
	return p, nil
}

// PID is the process's id (also its process group's when started with
// Config.Group).
func (p *Process) PID() int { return p.pid }

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop asks a started process to end: SIGINT now (to its group with
// Config.Group) and, if it is still there after grace, SIGKILL. It returns
// at once; later calls, and calls on an attached process, do nothing.
func (p *Process) Stop(grace time.Duration) {
	if p.cmd == nil {
		return
	}
	p.stop.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		target := p.pid
		if p.cfg.Group {
			target = -p.pid
		}
		syscall.Kill(target, syscall.SIGINT)
		go func() {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-p.exited:
			case <-t.C:
				syscall.Kill(target, syscall.SIGKILL)
			}
		}()
	})
}

// Detach ends the sampling now, whether the process has ended or not;
// Wait then returns the samples so far.
func (p *Process) Detach() { p.detached.Do(func() { close(p.detach) }) }

// Wait waits for the last sample, taken once the process has ended (or
// Detach was called), and returns the series.
func (p *Process) Wait() dump.ResourceSeries {
	<-p.sampled
	return p.series
}

// Exit says how a started process ended; ok is false while it runs, and
// for an attached process, whose status goes to its own parent.
func (p *Process) Exit() (e Exit, ok bool) {
	if p.cmd == nil {
		return Exit{}, false
	}
	select {
	case <-p.exited:
		return ExitOf(p.cmd.ProcessState), true
	default:
		return Exit{}, false
	}
}
