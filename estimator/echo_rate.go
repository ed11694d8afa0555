package estimator

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// rates fills RateSource, the send and receive rates and TimePerFrame from
// the client's stamps: in cs, the source Kernel uses, when it stamped every
// send and every first reply, so that no rate rests on a partial set; in
// user space otherwise.
func (s *EchoSummary) rates(p dump.EchoPoint, recs []dump.EchoRecord, cs dump.Source) {
	src := cs
	for i := range recs {
		r := &recs[i]
		if !r.ClientTx.Has(cs) || r.Replies > 0 && !r.ClientRx.Has(cs) {
			src = dump.SourceUser
			break
		}
	}
	s.RateSource = src
	size := func(r *dump.EchoRecord) int {
		if r.Size > 0 {
			return r.Size
		}
		return p.Size
	}

	// The client sends in sequence order, so a send that lacks a stamp still
	// has its place between the first stamped send and the last. The span
	// from the first to the last covers the sends after the first: their
	// bytes over it, as a train's dispersion does.
	sends := make([]*dump.EchoRecord, len(recs))
	for i := range recs {
		sends[i] = &recs[i]
	}
	slices.SortStableFunc(sends, func(a, b *dump.EchoRecord) int { return cmp.Compare(a.Seq, b.Seq) })
	first, last := -1, -1
	for i, r := range sends {
		if r.ClientTx.Has(src) {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first >= 0 && last > first {
		span := sends[last].ClientTx[src] - sends[first].ClientTx[src]
		bytes := 0
		for _, r := range sends[first+1 : last+1] {
			bytes += size(r)
		}
		if span > 0 {
			s.SendRate, s.SendRateIP = bitRates(bytes, last-first, p.IPHeader, span)
			s.TimePerFrame = time.Duration(span / int64(last-first))
		}
	}

	// Replies by arrival; the first reply's bytes came before its stamp.
	type arrival struct {
		at    int64
		bytes int
	}
	var rx []arrival
	for i := range recs {
		if r := &recs[i]; r.Replies > 0 && r.ClientRx.Has(src) {
			rx = append(rx, arrival{r.ClientRx[src], size(r)})
		}
	}
	slices.SortFunc(rx, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	if n := len(rx); n >= 2 && rx[n-1].at > rx[0].at {
		bytes := 0
		for _, a := range rx[1:] {
			bytes += a.bytes
		}
		s.RecvRate, s.RecvRateIP = bitRates(bytes, n-1, p.IPHeader, rx[n-1].at-rx[0].at)
	}
}

// bitRates is the payload and IP-layer bit rates of frames datagrams
// carrying bytes of payload over span ns; the IP rate is 0 when the header
// length is unknown, rather than the payload rate under another name.
func bitRates(bytes, frames, header int, span int64) (payload, ip float64) {
	sec := float64(span) / 1e9
	payload = float64(bytes) * 8 / sec
	if header > 0 {
		ip = float64(bytes+frames*header) * 8 / sec
	}
	return payload, ip
}

// schedule compares each send, as user space stamped it before the syscall,
// with when it was meant to be; both are the client's CLOCK_MONOTONIC.
func (s *EchoSummary) schedule(p dump.EchoPoint, recs []dump.EchoRecord) {
	var sum float64
	for i := range recs {
		r := &recs[i]
		if r.Scheduled == 0 || !r.ClientTx.Has(dump.SourceUser) {
			continue
		}
		late := time.Duration(r.ClientTx[dump.SourceUser] - r.Scheduled)
		s.ScheduledSends++
		sum += float64(late.Abs())
		s.ScheduleMaxErr = max(s.ScheduleMaxErr, late.Abs())
		if p.Wait > 0 && late > p.Wait {
			s.Missed++
		}
	}
	if s.ScheduledSends == 0 {
		return
	}
	mean := sum / float64(s.ScheduledSends)
	s.ScheduleMeanErr = time.Duration(math.Round(mean))
	if p.Wait > 0 {
		s.ScheduleErrPct = mean / float64(p.Wait) * 100
	}
}
