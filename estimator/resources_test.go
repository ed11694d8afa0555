package estimator

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

const ms = time.Millisecond

// fiveSamples is 400 ms of a process sampled every 100 ms, with figures
// chosen so every summary value can be worked out by hand.
func fiveSamples() dump.ResourceSeries {
	user := []time.Duration{0, 40 * ms, 120 * ms, 120 * ms, 200 * ms}
	sys := []time.Duration{0, 10 * ms, 30 * ms, 30 * ms, 50 * ms}
	rss := []uint64{10e6, 20e6, 30e6, 20e6, 20e6}
	hwm := []uint64{10e6, 20e6, 30e6, 30e6, 30e6}
	rxPkts := []uint64{0, 100, 300, 300, 400}
	rxDrops := []uint64{0, 0, 1, 1, 3}
	oncpu := []time.Duration{0, 45 * ms, 145 * ms, 150 * ms, 260 * ms}
	s := dump.ResourceSeries{Name: "server", PID: 42}
	for i := range 5 {
		x := dump.ResourceSample{
			T:           time.Duration(i) * 100 * ms,
			User:        user[i],
			System:      sys[i],
			OnCPU:       oncpu[i],
			RSS:         rss[i],
			PeakRSS:     hwm[i],
			Threads:     4,
			Voluntary:   uint64(10 * i),
			Involuntary: uint64(i),
			Net: map[string]dump.IfCounters{"lo": {
				RxPackets: rxPkts[i], RxBytes: 100 * rxPkts[i], RxDrops: rxDrops[i],
				TxPackets: 2 * rxPkts[i], TxBytes: 300 * rxPkts[i],
			}},
		}
		if i == 4 {
			x.RunQueue[0], x.RunQueue[3], x.RunQueue[10] = 50, 45, 5
		}
		s.Samples = append(s.Samples, x)
	}
	return s
}

func TestSummariseResources(t *testing.T) {
	got := SummariseResources(fiveSamples())
	want := ResourceSummary{
		Name: "server", PID: 42, Samples: 5, Duration: 400 * ms,
		// On CPU per 100 ms interval (eBPF): 45, 100, 5, 110 ms; 260 ms
		// in 400 ms.
		AvgCPU: 65, PeakCPU: 110, CPUSource: CPUFromEBPF, PeakWindow: 75 * ms,
		User: 200 * ms, System: 50 * ms, OnCPU: 260 * ms,
		AvgRSS: 20e6, MaxRSS: 30e6, PeakRSS: 30e6,
		Voluntary: 40, Involuntary: 4,
		// 100 wakeups: the 50th is in bucket 0 ([1, 2) µs), the 99th in
		// bucket 10 ([1024, 2048) µs); each reported as its upper bound.
		RunQueueP50: 2 * time.Microsecond, RunQueueP99: 2048 * time.Microsecond,
		RunQueueWakeups: 100,
		Net: map[string]IfSummary{"lo": {
			// rx packets per interval: 100, 200, 0, 100 in 100 ms.
			Rx: DirSummary{Packets: 400, Bytes: 40000, Drops: 3,
				AvgPktRate: 1000, PeakPktRate: 2000, AvgByteRate: 100000, PeakByteRate: 200000},
			Tx: DirSummary{Packets: 800, Bytes: 120000,
				AvgPktRate: 2000, PeakPktRate: 4000, AvgByteRate: 300000, PeakByteRate: 600000},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

// The summary covers the series' own window: a non-zero first sample is
// the baseline, not part of the totals.
func TestSummariseResourcesBaseline(t *testing.T) {
	s := fiveSamples()
	for i := range s.Samples {
		s.Samples[i].T += time.Second
		s.Samples[i].User += time.Second
		s.Samples[i].Voluntary += 1000
		s.Samples[i].RunQueue[20] += 7
	}
	got := SummariseResources(s)
	if got.User != 200*ms || got.AvgCPU != 65 || got.Voluntary != 40 || got.RunQueueWakeups != 100 {
		t.Errorf("baseline not subtracted: %+v", got)
	}
}

func TestSummariseResourcesDegenerate(t *testing.T) {
	one := fiveSamples()
	one.Samples = one.Samples[4:]
	same := fiveSamples()
	for i := range same.Samples {
		same.Samples[i].T = 0 // no time passes
	}
	back := fiveSamples()
	back.Samples[4].Voluntary = 0 // a counter reset
	back.Samples[4].Net["lo"] = dump.IfCounters{}
	for name, s := range map[string]dump.ResourceSeries{
		"empty": {}, "one sample": one, "zero time": same, "counter reset": back,
	} {
		got := SummariseResources(s)
		for _, f := range []float64{got.AvgCPU, got.PeakCPU,
			got.Net["lo"].Rx.AvgPktRate, got.Net["lo"].Rx.PeakPktRate,
			got.Net["lo"].Tx.AvgByteRate, got.Net["lo"].Tx.PeakByteRate} {
			if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
				t.Errorf("%s: non-finite or negative figure in %+v", name, got)
			}
		}
		t.Logf("%s: %+v", name, got)
	}
	if got := SummariseResources(same); got.AvgCPU != 0 || got.PeakCPU != 0 || got.Net["lo"].Rx.AvgPktRate != 0 {
		t.Errorf("zero time: rates %v %v %v, want 0", got.AvgCPU, got.PeakCPU, got.Net["lo"].Rx.AvgPktRate)
	}
	if got := SummariseResources(back); got.Voluntary != 0 || got.Net["lo"].Rx.Packets != 0 {
		t.Errorf("counter reset: Voluntary %d, rx packets %d, want 0", got.Voluntary, got.Net["lo"].Rx.Packets)
	}
}

// Without eBPF the CPU % come from /proc's 10 ms steps, over windows of at
// least ProcPeakWindow: one thread busy all the time, read every 100 ms
// with its user and system times each cut to 10 ms as /proc does, shows
// up to 120 % over single intervals, and its peak stays within 2 % of 100.
func TestSummariseResourcesProcWindow(t *testing.T) {
	var s dump.ResourceSeries
	for i := range 31 {
		// 100 ms per interval, plus a drift so that the cuts fall
		// differently each time; a third of it is system time.
		busy := time.Duration(i)*100*ms + time.Duration(i%7)*ms
		sys := busy / 3
		s.Samples = append(s.Samples, dump.ResourceSample{T: busy,
			User: (busy - sys).Truncate(10 * ms), System: sys.Truncate(10 * ms)})
	}
	got := SummariseResources(s)
	naive := 0.0
	for i := 1; i < len(s.Samples); i++ {
		a, b := s.Samples[i-1], s.Samples[i]
		naive = math.Max(naive, percent(b.User+b.System-a.User-a.System, b.T-a.T))
	}
	t.Logf("peak %.1f %% over %v windows (%s); over single intervals %.1f %%", got.PeakCPU, got.PeakWindow, got.CPUSource, naive)
	if got.CPUSource != CPUFromProc || got.PeakWindow != ProcPeakWindow {
		t.Errorf("source %q, window %v; want %q, %v", got.CPUSource, got.PeakWindow, CPUFromProc, ProcPeakWindow)
	}
	if naive <= 105 {
		t.Errorf("single intervals peak at %.1f %%: the series does not show the steps", naive)
	}
	if got.PeakCPU > 102 || got.PeakCPU < 97 {
		t.Errorf("peak %.1f %%, want 100 ± 2 %%", got.PeakCPU)
	}
}

// A process that ends just after a sample leaves a short last interval,
// which joins the one before instead of making a peak of its own.
func TestSummariseResourcesShortLast(t *testing.T) {
	var s dump.ResourceSeries
	for _, x := range [][2]time.Duration{{0, 0}, {100 * ms, 100 * ms}, {200 * ms, 200 * ms}, {205 * ms, 209 * ms}} {
		s.Samples = append(s.Samples, dump.ResourceSample{T: x[0], OnCPU: x[1]})
	}
	got := SummariseResources(s)
	// 109 ms over the last 105 ms, not 9 ms over 5 ms (180 %).
	if want := 100 * 109.0 / 105; math.Abs(got.PeakCPU-want) > 1e-9 {
		t.Errorf("peak %.2f %%, want %.2f", got.PeakCPU, want)
	}
}
