package report

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/estimator"
)

func sampleCapacity() estimator.Capacity {
	return estimator.Capacity{
		Estimate: 19.815e6, Lower: 19.7e6, Upper: 19.9e6, Sustained: 19.8e6, BinWidth: 0.1e6,
		Verdict: estimator.VerdictEasyPath, PrelimMean: 19.82e6, PrelimStd: 0.05e6, Overhead: 14,
		NoiseFloor: 2500 * time.Nanosecond, MinDispersion: 605600 * time.Nanosecond, KernelToUser: 14 * time.Microsecond,
		Source: dump.SourceEBPF, Trains: 45, Chosen: -1,
	}
}

func TestCapacityFormatTokens(t *testing.T) {
	info := CapacityInfo{Duration: 3500 * time.Millisecond}
	var b bytes.Buffer
	err := CapacityFormat(&b, `%be %bl %bu %bw %bs %bp|%pm %ps|%am %AM|%pd %ul %nf|%ts %lo %du %nt 100%%\n`, info, sampleCapacity())
	if err != nil {
		t.Fatal(err)
	}
	want := "19.82 19.70 19.90 0.10 19.80 -|19.82 0.05|" +
		string(rune('0'+int(estimator.VerdictEasyPath))) + " easy path|605.60 14.00 2.50|ebpf 14.00 3.50 45 100%\n"
	if b.String() != want {
		t.Fatalf("got  %q\nwant %q", b.String(), want)
	}
	for _, bad := range []string{"%zz", "%b"} {
		if err := CapacityFormat(&b, bad, info, sampleCapacity()); err == nil {
			t.Errorf("format %q: no error", bad)
		}
	}
}

func TestCapacityTextSaysTheLayer(t *testing.T) {
	var b bytes.Buffer
	CapacityText(&b, CapacityInfo{From: "10.77.0.1", To: "10.77.0.2", Path: "agent -> client", Size: 1500}, sampleCapacity())
	for _, want := range []string{"at the IP layer", "19.82 Mbit/s", "easy path", "ebpf", "14.0 B per packet"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// The histogram's bins are the estimator's, aligned to their multiples,
// unless the samples span fewer than ten of them: then a tenth of the span,
// so that an easy path does not draw as one block (samples all at one rate
// keep the estimator's), and never more than maxPlotBins bins, whatever
// width was asked for. Every sample lands in a bin.
func TestCapacityPlotBins(t *testing.T) {
	mb := func(v ...float64) []float64 {
		for i := range v {
			v[i] *= 1e6
		}
		return v
	}
	for _, c := range []struct {
		name      string
		width     float64 // the estimator's, Mbit/s
		samples   []float64
		wantWidth float64
	}{
		{"spread over many bins", 2, mb(10, 13, 20, 35, 41), 2},
		{"all in one bin", 4.4, mb(36.0, 36.2, 36.5, 37.0), 0.1},
		{"one rate", 4.4, mb(36, 36, 36), 4.4},
		{"a width too fine to draw", 1e-9, mb(10, 500, 2010), 1},
	} {
		g := gridFor(c.width, c.samples)
		if math.Abs(g.width-c.wantWidth) > 1e-9 || g.n > maxPlotBins+1 {
			t.Errorf("%s: %d bins of %g Mbit/s, want %g", c.name, g.n, g.width, c.wantWidth)
		}
		if r := math.Remainder(g.start, g.width); math.Abs(r) > 1e-9 {
			t.Errorf("%s: first bin at %g, not a multiple of %g", c.name, g.start, g.width)
		}
		var n float64
		for _, b := range g.count(c.samples) {
			n += b.Weight
		}
		if n != float64(len(c.samples)) {
			t.Errorf("%s: %g samples in the bins, want %d", c.name, n, len(c.samples))
		}
	}
}

// Trains that give an estimate in automatic bins give none in bins far
// finer than their spread, and the error says the bins are why, not that
// the run was cut short.
func TestCapacityTooFineBins(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var trains []dump.Train
	at := int64(1e9)
	for i := range 3000 {
		phase, size, n := dump.PhaseOne, 600+900*(i%40)/39, 2
		if i < 400 {
			phase, size, n = dump.PhasePrelim, 1500, 4+i%7
		}
		tr := dump.Train{ID: uint32(i + 1), Phase: phase, Size: size, Tx: make([]dump.Stamps, n), Rx: make([]dump.Stamps, n)}
		for k := range n {
			at += int64(float64(8*(size+14))/100e6*1e9) + int64(rng.NormFloat64()*200) // 100 Mbit/s
			tr.Rx[k][dump.SourceEBPF] = at
		}
		at += 1e6
		trains = append(trains, tr)
	}
	if est, err := EstimateCapacity(trains, estimator.AutoSource, 0); err != nil || math.Abs(est.Estimate-100e6) > 5e6 {
		t.Fatalf("automatic bins: %.2f Mbit/s, %v; want about 100", est.Estimate/1e6, err)
	}
	_, err := EstimateCapacity(trains, estimator.AutoSource, 1e-9)
	if err == nil || !strings.Contains(err.Error(), "bins of 1e-09 Mbit/s") {
		t.Fatalf("bins of 1e-9 Mbit/s: %v; want an error that names the bins", err)
	}
}
