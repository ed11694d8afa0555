package estimator

import (
	"testing"

	"github.com/probe-dev/probe/collector/dump"
)

// BenchmarkEstimateCapacity1M: a million Phase I samples (250,000 trains of 5
// packets, 750,000 pairs) and the other phases' trains.
func BenchmarkEstimateCapacity1M(b *testing.B) {
	g := newGen(bottleneck{rate: 100e6, overhead: 14, noise: 500}, 7)
	trains := g.session(session{calib: 20, calibN: 20, prelim: 100, prelimN: 10, two: 100, twoN: 50})
	sizes := phaseOneSizes()
	for i := range 1_000_000 {
		n := 2
		if i%4 == 0 {
			n = 5
		}
		trains = append(trains, g.train(dump.PhaseOne, sizes[i%len(sizes)], n, g.crossIn(0.2, n, 1514)))
	}
	var c Capacity
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if c, err = EstimateCapacity(trains, capAuto); err != nil {
			b.Fatal(err)
		}
	}
	if c.Samples != 1_000_000 || !within(c.Estimate, ipRate(100e6, 14), 0.01) {
		b.Errorf("samples %d estimate %.0f %s", c.Samples, c.Estimate, c.Verdict)
	}
}
