package estimator

import (
	"math"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// ResourceSummary condenses one process's resource series. Totals are the
// growth of each cumulative counter from the first sample to the last, so
// the first sample is the baseline. Undefined figures (too few samples,
// no elapsed time, an empty histogram) are 0.
type ResourceSummary struct {
	Name     string
	PID      int
	Samples  int
	Duration time.Duration // last sample's T minus the first's

	AvgCPU  float64 // %, 100 = one core busy; total CPU time over Duration
	PeakCPU float64 // %, the busiest window of at least PeakWindow
	// CPUSource is what AvgCPU and PeakCPU are taken from: CPUFromEBPF
	// (on-CPU time in ns) when the series has it, else CPUFromProc (user
	// and system time, in 10 ms steps).
	CPUSource CPUSource
	// PeakWindow is the shortest window PeakCPU is measured over: 3/4 of
	// the sampling interval with eBPF; at least ProcPeakWindow from /proc,
	// whose 10 ms steps would make shorter windows lie by tens of %.
	PeakWindow time.Duration

	User, System time.Duration // from /proc, in 10 ms steps
	OnCPU        time.Duration // from sched_switch

	AvgRSS  uint64 // bytes, mean of the sampled RSS
	MaxRSS  uint64 // bytes, largest sampled RSS
	PeakRSS uint64 // bytes, largest VmHWM: the kernel's peak, also between samples

	Voluntary, Involuntary uint64 // context switches

	// Run-queue latency quantiles, each reported as the upper bound of the
	// log2 histogram bucket that holds it, so they overstate by up to 2x.
	RunQueueP50, RunQueueP99 time.Duration
	RunQueueWakeups          uint64 // observations in the histogram

	Net map[string]IfSummary // interfaces present in the first and last sample
}

// CPUSource names where a summary's CPU % come from.
type CPUSource string

// The sources of CPU %.
const (
	CPUFromEBPF CPUSource = "eBPF"
	CPUFromProc CPUSource = "/proc"
)

// ProcPeakWindow is the shortest window of a peak CPU % from /proc: its
// user and system times are each cut to 10 ms steps, so a figure over a
// window may be up to 20 ms short or long, 2 % of 1 s.
const ProcPeakWindow = time.Second

// IfSummary is one interface's traffic over the series.
type IfSummary struct {
	Rx, Tx DirSummary
}

// DirSummary is one direction of one interface.
type DirSummary struct {
	Packets, Bytes, Drops     uint64  // totals
	AvgPktRate, PeakPktRate   float64 // packets/s; peak over intervals between samples
	AvgByteRate, PeakByteRate float64 // bytes/s
}

// SummariseResources computes a ResourceSummary from a series whose samples
// are in time order.
func SummariseResources(s dump.ResourceSeries) ResourceSummary {
	out := ResourceSummary{Name: s.Name, PID: s.PID, Samples: len(s.Samples)}
	if len(s.Samples) == 0 {
		return out
	}
	first, last := s.Samples[0], s.Samples[len(s.Samples)-1]

	var rssSum float64
	for _, x := range s.Samples {
		rssSum += float64(x.RSS)
		out.MaxRSS = max(out.MaxRSS, x.RSS)
		out.PeakRSS = max(out.PeakRSS, x.PeakRSS)
	}
	out.AvgRSS = uint64(math.Round(rssSum / float64(len(s.Samples))))

	out.Duration = max(last.T-first.T, 0)
	out.User = durDelta(first.User, last.User)
	out.System = durDelta(first.System, last.System)
	out.OnCPU = durDelta(first.OnCPU, last.OnCPU)
	cpu := func(x dump.ResourceSample) time.Duration { return x.User + x.System }
	out.CPUSource, out.PeakWindow = CPUFromProc, max(ProcPeakWindow, medianInterval(s.Samples))
	if last.OnCPU > 0 {
		cpu = func(x dump.ResourceSample) time.Duration { return x.OnCPU }
		// Most of an interval: a short one (a late tick, or the process
		// ended just after a sample) joins its neighbour, so that the few
		// ms a running thread's time may lag are a small part of it.
		out.CPUSource, out.PeakWindow = CPUFromEBPF, medianInterval(s.Samples)*3/4
	}
	out.AvgCPU = percent(durDelta(cpu(first), cpu(last)), out.Duration)
	out.PeakCPU = peakPercent(s.Samples, out.PeakWindow, cpu)
	out.Voluntary = delta(first.Voluntary, last.Voluntary)
	out.Involuntary = delta(first.Involuntary, last.Involuntary)

	var hist [dump.RunQueueBuckets]uint64
	for i := range hist {
		hist[i] = delta(first.RunQueue[i], last.RunQueue[i])
		out.RunQueueWakeups += hist[i]
	}
	out.RunQueueP50 = log2Quantile(hist, out.RunQueueWakeups, 0.50)
	out.RunQueueP99 = log2Quantile(hist, out.RunQueueWakeups, 0.99)

	out.Net = summariseNet(s.Samples, out.Duration)
	return out
}

// medianInterval is the median time between consecutive samples.
func medianInterval(samples []dump.ResourceSample) time.Duration {
	var dts []time.Duration
	for i := 1; i < len(samples); i++ {
		dts = append(dts, samples[i].T-samples[i-1].T)
	}
	if len(dts) == 0 {
		return 0
	}
	slices.Sort(dts)
	return dts[len(dts)/2]
}

// peakPercent is the highest CPU % over windows of consecutive samples,
// each at least minWindow long; what is left at the end joins the last
// window, and a series shorter than minWindow is one window.
func peakPercent(samples []dump.ResourceSample, minWindow time.Duration, cpu func(dump.ResourceSample) time.Duration) float64 {
	if len(samples) < 2 {
		return 0
	}
	ends := []int{0}
	for j := 1; j < len(samples); j++ {
		if samples[j].T-samples[ends[len(ends)-1]].T >= max(minWindow, 1) {
			ends = append(ends, j)
		}
	}
	if last := len(samples) - 1; ends[len(ends)-1] != last {
		if len(ends) > 1 {
			ends[len(ends)-1] = last
		} else {
			ends = append(ends, last)
		}
	}
	var peak float64
	for k := 1; k < len(ends); k++ {
		a, b := samples[ends[k-1]], samples[ends[k]]
		peak = math.Max(peak, percent(durDelta(cpu(a), cpu(b)), b.T-a.T))
	}
	return peak
}

func summariseNet(samples []dump.ResourceSample, d time.Duration) map[string]IfSummary {
	first, last := samples[0], samples[len(samples)-1]
	var out map[string]IfSummary
	for name, c0 := range first.Net {
		c1, ok := last.Net[name]
		if !ok {
			continue
		}
		var sum IfSummary
		sum.Rx = dirTotals(c0.RxPackets, c1.RxPackets, c0.RxBytes, c1.RxBytes, c0.RxDrops, c1.RxDrops, d)
		sum.Tx = dirTotals(c0.TxPackets, c1.TxPackets, c0.TxBytes, c1.TxBytes, c0.TxDrops, c1.TxDrops, d)
		for i := 1; i < len(samples); i++ {
			a, okA := samples[i-1].Net[name]
			b, okB := samples[i].Net[name]
			dt := samples[i].T - samples[i-1].T
			if !okA || !okB || dt <= 0 {
				continue
			}
			sec := dt.Seconds()
			sum.Rx.PeakPktRate = math.Max(sum.Rx.PeakPktRate, float64(delta(a.RxPackets, b.RxPackets))/sec)
			sum.Rx.PeakByteRate = math.Max(sum.Rx.PeakByteRate, float64(delta(a.RxBytes, b.RxBytes))/sec)
			sum.Tx.PeakPktRate = math.Max(sum.Tx.PeakPktRate, float64(delta(a.TxPackets, b.TxPackets))/sec)
			sum.Tx.PeakByteRate = math.Max(sum.Tx.PeakByteRate, float64(delta(a.TxBytes, b.TxBytes))/sec)
		}
		if out == nil {
			out = make(map[string]IfSummary)
		}
		out[name] = sum
	}
	return out
}

func dirTotals(p0, p1, b0, b1, d0, d1 uint64, d time.Duration) DirSummary {
	s := DirSummary{Packets: delta(p0, p1), Bytes: delta(b0, b1), Drops: delta(d0, d1)}
	if d > 0 {
		s.AvgPktRate = float64(s.Packets) / d.Seconds()
		s.AvgByteRate = float64(s.Bytes) / d.Seconds()
	}
	return s
}

// delta is b-a for a cumulative counter, 0 if it went backwards (a reset).
func delta(a, b uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}

func durDelta(a, b time.Duration) time.Duration {
	return max(b-a, 0)
}

func percent(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * float64(cpu) / float64(wall)
}

// log2Quantile finds the bucket of hist (bucket i covers [2^i, 2^(i+1)) µs)
// holding the q-quantile of n observations and returns its upper bound.
func log2Quantile(hist [dump.RunQueueBuckets]uint64, n uint64, q float64) time.Duration {
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var cum uint64
	for i, c := range hist {
		cum += c
		if cum >= rank {
			return time.Duration(uint64(1)<<(i+1)) * time.Microsecond
		}
	}
	return 0
}
