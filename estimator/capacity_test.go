package estimator

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

var capAuto = CapacityOptions{Source: AutoSource}

// capSeeds is how many simulated runs each path case gets.
const capSeeds = 5

// ipRate is what a bottleneck of rate bit/s counting overhead bytes per packet
// carries at the IP layer in full-size packets.
func ipRate(rate float64, overhead int) float64 { return rate * 1500 / float64(1500+overhead) }

func within(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

func TestCapacityPaths(t *testing.T) {
	const c20 = 20e6
	truth := ipRate(c20, 14)
	full := session{calib: 10, calibN: 20, prelim: 20, prelimN: 10, one: 25, oneN: 6, two: 20, twoN: 50, crossBytes: 1514}
	tests := []struct {
		name    string
		path    bottleneck
		s       session
		verdict Verdict
		want    float64 // the estimate
		tol     float64
		check   func(t *testing.T, c Capacity)
	}{{
		name:    "easy path, preliminary only",
		path:    bottleneck{rate: c20, overhead: 14, noise: 1000},
		s:       session{calib: 10, calibN: 20, prelim: 20, prelimN: 10},
		verdict: VerdictEasyPath, want: truth, tol: 0.005,
		check: func(t *testing.T, c Capacity) {
			if c.Lower > truth || c.Upper < truth || c.Upper-c.Lower > 0.01*truth {
				t.Errorf("easy path without Phase I: want an interval around %v under 1 %% wide, got %v [%v, %v]", truth, c.Estimate, c.Lower, c.Upper)
			}
			if c.Chosen < 0 || c.Estimate < c.Modes[c.Chosen].Low || c.Estimate >= c.Modes[c.Chosen].High {
				t.Errorf("the chosen mode %d does not hold the estimate %v: %+v", c.Chosen, c.Estimate, c.Modes)
			}
		},
	}, {
		name:    "easy path, all phases",
		path:    bottleneck{rate: c20, overhead: 14, noise: 1000},
		s:       full,
		verdict: VerdictEasyPath, want: truth, tol: 0.005,
		check: func(t *testing.T, c Capacity) {
			if math.Abs(c.Overhead-14) > 2 || !within(c.Sustained, truth, 0.005) {
				t.Errorf("overhead %v, sustained %v", c.Overhead, c.Sustained)
			}
			if c.Lower > truth || c.Upper < truth {
				t.Errorf("bounds [%v, %v] miss %v", c.Lower, c.Upper, truth)
			}
		},
	}, {
		// The design's ground truth: tbf with a one-frame bucket. The second
		// packet of every burst leaves ~6 % early and a 600 B pair unspread.
		name:    "tbf one-frame bucket",
		path:    bottleneck{rate: c20, overhead: 14, bucket: 1600, line: 1e9, noise: 200},
		s:       full,
		verdict: VerdictEasyPath, want: truth, tol: 0.01,
		check: func(t *testing.T, c Capacity) {
			if math.Abs(c.Overhead-14) > 2 {
				t.Errorf("overhead %v, want 14 ± 2", c.Overhead)
			}
			if c.Peak != 0 || !within(c.Sustained, truth, 0.01) {
				t.Errorf("peak %v sustained %v", c.Peak, c.Sustained)
			}
		},
	}, {
		// Cross traffic stretches 40 % of the pairs into a lower mode that
		// spreads with the packet size; the capacity mode does not.
		name: "cross traffic, multimodal",
		path: bottleneck{rate: c20, overhead: 14, noise: 1000},
		s: session{calib: 10, calibN: 20, prelim: 20, prelimN: 3, one: 25, oneN: 2,
			crossPrelim: 0.4, crossOne: 0.4, crossBytes: 1514},
		verdict: VerdictCapacityMode, want: truth, tol: 0.01,
		check: func(t *testing.T, c Capacity) {
			lower := 0
			for _, m := range c.Modes {
				if m.Value < 0.6*truth {
					lower++
				}
			}
			if lower == 0 || c.Chosen != 0 {
				t.Errorf("want cross-traffic modes below the capacity mode and the capacity mode first: %+v", c.Modes)
			}
			if c.PrelimStd < capEasyCV*c.PrelimMean {
				t.Errorf("preliminary CV %v: cross traffic should spread it", c.PrelimStd/c.PrelimMean)
			}
		},
	}, {
		// Every pair met cross traffic, so no mode reaches ADR.
		name:    "lower bound",
		path:    bottleneck{rate: c20, overhead: 14, noise: 1000},
		s:       session{one: 25, oneN: 2, two: 30, twoN: 50, crossOne: 1, crossTwo: 0.1, crossBytes: 1514},
		verdict: VerdictLowerBound, want: truth / 1.1, tol: 0.04, // a gap in ten holds a cross packet
		check: func(t *testing.T, c Capacity) {
			// The bound is a whole long train's rate, which cross traffic
			// at the narrow link only stretches: never above capacity.
			if c.Lower != c.Estimate || c.Estimate > truth || c.Upper != 0 || c.Chosen != -1 {
				t.Errorf("lower bound: estimate %v sustained %v [%v, %v] chosen %d", c.Estimate, c.Sustained, c.Lower, c.Upper, c.Chosen)
			}
			for _, m := range c.Modes {
				if m.Value >= c.Sustained {
					t.Errorf("mode %v at or above ADR %v", m.Value, c.Sustained)
				}
			}
		},
	}, {
		// Cross traffic in a fifth of the long trains' gaps lowers ADR by
		// more than 10 %, but the tail's packets still leave at capacity
		// spacing: a loaded path, not a shaper.
		name: "cross traffic on long trains",
		path: bottleneck{rate: c20, overhead: 14, noise: 1000},
		s: session{calib: 10, calibN: 20, prelim: 20, prelimN: 3, one: 25, oneN: 2, two: 20, twoN: 50,
			crossPrelim: 0.4, crossOne: 0.4, crossTwo: 0.2, crossBytes: 1514},
		verdict: VerdictCapacityMode, want: truth, tol: 0.01,
		check: func(t *testing.T, c Capacity) {
			if c.Sustained > truth/1.1 || c.Peak != 0 {
				t.Errorf("sustained %.0f peak %.0f", c.Sustained, c.Peak)
			}
		},
	}, {
		name: "interrupt coalescing",
		path: bottleneck{rate: c20, overhead: 14, noise: 200, batch: 4},
		s: session{calib: 10, calibN: 20, prelim: 20, prelimN: 10, one: 10, oneN: 10, two: 20, twoN: 50,
			crossBytes: 1514},
		verdict: VerdictCoalescing, want: truth, tol: 0.02,
		check: func(t *testing.T, c Capacity) {
			if math.Abs(c.Overhead-14) > 2 || !within(c.Sustained, truth, 0.02) {
				t.Errorf("overhead %v sustained %v", c.Overhead, c.Sustained)
			}
		},
	}, {
		// A 15000 B bucket passes ten full-size packets at line rate: short
		// trains see 1 Gbit/s, long trains' tails the shaped rate.
		name:    "shaper with burst",
		path:    bottleneck{rate: c20, overhead: 14, bucket: 15000, line: 1e9, noise: 100},
		s:       full,
		verdict: VerdictShaper, want: truth, tol: 0.02,
		check: func(t *testing.T, c Capacity) {
			if c.Peak < 10*c.Estimate || c.Estimate != c.Sustained {
				t.Errorf("peak %v estimate %v sustained %v", c.Peak, c.Estimate, c.Sustained)
			}
			if c.Lower > c.Estimate || c.Upper < c.Estimate {
				t.Errorf("bounds [%v, %v] around %v", c.Lower, c.Upper, c.Estimate)
			}
		},
	}, {
		// htb's default bucket (rate/HZ + 1600 B, ~4100 B at 20 Mbit/s) passes
		// two or three frames back to back: most gaps of every train are
		// spread, so only the unspread first pair gives it away.
		name:    "htb-like small burst",
		path:    bottleneck{rate: c20, overhead: 14, bucket: 4100, line: 1e9, noise: 100},
		s:       full,
		verdict: VerdictShaper, want: truth, tol: 0.02,
	}, {
		// Without short trains only the long trains' head gives the shaper away.
		name:    "shaper with burst, long trains only",
		path:    bottleneck{rate: c20, overhead: 14, bucket: 15000, line: 1e9, noise: 100},
		s:       session{calib: 10, calibN: 20, two: 20, twoN: 50},
		verdict: VerdictShaper, want: truth, tol: 0.02,
		check: func(t *testing.T, c Capacity) {
			if c.Peak < 10*c.Estimate || len(c.Modes) != 0 || c.Chosen != -1 {
				t.Errorf("peak %v estimate %v modes %+v", c.Peak, c.Estimate, c.Modes)
			}
		},
	}}
	for _, tc := range tests {
		for seed := range uint64(capSeeds) {
			t.Run(fmt.Sprintf("%s/seed %d", tc.name, seed), func(t *testing.T) {
				c, err := EstimateCapacity(newGen(tc.path, seed).session(tc.s), capAuto)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: estimate %.0f (truth %.0f, %+.3f %%) [%.0f, %.0f] sustained %.0f peak %.0f overhead %.2f ω %.0f σ_t %v modes %d trains %d samples %d",
					c.Verdict, c.Estimate, tc.want, 100*(c.Estimate/tc.want-1), c.Lower, c.Upper, c.Sustained, c.Peak,
					c.Overhead, c.BinWidth, c.NoiseFloor, len(c.Modes), c.Trains, c.Samples)
				if c.Verdict != tc.verdict {
					t.Errorf("verdict %q, want %q", c.Verdict, tc.verdict)
				}
				if !within(c.Estimate, tc.want, tc.tol) {
					t.Errorf("estimate %.0f, want %.0f ± %.1f %%", c.Estimate, tc.want, 100*tc.tol)
				}
				if len(c.Discarded) != 0 {
					t.Errorf("discarded %v", c.Discarded)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
			})
		}
	}
}

// TestCapacityGolden pins the arithmetic on three trains worked by hand.
func TestCapacityGolden(t *testing.T) {
	train := func(gaps ...int64) dump.Train {
		tr := dump.Train{Phase: dump.PhasePrelim, Size: 1000}
		at := int64(5e9)
		for i := 0; i <= len(gaps); i++ {
			if i > 0 {
				at += gaps[i-1] * 1000
			}
			var s dump.Stamps
			s[dump.SourceEBPF], s[dump.SourceUser] = at, at+25000
			tr.Rx = append(tr.Rx, s)
		}
		return tr
	}
	c, err := EstimateCapacity([]dump.Train{
		// The first gap is left out of the span (a bucket shortens it).
		train(800, 800, 810), // packets 1 to 3: 805 µs a gap, 8000 bit / 805 µs = 9.937888 Mbit/s
		train(790, 810, 800), // 805 µs
		train(820, 800, 830), // 815 µs, 9.815951 Mbit/s
	}, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	// Successive gap differences: 0 10, 20 -10, -20 30 µs; the quietest
	// train's median magnitude is 5 µs, so σ_t = 1.4826·5/√3 = 4.280 µs.
	// Estimate: the median sample; with under five samples the interval is
	// their range. Mean (2·8000/805e-6 + 8000/815e-6)/3 = 9897242.439;
	// deviations d, d, -2d with d = 40645.760, so the sample std is d·√3. ω:
	// the trimmed range 121937.278/8 = 15242.2 is under the floor 12 % ×
	// mean = 1187669.093, so all three fall in one mode, whose kurtosis is
	// (16+1+1)/3 / (6/3)² = 1.5, and which holds the estimate.
	mean := (2*8000/805e-6 + 8000/815e-6) / 3
	d := 8000/805e-6 - mean
	omega := 0.12 * mean
	want := Capacity{
		Estimate: 8000 / 805e-6, Lower: 8000 / 815e-6, Upper: 8000 / 805e-6,
		BinWidth: omega, Verdict: VerdictEasyPath, Chosen: 0,

		PrelimMean: mean, PrelimStd: d * math.Sqrt(3),
		NoiseFloor:    4280 * time.Nanosecond,
		MinDispersion: 805 * time.Microsecond,
		KernelToUser:  25 * time.Microsecond,
		Source:        dump.SourceEBPF,
		Trains:        3, Samples: 3,
		Discarded: map[string]int{},
		Hist:      []float64{8000 / 815e-6, 8000 / 805e-6, 8000 / 805e-6},
	}
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"estimate", c.Estimate, 9937888.199}, {"std", c.PrelimStd, 70400.52}, {"lower", c.Lower, 9815950.920},
		{"upper", c.Upper, 9937888.199}, {"ω", c.BinWidth, 1187669.093},
	} {
		if math.Abs(f.got-f.want) > 0.1 {
			t.Errorf("%s %.3f, want %.3f", f.name, f.got, f.want)
		}
	}
	wantMode := Mode{Value: 8000 / 805e-6, Low: 8000 / 815e-6, High: 8000/815e-6 + omega, Count: 3, Kurtosis: 1.5, Merit: 1.5}
	if len(c.Modes) != 1 || c.Modes[0].Count != 3 || !within(c.Modes[0].Value, wantMode.Value, 1e-12) || !within(c.Modes[0].Low, wantMode.Low, 1e-12) ||
		!within(c.Modes[0].High, wantMode.High, 1e-12) || !within(c.Modes[0].Kurtosis, 1.5, 1e-9) || !within(c.Modes[0].Merit, 1.5, 1e-9) {
		t.Errorf("modes %+v, want [%+v]", c.Modes, wantMode)
	}
	want.Modes = c.Modes
	if !capEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// capEqual compares rates to 1e-12 and everything else exactly.
func capEqual(a, b Capacity) bool {
	for _, p := range [][2]*float64{{&a.Estimate, &b.Estimate}, {&a.Lower, &b.Lower}, {&a.Upper, &b.Upper},
		{&a.BinWidth, &b.BinWidth}, {&a.PrelimMean, &b.PrelimMean}, {&a.PrelimStd, &b.PrelimStd}} {
		if !within(*p[0], *p[1], 1e-12) {
			return false
		}
		*p[0] = *p[1]
	}
	return reflect.DeepEqual(a, b)
}

// TestCapacityOverheadGolden: an 8 Mbit/s bottleneck moves a byte per µs and
// counts 20 bytes per packet, so the gaps are S+20 µs.
func TestCapacityOverheadGolden(t *testing.T) {
	var trains []dump.Train
	for _, size := range []int{600, 900, 1500} {
		tr := dump.Train{Phase: dump.PhaseOne, Size: size}
		for i := range 3 {
			var s dump.Stamps
			s[dump.SourceEBPF] = 1e9 + int64(i*(size+20))*1000
			tr.Rx = append(tr.Rx, s)
		}
		trains = append(trains, tr)
	}
	c, err := EstimateCapacity(trains, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	// Every sample normalises to 8e6·1500/1520; no preliminary trains, so ω
	// comes from these samples: the floor, 12 % of it.
	v := 8e6 * 1500 / 1520
	if math.Abs(c.Overhead-20) > 1e-6 || !within(c.Estimate, v, 1e-12) || c.Verdict != VerdictCapacityMode ||
		len(c.Modes) != 1 || c.Modes[0].Count != 3 || c.Modes[0].Kurtosis != 1000 || c.Modes[0].Merit != 1000 ||
		!within(c.BinWidth, 0.12*v, 1e-12) || c.Lower != v || c.Upper != v || c.NoiseFloor != 0 {
		t.Errorf("got %+v", c)
	}
}

func TestCapacityHygiene(t *testing.T) {
	const rate = 20e6
	g := newGen(bottleneck{rate: rate, overhead: 14, noise: 1000}, 3)
	trains := g.session(session{calib: 10, calibN: 20, prelim: 20, prelimN: 10})
	bad := func(mutate func(tr *dump.Train)) {
		tr := g.train(dump.PhasePrelim, 1500, 10, nil)
		mutate(&tr)
		trains = append(trains, tr)
	}
	for range 3 {
		bad(func(tr *dump.Train) {
			tr.Rx[4] = dump.Stamps{}
			tr.Rx[9][dump.SourceEBPF] = tr.Rx[1][dump.SourceEBPF] + 10 // absurd if used
		})
	}
	for range 2 {
		bad(func(tr *dump.Train) { tr.Rx[3], tr.Rx[4] = tr.Rx[4], tr.Rx[3] })
	}
	for range 4 {
		// The sender was preempted: it spread the train over twice the
		// bottleneck's dispersion, and the receiver saw that.
		bad(func(tr *dump.Train) {
			for i := range tr.Tx {
				tr.Tx[i][dump.SourceEBPF] += int64(i) * 1_200_000
				tr.Rx[i][dump.SourceEBPF] += int64(i) * 600_000
			}
		})
	}
	// 100 ns apart: far under 10·σ_t of the calibration trains' 1 µs noise. No
	// send stamps, else it would be an input gap first.
	bad(func(tr *dump.Train) {
		for i := range tr.Rx {
			tr.Rx[i][dump.SourceEBPF] = tr.Rx[0][dump.SourceEBPF] + int64(i)*100
		}
		tr.Tx = nil
	})
	// Without send stamps a good train is used: nothing to check it against.
	bad(func(tr *dump.Train) { tr.Tx = nil })

	c, err := EstimateCapacity(trains, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"lossy": 3, "reordered": 2, "input gap": 4, "under noise floor": 1}
	if !reflect.DeepEqual(c.Discarded, want) || c.Trains != 21 || c.Samples != 21 {
		t.Errorf("discarded %v trains %d samples %d, want %v, 21, 21", c.Discarded, c.Trains, c.Samples, want)
	}
	if !within(c.Estimate, ipRate(rate, 14), 0.005) || c.PrelimStd > 0.01*c.PrelimMean || c.Verdict != VerdictEasyPath {
		t.Errorf("bad trains leaked in: %v ± %v %s", c.PrelimMean, c.PrelimStd, c.Verdict)
	}
	if c.NoiseFloor < time.Microsecond || c.NoiseFloor > 2*time.Microsecond {
		t.Errorf("σ_t %v: want ~1.4 µs, √2 × the stamps' 1 µs", c.NoiseFloor)
	}
}

// TestCapacityTooFew: two preliminary trains make no mode and cannot call
// the path easy; that is no estimate yet, not an error.
func TestCapacityTooFew(t *testing.T) {
	g := newGen(bottleneck{rate: 20e6, overhead: 14, noise: 1000}, 8)
	trains := g.session(session{prelim: 2, prelimN: 10})
	c, err := EstimateCapacity(trains, capAuto)
	if err != nil || c.Verdict != VerdictNone || c.Estimate != 0 || c.Chosen != -1 || c.Trains != 2 ||
		!within(c.PrelimMean, ipRate(20e6, 14), 0.005) || c.KernelToUser != 0 {
		t.Errorf("got %+v, %v", c, err)
	}
	// A bin width given is a bin width used; with it two samples still make
	// no mode, but three do.
	trains = append(trains, g.train(dump.PhasePrelim, 1500, 10, nil))
	c, err = EstimateCapacity(trains, CapacityOptions{Source: AutoSource, BinWidth: 1e6})
	if err != nil || c.BinWidth != 1e6 || len(c.Modes) != 1 || c.Modes[0].Count != 3 || c.Verdict != VerdictEasyPath {
		t.Errorf("forced bin width: %+v, %v", c, err)
	}
}

// TestCapacityOddInput: records no sane collector writes are counted or
// skipped, never a panic.
func TestCapacityOddInput(t *testing.T) {
	g := newGen(bottleneck{rate: 20e6, overhead: 14, noise: 1000}, 9)
	trains := g.session(session{prelim: 5, prelimN: 10})
	flat := g.train(dump.PhasePrelim, 1500, 5, nil)
	for i := range flat.Rx {
		flat.Rx[i] = flat.Rx[0] // no dispersion at all
	}
	flat.Tx = nil
	moreSent := g.train(dump.PhasePrelim, 1500, 5, nil)
	moreSent.Rx = moreSent.Rx[:4]
	zero := g.train(dump.PhaseOne, 1500, 5, nil)
	zero.Size = 0
	trains = append(trains, flat, moreSent, zero,
		g.train(dump.PhaseTwo, 1500, 3, nil),            // no head and tail in three packets
		g.train(dump.PhasePrelim, 1500, 1, nil),         // no gap
		dump.Train{Phase: dump.PhasePrelim, Size: 1500}, // no packets
		g.train(dump.Phase(9), 1500, 10, nil),           // a phase from the future: not read
		g.train(dump.PhaseMaxLen, 1500, 10, nil),        // not read either
		g.train(dump.PhaseCalibrate, 1500, 2, nil))      // a pair calibrates nothing
	c, err := EstimateCapacity(trains, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"under noise floor": 1, "lossy": 1, "malformed": 1, "too short": 3}
	if !reflect.DeepEqual(c.Discarded, want) || c.Trains != 5 || c.Verdict != VerdictEasyPath {
		t.Errorf("discarded %v trains %d %s, want %v, 5", c.Discarded, c.Trains, c.Verdict, want)
	}
}

func TestCapacityErrors(t *testing.T) {
	g := newGen(bottleneck{rate: 20e6, overhead: 14, noise: 1000}, 4)
	lossy := g.session(session{prelim: 12, prelimN: 10})
	for i := range lossy {
		lossy[i].Rx[5] = dump.Stamps{}
	}
	short := g.train(dump.PhasePrelim, 1500, 1, nil)
	tests := []struct {
		name   string
		trains []dump.Train
		opt    CapacityOptions
		want   string
	}{
		{"nothing", nil, capAuto, "no packet of 0 trains"},
		{"calibration only", g.session(session{calib: 3, calibN: 10}), capAuto, "no preliminary, phase-1 or phase-2 trains"},
		{"all lossy", append(lossy, short), capAuto, "no preliminary trains survived: 1 too short, 12 lossy"},
		{"absent source", g.session(session{prelim: 3, prelimN: 10}), CapacityOptions{Source: dump.SourceHW}, "no train has hw receive timestamps"},
		{"unknown source", nil, CapacityOptions{Source: AutoSource + 1}, "unknown timestamp source"},
		{"negative bin", nil, CapacityOptions{Source: AutoSource, BinWidth: -1}, "bin width"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := EstimateCapacity(tc.trains, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCapacitySource(t *testing.T) {
	const rate = 100e6
	truth := ipRate(rate, 14)
	// User-space stamps come 5 µs + Exp(30 µs) after the eBPF ones.
	trains := newGen(bottleneck{rate: rate, overhead: 14, noise: 100, user: 30000}, 5).
		session(session{calib: 10, calibN: 20, prelim: 30, prelimN: 10})
	c, err := EstimateCapacity(trains, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source != dump.SourceEBPF || !within(c.Estimate, truth, 0.005) {
		t.Errorf("capAuto: %s %.0f, want ebpf %.0f", c.Source, c.Estimate, truth)
	}
	// Median of 5 µs + Exp(30 µs) is 5 + 30·ln 2 = 25.8 µs; in-order reading
	// adds a little.
	if c.KernelToUser < 24*time.Microsecond || c.KernelToUser > 35*time.Microsecond {
		t.Errorf("kernel to user %v", c.KernelToUser)
	}
	u, err := EstimateCapacity(trains, CapacityOptions{Source: dump.SourceUser})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ebpf %.0f ± %.0f, user %.0f ± %.0f (%s), truth %.0f", c.PrelimMean, c.PrelimStd, u.PrelimMean, u.PrelimStd, u.Verdict, truth)
	if u.Source != dump.SourceUser || u.PrelimStd < 5*c.PrelimStd || u.NoiseFloor < 10*c.NoiseFloor {
		t.Errorf("forced user: %s ± %.0f σ_t %v, want user stamps, noisier than eBPF's ± %.0f σ_t %v",
			u.Source, u.PrelimStd, u.NoiseFloor, c.PrelimStd, c.NoiseFloor)
	}

	// eBPF lost an event: sw, which stamped everything, wins over it.
	for i := range trains {
		for j := range trains[i].Rx {
			trains[i].Rx[j][dump.SourceSW] = trains[i].Rx[j][dump.SourceEBPF] + 1_700_000_000_000_000_000
		}
	}
	trains[12].Rx[3][dump.SourceEBPF] = 0
	if c, err := EstimateCapacity(trains, capAuto); err != nil || c.Source != dump.SourceSW {
		t.Errorf("ebpf incomplete: picked %s, %v; want sw", c.Source, err)
	}
	// Nobody stamped everything: the one that stamped most wins.
	trains[13].Rx[3][dump.SourceSW] = 0
	trains[14].Rx[3][dump.SourceSW] = 0
	if c, err := EstimateCapacity(trains, capAuto); err != nil || c.Source != dump.SourceEBPF || c.Discarded["lossy"] != 1 {
		t.Errorf("none complete: picked %s (%v), %v; want ebpf with one lossy train", c.Source, c.Discarded, err)
	}
}

func TestCapacityDeterministic(t *testing.T) {
	trains := newGen(bottleneck{rate: 50e6, overhead: 38, noise: 2000}, 6).session(session{
		calib: 10, calibN: 20, prelim: 20, prelimN: 5, one: 20, oneN: 2, two: 10, twoN: 40,
		crossPrelim: 0.3, crossOne: 0.3, crossTwo: 0.05, crossBytes: 800})
	a, err := EstimateCapacity(trains, capAuto)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EstimateCapacity(trains, capAuto)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs differ:\n%+v\n%+v", a, b)
	}
	// Order of the trains only changes float sums in their last bits.
	rev := make([]dump.Train, len(trains))
	for i := range trains {
		rev[len(trains)-1-i] = trains[i]
	}
	r, _ := EstimateCapacity(rev, capAuto)
	if !within(r.Estimate, a.Estimate, 1e-9) || r.Verdict != a.Verdict || len(r.Modes) != len(a.Modes) ||
		r.Chosen != a.Chosen || !within(r.Overhead, a.Overhead, 1e-9) {
		t.Errorf("reversed order: %+v\nwant %+v", r, a)
	}
}
