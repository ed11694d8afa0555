package estimator

import (
	"testing"
)

// bins puts count[i] samples evenly into [from+i, from+i+1).
func bins(from float64, count ...int) []float64 {
	var x []float64
	for i, c := range count {
		for j := range c {
			x = append(x, from+float64(i)+float64(j)/float64(c))
		}
	}
	return x
}

// TestFindModes pins the bell growth: the densest window [10, 11) holds 100
// samples; [9, 10) holds 30 and [11, 12) 60, both falling, so the bell takes
// them; [12, 13) holds 90, more than 1.1·60 and by more than counting noise
// (30 > 2·√150), so it stops there and starts the next mode. A rise that
// counting noise explains (68 after 60) does not split a bell.
func TestFindModes(t *testing.T) {
	x := bins(9, 30, 100, 60, 90, 20)
	modes := findModes(x, 1)
	if len(modes) != 2 {
		t.Fatalf("modes %+v", modes)
	}
	want := map[float64]Mode{
		// Values are the bells' medians: the middle of 190 and of 110.
		10.9: {Low: 9, High: 12, Count: 190},
		12.6: {Low: 12, High: 14, Count: 110},
	}
	for _, m := range modes {
		var w Mode
		for v, wm := range want {
			if within(m.Value, v, 0.06) {
				w = wm
			}
		}
		if m.Low != w.Low || m.High != w.High || m.Count != w.Count {
			t.Errorf("mode %+v, want %+v", m, w)
		}
		if !within(m.Merit, m.Kurtosis*float64(m.Count)/float64(len(x)), 1e-12) || m.Kurtosis < 1 {
			t.Errorf("merit %+v", m)
		}
	}
	if modes[0].Merit < modes[1].Merit {
		t.Errorf("not by merit: %+v", modes)
	}
	if m := findModes(bins(9, 30, 100, 60, 68, 20), 1); len(m) != 1 || m[0].Count != 278 {
		t.Errorf("a rise within counting noise split the bell: %+v", m)
	}

	// A window needs 3 samples (2 % of few): two samples are no mode.
	if m := findModes([]float64{1, 1.1, 5, 9}, 1); len(m) != 0 {
		t.Errorf("modes of noise: %+v", m)
	}
	// Samples that agree exactly have the capped kurtosis.
	if m := findModes([]float64{7, 7, 7, 7}, 1); len(m) != 1 || m[0].Kurtosis != 1000 || m[0].Merit != 1000 {
		t.Errorf("identical samples: %+v", m)
	}
}

// ADR is the interquartile mean of the tails: one tail that cross traffic
// compressed to 75.7 Mbit/s among nine near 28 (a run on the narrow-≠-tight
// path) moved the 10 %-trimmed mean, which trims nothing of nine, to 33.6
// and turned the capacity mode at 28.4 into "lower bound only".
func TestSustainedIgnoresOneTail(t *testing.T) {
	tails := []float64{22.1, 23.4, 26.5, 29.6, 29.6, 30.6, 32.5, 32.5, 75.7}
	adr, low := sustained(tails)
	if adr < 28.5 || adr > 31 {
		t.Errorf("ADR %.2f, want the middle's 29–31", adr)
	}
	if low > adr*(1-capADRSlack) || low < 25 {
		t.Errorf("ADR's lower end %.2f for ADR %.2f: want at least 3 %% under it, from the middle's spread", low, adr)
	}
}
