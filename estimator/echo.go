// Package estimator turns measured records into figures. It is pure: no I/O,
// no kernel, nothing but the dump types.
package estimator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// AutoSource lets Echo pick the best timestamp source each end has.
const AutoSource = dump.NumSources

// RTT summarises round-trip times taken with one pair of timestamp sources.
type RTT struct {
	ClientSource, AgentSource dump.Source
	N                         int
	Min, Median, Mean, Max    time.Duration
	// Percentiles by nearest rank: the smallest measured value with at
	// least that share of the values at or below it, never an interpolation.
	P90, P99, P999 time.Duration
	Stddev         time.Duration
}

// Source names the sources: "ebpf", or "ebpf/sw" when the client's and the
// agent's differ.
func (r RTT) Source() string {
	if r.ClientSource == r.AgentSource {
		return r.ClientSource.String()
	}
	return r.ClientSource.String() + "/" + r.AgentSource.String()
}

// EchoSummary is the statistics of one echo measurement (docs/echo.md). Every
// figure is a time.Duration or a float64 that is 0, not NaN, when undefined,
// so that the struct marshals to JSON as it is.
type EchoSummary struct {
	Sent, Received, Duplicates int

	// Sent == Received + LostThere + LostBack. LostThere never reached the
	// agent's application (no agent receive stamp read by it, no reply);
	// LostBack did but its reply never reached the client's.
	LostThere, LostBack int
	// Of those, the ones the receiving host's eBPF hook saw arrive: lost
	// inside that host (its socket buffer, most likely), not on the wire.
	LostThereInHost, LostBackInHost int
	// The hosts' count of datagrams their socket receive buffer dropped
	// during the point (SO_RXQ_OVFL), and how many of each direction's
	// losses they account for at most: min(lost, drops).
	AgentSocketDrops, ClientSocketDrops uint64
	// AgentLimited probes reached the agent over its rate limit and were
	// not answered; they explain losses there too.
	AgentLimited int
	// AgentDuplicates are replays of answered probes the agent dropped.
	AgentDuplicates               int
	ExplainedThere, ExplainedBack int

	// Probes that failed the agent's checksum, whether or not the reply came
	// back, and replies that failed only the client's. Corrupted replies
	// count as received but are left out of RTT, jitter and PDV.
	CorruptedThere, CorruptedBack int

	// Kernel is the RTT from kernel timestamps with the agent's turnaround
	// (its own receive-to-send time) subtracted.
	Kernel RTT
	// Unstamped counts intact replies lacking the chosen kernel timestamps;
	// they are left out of Kernel, not guessed.
	Unstamped int
	// GSO: the probes went in UDP GSO batches (dump.EchoPoint.GSO), so
	// kernel timestamps mark each batch's first probe only.
	GSO bool
	// User is the RTT as user space sees it: turnaround included.
	User RTT

	// Delay variation of the path there (client send to agent receive), back
	// (agent send to client receive) and of the Kernel RTT, each in the
	// order packets arrived at that view's receiver.
	There, Back, RoundTrip Variation
	// Reordering (RFC 4737) in the order of arrival at the agent, and at the
	// client for the round trip.
	ReorderThere, ReorderRoundTrip Reorder

	// RateSource is the client source the rates and TimePerFrame were
	// taken with: the kernel source Kernel uses when it stamped every send
	// and every first reply, user space otherwise.
	RateSource dump.Source
	// Bit/s of UDP payload sent (first to last send) and received (first to
	// last reply), and the same with the IP and UDP headers counted (0 when
	// the point does not say how long they are). Duplicates are not counted.
	SendRate, RecvRate, SendRateIP, RecvRateIP float64
	// TimePerFrame is the mean time between two sends.
	TimePerFrame time.Duration

	// Scheduling of the sends (isochronous or paced): how far the user-space
	// send was from when it was meant to be, over ScheduledSends sends.
	ScheduledSends                  int
	ScheduleMeanErr, ScheduleMaxErr time.Duration // of |sent - scheduled|
	// ScheduleErrPct is ScheduleMeanErr as a percentage of the interval.
	ScheduleErrPct float64
	// Missed counts sends more than one interval late: a slot was missed.
	Missed int
}

// Lost is the number of probes that got no reply.
func (s EchoSummary) Lost() int { return s.Sent - s.Received }

// Echo computes an echo summary. src forces a timestamp source on both ends;
// AutoSource picks the best kernel source each end has.
func Echo(recs []dump.EchoRecord, src dump.Source) (EchoSummary, error) {
	p := dump.EchoPoint{Count: len(recs)}
	if len(recs) > 0 {
		p.Size = recs[0].Size
	}
	return EchoStats(p, recs, src)
}

// EchoStats is the statistics of one echo measurement (a sweep point). src
// forces a timestamp source on both ends; AutoSource picks the best kernel
// source each end has. The summary is filled as far as the records allow
// even when an error says that a figure could not be had.
func EchoStats(p dump.EchoPoint, recs []dump.EchoRecord, src dump.Source) (EchoSummary, error) {
	s := EchoSummary{Sent: len(recs), AgentSocketDrops: p.AgentSocketDrops, ClientSocketDrops: p.ClientSocketDrops, AgentLimited: p.AgentLimited,
		AgentDuplicates: p.AgentDuplicates, GSO: p.GSO}
	if src > AutoSource {
		return s, fmt.Errorf("unknown timestamp source %d", src)
	}
	if s.Sent == 0 {
		return s, errors.New("no probes sent")
	}
	s.count(recs)

	cs, as := src, src
	if src == AutoSource {
		cs = bestSource(recs, func(r *dump.EchoRecord) (*dump.Stamps, *dump.Stamps) { return &r.ClientTx, &r.ClientRx })
		as = bestSource(recs, func(r *dump.EchoRecord) (*dump.Stamps, *dump.Stamps) { return &r.AgentRx, &r.AgentTx })
	}
	s.rtt(recs, cs, as)
	s.variation(recs, cs, as)
	s.ReorderThere = reorderOf(recs, func(r *dump.EchoRecord) uint32 { return r.AgentOrder })
	s.ReorderRoundTrip = reorderOf(recs, func(r *dump.EchoRecord) uint32 {
		if r.Replies == 0 {
			return 0
		}
		return r.ClientOrder
	})
	s.rates(p, recs, cs)
	s.schedule(p, recs)

	if s.Received == 0 {
		return s, fmt.Errorf("no replies: all %d probes lost", s.Sent)
	}
	if s.Kernel.N == 0 {
		if s.Unstamped == 0 {
			return s, fmt.Errorf("no intact reply: all %d replies corrupted", s.Received)
		}
		return s, fmt.Errorf("no reply has %s timestamps on both ends", RTT{ClientSource: cs, AgentSource: as}.Source())
	}
	return s, nil
}

// count splits the probes into received and lost there or back, and counts
// duplicates and corruption.
func (s *EchoSummary) count(recs []dump.EchoRecord) {
	for i := range recs {
		r := &recs[i]
		switch {
		case r.Replies > 0:
			s.Received++
			s.Duplicates += r.Replies - 1
		case reachedAgent(r):
			s.LostBack++
			if r.ClientRx.Has(dump.SourceEBPF) {
				s.LostBackInHost++
			}
		default:
			s.LostThere++
			if r.AgentRx.Has(dump.SourceEBPF) {
				s.LostThereInHost++
			}
		}
		if r.Corrupt&dump.CorruptThere != 0 {
			s.CorruptedThere++
		} else if r.Corrupt&dump.CorruptBack != 0 {
			s.CorruptedBack++
		}
	}
	s.ExplainedThere = int(min(uint64(s.LostThere), s.AgentSocketDrops+uint64(s.AgentLimited)))
	s.ExplainedBack = int(min(uint64(s.LostBack), s.ClientSocketDrops))
}

// reachedAgent says whether the agent's application got the probe. An eBPF
// stamp alone does not say so: the hook sees a datagram before the socket
// buffer that may drop it, and such a probe is lost there, which is what the
// agent's socket drops explain. The other sources reach user space only with
// the datagram itself.
func reachedAgent(r *dump.EchoRecord) bool {
	if r.AgentOrder != 0 || r.Corrupt&dump.CorruptThere != 0 || r.AgentTx != (dump.Stamps{}) {
		return true
	}
	for src := range dump.NumSources {
		if src != dump.SourceEBPF && r.AgentRx.Has(src) {
			return true
		}
	}
	return false
}

// rtt fills Kernel, User and Unstamped from the intact replies.
func (s *EchoSummary) rtt(recs []dump.EchoRecord, cs, as dump.Source) {
	kernel := make([]time.Duration, 0, s.Received)
	user := make([]time.Duration, 0, s.Received)
	for i := range recs {
		r := &recs[i]
		if r.Replies == 0 || r.Corrupt != 0 {
			continue
		}
		if r.ClientTx.Has(dump.SourceUser) && r.ClientRx.Has(dump.SourceUser) {
			user = append(user, time.Duration(r.ClientRx[dump.SourceUser]-r.ClientTx[dump.SourceUser]))
		}
		rtt, ok := kernelRTT(r, cs, as)
		if !ok {
			s.Unstamped++
			continue
		}
		kernel = append(kernel, rtt)
	}
	s.Kernel = summarise(kernel)
	s.Kernel.ClientSource, s.Kernel.AgentSource = cs, as
	s.User = summarise(user)
	s.User.ClientSource, s.User.AgentSource = dump.SourceUser, dump.SourceUser
}

// kernelRTT is the round trip minus the agent's turnaround, each difference
// within one host's clock and source.
func kernelRTT(r *dump.EchoRecord, cs, as dump.Source) (time.Duration, bool) {
	if !r.ClientTx.Has(cs) || !r.ClientRx.Has(cs) || !r.AgentRx.Has(as) || !r.AgentTx.Has(as) {
		return 0, false
	}
	return time.Duration((r.ClientRx[cs] - r.ClientTx[cs]) - (r.AgentTx[as] - r.AgentRx[as])), true
}

// bestSource is the best kernel source that stamped both events of any
// answered probe; user space when none did.
func bestSource(recs []dump.EchoRecord, pick func(*dump.EchoRecord) (*dump.Stamps, *dump.Stamps)) dump.Source {
	for _, src := range dump.Preference {
		if src == dump.SourceUser {
			break
		}
		for i := range recs {
			a, b := pick(&recs[i])
			if recs[i].Replies > 0 && a.Has(src) && b.Has(src) {
				return src
			}
		}
	}
	return dump.SourceUser
}

func summarise(d []time.Duration) RTT {
	r := RTT{N: len(d)}
	if len(d) == 0 {
		return r
	}
	slices.Sort(d)
	r.Min, r.Max = d[0], d[len(d)-1]
	r.Median = median(d)
	r.P90, r.P99, r.P999 = nearestRank(d, 900), nearestRank(d, 990), nearestRank(d, 999)
	var sum float64
	for _, v := range d {
		sum += float64(v)
	}
	mean := sum / float64(len(d))
	r.Mean = time.Duration(math.Round(mean))
	if len(d) > 1 {
		var ss float64
		for _, v := range d {
			ss += (float64(v) - mean) * (float64(v) - mean)
		}
		r.Stddev = time.Duration(math.Round(math.Sqrt(ss / float64(len(d)-1))))
	}
	return r
}

// median of sorted values: the mean of the middle two for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// nearestRank is the permille‰ percentile of non-empty sorted values by the
// nearest-rank method: sorted[ceil(permille/1000·n) - 1], a measured value.
// Integer arithmetic keeps the rank exact.
func nearestRank(sorted []time.Duration, permille int) time.Duration {
	rank := (permille*len(sorted) + 999) / 1000
	return sorted[max(rank, 1)-1]
}

// KernelRTTs returns the sorted kernel RTTs of recs' intact replies, with the
// sources s chose: the samples behind s.Kernel, for a CDF.
func (s EchoSummary) KernelRTTs(recs []dump.EchoRecord) []time.Duration {
	out := make([]time.Duration, 0, s.Kernel.N)
	for i := range recs {
		r := &recs[i]
		if r.Replies == 0 || r.Corrupt != 0 {
			continue
		}
		if rtt, ok := kernelRTT(r, s.Kernel.ClientSource, s.Kernel.AgentSource); ok {
			out = append(out, rtt)
		}
	}
	slices.Sort(out)
	return out
}
