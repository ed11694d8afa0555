package estimator

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/probe-dev/probe/collector/dump"
)

// Why a train is left out, in the order the checks run.
const (
	reasonMalformed = iota
	reasonShort
	reasonLossy
	reasonReordered
	reasonBatches
	reasonInputGap
	reasonNoise
	numReasons

	capAccepted = -1
)

var reasonNames = [numReasons]string{"malformed", "too short", "lossy", "reordered", "too few batches",
	"input gap", "under noise floor"}

const numPhases = int(dump.PhaseTwo) + 1

// samplePhase reports whether trains of the phase give rate samples;
// calibration trains only give the noise floor.
func samplePhase(p dump.Phase) bool {
	return p == dump.PhasePrelim || p == dump.PhaseOne || p == dump.PhaseTwo
}

// capTrain is what one train gave.
type capTrain struct {
	phase   dump.Phase
	size, n int
	reason  int     // capAccepted or a reason
	d       float64 // ns per packet behind the sample; Phase II: over the tail
	head    float64 // preliminary and Phase II: the first gap, ns; -1 if unknown
	// With a head: the gaps from max(3, n/2) on, and how many of them are
	// under capShaperFront of d (compressed by cross traffic or batching,
	// which a shaper's head must exceed).
	tailGaps, tailShort int
}

// capMeasure turns trains into per-train dispersions.
type capMeasure struct {
	trains   []dump.Train
	src      dump.Source
	fits     []capTrain // one per train
	coalesce bool
	sigma    float64   // noise floor σ_t, ns
	gaps     []float64 // scratch
	dev      []float64 // scratch
	ends     []int     // scratch
}

func (m *capMeasure) run() {
	m.fits = make([]capTrain, len(m.trains))
	for i := range m.trains {
		m.fits[i] = m.hygiene(&m.trains[i])
	}
	m.coalesce = m.coalesced()
	m.sigma = m.noiseFloor()
	for i := range m.fits {
		if f := &m.fits[i]; f.reason == capAccepted && samplePhase(f.phase) {
			m.measure(f, &m.trains[i])
		}
	}
}

func (m *capMeasure) at(t *dump.Train, i int) int64 { return t.Rx[i][m.src] }

// gap is the receive gap before packet i.
func (m *capMeasure) gap(t *dump.Train, i int) int64 { return m.at(t, i) - m.at(t, i-1) }

func (m *capMeasure) meanGap(t *dump.Train) float64 {
	n := len(t.Rx)
	return float64(m.at(t, n-1)-m.at(t, 0)) / float64(n-1)
}

// medianGap is the median of the gaps before packets lo..hi-1.
func (m *capMeasure) medianGap(t *dump.Train, lo, hi int) float64 {
	m.gaps = m.gaps[:0]
	for i := lo; i < hi; i++ {
		m.gaps = append(m.gaps, float64(m.gap(t, i)))
	}
	slices.Sort(m.gaps)
	return medianSorted(m.gaps)
}

// hygiene runs the checks that need nothing but the train itself.
func (m *capMeasure) hygiene(t *dump.Train) capTrain {
	f := capTrain{phase: t.Phase, size: t.Size, n: len(t.Rx), reason: capAccepted, head: -1}
	need := 2
	if t.Phase == dump.PhaseTwo {
		need = 4 // a head and a tail
	}
	switch {
	case t.Size <= 0:
		f.reason = reasonMalformed
	case f.n < need:
		f.reason = reasonShort
	case len(t.Tx) > f.n || m.lost(t):
		f.reason = reasonLossy
	case m.reordered(t):
		f.reason = reasonReordered
	}
	return f
}

func (m *capMeasure) lost(t *dump.Train) bool {
	for i := range t.Rx {
		if m.at(t, i) == 0 {
			return true
		}
	}
	return false
}

func (m *capMeasure) reordered(t *dump.Train) bool {
	for i := 1; i < len(t.Rx); i++ {
		if m.gap(t, i) < 0 {
			return true
		}
	}
	return false
}

// coalesced reports whether the receiver seems to deliver packets in batches:
// then most gaps are far under their train's mean gap. Each gap is held
// against its own train's mean, not the median of all gaps, which is itself
// near zero once batches hold three packets or more. Only the second half of
// each train counts: a token bucket's burst also leaves small gaps, but at the
// head.
func (m *capMeasure) coalesced() bool {
	for _, ph := range []dump.Phase{dump.PhasePrelim, dump.PhaseOne} {
		small, total, trains, asSent := 0, 0, 0, 0
		for i := range m.fits {
			f := &m.fits[i]
			if f.phase != ph || f.reason != capAccepted || f.n < 3 {
				continue
			}
			trains++
			t := &m.trains[i]
			if tx, ok := senderSpan(t); ok && float64(tx) > capInputGap*float64(m.at(t, f.n-1)-m.at(t, 0)) {
				// It arrived as the sender spaced it (a bucket it fits
				// in, a path faster than the sender): its small gaps are
				// the sender's, not the receiver's batches.
				asSent++
				continue
			}
			thr := capSmallGap * m.meanGap(t)
			for j := max(1, f.n/2); j < f.n; j++ {
				if float64(m.gap(t, j)) < thr {
					small++
				}
				total++
			}
		}
		// When most of the phase's trains arrived as sent, the rest are
		// the few the receiver happened to spread (behind a 15000 B
		// bucket: 18 of 320 Phase I trains, their gaps the receiver's
		// jitter), no evidence of batches.
		if total > 0 && 2*asSent <= trains {
			return float64(small) > capCoalesced*float64(total)
		}
	}
	return false
}

// batchEnds finds the first batch end at or after lo and the last at or
// before hi. Only the last packet of a batch is stamped close to its arrival;
// the train's own last packet ends a batch that may have waited for a timer,
// so it never counts.
func (m *capMeasure) batchEnds(t *dump.Train, lo, hi int) (a, z int, ok bool) {
	n := len(t.Rx)
	thr := capSmallGap * m.meanGap(t)
	a, z = -1, -1
	for j := lo; j <= hi && j < n-1; j++ {
		if float64(m.gap(t, j+1)) >= thr {
			if a < 0 {
				a = j
			}
			z = j
		}
	}
	return a, z, a >= 0 && z > a
}

// noiseFloor is σ_t, the noise of one gap: 1.4826 × the median difference
// between successive gaps in the quietest calibration train (preliminary
// trains join when there are under capNoiseTrains), over √3 since each
// difference holds three stamps' noise. Successive differences, not distances from a median, because a
// shaper's burst or a cross-traffic burst shifts a train's gap level once,
// which only one difference sees.
func (m *capMeasure) noiseFloor() float64 {
	var per []float64
	for _, ph := range []dump.Phase{dump.PhaseCalibrate, dump.PhasePrelim, dump.PhaseOne} {
		for i := range m.fits {
			f := &m.fits[i]
			if f.phase != ph || f.reason != capAccepted || f.n < 3 {
				continue
			}
			m.dev = m.deviations(&m.trains[i], m.dev[:0])
			if len(m.dev) == 0 {
				continue
			}
			slices.Sort(m.dev)
			per = append(per, medianSorted(m.dev))
		}
		if len(per) >= capNoiseTrains || len(per) > 0 && ph == dump.PhaseOne {
			break
		}
	}
	if len(per) == 0 {
		return 0
	}
	// Cross traffic adds to the gaps' spread, never takes away: the
	// quietest train shows the timestamps' own noise. Not the median over
	// all gaps, which under cross traffic reads its jitter (hundreds of µs)
	// and would discard most trains.
	sigma := 1.4826 * slices.Min(per)
	if !m.coalesce {
		sigma /= math.Sqrt(3)
	}
	return sigma
}

// deviations appends the differences between successive gaps of t. Under
// coalescing the unit is the span between batch ends instead, whose packet
// counts differ: each is held against its count times the train's median span
// per packet.
func (m *capMeasure) deviations(t *dump.Train, dev []float64) []float64 {
	n := len(t.Rx)
	if !m.coalesce {
		for j := 2; j < n; j++ {
			dev = append(dev, math.Abs(float64(m.gap(t, j)-m.gap(t, j-1))))
		}
		return dev
	}
	thr := capSmallGap * m.meanGap(t)
	m.ends = m.ends[:0]
	for j := 0; j < n-1; j++ {
		if float64(m.gap(t, j+1)) >= thr {
			m.ends = append(m.ends, j)
		}
	}
	if len(m.ends) < 3 {
		return dev // one span deviates from nothing
	}
	m.gaps = m.gaps[:0]
	for k := 1; k < len(m.ends); k++ {
		m.gaps = append(m.gaps, float64(m.at(t, m.ends[k])-m.at(t, m.ends[k-1]))/float64(m.ends[k]-m.ends[k-1]))
	}
	slices.Sort(m.gaps)
	med := medianSorted(m.gaps)
	for k := 1; k < len(m.ends); k++ {
		span := float64(m.at(t, m.ends[k]) - m.at(t, m.ends[k-1]))
		dev = append(dev, math.Abs(span-float64(m.ends[k]-m.ends[k-1])*med))
	}
	return dev
}

// measure gives an accepted train its dispersion, or a reason to leave it out.
func (m *capMeasure) measure(f *capTrain, t *dump.Train) {
	n := f.n
	lo := 0
	if f.phase == dump.PhaseTwo {
		lo = n / 2 // a large bucket passes the head at line rate
	}
	var span float64 // the dispersion held against the noise floor, ns
	if m.coalesce {
		a, z, ok := m.batchEnds(t, lo, n-1)
		if !ok {
			f.reason = reasonBatches
			return
		}
		span = float64(m.at(t, z) - m.at(t, a))
		f.d = span / float64(z-a)
	} else {
		span = float64(m.at(t, n-1) - m.at(t, lo))
		switch {
		case f.phase == dump.PhaseTwo:
			f.d = span / float64(n-1-lo)
		case n == 2:
			f.d = span
		case n == 3:
			f.d = m.medianGap(t, 1, n)
		default:
			// The mean gap over the train's second half: from packet
			// max(1, n/2-1) to the last. A shaper's bucket shortens the
			// leading gaps of every train (the first for full-size packets,
			// up to three for small ones behind a one-frame bucket), so they
			// are left out. A mean over a span, not a median of gaps: when
			// the narrow link is followed by a loaded faster link, cross
			// traffic there compresses and stretches single gaps, and the
			// median of such gaps runs high (they bunch at the faster
			// link's spacing), while the span between two packets only
			// moves by the difference of their two waits (docs/capacity.md).
			a := max(1, n/2-1)
			f.d = float64(m.at(t, n-1)-m.at(t, a)) / float64(n-1-a)
		}
	}
	if tx, ok := senderSpan(t); ok && float64(tx) > capInputGap*float64(m.at(t, n-1)-m.at(t, 0)) {
		f.reason = reasonInputGap
		return
	}
	if span <= capNoiseK*m.sigma || f.d <= 0 {
		f.reason = reasonNoise
		return
	}
	if f.phase != dump.PhaseTwo && (f.phase != dump.PhasePrelim || n < 4) {
		return
	}
	if m.coalesce {
		// Under coalescing the head is the first span between batch ends.
		if a, z, ok := m.batchEnds(t, 0, max(1, (n-1)/4)); ok {
			f.head = float64(m.at(t, z)-m.at(t, a)) / float64(z-a)
		}
		return
	}
	// The head is the first gap: the pair at the front of the train. A
	// shaper's bucket lets it through unspread, while a one-frame tbf bucket
	// shortens it by only the bucket's slack, ~6 % for full-size packets. It
	// says so only when the sender let the pair go close together: on a
	// busy host its first gap can be hundreds of µs, which refills a
	// one-frame bucket too.
	if len(t.Tx) == n && t.Tx[0].Has(dump.SourceEBPF) && t.Tx[1].Has(dump.SourceEBPF) {
		if tx := float64(t.Tx[1][dump.SourceEBPF] - t.Tx[0][dump.SourceEBPF]); tx >= capShaperSender*f.d {
			return
		}
	}
	f.head = float64(m.at(t, 1) - m.at(t, 0))
	for j := max(3, n/2); j < n; j++ {
		f.tailGaps++
		if float64(m.gap(t, j)) < capShaperFront*f.d {
			f.tailShort++
		}
	}
}

// senderOrder holds the sources that show the input gap. eBPF's TC egress
// runs before the sender's qdisc, so it shows when the sender let the packets
// go; software and hardware transmit stamps are taken after the qdisc (in the
// driver, at the NIC), so when the shaper is the sender's own qdisc they show
// the shaper's spacing, and every train would look slow to leave. User time
// is one reading per sendmmsg. Without eBPF the input gap goes unchecked.
var senderOrder = [...]dump.Source{dump.SourceEBPF}

// senderSpan is the time the sender took from the first packet to the last,
// in the best source that stamped both.
func senderSpan(t *dump.Train) (int64, bool) {
	n := len(t.Rx)
	if len(t.Tx) != n {
		return 0, false
	}
	for _, s := range senderOrder {
		if t.Tx[0].Has(s) && t.Tx[n-1].Has(s) {
			return t.Tx[n-1][s] - t.Tx[0][s], true
		}
	}
	return 0, false
}

// overhead fits the link-layer bytes per packet from Phase I: the bottleneck
// serialises S+o bytes, so the per-packet dispersion grows as a + c·S and
// o = a/c. Cross traffic only stretches gaps, so a size's median is pulled up
// by as many samples as it met; the centre of the densest half of the size's
// samples is not. The line is Theil–Sen's (median slope over all pairs of
// sizes, median intercept): a size where cross traffic met most trains would
// tilt a least-squares line.
func (m *capMeasure) overhead() (o, se float64) {
	// One backing array carved by size: no slice grows per sample.
	n := map[int]int{}
	for i := range m.fits {
		if f := &m.fits[i]; f.phase == dump.PhaseOne && f.reason == capAccepted {
			n[f.size]++
		}
	}
	sizes := slices.Sorted(maps.Keys(n))
	if len(sizes) < 3 || sizes[len(sizes)-1]-sizes[0] < capOverheadSpan {
		return 0, 0
	}
	all := make([]float64, 0, len(m.fits))
	bySize := make(map[int][]float64, len(sizes))
	for _, s := range sizes {
		bySize[s] = all[len(all) : len(all) : len(all)+n[s]]
		all = all[:len(all)+n[s]]
	}
	for i := range m.fits {
		if f := &m.fits[i]; f.phase == dump.PhaseOne && f.reason == capAccepted {
			bySize[f.size] = append(bySize[f.size], f.d)
		}
	}
	ys := make([]float64, len(sizes))
	for i, s := range sizes {
		d := bySize[s]
		sortPositive(d)
		ys[i] = densestHalf(d)
	}
	slopes := make([]float64, 0, len(sizes)*(len(sizes)-1)/2)
	for i := range sizes {
		for j := i + 1; j < len(sizes); j++ {
			slopes = append(slopes, (ys[j]-ys[i])/float64(sizes[j]-sizes[i]))
		}
	}
	slices.Sort(slopes)
	c := medianSorted(slopes)
	if !(c > 0) {
		return 0, 0
	}
	for i, s := range sizes {
		ys[i] = (ys[i] - c*float64(s)) / c
	}
	slices.Sort(ys)
	o = medianSorted(ys)
	// Each size gives its own overhead; their spread σ says how well the
	// line is known. The overhead is the line's intercept, extrapolated from
	// 600–1500 B down to 0, so its error is a line fit's intercept error,
	// σ·√(1/k + S̄²/Sxx) (×1.2533 for robust estimates), four times σ/√k
	// for these sizes: σ/√k alone passed fits of 4–24 B for 14 B.
	var mean, sxx float64
	for i, s := range sizes {
		d := float64(s) - mean
		mean += d / float64(i+1)
		sxx += d * (float64(s) - mean)
	}
	for i := range ys {
		ys[i] = math.Abs(ys[i] - o)
	}
	slices.Sort(ys)
	k := float64(len(ys))
	se = 1.2533 * 1.4826 * medianSorted(ys) * math.Sqrt(1/k+mean*mean/sxx)
	if !(o >= 0 && o <= capMaxOverhead) || se > capOverheadMaxSE {
		// No overhead, rather than a poorly known one: with o = 0 a
		// sample of size S is off by o(1/S − 1/S0), 1.4 % at 600 B for
		// tbf's 14 B, where a wrong fit (91 B was seen under cross
		// traffic) moved the estimate by 14 %.
		return 0, se
	}
	return o, se
}

// capSource picks the receive timestamp source (see CapacityOptions.Source).
func capSource(trains []dump.Train, want dump.Source) (dump.Source, error) {
	if want != AutoSource {
		if want > AutoSource {
			return want, fmt.Errorf("unknown timestamp source %d", want)
		}
		for i := range trains {
			for j := range trains[i].Rx {
				if trains[i].Rx[j].Has(want) {
					return want, nil
				}
			}
		}
		return want, fmt.Errorf("no train has %s receive timestamps", want)
	}
	count := func(prelimOnly bool) (recv int, has [dump.NumSources]int) {
		for i := range trains {
			t := &trains[i]
			if prelimOnly && t.Phase != dump.PhasePrelim {
				continue
			}
			for j := range t.Rx {
				if t.Rx[j] == (dump.Stamps{}) {
					continue
				}
				recv++
				for s := range dump.NumSources {
					if t.Rx[j].Has(s) {
						has[s]++
					}
				}
			}
		}
		return recv, has
	}
	recv, has := count(true)
	if recv == 0 {
		recv, has = count(false)
	}
	if recv == 0 {
		return dump.Preference[0], fmt.Errorf("no packet of %d trains was received", len(trains))
	}
	// User space last: a kernel source that missed a few events costs those
	// trains, user-space stamps cost the accuracy of all of them.
	best := dump.SourceUser
	for _, s := range dump.Preference {
		if s == dump.SourceUser {
			break
		}
		if has[s] == recv {
			return s, nil
		}
		if has[s] > 0 && (best == dump.SourceUser || has[s] > has[best]) {
			best = s
		}
	}
	return best, nil
}

// senderLimited reports whether the sample trains were left out for their
// input gap, most of them, and the median rate they arrived at: when the
// path is faster than the sender, trains arrive as spread as they left.
func (m *capMeasure) senderLimited() (float64, bool) {
	var rates []float64
	seen := 0
	for i := range m.fits {
		f := &m.fits[i]
		if !samplePhase(f.phase) {
			continue
		}
		seen++
		if f.reason != reasonInputGap {
			continue
		}
		t := &m.trains[i]
		if span := m.at(t, f.n-1) - m.at(t, 0); span > 0 {
			rates = append(rates, 8e9*float64(f.size)*float64(f.n-1)/float64(span))
		}
	}
	if len(rates) < capMinPrelim || 2*len(rates) < seen {
		return 0, false
	}
	return medianOf(rates), true
}

// capCleanHead is how close (in gaps) to the run's smallest first-packet
// delay a long train's first packet must be for its whole-train rate to be a
// lower bound.
const capCleanHead = 0.5

// capHeadSlack is how much of a gap a one-frame bucket's slack takes from the
// first gap at most (~6 % at full size behind tbf's 1600 B bucket).
const capHeadSlack = 0.1

// cleanTrainRate is a lower bound on capacity for the "lower bound only"
// verdict, 0 when no train gives one: the median whole-train rate of the
// long trains whose first packet waited nowhere after the narrow link. A
// rate read at the receiver exceeds capacity only when the earlier packet
// waited longer after the narrow link than the later one (cross traffic on a
// faster link compresses the train as its queue drains: five long trains
// once read 64.5 Mbit/s on a 30 Mbit/s path). The first packet queues behind
// none of its train, so its one-way delay (receive minus send stamp; the
// clocks' offset cancels) is the path's base delay plus what it waited; the
// smallest over the run's trains is the base. A train whose first packet is
// within half a gap of it can only have been stretched after it.
func (m *capMeasure) cleanTrainRate(o, s0 float64) float64 {
	if m.coalesce {
		return 0
	}
	owd := func(t *dump.Train) (int64, bool) {
		if len(t.Tx) == 0 || !t.Tx[0].Has(dump.SourceEBPF) {
			return 0, false
		}
		return m.at(t, 0) - t.Tx[0][dump.SourceEBPF], true
	}
	base, have := int64(math.MaxInt64), false
	for i := range m.fits {
		if f := &m.fits[i]; f.reason == capAccepted && samplePhase(f.phase) {
			if d, ok := owd(&m.trains[i]); ok {
				base, have = min(base, d), true
			}
		}
	}
	if !have {
		return 0
	}
	var rates []float64
	for i := range m.fits {
		f := &m.fits[i]
		if f.reason != capAccepted || f.phase != dump.PhaseTwo {
			continue
		}
		t := &m.trains[i]
		d, ok := owd(t)
		if !ok || float64(d-base) > capCleanHead*f.d {
			continue
		}
		if span := float64(m.at(t, f.n-1) - m.at(t, 0)); span > 0 {
			// The first gap counts capHeadSlack longer: a one-frame
			// bucket lets the second packet go early by its slack.
			gap := (span + capHeadSlack*f.d) / float64(f.n-1)
			rates = append(rates, 8e9*(float64(f.size)+o)/gap*s0/(s0+o))
		}
	}
	if len(rates) == 0 {
		return 0
	}
	return medianOf(rates)
}
