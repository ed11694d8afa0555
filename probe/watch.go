package probe

import (
	"context"
	"errors"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// WatchConfig configures the sampling of a process's costs (design §7).
type WatchConfig struct {
	Interval time.Duration         // default 100 ms
	Sched    *collector.SchedWatch // eBPF scheduler accounting; nil: /proc only
}

// Watch samples process pid, with its descendants in the eBPF figures, every
// cfg.Interval until it exits or ctx ends, and returns the series. The
// caller has already told cfg.Sched to watch pid, before it ran.
func Watch(ctx context.Context, name string, pid int, exited <-chan struct{}, cfg WatchConfig) (dump.ResourceSeries, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	series := dump.ResourceSeries{Name: name, PID: pid}
	start := time.Now()
	var last dump.ResourceSample
	sample := func() bool {
		ps, err := collector.ReadProcStat(pid)
		if err != nil {
			return false // gone: the last sample stands
		}
		s := dump.ResourceSample{T: time.Since(start), User: ps.User, System: ps.System, RSS: ps.RSS, PeakRSS: ps.PeakRSS, Threads: ps.Threads}
		if cfg.Sched != nil {
			for _, tgid := range cfg.Sched.Watched() {
				st, ok := cfg.Sched.Process(tgid)
				if !ok {
					continue
				}
				s.OnCPU += st.OnCPU
				s.Voluntary += st.Voluntary
				s.Involuntary += st.Involuntary
				for k := range st.RunQueue {
					s.RunQueue[k] += st.RunQueue[k]
				}
			}
		}
		if nd, err := collector.ReadNetDev(); err == nil {
			s.Net = make(map[string]dump.IfCounters, len(nd))
			for ifname, c := range nd {
				s.Net[ifname] = dump.IfCounters{RxBytes: c.RxBytes, RxPackets: c.RxPackets, RxDrops: c.RxDrops,
					TxBytes: c.TxBytes, TxPackets: c.TxPackets, TxDrops: c.TxDrops}
			}
		}
		series.Samples = append(series.Samples, s)
		last = s
		return true
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	if !sample() {
		return series, errors.New("the process is gone before its first sample")
	}
	for {
		select {
		case <-t.C:
			sample()
		case <-exited:
			// /proc no longer has it; the eBPF counters still do, so the
			// last sample gets their final values.
			if cfg.Sched != nil && len(series.Samples) > 0 {
				s := last
				s.T = time.Since(start)
				s.OnCPU, s.Voluntary, s.Involuntary, s.RunQueue = 0, 0, 0, [32]uint64{}
				for _, tgid := range cfg.Sched.Watched() {
					if st, ok := cfg.Sched.Process(tgid); ok {
						s.OnCPU += st.OnCPU
						s.Voluntary += st.Voluntary
						s.Involuntary += st.Involuntary
						for k := range st.RunQueue {
							s.RunQueue[k] += st.RunQueue[k]
						}
					}
				}
				series.Samples = append(series.Samples, s)
			}
			return series, nil
		case <-ctx.Done():
			return series, nil
		}
	}
}
