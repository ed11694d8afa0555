package resources

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/prometheus/procfs"
)

// A sample's time is the middle of the read of its CPU figure, which may
// take at most maxReadTime; a read that took longer (the sampler lost its
// CPU in the middle) is done again, up to readTries times, and a regular
// sample whose reads all took longer is left out. Without this, a sampler
// descheduled between reading the counters and the clock dates them late,
// and a single thread shows well over 100 % in the next interval.
const (
	maxReadTime = time.Millisecond
	readTries   = 3
)

// sample records the tree every interval until the process ends (or
// Detach), then takes the last sample.
func (p *Process) sample() {
	defer close(p.sampled)
	defer func() {
		if p.netns != nil {
			p.netns.Close()
		}
	}()
	start := p.start
	if s, ok := p.read(start, true); ok {
		if p.cmd != nil && p.shim != (collector.Shim{}) {
			// The figures of the instant the command started, exact,
			// rather than /proc's cut to 10 ms and eBPF's a moment
			// later: the totals are the last sample's (wait4's, as
			// exact) less these.
			s.T, s.User, s.System = 0, p.shim.User, p.shim.System
			if p.cfg.Sched != nil {
				p.setSched(&s, p.atExec)
			}
		}
		p.add(s)
	}
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if s, ok := p.read(start, false); ok {
				p.add(s)
			}
			continue
		case <-p.detach:
			return
		case <-p.exited:
		}
		break
	}
	p.add(p.last(start))
}

// add keeps a sample and shows it to Config.OnSample.
func (p *Process) add(s dump.ResourceSample) {
	p.series.Samples = append(p.series.Samples, s)
	if p.cfg.OnSample != nil {
		p.cfg.OnSample(s)
	}
}

// read takes one sample of the tree; must says it may not be left out.
// ok is false when the process is gone, or the sample was left out.
func (p *Process) read(start time.Time, must bool) (dump.ResourceSample, bool) {
	var s dump.ResourceSample
	found := false
	before := time.Now()
	tree := append([]int{p.pid}, collector.Descendants(p.pid)...)
	for _, pid := range tree {
		ps, err := collector.ReadProcStat(pid)
		if err != nil {
			continue // ended between the listing and the read
		}
		found = found || pid == p.pid
		// A child's time moves into its parent's child time when the
		// parent waits for it: each process's own and its waited-for
		// children's make the tree's.
		s.User += ps.User + ps.ChildUser
		s.System += ps.System + ps.ChildSystem
		s.RSS += ps.RSS
		s.PeakRSS += ps.PeakRSS
		s.Threads += ps.Threads
	}
	if !found {
		return s, false
	}
	at := before.Add(time.Since(before) / 2)
	if p.cfg.Sched != nil {
		st, mid, tight := p.readSched()
		if !tight && !must {
			return s, false
		}
		p.setSched(&s, st)
		at = mid
	}
	s.T = at.Sub(start)
	// Outside the timed reads: I/O counts do not need their instant to
	// the millisecond as CPU time does.
	for _, pid := range tree {
		if r, w, err := collector.ReadProcIO(pid); err == nil {
			s.ReadBytes += r
			s.WriteBytes += w
		}
	}
	// The process's own network namespace, which may not be ours.
	if pr, err := procfs.NewProc(p.pid); err == nil {
		if nd, err := pr.NetDev(); err == nil {
			s.Net = make(map[string]dump.IfCounters, len(nd))
			for name, c := range nd {
				s.Net[name] = dump.IfCounters{RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxDrops: c.RxDropped,
					TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxDrops: c.TxDropped}
			}
		}
	}
	if p.netns == nil {
		// Held open, the namespace can be read after the process ended.
		p.netns, _ = os.Open(fmt.Sprintf("/proc/%d/ns/net", p.pid))
	}
	return s, true
}

// lastNet reads the counters of the process's namespace after its end;
// nil when it cannot (no CAP_SYS_ADMIN to enter it).
func (p *Process) lastNet() map[string]dump.IfCounters {
	if p.netns == nil {
		return nil
	}
	nd, err := collector.ReadNetDevIn(p.netns)
	if err != nil {
		return nil
	}
	out := make(map[string]dump.IfCounters, len(nd))
	for name, c := range nd {
		out[name] = dump.IfCounters{RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxDrops: c.RxDrops,
			TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxDrops: c.TxDrops}
	}
	return out
}

// readSched reads the tree's eBPF totals and the time they were read at;
// tight is false when no read took less than maxReadTime.
func (p *Process) readSched() (st collector.SchedStats, at time.Time, tight bool) {
	for range readTries {
		before := time.Now()
		st = p.cfg.Sched.Tree(p.roots...)
		took := time.Since(before)
		at = before.Add(took / 2)
		if took <= maxReadTime {
			return st, at, true
		}
	}
	return st, at, false
}

func (p *Process) setSched(s *dump.ResourceSample, st collector.SchedStats) {
	s.OnCPU, s.Voluntary, s.Involuntary, s.RunQueue = st.OnCPU, st.Voluntary, st.Involuntary, st.RunQueue
}

// settleWait bounds the wait for an ended process's final switches out;
// they come microseconds after wait4 returns. Only the process's own
// threads are waited for: a descendant still running stays on its CPU.
const settleWait = 50 * time.Millisecond

// last is the sample at the process's end: /proc has no last look, so the
// memory of the sample before stands, the CPU time is the kernel's final
// account (wait4's, which includes the children waited for), the eBPF
// totals are read once more and the traffic is read from the namespace
// held open (or the sample before's stands).
func (p *Process) last(start time.Time) dump.ResourceSample {
	var s dump.ResourceSample
	if n := len(p.series.Samples); n > 0 {
		s = p.series.Samples[n-1]
	}
	if p.cmd != nil && p.cmd.ProcessState != nil {
		// Its ru_maxrss is not taken: exec keeps in it the peak of the
		// memory the process had before, which is the starter's (Go
		// forks with CLONE_VM) and the shim's; VmHWM starts afresh at
		// exec.
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.User = time.Duration(ru.Utime.Nano())
			s.System = time.Duration(ru.Stime.Nano())
			// The same counts as /proc/PID/io's, in 512-byte blocks;
			// /proc has nothing of an ended process.
			s.ReadBytes = max(s.ReadBytes, uint64(ru.Inblock)*512)
			s.WriteBytes = max(s.WriteBytes, uint64(ru.Oublock)*512)
		}
	}
	at := time.Now()
	if p.cfg.Sched != nil {
		// The ended process's last runs are added by its threads' final
		// switches out, which may come after wait4 returned.
		p.cfg.Sched.Settle(settleWait, uint32(p.pid))
		var st collector.SchedStats
		st, at, _ = p.readSched()
		p.setSched(&s, st)
	}
	s.T = at.Sub(start)
	if nd := p.lastNet(); nd != nil {
		s.Net = nd
	}
	return s
}
