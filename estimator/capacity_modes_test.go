package estimator

import (
	"slices"
	"testing"
)

// TestFindModes pins the bell growth: the densest window [10, 11) holds 10
// samples; [9, 10) holds 3 and [11, 12) 8, both falling, so the bell takes
// them; [12, 13) holds 9 > 1.1·8, so it stops there and starts the next mode.
func TestFindModes(t *testing.T) {
	var x []float64
	for i := range 10 {
		x = append(x, 10+float64(i)/16)
	}
	for i := range 8 {
		x = append(x, 11.25+float64(i)/16)
	}
	for i := range 9 {
		x = append(x, 12.5+float64(i)/32)
	}
	x = append(x, 9, 9.125, 9.25, 13.75, 13.875)
	slices.Sort(x)
	modes := findModes(x, 1)
	if len(modes) != 2 {
		t.Fatalf("modes %+v", modes)
	}
	want := map[float64]Mode{
		// Values are the bells' medians: the 11th of 21 and the 6th of 11.
		10.4375:  {Value: 10.4375, Low: 9, High: 12, Count: 21},
		12.65625: {Value: 12.65625, Low: 12.5, High: 14.5, Count: 11},
	}
	for _, m := range modes {
		w, ok := want[m.Value]
		if !ok || m.Low != w.Low || m.High != w.High || m.Count != w.Count {
			t.Errorf("mode %+v, want %+v", m, w)
		}
		if !within(m.Merit, m.Kurtosis*float64(m.Count)/32, 1e-12) || m.Kurtosis < 1 {
			t.Errorf("merit %+v", m)
		}
	}
	if modes[0].Merit < modes[1].Merit {
		t.Errorf("not by merit: %+v", modes)
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
