package estimator

import (
	"math"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// QUICInterval is one report interval of one side of a QUIC test: the
// stream bytes moved, and the connection's state at the interval's end.
type QUICInterval struct {
	Start, End time.Duration
	Bytes      uint64  // moved in the interval, all streams
	Rate       float64 // bit/s
	PerStream  []float64
	Lost       uint64        // packets declared lost in the interval
	RTT        time.Duration // smoothed
	MinRTT     time.Duration
	Cwnd       uint64 // bytes
	InFlight   uint64 // bytes
}

// QUICIntervals cuts one side's samples into intervals of length every, as
// TCPIntervals does: stream bytes by difference of cumulative samples, the
// connection's figures from its last sample at or before each end.
func QUICIntervals(streams []dump.QUICStream, conn []dump.QUICConnSample, every time.Duration) []QUICInterval {
	ts := make([]dump.TCPStream, len(streams))
	for i, s := range streams {
		ts[i].Index = i
		ts[i].Samples = make([]dump.TCPSample, len(s.Samples))
		for k, x := range s.Samples {
			ts[i].Samples[k] = dump.TCPSample{T: x.T, Bytes: x.Bytes}
		}
	}
	tcp := TCPIntervals(ts, every)
	slack := time.Duration(0)
	if len(conn) >= 2 {
		slack = min(every, conn[1].T-conn[0].T) / 4
	}
	out := make([]QUICInterval, len(tcp))
	for i, iv := range tcp {
		q := QUICInterval{Start: iv.Start, End: iv.End, Bytes: iv.Bytes, Rate: iv.Rate, PerStream: iv.PerStream}
		b, okB := lastAt(conn, iv.End+slack, connSampleT)
		a, okA := lastAt(conn, iv.Start+slack, connSampleT)
		if okB {
			q.RTT, q.MinRTT, q.Cwnd, q.InFlight = b.SmoothedRTT, b.MinRTT, b.Cwnd, b.BytesInFlight
			// PacketsLost can fall (a late packet was not lost after all).
			if iv.Start > 0 && okA {
				q.Lost = b.PacketsLost - min(a.PacketsLost, b.PacketsLost)
			} else {
				q.Lost = b.PacketsLost
			}
		}
		out[i] = q
	}
	return out
}

func connSampleT(s dump.QUICConnSample) time.Duration { return s.T }

// QUICTotals are a side's byte counts, rates and losses over a whole test.
type QUICTotals struct {
	Sent, Received     uint64  // stream bytes
	SendRate, RecvRate float64 // bit/s over the side's elapsed time
	PacketsSent        uint64
	PacketsLost        uint64
	LossRate           float64 // lost / sent packets
	Errors             int     // streams that ended with an error
}

// QUICTotal sums one side's streams and reads its last connection sample.
func QUICTotal(streams []dump.QUICStream, conn []dump.QUICConnSample, elapsed time.Duration) QUICTotals {
	var t QUICTotals
	for _, s := range streams {
		t.Sent += s.Sent
		t.Received += s.Received
		if s.Err != "" {
			t.Errors++
		}
	}
	if elapsed > 0 {
		t.SendRate = float64(8*t.Sent) / elapsed.Seconds()
		t.RecvRate = float64(8*t.Received) / elapsed.Seconds()
	}
	if n := len(conn); n > 0 {
		t.PacketsSent, t.PacketsLost = conn[n-1].PacketsSent, conn[n-1].PacketsLost
		if t.PacketsSent > 0 {
			t.LossRate = float64(t.PacketsLost) / float64(t.PacketsSent)
		}
	}
	return t
}

// DatagramRTT summarises datagram pings: their RTTs (user space, client to
// client) and the RFC 3550 jitter of the RTT series in send order.
type DatagramRTT struct {
	RTT
	Sent, Echoed int
	Jitter       time.Duration
}

// QUICPings summarises the pings sent while the data phase ran (loaded) or
// before it.
func QUICPings(pings []dump.QUICPing, loaded bool) DatagramRTT {
	var rtts, transit []time.Duration
	var d DatagramRTT
	for _, p := range pings {
		if p.Loaded != loaded {
			continue
		}
		d.Sent++
		if p.RTT > 0 {
			d.Echoed++
			rtts = append(rtts, p.RTT)
			transit = append(transit, p.RTT)
		}
	}
	tr := make([]int64, len(transit))
	for i, x := range transit {
		tr[i] = int64(x)
	}
	d.Jitter = time.Duration(math.Round(jitter(tr)))
	d.RTT = summarise(rtts)
	d.RTT.ClientSource, d.RTT.AgentSource = dump.SourceUser, dump.SourceUser
	return d
}

// QUICOverhead is what a full QUIC packet carries on the wire besides
// stream payload: the layers, in bytes, of one short-header 1-RTT packet
// with one STREAM frame, as quic-go builds them.
type QUICOverhead struct {
	IP, UDP      int // 20 (IPv4) or 40, and 8
	ShortHeader  int // 1 flags byte + destination connection ID + packet number
	StreamHeader int // type byte + stream ID + offset (+ length when not last)
	AEADTag      int // 16
}

// Total is the bytes per packet on top of the stream payload, IP layer up.
func (o QUICOverhead) Total() int { return o.IP + o.UDP + o.ShortHeader + o.StreamHeader + o.AEADTag }

// QUICGoodput is the stream payload rate of a link that carries rate
// bit/s of frames with linkHeader bytes per frame below IP (14 for
// Ethernet as tbf counts it), when every packet is ipSize bytes at the IP
// layer.
func QUICGoodput(rate float64, ipSize, linkHeader int, o QUICOverhead) float64 {
	payload := ipSize - o.Total()
	return rate * float64(payload) / float64(ipSize+linkHeader)
}
