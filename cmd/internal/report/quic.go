package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// QUICOptions say how to print a QUIC test.
type QUICOptions struct {
	Start Start
	Agent string
	Every time.Duration // report interval
	JSON  bool
	Plot  string // file, .png or .svg
}

// quicFlow is one direction of a QUIC test: the stream bytes its receiver
// read (what crossed the path), and its sender's connection statistics
// (cwnd, loss and bytes in flight are the sender's).
type quicFlow struct {
	name     string // "up" or "down"
	sender   string // "client" or "agent"
	receiver string // whose stream counters gave the rates
	streams  []dump.QUICStream
	conn     []dump.QUICConnSample
	note     string // what the figures are when they are not as above
}

// connOwner is whose connection statistics a flow carries.
func connOwner(f quicFlow) string {
	if f.sender == "server" {
		return "client" // a perf server tells nothing
	}
	return f.sender
}

// quicFlows are the test's directions.
func quicFlows(r *probe.QUICResult) []quicFlow {
	pick := func(side probe.QUICSide, dir string) []dump.QUICStream {
		var out []dump.QUICStream
		for _, s := range side.Streams {
			if s.Dir == dir {
				out = append(out, s)
			}
		}
		return out
	}
	up := quicFlow{"up", "client", "agent", pick(r.Agent, "up"), r.Client.Conn, ""}
	down := quicFlow{"down", "agent", "client", pick(r.Client, "down"), r.Agent.Conn, ""}
	if r.PerfOnly {
		// Without the server's side, an upload's rates are the client's
		// writes, and a download's connection statistics the receiver's
		// own, not the sender's cwnd and losses.
		up = quicFlow{"up", "client", "client", pick(r.Client, "up"), r.Client.Conn, "the sender's; the perf server's side is unknown"}
		down = quicFlow{"down", "server", "client", pick(r.Client, "down"), r.Client.Conn, "the receiver's; the perf server's side is unknown"}
	}
	switch r.Params.Direction {
	case probe.DirReverse:
		return []quicFlow{down}
	case probe.DirBidir:
		return []quicFlow{up, down}
	}
	return []quicFlow{up}
}

// QUICReceiveRate is the rate at which the receiving side read stream bytes
// (of both directions, for bidir), over its elapsed time. Against a perf
// server without a control connection the client's figures stand in for the
// server's: an upload's rate is what the client sent, every byte of it
// drained by the server (its close says so), over the client's time.
func QUICReceiveRate(r *probe.QUICResult) float64 {
	if r.PerfOnly {
		t := estimator.QUICTotal(r.Client.Streams, r.Client.Conn, r.Client.Elapsed)
		switch r.Params.Direction {
		case probe.DirReverse:
			return t.RecvRate
		case probe.DirBidir:
			return t.RecvRate + t.SendRate
		}
		return t.SendRate
	}
	switch r.Params.Direction {
	case probe.DirReverse:
		return estimator.QUICTotal(r.Client.Streams, r.Client.Conn, r.Client.Elapsed).RecvRate
	case probe.DirBidir:
		return estimator.QUICTotal(r.Client.Streams, r.Client.Conn, r.Client.Elapsed).RecvRate +
			estimator.QUICTotal(r.Agent.Streams, r.Agent.Conn, r.Agent.Elapsed).RecvRate
	}
	return estimator.QUICTotal(r.Agent.Streams, r.Agent.Conn, r.Agent.Elapsed).RecvRate
}

// cpuPerGB is a side's CPU seconds per GB (1e9 bytes) of stream data it
// moved either way.
func cpuPerGB(user, sys time.Duration, bytes uint64) float64 {
	if bytes == 0 {
		return 0
	}
	return (user + sys).Seconds() / (float64(bytes) / 1e9)
}

// QUIC prints a QUIC test.
func QUIC(w io.Writer, r *probe.QUICResult, o QUICOptions) error {
	if o.Plot != "" {
		if err := PlotQUIC(o.Plot, r, o); err != nil {
			return err
		}
	}
	if o.JSON {
		return quicJSON(w, r, o)
	}
	quicText(w, r, o)
	return nil
}

func quicText(w io.Writer, r *probe.QUICResult, o QUICOptions) {
	p := r.Params
	what := fmt.Sprintf("%v", p.Duration)
	if p.Bytes > 0 {
		what = fmt.Sprintf("%d bytes", p.Bytes)
	}
	if r.PerfOnly {
		fmt.Fprintf(w, "quic %s (perf server %s): %d streams, %s, writes of %d B; QUIC %s, GSO client %s\n",
			strings.ReplaceAll(pathOf(p.Direction), "agent", "server"), o.Agent, p.Streams, what, p.WriteSize, r.Version, onOff(r.Client.GSO))
		fmt.Fprintf(w, "%s\n", perfOnlyNote)
	} else {
		fmt.Fprintf(w, "quic %s (agent %s): %d streams, %s, writes of %d B; QUIC %s, GSO client %s agent %s\n",
			pathOf(p.Direction), o.Agent, p.Streams, what, p.WriteSize, r.Version, onOff(r.Client.GSO), onOff(r.Agent.GSO))
	}
	for i, h := range r.Handshakes {
		kind := "full handshake"
		if i > 0 && !h.Resumed {
			kind = "again, not resumed"
		}
		if h.Resumed {
			kind = "resumed"
			if h.Used0RTT {
				kind += ", request in 0-RTT"
			}
		}
		fmt.Fprintf(w, "%-32s handshake %s, first byte %s\n", kind+":", fmtDur(h.Handshake), fmtDur(h.FirstByte))
	}
	for _, loaded := range []bool{false, true} {
		d := estimator.QUICPings(r.Pings, loaded)
		if d.Sent == 0 {
			continue
		}
		when := "idle"
		if loaded {
			when = "during the transfer"
		}
		p99 := ""
		if d.Echoed >= minN99 {
			p99 = ", p99 " + fmtDur(d.P99)
		}
		fmt.Fprintf(w, "datagram RTT %s: %d of %d echoed; min %s, median %s%s, max %s; jitter %s\n", when, d.Echoed, d.Sent,
			fmtDur(d.Min), fmtDur(d.Median), p99, fmtDur(d.Max), fmtDur(d.Jitter))
	}
	for _, f := range quicFlows(r) {
		note := ""
		if f.note != "" {
			note = " (" + f.note + ")"
		}
		fmt.Fprintf(w, "%s: rate from the %s's stream counters, loss, RTT and cwnd from the %s's connection statistics%s:\n", f.name, f.receiver, connOwner(f), note)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		perStream := len(f.streams) > 1 && len(f.streams) <= 8
		head := "time s\tMbit/s\tlost\tsrtt µs\tcwnd KB\tin flight KB\t"
		if perStream {
			for _, s := range f.streams {
				head += fmt.Sprintf("#%d Mbit/s\t", s.ID)
			}
		}
		fmt.Fprintln(tw, head)
		for _, iv := range estimator.QUICIntervals(f.streams, f.conn, o.Every) {
			line := fmt.Sprintf("%.1f-%.1f\t%.2f\t%d\t%.0f\t%.1f\t%.1f\t", iv.Start.Seconds(), iv.End.Seconds(), iv.Rate/1e6,
				iv.Lost, float64(iv.RTT)/1e3, float64(iv.Cwnd)/1e3, float64(iv.InFlight)/1e3)
			if perStream {
				for _, x := range iv.PerStream {
					line += fmt.Sprintf("%.2f\t", x/1e6)
				}
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	for _, s := range quicSides(r) {
		t := estimator.QUICTotal(s.side.Streams, s.side.Conn, s.side.Elapsed)
		fmt.Fprintf(w, "%-6s sent %d B (%s), received %d B (%s) in %.2f s; packets sent %d, lost %d (%.3f %%); %s user %.2f s, system %.2f s, %.2f s/GB",
			s.name, t.Sent, Rate(t.SendRate), t.Received, Rate(t.RecvRate), s.side.Elapsed.Seconds(), t.PacketsSent, t.PacketsLost, 100*t.LossRate,
			cpuLabel(s.name, s.side.CPUSessions), s.side.UserCPU.Seconds(), s.side.SysCPU.Seconds(), cpuPerGB(s.side.UserCPU, s.side.SysCPU, t.Sent+t.Received))
		if t.Errors > 0 {
			fmt.Fprintf(w, "; %d streams ended in an error, e.g. %s", t.Errors, firstQUICErr(s.side))
		}
		fmt.Fprintln(w)
	}
	if r.PerfOnly {
		fmt.Fprintf(w, "%-6s unknown: a perf server reports nothing\n", "server")
	}
	fmt.Fprintf(w, "throughput %s, as the receiving side counted it\n", Rate(QUICReceiveRate(r)))
	for _, s := range quicSides(r) {
		for _, warn := range s.side.Warnings {
			fmt.Fprintf(w, "warning (%s): %s\n", s.name, warn)
		}
	}
}

// perfOnlyNote heads a test against a perf server without a control
// connection, so that no figure is taken for the server's.
const perfOnlyNote = "no control connection: every figure is the client's, the server's side is unknown; " +
	"no datagram pings (they are not part of the perf protocol)"

type namedSide struct {
	name string
	side probe.QUICSide
}

// quicSides are the sides a test knows: the client's, and the agent's when
// there was one.
func quicSides(r *probe.QUICResult) []namedSide {
	if r.PerfOnly {
		return []namedSide{{"client", r.Client}}
	}
	return []namedSide{{"client", r.Client}, {"agent", r.Agent}}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.3f ms", float64(d)/1e6)
}

func firstQUICErr(s probe.QUICSide) string {
	for _, st := range s.Streams {
		if st.Err != "" {
			return st.Err
		}
	}
	return ""
}

// QUICDoc is the JSON document of a QUIC test.
type QUICDoc struct {
	Schema string         `json:"schema"`
	Start  Start          `json:"start"`
	Params QUICParamsJSON `json:"params"`
	// Note says what the figures are not, against a perf server; else null.
	Note        *string             `json:"note"`
	Version     string              `json:"version"` // QUIC version of the data connection
	Handshakes  []QUICHandshakeJSON `json:"handshakes"`
	PingsIdle   *DatagramRTTJSON    `json:"datagram_rtt_idle"`   // null without pings
	PingsLoaded *DatagramRTTJSON    `json:"datagram_rtt_loaded"` // null without pings
	Flows       []QUICFlowJSON      `json:"flows"`
	End         QUICEndJSON         `json:"end"`
}

// QUICParamsJSON is what a QUIC test asked for.
type QUICParamsJSON struct {
	TCPParamsJSON
	Agent        *string `json:"agent"`       // null against a perf server
	PerfServer   *string `json:"perf_server"` // null against an agent
	Pings        int     `json:"pings"`
	PingInterval float64 `json:"ping_interval_s"`
}

// QUICHandshakeJSON is one timed connection.
type QUICHandshakeJSON struct {
	Resumed     bool    `json:"resumed"`
	Used0RTT    bool    `json:"used_0rtt"`
	HandshakeUs float64 `json:"handshake_us"`
	FirstByteUs float64 `json:"first_byte_us"`
}

// DatagramRTTJSON is the RTT of echoed datagrams, user space, µs.
type DatagramRTTJSON struct {
	Sent     int      `json:"sent"`
	Echoed   int      `json:"echoed"`
	MinUs    *float64 `json:"min_us"`
	MedianUs *float64 `json:"median_us"`
	P99Us    *float64 `json:"p99_us"`
	MaxUs    *float64 `json:"max_us"`
	JitterUs *float64 `json:"jitter_us"`
}

func datagramJSON(d estimator.DatagramRTT) *DatagramRTTJSON {
	if d.Sent == 0 {
		return nil
	}
	some := d.Echoed > 0
	return &DatagramRTTJSON{d.Sent, d.Echoed, orNull(micros(d.Min), some), orNull(micros(d.Median), some),
		orNull(micros(d.P99), d.Echoed >= minN99), orNull(micros(d.Max), some), orNull(micros(d.Jitter), d.Echoed >= 2)}
}

// QUICFlowJSON is one direction's intervals.
type QUICFlowJSON struct {
	Dir       string             `json:"dir"`        // up, down
	Sender    string             `json:"sender"`     // client, agent, server
	RatesFrom string             `json:"rates_from"` // whose stream counters gave the rates
	ConnFrom  string             `json:"conn_from"`  // whose connection statistics
	Note      *string            `json:"note"`
	Intervals []QUICIntervalJSON `json:"intervals"`
}

// QUICIntervalJSON is one report interval of a flow.
type QUICIntervalJSON struct {
	StartS        float64   `json:"start_s"`
	EndS          float64   `json:"end_s"`
	Bytes         uint64    `json:"bytes"`
	Bps           float64   `json:"bps"`
	StreamsBps    []float64 `json:"streams_bps"`
	LostPackets   uint64    `json:"lost_packets"`
	SRTTUs        float64   `json:"srtt_us"`
	MinRTTUs      float64   `json:"min_rtt_us"`
	CwndBytes     uint64    `json:"cwnd_bytes"`
	InFlightBytes uint64    `json:"in_flight_bytes"`
}

func quicIntervalJSON(iv estimator.QUICInterval) QUICIntervalJSON {
	return QUICIntervalJSON{seconds(iv.Start), seconds(iv.End), iv.Bytes, iv.Rate, nonNil(iv.PerStream), iv.Lost,
		micros(iv.RTT), micros(iv.MinRTT), iv.Cwnd, iv.InFlight}
}

// QUICEndJSON closes a QUIC test.
type QUICEndJSON struct {
	ReceivedBps float64       `json:"received_bps"` // the receiving side's (perf server: the client's figure)
	Client      QUICSideJSON  `json:"client"`
	Agent       *QUICSideJSON `json:"agent"` // null against a perf server
}

// QUICSideJSON is one side of a QUIC test.
type QUICSideJSON struct {
	BytesSent      uint64               `json:"bytes_sent"`
	BytesReceived  uint64               `json:"bytes_received"`
	SendBps        float64              `json:"send_bps"`
	ReceiveBps     float64              `json:"receive_bps"`
	ElapsedS       float64              `json:"elapsed_s"`
	PacketsSent    uint64               `json:"packets_sent"`
	PacketsLost    uint64               `json:"packets_lost"`
	LossRatio      float64              `json:"loss_ratio"`
	CPUUserS       float64              `json:"cpu_user_s"`
	CPUSystemS     float64              `json:"cpu_system_s"`
	CPUSessions    int                  `json:"cpu_sessions"` // tests the process ran at once; above 1 the CPU is shared
	CPUSPerGB      *float64             `json:"cpu_s_per_gb"`
	GSO            bool                 `json:"gso"`
	UDPRcvBufBytes int                  `json:"udp_rcvbuf_bytes"`
	UDPSndBufBytes int                  `json:"udp_sndbuf_bytes"`
	Warnings       []string             `json:"warnings"`
	StreamErrors   int                  `json:"stream_errors"`
	Streams        []QUICStreamJSON     `json:"streams"`
	Conn           []QUICConnSampleJSON `json:"conn"`
}

// QUICStreamJSON is one stream as one side saw it.
type QUICStreamJSON struct {
	ID             int64   `json:"id"`
	Dir            string  `json:"dir"`
	RequestedBytes *uint64 `json:"requested_bytes"` // null: all the sender sends in the time

	BytesSent     uint64            `json:"bytes_sent"`
	BytesReceived uint64            `json:"bytes_received"`
	Error         *string           `json:"error"`
	Samples       []BytesSampleJSON `json:"samples"`
}

// BytesSampleJSON is the bytes a stream moved so far.
type BytesSampleJSON struct {
	TS    float64 `json:"t_s"`
	Bytes uint64  `json:"bytes"`
}

// QUICConnSampleJSON is one sample of a connection's statistics.
type QUICConnSampleJSON struct {
	TS              float64 `json:"t_s"`
	SRTTUs          float64 `json:"srtt_us"`
	MinRTTUs        float64 `json:"min_rtt_us"`
	LatestRTTUs     float64 `json:"latest_rtt_us"`
	RTTVarUs        float64 `json:"rttvar_us"`
	CwndBytes       uint64  `json:"cwnd_bytes"`
	InFlightBytes   uint64  `json:"in_flight_bytes"`
	PacketsSent     uint64  `json:"packets_sent"`
	BytesSent       uint64  `json:"bytes_sent"`
	PacketsLost     uint64  `json:"packets_lost"`
	BytesLost       uint64  `json:"bytes_lost"`
	PacketsReceived uint64  `json:"packets_received"`
	BytesReceived   uint64  `json:"bytes_received"`
}

func quicSideJSON(s probe.QUICSide) QUICSideJSON {
	t := estimator.QUICTotal(s.Streams, s.Conn, s.Elapsed)
	cpu := cpuPerGB(s.UserCPU, s.SysCPU, t.Sent+t.Received)
	out := QUICSideJSON{BytesSent: t.Sent, BytesReceived: t.Received, SendBps: t.SendRate, ReceiveBps: t.RecvRate,
		ElapsedS: seconds(s.Elapsed), PacketsSent: t.PacketsSent, PacketsLost: t.PacketsLost, LossRatio: t.LossRate,
		CPUUserS: seconds(s.UserCPU), CPUSystemS: seconds(s.SysCPU), CPUSessions: s.CPUSessions, CPUSPerGB: orNull(cpu, t.Sent+t.Received > 0),
		GSO: s.GSO, UDPRcvBufBytes: s.Buffers.Rcv, UDPSndBufBytes: s.Buffers.Snd, Warnings: nonNil(s.Warnings),
		StreamErrors: t.Errors, Streams: []QUICStreamJSON{}, Conn: make([]QUICConnSampleJSON, len(s.Conn))}
	for _, st := range s.Streams {
		sj := QUICStreamJSON{ID: st.ID, Dir: st.Dir, BytesSent: st.Sent, BytesReceived: st.Received,
			Samples: make([]BytesSampleJSON, len(st.Samples))}
		if st.Requested != math.MaxUint64 { // the perf protocol's "until the sender stops"
			sj.RequestedBytes = &st.Requested
		}
		if st.Err != "" {
			sj.Error = &st.Err
		}
		for k, x := range st.Samples {
			sj.Samples[k] = BytesSampleJSON{seconds(x.T), x.Bytes}
		}
		out.Streams = append(out.Streams, sj)
	}
	for k, c := range s.Conn {
		out.Conn[k] = QUICConnSampleJSON{seconds(c.T), micros(c.SmoothedRTT), micros(c.MinRTT), micros(c.LatestRTT), micros(c.RTTVar),
			c.Cwnd, c.BytesInFlight, c.PacketsSent, c.BytesSent, c.PacketsLost, c.BytesLost, c.PacketsRecv, c.BytesRecv}
	}
	return out
}

// quicParamsOf is what a QUIC test asked for, of an agent or, with perf,
// of a perf server.
func quicParamsOf(p probe.QUICParams, perf bool, o QUICOptions) QUICParamsJSON {
	params := QUICParamsJSON{TCPParamsJSON: tcpParamsJSON(p.Direction, p.Streams, p.Duration, p.Bytes, p.WriteSize, p.Interval, o.Every, p.Exclusive),
		Pings: p.Pings, PingInterval: seconds(p.PingEvery)}
	peer := o.Agent
	if perf {
		params.Pings, params.PingInterval = 0, 0 // not part of the perf protocol
		params.PerfServer = &peer
		params.Path = strings.ReplaceAll(params.Path, "agent", "server")
	} else {
		params.Agent = &peer
	}
	return params
}

// QUICDocument builds the JSON document of a QUIC test.
func QUICDocument(r *probe.QUICResult, o QUICOptions) QUICDoc {
	params := quicParamsOf(r.Params, r.PerfOnly, o)
	doc := QUICDoc{Schema: SchemaQUIC, Start: o.Start, Version: r.Version, Handshakes: []QUICHandshakeJSON{}, Flows: []QUICFlowJSON{},
		End: QUICEndJSON{ReceivedBps: QUICReceiveRate(r), Client: quicSideJSON(r.Client)}}
	for _, h := range r.Handshakes {
		doc.Handshakes = append(doc.Handshakes, QUICHandshakeJSON{h.Resumed, h.Used0RTT, micros(h.Handshake), micros(h.FirstByte)})
	}
	for _, f := range quicFlows(r) {
		fj := QUICFlowJSON{Dir: f.name, Sender: f.sender, RatesFrom: f.receiver, ConnFrom: connOwner(f), Intervals: []QUICIntervalJSON{}}
		if f.note != "" {
			fj.Note = &f.note
		}
		for _, iv := range estimator.QUICIntervals(f.streams, f.conn, o.Every) {
			fj.Intervals = append(fj.Intervals, quicIntervalJSON(iv))
		}
		doc.Flows = append(doc.Flows, fj)
	}
	if r.PerfOnly {
		note := perfOnlyNote
		doc.Note = &note
	} else {
		agent := quicSideJSON(r.Agent)
		doc.End.Agent = &agent
		doc.PingsIdle, doc.PingsLoaded = datagramJSON(estimator.QUICPings(r.Pings, false)), datagramJSON(estimator.QUICPings(r.Pings, true))
	}
	doc.Params = params
	return doc
}

func quicJSON(w io.Writer, r *probe.QUICResult, o QUICOptions) error {
	return writeDoc(w, QUICDocument(r, o))
}

// PlotQUIC draws, per direction, the rate each stream and all of them
// arrived at, the sender's congestion window and bytes in flight, its
// smoothed RTT, and the datagram RTT idle and under load.
func PlotQUIC(path string, r *probe.QUICResult, o QUICOptions) error {
	var rate, cwnd, rtt []series
	flows := quicFlows(r)
	for _, f := range flows {
		ivs := estimator.QUICIntervals(f.streams, f.conn, r.Params.Interval)
		prefix := ""
		if len(flows) > 1 {
			prefix = f.name + " "
		}
		if n := len(f.streams); n > 1 && n <= maxStreamLines {
			for k, st := range f.streams {
				rate = append(rate, seriesOf(fmt.Sprintf("%sstream %d", prefix, st.ID), ivs, func(iv estimator.QUICInterval) float64 { return iv.PerStream[k] / 1e6 }))
			}
		}
		rate = append(rate, seriesOf(prefix+"all streams", ivs, func(iv estimator.QUICInterval) float64 { return iv.Rate / 1e6 }))
		cwnd = append(cwnd, seriesOf(prefix+"cwnd", ivs, func(iv estimator.QUICInterval) float64 { return float64(iv.Cwnd) / 1e3 }),
			seriesOf(prefix+"in flight", ivs, func(iv estimator.QUICInterval) float64 { return float64(iv.InFlight) / 1e3 }))
		rtt = append(rtt, seriesOf(prefix+"smoothed RTT", ivs, func(iv estimator.QUICInterval) float64 { return float64(iv.RTT) / 1e6 }))
	}
	title := fmt.Sprintf("quic %s (agent %s): %d streams", pathOf(r.Params.Direction), o.Agent, r.Params.Streams)
	if r.PerfOnly {
		title = fmt.Sprintf("quic %s (perf server %s): %d streams; the client's side only",
			strings.ReplaceAll(pathOf(r.Params.Direction), "agent", "server"), o.Agent, r.Params.Streams)
	}
	panels := []panel{{ylabel: "received, Mbit/s", lines: rate}, {ylabel: "KB", lines: cwnd}, {ylabel: "sender's RTT, ms", lines: rtt}}
	// Datagram pings, on their own clock: the first went before the
	// transfer.
	var idle, loaded plotter.XYs
	for _, p := range r.Pings {
		if p.RTT <= 0 {
			continue
		}
		pt := plotter.XY{X: p.Sent.Seconds(), Y: float64(p.RTT) / 1e6}
		if p.Loaded {
			loaded = append(loaded, pt)
		} else {
			idle = append(idle, pt)
		}
	}
	if len(idle)+len(loaded) > 0 {
		var lines []series
		for _, l := range []series{{"idle", idle}, {"during the transfer", loaded}} {
			if len(l.pts) > 0 {
				lines = append(lines, l)
			}
		}
		panels = append(panels, panel{ylabel: "datagram RTT, ms", xlabel: "time since the first datagram, s", lines: lines})
	}
	return drawPanels(path, title, panels)
}

// maxStreamLines is the most streams drawn one by one; more would hide the
// sum, which is always drawn.
const maxStreamLines = 8

// series is one line of a panel.
type series struct {
	name string
	pts  plotter.XYs
}

func seriesOf(name string, ivs []estimator.QUICInterval, y func(estimator.QUICInterval) float64) series {
	pts := make(plotter.XYs, len(ivs))
	for k, iv := range ivs {
		pts[k] = plotter.XY{X: iv.End.Seconds(), Y: y(iv)}
	}
	return series{name, pts}
}

type panel struct {
	ylabel string
	xlabel string // "time, s" when empty
	lines  []series
}

// drawPanels stacks panels over a shared time axis in a .png or .svg.
func drawPanels(path, title string, panels []panel) error {
	plots := make([]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Y.Label.Text = pn.ylabel
		p.X.Label.Text = "time, s"
		if pn.xlabel != "" {
			p.X.Label.Text = pn.xlabel
		}
		if i == 0 {
			p.Title.Text = title
			p.Title.TextStyle.Font.Size = vg.Points(10)
		}
		var args []any
		for _, s := range pn.lines {
			if len(s.pts) > 0 {
				args = append(args, s.name, s.pts)
			}
		}
		if err := plotutil.AddLines(p, args...); err != nil {
			return fmt.Errorf("plot %s: %w", path, err)
		}
		// The legend sits in the upper right; the top is raised so that it
		// stays above the data.
		p.Y.Min = 0
		p.Y.Max *= legendRoom
		p.Legend.Top = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		p.X.Tick.Marker, p.Y.Tick.Marker = plainTicks{}, plainTicks{}
		plots[i] = p
	}
	return saveStacked(path, plots)
}

// TCPQUICDoc is the JSON document of --mode tcp,quic: both documents
// whole, each with its own start.
type TCPQUICDoc struct {
	Schema string  `json:"schema"`
	Start  Start   `json:"start"`
	TCP    TCPDoc  `json:"tcp"`
	QUIC   QUICDoc `json:"quic"`
}

// TCPBesideQUIC prints a TCP and a QUIC test of the same parameters on the
// same path side by side: per interval the sender's rate, RTT and losses,
// then each one's totals; --json nests both documents, --plot draws both.
func TCPBesideQUIC(w io.Writer, t *probe.TCPResult, q *probe.QUICResult, to TCPOptions, qo QUICOptions) error {
	if to.Plot != "" {
		if err := plotBoth(to.Plot, t, q, to.Agent); err != nil {
			return err
		}
	}
	if to.JSON {
		return writeDoc(w, TCPQUICDoc{Schema: SchemaTCPQUIC, Start: to.Start, TCP: TCPDocument(t, to), QUIC: QUICDocument(q, qo)})
	}
	p := t.Params
	what := fmt.Sprintf("%v", p.Duration)
	if p.Bytes > 0 {
		what = fmt.Sprintf("%d bytes", p.Bytes)
	}
	fmt.Fprintf(w, "tcp beside quic %s (agent %s): %d streams, %s, one after the other\n", pathOf(p.Direction), to.Agent, p.Streams, what)
	_, tside := sender(t)
	tivs, _ := tcpRows(t, to.Every)
	flows := quicFlows(q)
	qivs := estimator.QUICIntervals(flows[0].streams, flows[0].conn, qo.Every)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "time s\ttcp Mbit/s\tquic Mbit/s\ttcp rtt µs\tquic srtt µs\ttcp retrans\tquic lost\t")
	for i := range max(len(tivs), len(qivs)) {
		var start, end time.Duration
		cell := func(ok bool, f string, v float64) string {
			if !ok {
				return "-"
			}
			return fmt.Sprintf(f, v)
		}
		var tiv tcpRow
		var qiv estimator.QUICInterval
		tok, qok := i < len(tivs), i < len(qivs)
		if tok {
			tiv = tivs[i]
			start, end = tiv.Start, tiv.End
		}
		if qok {
			qiv = qivs[i]
			start, end = qiv.Start, max(end, qiv.End)
		}
		fmt.Fprintf(tw, "%.1f-%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", start.Seconds(), end.Seconds(),
			cell(tok, "%.2f", tiv.Rate/1e6), cell(qok, "%.2f", qiv.Rate/1e6),
			cell(tok, "%.0f", float64(tiv.RTT)/1e3), cell(qok, "%.0f", float64(qiv.RTT)/1e3),
			cell(tok, "%.0f", float64(tiv.Retrans)), cell(qok, "%.0f", float64(qiv.Lost)))
	}
	tw.Flush()
	trecv := TCPReceivedRate(t)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\ttcp\tquic\t")
	fmt.Fprintf(tw, "received, Mbit/s\t%.2f\t%.2f\t\n", trecv/1e6, QUICReceiveRate(q)/1e6)
	for _, s := range []struct {
		name string
		ts   probe.TCPSide
		qs   probe.QUICSide
	}{{"client", t.Client, q.Client}, {"agent", t.Agent, q.Agent}} {
		ct := estimator.TCPTotal(s.ts.Streams, s.ts.Elapsed)
		qt := estimator.QUICTotal(s.qs.Streams, s.qs.Conn, s.qs.Elapsed)
		fmt.Fprintf(tw, "%s CPU, s/GB\t%.2f\t%.2f\t\n", s.name, cpuPerGB(s.ts.UserCPU, s.ts.SysCPU, ct.Sent+ct.Received),
			cpuPerGB(s.qs.UserCPU, s.qs.SysCPU, qt.Sent+qt.Received))
	}
	fmt.Fprintf(tw, "retransmitted / lost packets\t%d\t%d\t\n", estimator.TCPTotal(tside.Streams, tside.Elapsed).Retrans,
		estimator.QUICTotal(nil, flows[0].conn, 0).PacketsLost)
	if len(q.Handshakes) == 2 {
		fmt.Fprintf(tw, "QUIC first byte, full / 0-RTT\t\t%s / %s\t\n", fmtDur(q.Handshakes[0].FirstByte), fmtDur(q.Handshakes[1].FirstByte))
	}
	return tw.Flush()
}

// plotBoth draws TCP's and QUIC's rate and RTT over time in one figure.
func plotBoth(path string, t *probe.TCPResult, q *probe.QUICResult, agent string) error {
	tivs, _ := tcpRows(t, t.Params.Interval)
	flows := quicFlows(q)
	qivs := estimator.QUICIntervals(flows[0].streams, flows[0].conn, q.Params.Interval)
	tcpSeries := func(rate bool, y func(tcpRow) float64) series {
		var pts plotter.XYs
		for _, iv := range tivs {
			if rate && !iv.Stale || !rate && iv.Samples != nil {
				pts = append(pts, plotter.XY{X: iv.End.Seconds(), Y: y(iv)})
			}
		}
		return series{"tcp", pts}
	}
	return drawPanels(path, fmt.Sprintf("tcp and quic %s (agent %s): %d streams", pathOf(t.Params.Direction), agent, t.Params.Streams), []panel{
		{ylabel: "received, Mbit/s", lines: []series{tcpSeries(true, func(iv tcpRow) float64 { return iv.Rate / 1e6 }),
			seriesOf("quic", qivs, func(iv estimator.QUICInterval) float64 { return iv.Rate / 1e6 })}},
		{ylabel: "sender's smoothed RTT, ms", lines: []series{tcpSeries(false, func(iv tcpRow) float64 { return float64(iv.RTT) / 1e6 }),
			seriesOf("quic", qivs, func(iv estimator.QUICInterval) float64 { return float64(iv.RTT) / 1e6 })}},
	})
}
