package estimator

import (
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// Two streams sampled every 100 ms; intervals of 200 ms by hand.
func TestTCPIntervals(t *testing.T) {
	ms := time.Millisecond
	mk := func(bytes ...uint64) []dump.TCPSample {
		var s []dump.TCPSample
		for i, b := range bytes {
			s = append(s, dump.TCPSample{T: time.Duration(i+1) * 100 * ms, Bytes: b, SndCwnd: 10, RTT: 50 * time.Microsecond, TotalRetrans: uint32(i)})
		}
		return s
	}
	streams := []dump.TCPStream{
		{Index: 0, Sent: 5000, Samples: mk(1000, 2000, 3000, 4000, 5000)},
		{Index: 1, Sent: 2500, Samples: mk(500, 1000, 1500, 2000, 2500)},
	}
	iv := TCPIntervals(streams, 200*ms)
	if len(iv) != 3 {
		t.Fatalf("%d intervals, want 3 (0-200, 200-400, 400-500 ms)", len(iv))
	}
	// 0-200 ms: 2000 + 1000 bytes = 24000 bit in 0.2 s = 120 kbit/s.
	if iv[0].Bytes != 3000 || iv[0].Rate != 120000 || iv[0].PerStream[1] != 40000 {
		t.Fatalf("first interval %+v", iv[0])
	}
	// 400-500 ms: 1000 + 500 bytes in 0.1 s = 120 kbit/s; one retransmit per stream.
	if iv[2].Bytes != 1500 || iv[2].Rate != 120000 || iv[2].Retrans != 2 || iv[2].Cwnd != 10 || iv[2].RTT != 50*time.Microsecond {
		t.Fatalf("last interval %+v", iv[2])
	}
	var sum uint64
	for _, x := range iv {
		sum += x.Bytes
	}
	tot := TCPTotal(streams, 500*ms)
	if sum != 7500 || tot.Sent != 7500 || tot.SendRate != 120000 || tot.Retrans != 8 {
		t.Fatalf("intervals sum %d, totals %+v", sum, tot)
	}
}

// The final sample, taken just after the last tick, joins the last interval
// instead of making one of its own with an absurd rate.
func TestTCPIntervalsFinalSliver(t *testing.T) {
	ms := time.Millisecond
	s := []dump.TCPStream{{Samples: []dump.TCPSample{{T: 100 * ms, Bytes: 100}, {T: 200 * ms, Bytes: 200}, {T: 201 * ms, Bytes: 210}}}}
	iv := TCPIntervals(s, 100*ms)
	if len(iv) != 2 || iv[1].End != 201*ms || iv[1].Bytes != 110 {
		t.Fatalf("%+v", iv)
	}
}

// Samples land a little after their ticks; they still count for the
// interval they close.
func TestTCPIntervalsLateTicks(t *testing.T) {
	ms := time.Millisecond
	s := []dump.TCPStream{{Samples: []dump.TCPSample{{T: 101 * ms, Bytes: 100}, {T: 202 * ms, Bytes: 200}, {T: 303 * ms, Bytes: 300}}}}
	iv := TCPIntervals(s, 100*ms)
	if len(iv) != 3 || iv[0].Bytes != 100 || iv[1].Bytes != 100 || iv[2].Bytes != 100 || iv[2].End != 303*ms {
		t.Fatalf("%+v", iv)
	}
}
