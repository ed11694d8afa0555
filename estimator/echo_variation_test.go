package estimator

import (
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// RFC 3550 §6.4.1 by hand: transit 10, 12, 11, 15 µs gives D = 2, -1, 4 µs,
// J = 0 + (2000 - 0)/16 = 125 ns, 125 + (1000 - 125)/16 = 179.6875 ns,
// 179.6875 + (4000 - 179.6875)/16 = 418.45703125 ns; all exact in binary.
func TestJitterRFC3550(t *testing.T) {
	transit := []int64{10_000, 12_000, 11_000, 15_000}
	for n, want := range []float64{0, 0, 125, 179.6875, 418.45703125} {
		if got := jitter(transit[:n]); got != want {
			t.Errorf("after %d packets: J = %v ns, want %v", n, got, want)
		}
	}
}

// variationRecs: sends every ms; transit there 10, 12, 11, 15 µs; the
// agent's turnaround 5, 50, 5, 5 µs; transit back 20, 21, 20, 24 µs.
func variationRecs() []dump.EchoRecord {
	return echoRecs(100,
		probe{0, 10, 15, 35},
		probe{1000, 1012, 1062, 1083},
		probe{2000, 2011, 2016, 2036},
		probe{3000, 3015, 3020, 3044},
	)
}

func TestEchoStatsVariation(t *testing.T) {
	// Back: D = 1, -1, 4 µs: J = 62.5, 121.09375, 363.525390625 ns.
	// Round trip, turnaround left out (30, 33, 31, 39 µs): D = 3, -2, 8 µs:
	// J = 187.5, 300.78125, 781.982421875 ns.
	want := struct{ there, back, round Variation }{
		Variation{N: 4, Jitter: 418, PDV50: 1 * time.Microsecond, PDV99: 5 * time.Microsecond, PDVMax: 5 * time.Microsecond},
		Variation{N: 4, Jitter: 364, PDV50: 0, PDV99: 4 * time.Microsecond, PDVMax: 4 * time.Microsecond},
		Variation{N: 4, Jitter: 782, PDV50: 1 * time.Microsecond, PDV99: 9 * time.Microsecond, PDVMax: 9 * time.Microsecond},
	}
	// The agent in sw (CLOCK_REALTIME, ~1.7e18 ns) and the client in eBPF
	// (CLOCK_MONOTONIC): each difference stays within one end's source.
	mixed := variationRecs()
	for i := range mixed {
		for _, s := range []*dump.Stamps{&mixed[i].AgentRx, &mixed[i].AgentTx} {
			s[dump.SourceSW], s[dump.SourceEBPF] = s[dump.SourceEBPF]+1_700_000_000_000_000_000, 0
		}
	}
	for _, c := range []struct {
		name   string
		recs   []dump.EchoRecord
		source string
	}{{"ebpf", variationRecs(), "ebpf"}, {"ebpf/sw", mixed, "ebpf/sw"}} {
		s, err := EchoStats(dump.EchoPoint{Size: 100, Wait: time.Millisecond, Count: 4}, c.recs, AutoSource)
		if err != nil {
			t.Fatal(err)
		}
		if s.Kernel.Source() != c.source {
			t.Errorf("%s: source %s", c.name, s.Kernel.Source())
		}
		if s.There != want.there || s.Back != want.back || s.RoundTrip != want.round {
			t.Errorf("%s:\nthere %+v\nback  %+v\nround %+v", c.name, s.There, s.Back, s.RoundTrip)
		}
		// RTT 30, 31, 33, 39 µs; mean 33.25; sample stddev sqrt(48.75/3).
		k := s.Kernel
		if k.Min != 30*time.Microsecond || k.Median != 32*time.Microsecond || k.Mean != 33250 ||
			k.Max != 39*time.Microsecond || k.P90 != 39*time.Microsecond || k.P999 != 39*time.Microsecond || k.Stddev != 4031 {
			t.Errorf("%s: kernel %+v", c.name, k)
		}
		// User space sees the turnaround: 35, 36, 44, 83 µs.
		if u := s.User; u.Min != 35*time.Microsecond || u.P90 != 83*time.Microsecond || u.P99 != 83*time.Microsecond {
			t.Errorf("%s: user %+v", c.name, u)
		}
		if s.ReorderThere != (Reorder{N: 4}) || s.ReorderRoundTrip != (Reorder{N: 4}) {
			t.Errorf("%s: reorder %+v %+v", c.name, s.ReorderThere, s.ReorderRoundTrip)
		}
	}
}

// Probe 1 takes 150 µs instead of 10 and arrives after probe 2 on both
// ends. In order of arrival the transits are 10, 10, 150, 10 µs (RTT 30, 30,
// 170, 30): D = 0, 140, -140 µs, J = 0, 8750, 16953.125 ns. In sequence order
// it would be 15893.5546875 ns.
func TestEchoStatsReorderedArrival(t *testing.T) {
	recs := echoRecs(100,
		probe{0, 10, 15, 35},
		probe{100, 250, 255, 275},
		probe{200, 210, 215, 235},
		probe{300, 310, 315, 335},
	)
	s, err := EchoStats(dump.EchoPoint{Size: 100, Count: 4}, recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.There.Jitter != 16953 || s.Back.Jitter != 0 || s.RoundTrip.Jitter != 16953 {
		t.Errorf("jitter there %v back %v round trip %v", s.There.Jitter, s.Back.Jitter, s.RoundTrip.Jitter)
	}
	want := Reorder{N: 4, Count: 1, Ratio: 0.25, MaxExtent: 1, MeanExtent: 1}
	if s.ReorderThere != want || s.ReorderRoundTrip != want {
		t.Errorf("reorder there %+v round trip %+v, want %+v", s.ReorderThere, s.ReorderRoundTrip, want)
	}
}
