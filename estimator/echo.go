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
	Stddev                    time.Duration
}

// Source names the sources: "ebpf", or "ebpf/sw" when the client's and the
// agent's differ.
func (r RTT) Source() string {
	if r.ClientSource == r.AgentSource {
		return r.ClientSource.String()
	}
	return r.ClientSource.String() + "/" + r.AgentSource.String()
}

// EchoSummary is the statistics of one echo measurement.
type EchoSummary struct {
	Sent, Received, Duplicates int
	// Kernel is the RTT from kernel timestamps with the agent's turnaround
	// (its own receive-to-send time) subtracted.
	Kernel RTT
	// Unstamped counts replies lacking the chosen kernel timestamps; they are
	// left out of Kernel, not guessed.
	Unstamped int
	// User is the RTT as user space sees it: turnaround included.
	User RTT
}

// Lost is the number of probes that got no reply.
func (s EchoSummary) Lost() int { return s.Sent - s.Received }

// Echo computes an echo summary. src forces a timestamp source on both ends;
// AutoSource picks the best kernel source each end has.
func Echo(recs []dump.EchoRecord, src dump.Source) (EchoSummary, error) {
	s := EchoSummary{Sent: len(recs)}
	for i := range recs {
		if recs[i].Replies > 0 {
			s.Received++
			s.Duplicates += recs[i].Replies - 1
		}
	}
	if s.Sent == 0 {
		return s, errors.New("no probes sent")
	}
	if s.Received == 0 {
		return s, fmt.Errorf("no replies: all %d probes lost", s.Sent)
	}

	cs, as := src, src
	if src == AutoSource {
		cs = bestSource(recs, func(r *dump.EchoRecord) (*dump.Stamps, *dump.Stamps) { return &r.ClientTx, &r.ClientRx })
		as = bestSource(recs, func(r *dump.EchoRecord) (*dump.Stamps, *dump.Stamps) { return &r.AgentRx, &r.AgentTx })
	} else if src >= dump.NumSources {
		return s, fmt.Errorf("unknown timestamp source %d", src)
	}
	kernel := make([]time.Duration, 0, s.Received)
	user := make([]time.Duration, 0, s.Received)
	for i := range recs {
		r := &recs[i]
		if r.Replies == 0 {
			continue
		}
		if r.ClientTx.Has(dump.SourceUser) && r.ClientRx.Has(dump.SourceUser) {
			user = append(user, time.Duration(r.ClientRx[dump.SourceUser]-r.ClientTx[dump.SourceUser]))
		}
		if !r.ClientTx.Has(cs) || !r.ClientRx.Has(cs) || !r.AgentRx.Has(as) || !r.AgentTx.Has(as) {
			s.Unstamped++
			continue
		}
		rtt := (r.ClientRx[cs] - r.ClientTx[cs]) - (r.AgentTx[as] - r.AgentRx[as])
		kernel = append(kernel, time.Duration(rtt))
	}
	if len(kernel) == 0 {
		return s, fmt.Errorf("no reply has %s timestamps on both ends", RTT{ClientSource: cs, AgentSource: as}.Source())
	}
	s.Kernel = summarise(kernel)
	s.Kernel.ClientSource, s.Kernel.AgentSource = cs, as
	s.User = summarise(user)
	s.User.ClientSource, s.User.AgentSource = dump.SourceUser, dump.SourceUser
	return s, nil
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
