package report

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

// SchemaWatch names probe watch's JSON document.
const SchemaWatch = "probe/watch/1"

// WatchOptions say how to print what probe watch saw.
type WatchOptions struct {
	Start    Start
	JSON     bool
	Loopback bool // show lo too; its traffic is mostly the host talking to itself
	// Exit is the command's exit status when probe watch started it and it
	// ended; ExitText says it for people ("exit code 1", "killed by …").
	Exit     *int
	ExitText string
}

// WatchDoc is the JSON document of probe watch.
type WatchDoc struct {
	Schema  string               `json:"schema"`
	Start   Start                `json:"start"`
	Summary WatchSummaryJSON     `json:"summary"`
	Exit    *int                 `json:"exit_code"` // null for --pid, or a command that did not end
	Samples []ResourceSampleJSON `json:"samples"`
}

// WatchSummaryJSON is the summary of a watched process and its children.
type WatchSummaryJSON struct {
	Name            string                   `json:"name"`
	PID             int                      `json:"pid"`
	Samples         int                      `json:"samples"`
	DurationS       float64                  `json:"duration_s"`
	CPUAvgPct       float64                  `json:"cpu_avg_pct"`
	CPUPeakPct      float64                  `json:"cpu_peak_pct"`
	CPUPeakWindowS  float64                  `json:"cpu_peak_window_s"`
	CPUSource       string                   `json:"cpu_source"`
	UserS           float64                  `json:"user_s"`
	SystemS         float64                  `json:"system_s"`
	OnCPUS          *float64                 `json:"on_cpu_s"` // null without eBPF
	RSSAvgBytes     uint64                   `json:"rss_avg_bytes"`
	RSSPeakBytes    uint64                   `json:"rss_peak_bytes"`
	Voluntary       *uint64                  `json:"voluntary_switches"`   // null without eBPF
	Involuntary     *uint64                  `json:"involuntary_switches"` // null without eBPF
	RunQueueP50Us   *float64                 `json:"run_queue_p50_us"`     // null without observations
	RunQueueP99Us   *float64                 `json:"run_queue_p99_us"`     // null for fewer than 100
	RunQueueWakeups uint64                   `json:"run_queue_wakeups"`
	Interfaces      map[string]InterfaceJSON `json:"interfaces"`
}

// InterfaceJSON is one interface's traffic while the process ran.
type InterfaceJSON struct {
	Rx DirectionJSON `json:"rx"`
	Tx DirectionJSON `json:"tx"`
}

// DirectionJSON is one direction of an interface.
type DirectionJSON struct {
	Packets     uint64  `json:"packets"`
	Bytes       uint64  `json:"bytes"`
	Drops       uint64  `json:"drops"`
	AvgPktRate  float64 `json:"packets_per_s_avg"`
	PeakPktRate float64 `json:"packets_per_s_peak"`
	AvgBps      float64 `json:"bps_avg"`
	PeakBps     float64 `json:"bps_peak"`
}

// ResourceSampleJSON is one sample, counters cumulative.
type ResourceSampleJSON struct {
	TS          float64                      `json:"t_s"`
	UserS       float64                      `json:"user_s"`
	SystemS     float64                      `json:"system_s"`
	OnCPUS      float64                      `json:"on_cpu_s"`
	RSSBytes    uint64                       `json:"rss_bytes"`
	PeakRSS     uint64                       `json:"rss_peak_bytes"`
	Threads     int                          `json:"threads"`
	Voluntary   uint64                       `json:"voluntary_switches"`
	Involuntary uint64                       `json:"involuntary_switches"`
	RunQueue    []uint64                     `json:"run_queue_log2_us"` // [i]: waits in [2^i, 2^(i+1)) µs
	Interfaces  map[string]InterfaceCounters `json:"interfaces"`
	ReadBytes   uint64                       `json:"read_bytes"`  // storage reads so far
	WriteBytes  uint64                       `json:"write_bytes"` // storage writes so far
}

// InterfaceCounters are an interface's counters at one sample.
type InterfaceCounters struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	RxDrops   uint64 `json:"rx_drops"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxDrops   uint64 `json:"tx_drops"`
}

func dirJSON(d estimator.DirSummary) DirectionJSON {
	return DirectionJSON{d.Packets, d.Bytes, d.Drops, d.AvgPktRate, d.PeakPktRate, 8 * d.AvgByteRate, 8 * d.PeakByteRate}
}

// WatchDocument builds probe watch's JSON document; ebpf says whether the
// scheduler figures were measured.
func WatchDocument(series dump.ResourceSeries, ebpf bool, o WatchOptions) WatchDoc {
	s := estimator.SummariseResources(series)
	sum := WatchSummaryJSON{Name: s.Name, PID: s.PID, Samples: s.Samples, DurationS: seconds(s.Duration),
		CPUAvgPct: s.AvgCPU, CPUPeakPct: s.PeakCPU, CPUPeakWindowS: seconds(s.PeakWindow), CPUSource: string(s.CPUSource), UserS: seconds(s.User), SystemS: seconds(s.System),
		RSSAvgBytes: s.AvgRSS, RSSPeakBytes: max(s.PeakRSS, s.MaxRSS),
		RunQueueP50Us: orNull(micros(s.RunQueueP50), s.RunQueueWakeups > 0), RunQueueP99Us: orNull(micros(s.RunQueueP99), s.RunQueueWakeups >= minN99),
		RunQueueWakeups: s.RunQueueWakeups, Interfaces: map[string]InterfaceJSON{}}
	if ebpf {
		sum.OnCPUS, sum.Voluntary, sum.Involuntary = orNull(seconds(s.OnCPU), true), &s.Voluntary, &s.Involuntary
	}
	for name, ifc := range s.Net {
		if name == "lo" && !o.Loopback {
			continue
		}
		sum.Interfaces[name] = InterfaceJSON{dirJSON(ifc.Rx), dirJSON(ifc.Tx)}
	}
	doc := WatchDoc{Schema: SchemaWatch, Start: o.Start, Summary: sum, Exit: o.Exit, Samples: make([]ResourceSampleJSON, len(series.Samples))}
	for i, x := range series.Samples {
		doc.Samples[i] = resourceSampleJSON(x, o.Loopback)
	}
	return doc
}

// Watch prints what probe watch saw: a summary for people, or the JSON
// document.
func Watch(w io.Writer, series dump.ResourceSeries, ebpf bool, o WatchOptions) error {
	if o.JSON {
		return writeDoc(w, WatchDocument(series, ebpf, o))
	}
	s := estimator.SummariseResources(series)
	ended := ""
	if o.ExitText != "" {
		ended = ", " + o.ExitText
	}
	fmt.Fprintf(w, "%s (pid %d)%s, %d samples over %.2f s\n", series.Name, series.PID, ended, len(series.Samples), s.Duration.Seconds())
	onCPU := "on CPU unknown (no eBPF)"
	if ebpf {
		onCPU = fmt.Sprintf("on CPU %.3f s (eBPF)", s.OnCPU.Seconds())
	}
	src := "on-CPU time from eBPF"
	if s.CPUSource == estimator.CPUFromProc {
		src = "from /proc, in 10 ms steps"
	}
	fmt.Fprintf(w, "CPU       average %.1f %%, peak %.1f %% over %v (100 %% = one core; %s); user %.3f s, system %.3f s; %s\n",
		s.AvgCPU, s.PeakCPU, s.PeakWindow.Round(time.Millisecond), src, s.User.Seconds(), s.System.Seconds(), onCPU)
	fmt.Fprintf(w, "memory    RSS average %.1f MiB, peak %.1f MiB\n", float64(s.AvgRSS)/(1<<20), float64(max(s.PeakRSS, s.MaxRSS))/(1<<20))
	if ebpf {
		rq := fmt.Sprintf("run-queue latency p50 ≤ %v", s.RunQueueP50)
		if s.RunQueueWakeups >= minN99 {
			rq += fmt.Sprintf(", p99 ≤ %v", s.RunQueueP99)
		}
		fmt.Fprintf(w, "switches  voluntary %d, involuntary %d; %s (n=%d)\n", s.Voluntary, s.Involuntary, rq, s.RunQueueWakeups)
	}
	for _, n := range slices.Sorted(maps.Keys(s.Net)) {
		ifc := s.Net[n]
		if ifc.Rx.Packets+ifc.Tx.Packets == 0 || n == "lo" && !o.Loopback {
			continue
		}
		fmt.Fprintf(w, "net %-8s rx %.0f pkt/s (peak %.0f), %s (peak %s); tx %.0f pkt/s (peak %.0f), %s (peak %s)\n",
			n, ifc.Rx.AvgPktRate, ifc.Rx.PeakPktRate, Rate(8*ifc.Rx.AvgByteRate), Rate(8*ifc.Rx.PeakByteRate),
			ifc.Tx.AvgPktRate, ifc.Tx.PeakPktRate, Rate(8*ifc.Tx.AvgByteRate), Rate(8*ifc.Tx.PeakByteRate))
	}
	return nil
}

// resourceSampleJSON is one sample as the document and the stream give it.
func resourceSampleJSON(x dump.ResourceSample, loopback bool) ResourceSampleJSON {
	out := ResourceSampleJSON{seconds(x.T), seconds(x.User), seconds(x.System), seconds(x.OnCPU), x.RSS, x.PeakRSS,
		x.Threads, x.Voluntary, x.Involuntary, x.RunQueue[:], map[string]InterfaceCounters{}, x.ReadBytes, x.WriteBytes}
	for name, c := range x.Net {
		if name == "lo" && !loopback {
			continue
		}
		out.Interfaces[name] = InterfaceCounters(c)
	}
	return out
}

// WatchLive shows probe watch's samples as they are taken: a line per
// report interval for people, as pidstat prints, or with Stream a JSON
// line per sample (--json-stream).
type WatchLive struct {
	w        io.Writer
	every    time.Duration
	ebpf     bool
	loopback bool
	stream   bool
	prev     *dump.ResourceSample // the sample the next line starts from
	lines    int
}

// NewWatchLive shows samples on w: lines every `every`, or with stream the
// start event now and a JSON line per sample.
func NewWatchLive(w io.Writer, every time.Duration, ebpf, stream bool, o WatchOptions) *WatchLive {
	l := &WatchLive{w: w, every: every, ebpf: ebpf, loopback: o.Loopback, stream: stream}
	if stream {
		writeDocLine(w, StreamEvent{"start", WatchStreamStart{SchemaWatch, o.Start}})
	}
	return l
}

// WatchStreamStart is the start event of probe watch --json-stream.
type WatchStreamStart struct {
	Schema string `json:"schema"`
	Start  Start  `json:"start"`
}

// Sample takes one sample, from the sampler's goroutine.
func (l *WatchLive) Sample(s dump.ResourceSample) {
	if l.stream {
		writeDocLine(l.w, StreamEvent{"interval", resourceSampleJSON(s, l.loopback)})
		return
	}
	if l.prev == nil {
		l.prev = &s
		return
	}
	// A quarter of the report interval early still counts: samples come
	// on a ticker of their own.
	if s.T-l.prev.T < l.every-l.every/4 {
		return
	}
	if l.lines%20 == 0 {
		fmt.Fprintln(l.w, WatchLineHeader)
	}
	fmt.Fprintln(l.w, WatchLine(time.Now(), *l.prev, s, l.ebpf, l.loopback))
	l.lines++
	l.prev = &s
}

// End closes a stream with the whole document.
func (l *WatchLive) End(series dump.ResourceSeries, o WatchOptions) error {
	if !l.stream {
		return nil
	}
	return writeDocLine(l.w, StreamEvent{"end", WatchDocument(series, l.ebpf, o)})
}

// WatchLineHeader heads the live lines: CPU over the interval (100 % = one
// core), RSS, threads, context switches per second, storage reads and
// writes in kB/s (as pidstat -d), and the network bit rates summed over
// the interfaces shown.
const WatchLineHeader = "time        CPU %   RSS MiB  threads   cswch/s  nvcswch/s   kB_rd/s   kB_wr/s        rx bit/s        tx bit/s"

// WatchLine is one live line from sample a to sample b.
func WatchLine(now time.Time, a, b dump.ResourceSample, ebpf, loopback bool) string {
	dt := (b.T - a.T).Seconds()
	if dt <= 0 {
		dt = 1e-9
	}
	cpu := (b.User + b.System - a.User - a.System).Seconds()
	if ebpf {
		cpu = (b.OnCPU - a.OnCPU).Seconds()
	}
	var rx, tx uint64
	for name, c := range b.Net {
		if name == "lo" && !loopback {
			continue
		}
		p := a.Net[name]
		rx += c.RxBytes - min(p.RxBytes, c.RxBytes)
		tx += c.TxBytes - min(p.TxBytes, c.TxBytes)
	}
	sw := func(x, y uint64) string {
		if !ebpf {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(y-min(x, y))/dt)
	}
	kB := func(x, y uint64) float64 { return float64(y-min(x, y)) / 1e3 / dt }
	return fmt.Sprintf("%-8s %8.1f %9.1f %8d %9s %10s %9.1f %9.1f %15s %15s", now.Format("15:04:05"), 100*cpu/dt, float64(b.RSS)/(1<<20), b.Threads,
		sw(a.Voluntary, b.Voluntary), sw(a.Involuntary, b.Involuntary), kB(a.ReadBytes, b.ReadBytes), kB(a.WriteBytes, b.WriteBytes),
		Rate(8*float64(rx)/dt), Rate(8*float64(tx)/dt))
}
