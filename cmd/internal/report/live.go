package report

import (
	"io"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
	"github.com/probe-dev/probe/probe"
)

// liveCutter cuts one side's newest cumulative samples, as they come, into
// report intervals the way estimator.TCPIntervals cuts a whole series: an
// interval ends with the first sample at or after its boundary, its bytes
// are the difference of the samples that bound it, and its rates are over
// the time between them. It keeps only those samples, so a run of hours
// costs what a run of seconds does.
type liveCutter struct {
	every time.Duration
	start time.Duration    // of the interval being filled
	base  []dump.TCPSample // per stream, the sample that opened it; zero at the test's start
	last  []dump.TCPSample
}

func newest(s []dump.TCPSample) time.Duration {
	var t time.Duration
	for _, x := range s {
		t = max(t, x.T)
	}
	return t
}

// add takes each stream's newest sample; ok when it closes an interval.
func (c *liveCutter) add(last []dump.TCPSample) (estimator.TCPInterval, bool) {
	c.last = last
	if c.base == nil {
		c.base = make([]dump.TCPSample, len(last))
	}
	t := newest(last)
	if t < c.start+c.every {
		return estimator.TCPInterval{}, false
	}
	// A sampler late by more than an interval closes them as one.
	return c.cut(t / c.every * c.every), true
}

// flush closes the rest of the test, unless it is a sliver (under a tenth
// of an interval; the document joins it to the last interval).
func (c *liveCutter) flush() (estimator.TCPInterval, bool) {
	t := newest(c.last)
	if c.base == nil || t-newest(c.base) < c.every/10 {
		return estimator.TCPInterval{}, false
	}
	return c.cut(t), true
}

func (c *liveCutter) cut(end time.Duration) estimator.TCPInterval {
	iv := estimator.TCPInterval{Start: c.start, End: end, PerStream: make([]float64, len(c.last))}
	var rtt time.Duration
	var cwnd float64
	n := 0
	for k, b := range c.last {
		a := c.base[k]
		if b.T == 0 || b.T <= a.T {
			continue // not sampled since
		}
		moved := b.Bytes - min(a.Bytes, b.Bytes)
		iv.Bytes += moved
		iv.PerStream[k] = float64(8*moved) / (b.T - a.T).Seconds()
		iv.Rate += iv.PerStream[k]
		iv.Retrans += b.TotalRetrans - min(a.TotalRetrans, b.TotalRetrans)
		rtt += b.RTT
		cwnd += float64(b.SndCwnd)
		n++
	}
	if n > 0 {
		iv.RTT, iv.Cwnd = rtt/time.Duration(n), cwnd/float64(n)
	}
	copy(c.base, c.last)
	c.start = end
	return iv
}

// TCPStream prints a TCP test as it runs, one JSON object a line
// (--json-stream): the start, an interval each report interval as this
// host's kernel counts it, and the whole document at the end.
type TCPStream struct {
	w     io.Writer
	dir   probe.Direction
	mu    sync.Mutex
	cut   liveCutter
	err   error
	sends bool
}

// TCPStreamStart is the start event of a TCP stream.
type TCPStreamStart struct {
	Schema    string        `json:"schema"`
	Start     Start         `json:"start"`
	Params    TCPParamsJSON `json:"params"`
	LiveRates string        `json:"live_rates"`
}

// TCPLiveIntervalJSON is one interval as this host counted it live.
type TCPLiveIntervalJSON struct {
	StartS       float64   `json:"start_s"`
	EndS         float64   `json:"end_s"`
	Bytes        uint64    `json:"bytes"`
	Bps          float64   `json:"bps"`
	StreamsBps   []float64 `json:"streams_bps"`
	Retransmits  *uint32   `json:"retransmits"`   // null when this host does not send
	RTTUs        *float64  `json:"rtt_us"`        // its smoothed RTT as sender
	CwndSegments *float64  `json:"cwnd_segments"` // its congestion window
}

// tcpLiveRates says what a live interval counts, by direction.
var tcpLiveRates = map[probe.Direction]string{
	probe.DirForward: "client tcpi_bytes_acked",
	probe.DirReverse: "client tcpi_bytes_received",
	probe.DirBidir:   "client tcpi_bytes_acked + tcpi_bytes_received",
}

// NewTCPStream prints the start event.
func NewTCPStream(w io.Writer, p probe.TCPParams, o TCPOptions) *TCPStream {
	s := &TCPStream{w: w, dir: p.Direction, cut: liveCutter{every: o.Every}, sends: p.Direction != probe.DirReverse}
	s.err = writeDocLine(w, StreamEvent{"start", TCPStreamStart{SchemaTCP, o.Start, tcpParamsOf(p, o.Every), tcpLiveRates[p.Direction]}})
	return s
}

// Live takes the client's newest samples, from its sampler. The bytes an
// interval counts are what the other end acknowledged (what the client
// sent) and what the client's kernel received: what crossed the path,
// not what was written.
func (s *TCPStream) Live(last []dump.TCPSample) {
	conv := make([]dump.TCPSample, len(last))
	for i, x := range last {
		var b uint64
		if s.sends {
			b += x.BytesAcked
		}
		if s.dir != probe.DirForward {
			switch {
			case x.BytesRecv > 0:
				b += x.BytesRecv
			case !s.sends:
				b += x.Bytes // reads, where the kernel does not count
			}
		}
		x.Bytes = b
		conv[i] = x
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if iv, ok := s.cut.add(conv); ok {
		s.write(iv)
	}
}

func (s *TCPStream) write(iv estimator.TCPInterval) {
	out := TCPLiveIntervalJSON{StartS: seconds(iv.Start), EndS: seconds(iv.End), Bytes: iv.Bytes, Bps: iv.Rate, StreamsBps: nonNil(iv.PerStream)}
	if s.sends {
		rtt := micros(iv.RTT)
		out.Retransmits, out.RTTUs, out.CwndSegments = &iv.Retrans, &rtt, &iv.Cwnd
	}
	if err := writeDocLine(s.w, StreamEvent{"interval", out}); err != nil && s.err == nil {
		s.err = err
	}
}

// End prints the rest of the test as a last interval, draws the plot
// asked for, and prints the whole document as the end event.
func (s *TCPStream) End(r *probe.TCPResult, o TCPOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if iv, ok := s.cut.flush(); ok {
		s.write(iv)
	}
	if s.err != nil {
		return s.err
	}
	if o.Plot != "" {
		if err := PlotTCP(o.Plot, r, o); err != nil {
			return err
		}
	}
	return writeDocLine(s.w, StreamEvent{"end", TCPDocument(r, o)})
}

// QUICStream prints a QUIC test as it runs, as TCPStream does: per
// direction, an interval each report interval as the client counts it.
type QUICStream struct {
	w     io.Writer
	mu    sync.Mutex
	flows map[string]*quicLiveFlow
	order []string
	// latest is the newest connection sample, for the last interval.
	latest dump.QUICConnSample
	err    error
}

type quicLiveFlow struct {
	cut  liveCutter
	conn dump.QUICConnSample // at the interval's start
}

// QUICStreamStart is the start event of a QUIC stream.
type QUICStreamStart struct {
	Schema string         `json:"schema"`
	Start  Start          `json:"start"`
	Params QUICParamsJSON `json:"params"`
}

// QUICLiveIntervalJSON is one interval of one direction as the client
// counted it live.
type QUICLiveIntervalJSON struct {
	Dir           string    `json:"dir"`
	StartS        float64   `json:"start_s"`
	EndS          float64   `json:"end_s"`
	Bytes         uint64    `json:"bytes"`
	Bps           float64   `json:"bps"`
	StreamsBps    []float64 `json:"streams_bps"`
	SRTTUs        float64   `json:"srtt_us"`
	MinRTTUs      float64   `json:"min_rtt_us"`
	LostPackets   *uint64   `json:"lost_packets"` // null for down: the client does not send it
	CwndBytes     *uint64   `json:"cwnd_bytes"`
	InFlightBytes *uint64   `json:"in_flight_bytes"`
}

// NewQUICStream prints the start event; perf says the peer is a perf
// server.
func NewQUICStream(w io.Writer, p probe.QUICParams, perf bool, o QUICOptions) *QUICStream {
	s := &QUICStream{w: w, flows: map[string]*quicLiveFlow{}}
	switch p.Direction {
	case probe.DirReverse:
		s.order = []string{"down"}
	case probe.DirBidir:
		s.order = []string{"up", "down"}
	default:
		s.order = []string{"up"}
	}
	for _, d := range s.order {
		s.flows[d] = &quicLiveFlow{cut: liveCutter{every: o.Every}}
	}
	s.err = writeDocLine(w, StreamEvent{"start", QUICStreamStart{SchemaQUIC, o.Start, quicParamsOf(p, perf, o)}})
	return s
}

// Live takes the client's newest figures, from its sampler: stream bytes
// it wrote (up) or read (down), its connection's statistics.
func (s *QUICStream) Live(streams []dump.QUICStream, conn dump.QUICConnSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dir := range s.order {
		f := s.flows[dir]
		var last []dump.TCPSample
		for _, st := range streams {
			if st.Dir == dir && len(st.Samples) > 0 {
				last = append(last, dump.TCPSample{T: st.Samples[0].T, Bytes: st.Samples[0].Bytes})
			}
		}
		if iv, ok := f.cut.add(last); ok {
			s.write(dir, f, iv, conn)
		}
	}
	s.latest = conn
}

func (s *QUICStream) write(dir string, f *quicLiveFlow, iv estimator.TCPInterval, conn dump.QUICConnSample) {
	out := QUICLiveIntervalJSON{Dir: dir, StartS: seconds(iv.Start), EndS: seconds(iv.End), Bytes: iv.Bytes, Bps: iv.Rate,
		StreamsBps: nonNil(iv.PerStream), SRTTUs: micros(conn.SmoothedRTT), MinRTTUs: micros(conn.MinRTT)}
	if dir == "up" {
		// PacketsLost can fall (a late packet was not lost after all).
		lost := conn.PacketsLost - min(f.conn.PacketsLost, conn.PacketsLost)
		out.LostPackets, out.CwndBytes, out.InFlightBytes = &lost, &conn.Cwnd, &conn.BytesInFlight
	}
	f.conn = conn
	if err := writeDocLine(s.w, StreamEvent{"interval", out}); err != nil && s.err == nil {
		s.err = err
	}
}

// End prints the rest as a last interval per direction, draws the plot
// asked for, and prints the whole document as the end event.
func (s *QUICStream) End(r *probe.QUICResult, o QUICOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dir := range s.order {
		f := s.flows[dir]
		if iv, ok := f.cut.flush(); ok {
			s.write(dir, f, iv, s.latest)
		}
	}
	if s.err != nil {
		return s.err
	}
	if o.Plot != "" {
		if err := PlotQUIC(o.Plot, r, o); err != nil {
			return err
		}
	}
	return writeDocLine(s.w, StreamEvent{"end", QUICDocument(r, o)})
}
