package estimator

import (
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// TCPInterval is one report interval of one side of a TCP test, over all
// streams: the application bytes moved, and the mean TCP_INFO of the streams
// at the interval's end.
type TCPInterval struct {
	Start, End time.Duration
	Bytes      uint64  // moved in the interval, all streams
	Rate       float64 // bit/s
	PerStream  []float64
	Retrans    uint32        // retransmitted segments in the interval
	RTT        time.Duration // mean smoothed RTT
	Cwnd       float64       // mean snd_cwnd, segments
	Samples    []dump.TCPSample
}

// TCPIntervals cuts one side's samples into intervals of length every (a
// multiple of the sampling interval reads best). Each stream's samples are
// cumulative, so an interval's bytes are the difference of the last sample
// at or before its end and the last at or before its start.
func TCPIntervals(streams []dump.TCPStream, every time.Duration) []TCPInterval {
	if every <= 0 {
		return nil
	}
	var end time.Duration
	for _, s := range streams {
		if n := len(s.Samples); n > 0 {
			end = max(end, s.Samples[n-1].T)
		}
	}
	// Samples are taken a little after each tick: a quarter of the sampling
	// period's slack keeps each on the boundary it belongs to.
	slack := min(every, samplingPeriod(streams)) / 4
	var out []TCPInterval
	for start := time.Duration(0); start < end; start += every {
		stop := min(start+every, end)
		if end-stop < every/10 {
			stop = end // the final sample's sliver joins the last interval
		}
		iv := TCPInterval{Start: start, End: stop, PerStream: make([]float64, len(streams))}
		var rttSum time.Duration
		var cwndSum float64
		n := 0
		for k, s := range streams {
			a, okA := lastAt(s.Samples, iv.Start+slack, tcpSampleT)
			b, okB := lastAt(s.Samples, iv.End+slack, tcpSampleT)
			if iv.Start == 0 {
				okA = false
			}
			if !okB {
				continue
			}
			var before dump.TCPSample // zero at the start of the test
			if okA {
				before = a
			}
			moved := b.Bytes - before.Bytes
			iv.Bytes += moved
			// Over the time between the two samples, not the nominal
			// interval: a sample taken late under load carries more bytes,
			// and would read above the path's rate over the nominal span.
			span := b.T - before.T
			if span <= 0 {
				span = iv.End - iv.Start
			}
			iv.PerStream[k] = float64(8*moved) / span.Seconds()
			iv.Retrans += b.TotalRetrans - before.TotalRetrans
			rttSum += b.RTT
			cwndSum += float64(b.SndCwnd)
			iv.Samples = append(iv.Samples, b)
			n++
		}
		for _, r := range iv.PerStream {
			iv.Rate += r
		}
		if n > 0 {
			iv.RTT, iv.Cwnd = rttSum/time.Duration(n), cwndSum/float64(n)
		}
		out = append(out, iv)
		if stop == end {
			break
		}
	}
	return out
}

// samplingPeriod is the time between a stream's first two samples.
func samplingPeriod(streams []dump.TCPStream) time.Duration {
	for _, s := range streams {
		if len(s.Samples) >= 2 {
			return s.Samples[1].T - s.Samples[0].T
		}
	}
	return time.Hour
}

// lastAt is the last of samples, in time order, taken at or before t; when
// is a sample's time.
func lastAt[S any](samples []S, t time.Duration, when func(S) time.Duration) (S, bool) {
	var s S
	ok := false
	for _, x := range samples {
		if when(x) > t {
			break
		}
		s, ok = x, true
	}
	return s, ok
}

func tcpSampleT(s dump.TCPSample) time.Duration { return s.T }

// TCPTotals are a side's byte counts and rates over the whole test.
type TCPTotals struct {
	Sent, Received uint64
	SendRate       float64 // bit/s over the side's elapsed time
	RecvRate       float64
	Retrans        uint32
	Errors         int // streams that ended with an error
}

// TCPTotal sums one side's streams.
func TCPTotal(streams []dump.TCPStream, elapsed time.Duration) TCPTotals {
	var t TCPTotals
	for _, s := range streams {
		t.Sent += s.Sent
		t.Received += s.Received
		if n := len(s.Samples); n > 0 {
			t.Retrans += s.Samples[n-1].TotalRetrans
		}
		if s.Err != "" {
			t.Errors++
		}
	}
	if elapsed > 0 {
		t.SendRate = float64(8*t.Sent) / elapsed.Seconds()
		t.RecvRate = float64(8*t.Received) / elapsed.Seconds()
	}
	return t
}
