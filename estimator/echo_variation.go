package estimator

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// Variation is how the delay of one view of the path varied: a variation,
// not a delay. One-way delays across hosts carry the unknown offset between
// their clocks, but only differences of delays enter these figures, and the
// offset cancels in them. That assumes the clocks do not drift apart during
// the measurement: a drift of r ppm adds up to r µs per second of it, which
// NTP-disciplined clocks keep small over the seconds a point lasts.
type Variation struct {
	// N is the intact packets that have the stamps the view needs.
	N int
	// Jitter is the RFC 3550 §6.4.1 interarrival jitter at the end of the
	// measurement: J += (|D| - J)/16 for each packet, D the change of
	// transit time from the packet that arrived before it. Like RFC 3550,
	// packets are taken in order of arrival at the receiver, not of sequence.
	Jitter time.Duration
	// Packet delay variation (RFC 5481 PDV): each packet's delay minus the
	// least delay of the view; the nearest-rank median, 99th percentile and
	// the largest.
	PDV50, PDV99, PDVMax time.Duration
}

// variation fills There, Back and RoundTrip from the intact packets, with
// the client's stamps in source cs and the agent's in as, the sources Kernel
// uses. Every subtraction is within one host's clock and one source.
func (s *EchoSummary) variation(recs []dump.EchoRecord, cs, as dump.Source) {
	var there, back, round view
	for i := range recs {
		r := &recs[i]
		if r.Corrupt != 0 {
			continue
		}
		// A probe the agent's socket dropped still crossed the path there.
		if r.ClientTx.Has(cs) && r.AgentRx.Has(as) {
			there.add(r.AgentOrder, r.Seq, r.ClientTx[cs], r.AgentRx[as])
		}
		if r.Replies == 0 {
			continue
		}
		if r.AgentTx.Has(as) && r.ClientRx.Has(cs) {
			back.add(r.ClientOrder, r.Seq, r.AgentTx[as], r.ClientRx[cs])
		}
		// The round trip without the agent's turnaround, as Kernel: the
		// agent's scheduling is not the network's variation.
		if rtt, ok := kernelRTT(r, cs, as); ok {
			round.samples = append(round.samples, sample{r.ClientOrder, r.Seq, r.ClientRx[cs], int64(rtt)})
		}
	}
	s.There, s.Back, s.RoundTrip = there.summary(), back.summary(), round.summary()
}

// sample is one packet of a view.
type sample struct {
	order uint32 // position the receiving application read it in; 0: unknown
	seq   uint32
	rx    int64 // receive stamp in the receiver's source
	delay int64 // transit time, up to a constant the same for the whole view
}

// view collects the packets of one direction. A one-way delay is taken
// relative to the view's first packet, (R - R0) - (S - S0), so that no
// subtraction crosses hosts or sources.
type view struct {
	samples []sample
	s0, r0  int64
}

func (v *view) add(order, seq uint32, tx, rx int64) {
	if len(v.samples) == 0 {
		v.s0, v.r0 = tx, rx
	}
	v.samples = append(v.samples, sample{order, seq, rx, (rx - v.r0) - (tx - v.s0)})
}

// summary orders the packets by arrival at the receiver, by receive stamp,
// with ties (a batch stamped once in user space) broken by the order the
// application read them in, and measures the variation.
func (v *view) summary() Variation {
	n := len(v.samples)
	if n == 0 {
		return Variation{}
	}
	slices.SortFunc(v.samples, func(a, b sample) int {
		return cmp.Or(cmp.Compare(a.rx, b.rx), cmp.Compare(a.order, b.order), cmp.Compare(a.seq, b.seq))
	})
	delays := make([]int64, n)
	for i := range v.samples {
		delays[i] = v.samples[i].delay
	}
	out := Variation{N: n, Jitter: time.Duration(math.Round(jitter(delays)))}
	least := slices.Min(delays)
	pdv := make([]time.Duration, n)
	for i, d := range delays {
		pdv[i] = time.Duration(d - least)
	}
	slices.Sort(pdv)
	out.PDV50, out.PDV99, out.PDVMax = nearestRank(pdv, 500), nearestRank(pdv, 990), pdv[n-1]
	return out
}

// jitter is the RFC 3550 §6.4.1 interarrival jitter, in ns, of transit times
// in order of arrival: D(i-1,i) = (R_i - R_i-1) - (S_i - S_i-1) is the change
// of transit time. Floating point rather than the RFC's scaled integers.
func jitter(transit []int64) float64 {
	var j float64
	for i := 1; i < len(transit); i++ {
		d := float64(transit[i] - transit[i-1])
		j += (math.Abs(d) - j) / 16
	}
	return j
}
