package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
	"gonum.org/v1/plot/plotter"
)

// TCPOptions say how to print a TCP test.
type TCPOptions struct {
	Start  Start
	Agent  string
	Every  time.Duration // report interval
	Fields []collector.SelectedField
	JSON   bool
	Plot   string // file, .png or .svg
}

// sender is the side whose byte counts and TCP_INFO tell the rate: the one
// that writes (the client for forward tests; both for bidir, the client's).
func sender(r *probe.TCPResult) (name string, side probe.TCPSide) {
	if r.Params.Direction == probe.DirReverse {
		return "agent", r.Agent
	}
	return "client", r.Client
}

// receiver is the side whose reads tell what arrived: the agent for
// forward tests, the client for reverse ones (and bidir, the client's).
func receiver(r *probe.TCPResult) (name string, side probe.TCPSide) {
	if r.Params.Direction == probe.DirForward {
		return "agent", r.Agent
	}
	return "client", r.Client
}

// tcpRow is one interval: the bytes and rates the receiver read (what
// crossed the path; a sender's writes only fill its socket buffer, and
// read high when the buffer is large against the test), and the sender's
// retransmits, RTT and cwnd from its TCP_INFO.
type tcpRow struct {
	estimator.TCPInterval
	SenderRate float64 // bit/s written by the sender
	// Stale: no stream of the receiver has a sample newer than the last
	// interval's (a sampler scheduled late), so the rate is not known;
	// plots leave it out rather than draw a 0.
	Stale bool
}

// tcpRows cuts a test into intervals of every; from names the side whose
// counters gave the rates. For bidir both sides send and receive, and the
// client's counters stand.
func tcpRows(r *probe.TCPResult, every time.Duration) (rows []tcpRow, from string) {
	_, snd := sender(r)
	sivs := estimator.TCPIntervals(snd.Streams, every)
	from, rcv := receiver(r)
	if r.Params.Direction == probe.DirBidir {
		for _, iv := range sivs {
			rows = append(rows, tcpRow{TCPInterval: iv, SenderRate: iv.Rate})
		}
		return rows, from
	}
	var last time.Duration
	for i, iv := range estimator.TCPIntervals(kernelReceived(rcv.Streams), every) {
		row := tcpRow{TCPInterval: iv}
		newest := time.Duration(0)
		for _, x := range iv.Samples {
			newest = max(newest, x.T)
		}
		row.Stale, last = i > 0 && newest <= last, max(last, newest)
		row.Samples = nil
		if i < len(sivs) {
			s := sivs[i]
			row.SenderRate, row.Retrans, row.RTT, row.Cwnd, row.Samples = s.Rate, s.Retrans, s.RTT, s.Cwnd, s.Samples
		}
		rows = append(rows, row)
	}
	return rows, from
}

// kernelReceived puts the receiving kernel's count of bytes that arrived
// (tcpi_bytes_received) in place of the application's reads, which come in
// bursts when the reader is scheduled late: rates are then when data
// crossed the path. Samples without the count keep the reads.
func kernelReceived(streams []dump.TCPStream) []dump.TCPStream {
	out := make([]dump.TCPStream, len(streams))
	for i, st := range streams {
		out[i] = st
		out[i].Samples = make([]dump.TCPSample, len(st.Samples))
		for k, x := range st.Samples {
			if x.BytesRecv > 0 {
				x.Bytes = x.BytesRecv
			}
			out[i].Samples[k] = x
		}
	}
	return out
}

// TCP prints a TCP test.
func TCP(w io.Writer, r *probe.TCPResult, o TCPOptions) error {
	if o.Plot != "" {
		if err := PlotTCP(o.Plot, r, o); err != nil {
			return err
		}
	}
	if o.JSON {
		return tcpJSON(w, r, o)
	}
	p := r.Params
	what := fmt.Sprintf("%v", p.Duration)
	if p.Bytes > 0 {
		what = fmt.Sprintf("%d bytes", p.Bytes)
	}
	fmt.Fprintf(w, "tcp %s (agent %s): %d streams, %s, writes of %d B", pathOf(p.Direction), o.Agent, p.Streams, what, p.WriteSize)
	if len(p.SockOpts) > 0 {
		fmt.Fprintf(w, ", %s", strings.Join(p.SockOpts, " "))
	}
	fmt.Fprintln(w)
	for _, s := range []struct {
		name string
		side probe.TCPSide
	}{{"client", r.Client}, {"agent", r.Agent}} {
		if len(s.side.ReadBack) > 0 {
			fmt.Fprintf(w, "read back on the %s: %v\n", s.name, s.side.ReadBack)
		}
	}
	sname, _ := sender(r)
	rows, from := tcpRows(r, o.Every)
	if p.Direction == probe.DirBidir {
		fmt.Fprintf(w, "intervals: bytes both ways, retransmits, RTT and cwnd from the client's counters and TCP_INFO (mean over streams):\n")
	} else {
		fmt.Fprintf(w, "intervals: rate as the %s's kernel received it; retransmits, RTT and cwnd from the %s's TCP_INFO (mean over streams):\n", from, sname)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	// Each stream gets a column too, while they fit on a line.
	perStream := p.Streams > 1 && p.Streams <= 8
	head := "time s\tMbit/s\tretrans\trtt µs\tcwnd\t"
	if perStream {
		for i := range p.Streams {
			head += fmt.Sprintf("#%d Mbit/s\t", i)
		}
	}
	for _, f := range o.Fields {
		head += strings.TrimRight(f.Label, ":= ") + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, iv := range rows {
		line := fmt.Sprintf("%.1f-%.1f\t%.2f\t%d\t%.0f\t%.1f\t", iv.Start.Seconds(), iv.End.Seconds(), iv.Rate/1e6, iv.Retrans,
			float64(iv.RTT)/1e3, iv.Cwnd)
		if perStream {
			for _, r := range iv.PerStream {
				line += fmt.Sprintf("%.2f\t", r/1e6)
			}
		}
		for _, f := range o.Fields {
			line += fmt.Sprintf("%.1f\t", meanField(iv.TCPInterval, f.Field))
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, s := range []struct {
		name string
		side probe.TCPSide
	}{{"client", r.Client}, {"agent", r.Agent}} {
		t := estimator.TCPTotal(s.side.Streams, s.side.Elapsed)
		fmt.Fprintf(w, "%-6s sent %d B (%s), received %d B (%s) in %.2f s; retransmits %d; %s user %.2f s, system %.2f s",
			s.name, t.Sent, Rate(t.SendRate), t.Received, Rate(t.RecvRate), s.side.Elapsed.Seconds(), t.Retrans,
			cpuLabel(s.name, s.side.CPUSessions), s.side.UserCPU.Seconds(), s.side.SysCPU.Seconds())
		if t.Errors > 0 {
			fmt.Fprintf(w, "; %d streams ended in an error, e.g. %s", t.Errors, firstErr(s.side))
		}
		fmt.Fprintln(w)
	}
	rname, _ := receiver(r)
	if p.Direction == probe.DirBidir {
		rname = "client and agent"
	}
	fmt.Fprintf(w, "throughput %s, as the %s received it\n", Rate(TCPReceivedRate(r)), rname)
	return nil
}

func firstErr(s probe.TCPSide) string {
	for _, st := range s.Streams {
		if st.Err != "" {
			return st.Err
		}
	}
	return ""
}

func meanField(iv estimator.TCPInterval, f collector.TCPInfoField) float64 {
	if len(iv.Samples) == 0 {
		return 0
	}
	var sum float64
	for k := range iv.Samples {
		sum += f.Value(&iv.Samples[k])
	}
	return sum / float64(len(iv.Samples))
}

// TCPDoc is the JSON document of a TCP test.
type TCPDoc struct {
	Schema    string            `json:"schema"`
	Start     Start             `json:"start"`
	Params    TCPParamsJSON     `json:"params"`
	RatesFrom string            `json:"rates_from"` // the side whose reads gave the interval rates: the receiver
	Intervals []TCPIntervalJSON `json:"intervals"`
	End       TCPEndJSON        `json:"end"`
}

// TCPParamsJSON is what a TCP or QUIC test asked for.
type TCPParamsJSON struct {
	Path            string   `json:"path"`
	Direction       string   `json:"direction"` // forward, reverse, bidir
	Streams         int      `json:"streams"`
	DurationS       *float64 `json:"duration_s"` // null when --bytes
	Bytes           *int64   `json:"bytes"`      // per direction; null when by time
	WriteSizeBytes  int      `json:"write_size_bytes"`
	SampleIntervalS float64  `json:"sample_interval_s"`
	ReportIntervalS float64  `json:"report_interval_s"`
	SockOpts        []string `json:"sockopts"`
	GetSockOpts     []string `json:"getsockopts"`
	Exclusive       bool     `json:"exclusive"`
}

func tcpParamsJSON(dir probe.Direction, streams int, d time.Duration, bytes int64, write int, sample, every time.Duration, exclusive bool) TCPParamsJSON {
	p := TCPParamsJSON{Path: pathOf(dir), Direction: string(dir), Streams: streams, WriteSizeBytes: write,
		SampleIntervalS: seconds(sample), ReportIntervalS: seconds(every), SockOpts: []string{}, GetSockOpts: []string{}, Exclusive: exclusive}
	if bytes > 0 {
		p.Bytes = &bytes
	} else {
		p.DurationS = orNull(seconds(d), true)
	}
	return p
}

// TCPIntervalJSON is one report interval.
type TCPIntervalJSON struct {
	StartS       float64   `json:"start_s"`
	EndS         float64   `json:"end_s"`
	Bytes        uint64    `json:"bytes"`       // received, all streams
	Bps          float64   `json:"bps"`         // received
	SenderBps    float64   `json:"sender_bps"`  // written by the sender
	StreamsBps   []float64 `json:"streams_bps"` // received, per stream
	Retransmits  uint32    `json:"retransmits"`
	RTTUs        float64   `json:"rtt_us"`        // sender's smoothed RTT, mean over streams
	CwndSegments float64   `json:"cwnd_segments"` // sender's, mean over streams
}

func tcpIntervalJSON(iv tcpRow) TCPIntervalJSON {
	return TCPIntervalJSON{seconds(iv.Start), seconds(iv.End), iv.Bytes, iv.Rate, iv.SenderRate, nonNil(iv.PerStream),
		iv.Retrans, micros(iv.RTT), iv.Cwnd}
}

// TCPEndJSON closes a TCP test: the rate the receiver read over the whole
// test, and each side's totals.
type TCPEndJSON struct {
	ReceivedBps float64     `json:"received_bps"`
	Client      TCPSideJSON `json:"client"`
	Agent       TCPSideJSON `json:"agent"`
}

// TCPSideJSON is one side of a TCP test.
type TCPSideJSON struct {
	BytesSent     uint64            `json:"bytes_sent"`
	BytesReceived uint64            `json:"bytes_received"`
	SendBps       float64           `json:"send_bps"`
	ReceiveBps    float64           `json:"receive_bps"`
	ElapsedS      float64           `json:"elapsed_s"`
	Retransmits   uint32            `json:"retransmits"`
	CPUUserS      float64           `json:"cpu_user_s"`
	CPUSystemS    float64           `json:"cpu_system_s"`
	CPUSessions   int               `json:"cpu_sessions"` // tests the process ran at once; above 1 the CPU is shared
	StreamErrors  int               `json:"stream_errors"`
	ReadBack      map[string]string `json:"read_back"`
	Streams       []TCPStreamJSON   `json:"streams"`
}

// TCPStreamJSON is one stream as one side saw it, with every sample.
type TCPStreamJSON struct {
	Index         int             `json:"index"`
	BytesSent     uint64          `json:"bytes_sent"`
	BytesReceived uint64          `json:"bytes_received"`
	Error         *string         `json:"error"`
	Samples       []TCPSampleJSON `json:"samples"`
}

// TCPSampleJSON is one TCP_INFO sample with the bytes moved so far.
type TCPSampleJSON struct {
	TS                  float64 `json:"t_s"`
	Bytes               uint64  `json:"bytes"` // written (sender) or read (receiver) so far
	RTTUs               float64 `json:"rtt_us"`
	RTTVarUs            float64 `json:"rttvar_us"`
	MinRTTUs            float64 `json:"min_rtt_us"`
	SndCwndSegments     uint32  `json:"snd_cwnd_segments"`
	SndSsthreshSegments uint32  `json:"snd_ssthresh_segments"`
	SndMSSBytes         uint32  `json:"snd_mss_bytes"`
	UnackedSegments     uint32  `json:"unacked_segments"`
	LostSegments        uint32  `json:"lost_segments"`
	Retransmits         uint8   `json:"retransmits"`
	TotalRetrans        uint32  `json:"total_retrans"`
	DeliveryRateBps     float64 `json:"delivery_rate_bps"`
	PacingRateBps       float64 `json:"pacing_rate_bps"`
	BytesAcked          uint64  `json:"bytes_acked"`
	BytesReceived       uint64  `json:"bytes_received"`
	BusyS               float64 `json:"busy_s"`
	RwndLimitedS        float64 `json:"rwnd_limited_s"`
	SndbufLimitedS      float64 `json:"sndbuf_limited_s"`
}

func tcpSideJSON(s probe.TCPSide) TCPSideJSON {
	t := estimator.TCPTotal(s.Streams, s.Elapsed)
	out := TCPSideJSON{BytesSent: t.Sent, BytesReceived: t.Received, SendBps: t.SendRate, ReceiveBps: t.RecvRate,
		ElapsedS: seconds(s.Elapsed), Retransmits: t.Retrans, CPUUserS: seconds(s.UserCPU), CPUSystemS: seconds(s.SysCPU),
		CPUSessions: s.CPUSessions, StreamErrors: t.Errors, ReadBack: map[string]string{}, Streams: []TCPStreamJSON{}}
	for k, v := range s.ReadBack {
		out.ReadBack[k] = v
	}
	for _, st := range s.Streams {
		sj := TCPStreamJSON{Index: st.Index, BytesSent: st.Sent, BytesReceived: st.Received, Samples: make([]TCPSampleJSON, len(st.Samples))}
		if st.Err != "" {
			sj.Error = &st.Err
		}
		for k, x := range st.Samples {
			sj.Samples[k] = TCPSampleJSON{seconds(x.T), x.Bytes, micros(x.RTT), micros(x.RTTVar), micros(x.MinRTT),
				x.SndCwnd, x.SndSsthresh, x.SndMSS, x.Unacked, x.Lost, x.Retransmits, x.TotalRetrans,
				8 * float64(x.DeliveryRate), 8 * float64(x.PacingRate), x.BytesAcked, x.BytesRecv,
				seconds(x.BusyTime), seconds(x.RwndLimited), seconds(x.SndbufLimit)}
		}
		out.Streams = append(out.Streams, sj)
	}
	return out
}

// TCPReceivedRate is what the receiving side read over its elapsed time
// (for bidir, both sides' reads).
func TCPReceivedRate(r *probe.TCPResult) float64 {
	c, a := estimator.TCPTotal(r.Client.Streams, r.Client.Elapsed), estimator.TCPTotal(r.Agent.Streams, r.Agent.Elapsed)
	switch r.Params.Direction {
	case probe.DirReverse:
		return c.RecvRate
	case probe.DirBidir:
		return c.RecvRate + a.RecvRate
	}
	return a.RecvRate
}

func tcpParamsOf(p probe.TCPParams, every time.Duration) TCPParamsJSON {
	params := tcpParamsJSON(p.Direction, p.Streams, p.Duration, p.Bytes, p.WriteSize, p.Interval, every, p.Exclusive)
	params.SockOpts, params.GetSockOpts = append(params.SockOpts, p.SockOpts...), append(params.GetSockOpts, p.GetOpts...)
	return params
}

// TCPDocument builds the JSON document of a TCP test.
func TCPDocument(r *probe.TCPResult, o TCPOptions) TCPDoc {
	p := r.Params
	rows, from := tcpRows(r, o.Every)
	ivs := make([]TCPIntervalJSON, len(rows))
	for i, row := range rows {
		ivs[i] = tcpIntervalJSON(row)
	}
	return TCPDoc{Schema: SchemaTCP, Start: o.Start, Params: tcpParamsOf(p, o.Every), RatesFrom: from, Intervals: ivs,
		End: TCPEndJSON{ReceivedBps: TCPReceivedRate(r), Client: tcpSideJSON(r.Client), Agent: tcpSideJSON(r.Agent)}}
}

func tcpJSON(w io.Writer, r *probe.TCPResult, o TCPOptions) error {
	return writeDoc(w, TCPDocument(r, o))
}

// PlotTCP draws three panels over time: the rate each stream (up to
// eight) and all of them arrived at, the sender's mean cwnd and its mean
// RTT.
func PlotTCP(path string, r *probe.TCPResult, o TCPOptions) error {
	rows, from := tcpRows(r, r.Params.Interval)
	line := func(name string, y func(tcpRow) float64) series {
		var pts plotter.XYs
		for _, iv := range rows {
			rate := name == "all streams" || strings.HasPrefix(name, "stream")
			if rate && iv.Stale || !rate && iv.Samples == nil {
				continue // not known, rather than 0
			}
			pts = append(pts, plotter.XY{X: iv.End.Seconds(), Y: y(iv)})
		}
		return series{name, pts}
	}
	var rate []series
	if n := r.Params.Streams; n > 1 && n <= maxStreamLines {
		for k := range n {
			rate = append(rate, line(fmt.Sprintf("stream %d", k), func(iv tcpRow) float64 {
				if k < len(iv.PerStream) {
					return iv.PerStream[k] / 1e6
				}
				return 0
			}))
		}
	}
	rate = append(rate, line("all streams", func(iv tcpRow) float64 { return iv.Rate / 1e6 }))
	sname, _ := sender(r)
	return drawPanels(path, fmt.Sprintf("tcp %s (agent %s): %d streams; rates as the %s received them", pathOf(r.Params.Direction), o.Agent, r.Params.Streams, from),
		[]panel{
			{ylabel: "received, Mbit/s", lines: rate},
			{ylabel: "cwnd, segments", lines: []series{line(sname+"'s mean cwnd", func(iv tcpRow) float64 { return iv.Cwnd })}},
			{ylabel: "RTT, ms", lines: []series{line(sname+"'s mean smoothed RTT", func(iv tcpRow) float64 { return float64(iv.RTT) / 1e6 })}},
		})
}

// cpuLabel names whose CPU a side's figures are: getrusage's of the whole
// process, which is the test's own only when it ran alone there.
func cpuLabel(side string, sessions int) string {
	if sessions > 1 {
		return fmt.Sprintf("CPU of the whole %s process, shared by the %d tests it ran at once,", side, sessions)
	}
	return "CPU"
}
