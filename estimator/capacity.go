package estimator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// CapacityOptions tunes EstimateCapacity.
type CapacityOptions struct {
	// Source is the receive timestamp source to use. Note that the zero value
	// forces user-space stamps. AutoSource takes the best kernel source
	// (dump.Preference order) that stamped every received packet of the
	// preliminary trains, else the kernel source that stamped the most, and user
	// space only when no kernel source stamped any.
	Source dump.Source
	// BinWidth of the histogram in bit/s; 0 derives it from the preliminary
	// samples.
	BinWidth float64
}

// Verdict says what kind of path the trains showed and how to read Estimate.
// When several apply, the first of shaper, lower bound, coalescing, easy path
// wins: it changes most what Estimate means.
type Verdict uint8

const (
	VerdictNone         Verdict = iota // no mode yet and no Phase II: Estimate is 0
	VerdictEasyPath                    // preliminary samples agree within 5 %
	VerdictCapacityMode                // a Phase I mode at or above ADR
	VerdictLowerBound                  // no mode at or above ADR: Estimate is ADR, Upper unknown
	VerdictCoalescing                  // receiver delivers packets in batches
	VerdictShaper                      // short trains pass faster than the path sustains
)

var verdictNames = [...]string{"no estimate", "easy path", "capacity mode", "lower bound only",
	"interrupt coalescing suspected", "shaper suspected"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Mode is one bell of the histogram of dispersion samples.
type Mode struct {
	Value     float64 // bit/s: median of the bell's samples
	Low, High float64 // bit/s: the bell's edges
	Count     int     // samples in the bell
	Kurtosis  float64 // m4/m2² of the bell's samples, 1000 when they all agree
	Merit     float64 // Kurtosis × Count / samples
}

// Capacity is the estimate of a path's bottleneck capacity. Rates are at the
// IP layer for packets of the preliminary trains' size.
type Capacity struct {
	Estimate, Lower, Upper float64 // bit/s; Upper 0 when unknown
	Sustained              float64 // bit/s: ADR, 10 %-trimmed mean of Phase II tail rates; 0 without Phase II
	Peak                   float64 // bit/s: short-train rate when a shaper is suspected, else 0
	BinWidth               float64 // bit/s
	Verdict                Verdict
	// SenderLimited says the path was faster than the sender: no train
	// arrived more spread than it left, and Estimate (a lower bound) is the
	// rate the trains arrived at, the sender's back-to-back rate.
	SenderLimited         bool
	Modes                 []Mode // strongest merit first
	Chosen                int    // index of the capacity mode in Modes, -1 if none
	PrelimMean, PrelimStd float64
	// Overhead is the link-layer bytes per packet the bottleneck counts
	// besides the IP packet (14 for tbf on Ethernet, 38 on the wire), 0 when
	// Phase I could not fit it.
	Overhead      float64
	NoiseFloor    time.Duration // σ_t
	MinDispersion time.Duration // smallest accepted per-packet dispersion at full size
	KernelToUser  time.Duration // median user-space minus eBPF receive time, 0 without both
	Source        dump.Source
	// Trains counts the preliminary, Phase I and Phase II trains used;
	// calibration trains only give σ_t and max-length trains are not read.
	Trains  int
	Samples int // samples in the histogram
	// Discarded counts the trains left out by reason: "lossy", "reordered",
	// "input gap", "under noise floor", "too few batches" (coalescing left
	// fewer than two batch ends), "too short", "malformed" (size 0).
	Discarded map[string]int
	// Hist holds the histogram's samples (normalised Phase I rates, or the
	// preliminary ones without Phase I) and Tails the Phase II tail rates,
	// both sorted, bit/s: for plots.
	Hist, Tails []float64
}

// Thresholds of the method; docs/capacity.md says why each is what it is.
const (
	capNoiseK    = 10   // dispersion must exceed this many σ_t
	capSmallGap  = 0.25 // a gap under this share of its train's mean gap is a batch member
	capCoalesced = 0.30 // share of small gaps that means coalescing
	capInputGap  = 0.5  // sender spread over receiver dispersion that means an input gap
	capEasyCV    = 0.05
	capTrim      = 0.10 // trimmed from each end for ranges and means
	// ω is at least this share of the samples' mean: a span of a few gaps
	// moves by the difference of two packets' waits, ±10–20 % on a loaded
	// path, and narrower bins split that one spread into spurious modes,
	// while a cross packet at the narrow link stretches a span by 25 % or
	// more, still a mode of its own (docs/capacity.md).
	capBinFloor = 0.12
	// The interval is never narrower than ± this share: the fitted overhead
	// and the shaper's timer move estimates by that much.
	capCIFloor      = 0.0025
	capOverheadSpan = 300 // bytes the Phase I sizes must span to fit an overhead
	capMaxOverhead  = 100
	// A fitted overhead is used only when the sizes agree on it this well
	// (standard error, bytes); docs/capacity.md says why the fit is weak.
	capOverheadMaxSE = 4
	// A mode whose interval reaches this far under ADR (or ADR's own 95 %
	// interval, when wider) still counts as at or above it: measured as
	// spans, long trains' tails and short trains read the same spacing, and
	// on a narrow link before a loaded one ADR can sit a little above the
	// capacity mode's centre.
	capADRSlack = 0.03
	// A shaper passes the first packets of a train faster than the rest: a
	// head (first gap) under capShaperFront of the train's typical gap in
	// capShaperShare of the trains or more, at least capShaperExcess more
	// often than the same train's tail gaps are that short. Cross traffic on
	// a faster link after the narrow one, or a receiver that batches,
	// compresses gaps wherever they are, heads and tails alike; a bucket only
	// the head. Only trains whose sender let the first pair go within
	// capShaperSender of the typical gap count: a slower sender refills the
	// bucket of any tbf, and its pair arrives as spread as it left. htb here
	// passes its first pair 0.03–0.3 of a gap apart (its bucket is about a
	// frame and a half, and it sends while its tokens are not negative).
	capShaperFront  = 0.5
	capShaperSender = 0.4
	capShaperShare  = 0.5
	capShaperExcess = 0.4
	capShaperTrains = 3
	// The interval reaches down to the sustained rate when it lies within
	// this share under the estimate.
	capSustainedNear = 0.10
	capCIz           = 1.96 // 95 % two-sided
	capCIMin         = 5    // samples needed to read a spread
	capMinPrelim     = 3    // preliminary samples needed to call a path easy
	// The noise floor is read from at least this many trains (preliminary
	// ones join the calibration trains when there are fewer).
	capNoiseTrains = 8
)

// EstimateCapacity estimates the bottleneck capacity from packet trains by
// pathrate's method (docs/capacity.md), re-derived for kernel timestamps. The result
// depends only on the trains and the options.
//
//  1. Every difference is taken between receive stamps of one source; the
//     sender's stamps only tell whether a train left back to back.
//  2. Hygiene: a train with a lost packet is "lossy", one with a stamp older
//     than its predecessor "reordered", one whose sender spread it over more
//     than half the receiver's dispersion "input gap"; none is used.
//  3. A train's sample is 8·S over its mean gap from packet max(1, n/2−1)
//     to the last: a token bucket's slack compresses the leading gaps, and
//     cross traffic after the narrow link moves a span only by the
//     difference of its two end packets' waits, while it bunches single
//     gaps. Phase II trains give the tail rate over their second half.
//  4. Noise floor σ_t: the robust σ of one gap in the quietest calibration
//     or preliminary train; a train whose dispersion is not above 10·σ_t is
//     "under noise floor".
//  5. Interrupt coalescing (over 30 % of the gaps in the trains' second
//     halves under a quarter of their train's mean gap) delivers packets in
//     batches; only the last packet of a batch keeps its arrival time, so
//     dispersion runs between batch ends.
//  6. Preliminary trains give the bin width; a coefficient of variation under
//     0.05 is an easy path, whose estimate is their median.
//  7. Phase I sizes fit the per-packet link-layer overhead o: each size's
//     typical dispersion lies on a + c·S (a robust line), o = a/c; every
//     sample is normalised to the full-size IP rate.
//  8. Modes of the normalised samples; figure of merit kurtosis × share.
//  9. The capacity mode is the best merit within 3 % under ADR (the Phase II
//     tail rate) or above; none means ADR is only a lower bound. Its median
//     is the estimate, with a 95 % interval (location). A burst at the head
//     of nearly every long train is a shaper: then the estimate is the
//     sustained rate. Trains that all left as spread as they arrived mean a
//     path faster than the sender: a lower bound at the sender's rate.
func EstimateCapacity(trains []dump.Train, opt CapacityOptions) (Capacity, error) {
	c := Capacity{Chosen: -1, Discarded: map[string]int{}}
	if opt.BinWidth < 0 || math.IsNaN(opt.BinWidth) || math.IsInf(opt.BinWidth, 0) {
		return c, fmt.Errorf("bin width %v: want a positive rate or 0", opt.BinWidth)
	}
	src, err := capSource(trains, opt.Source)
	c.Source = src
	if err != nil {
		return c, err
	}
	c.KernelToUser = kernelToUser(trains)

	m := capMeasure{trains: trains, src: src}
	m.run()
	c.NoiseFloor = time.Duration(math.Round(m.sigma))
	if err := m.tally(&c); err != nil {
		if rate, ok := m.senderLimited(); ok {
			// The path took every train as fast as this sender could
			// give it: capacity is at least the rate they arrived at.
			c.Verdict, c.SenderLimited = VerdictLowerBound, true
			c.Estimate, c.Lower = rate, rate
			return c, nil
		}
		return c, err
	}
	var overheadSE float64
	c.Overhead, overheadSE = m.overhead()
	s0 := float64(fullSize(trains))
	r := m.rates(c.Overhead, s0)
	if !math.IsInf(r.minDisp, 1) {
		c.MinDispersion = time.Duration(math.Round(r.minDisp))
	}

	easy := false
	if len(r.pre) > 0 {
		c.PrelimMean, c.PrelimStd = meanStd(r.pre)
		easy = len(r.pre) >= capMinPrelim && c.PrelimStd < capEasyCV*c.PrelimMean
	}
	hist := r.one
	if len(hist) == 0 {
		hist = r.pre
	}
	slices.Sort(r.pre)
	sortPositive(hist)
	c.Samples = len(hist)
	c.Hist = hist
	switch {
	case opt.BinWidth > 0:
		c.BinWidth = opt.BinWidth
	case len(r.pre) >= 2:
		c.BinWidth = binWidth(r.pre)
	case len(hist) > 0:
		c.BinWidth = binWidth(hist)
	}
	if c.BinWidth > 0 {
		c.Modes = findModes(hist, c.BinWidth)
	}
	var tailLo, tailHi, adrLow float64
	if len(r.tails) > 0 {
		slices.Sort(r.tails)
		c.Tails = r.tails
		kept := trimmed(r.tails)
		tailLo, tailHi = kept[0], kept[len(kept)-1]
		c.Sustained, adrLow = sustained(r.tails)
	}

	// The capacity mode: the best merit at or above ADR, as far as the
	// two can be told apart: its interval reaches ADR's.
	adr := c.Sustained
	atLeastADR := func(high float64) bool { return adr == 0 || high >= adrLow }
	for i, md := range c.Modes {
		if _, _, high := location(hist, md); atLeastADR(high) {
			c.Chosen = i
			break
		}
	}
	have := c.Chosen >= 0
	var value, low, high float64
	if have {
		value, low, high = location(hist, c.Modes[c.Chosen])
		// Phase I samples are normalised with the fitted overhead: its
		// uncertainty moves a sample of size S by (S0−S)/(S0+o) per byte,
		// on average over the sizes sent. Added in quadrature.
		if len(r.one) > 0 && r.oneSize > 0 {
			shift := capCIz * overheadSE * (s0 - r.oneSize) / (s0 + c.Overhead) / (s0 + c.Overhead) * value
			half := math.Hypot((high-low)/2, shift)
			low, high = value-half, value+half
		}
	}
	if easy && len(r.one) == 0 {
		// Without Phase I every preliminary sample is the capacity's: the
		// estimate is their median and its interval (docs/capacity.md).
		value, low, high = location(r.pre, Mode{Low: r.pre[0], High: math.Nextafter(r.pre[len(r.pre)-1], math.Inf(1))})
		have = atLeastADR(high)
		c.Chosen = -1
		for i, md := range c.Modes {
			if value >= md.Low && value < md.High {
				c.Chosen = i
				break
			}
		}
	}
	// The long trains' tails are a second reading of the same spacing: a
	// shaper's late timer or cross traffic after the narrow link moves the
	// two apart, and the capacity may lie anywhere between them, so the
	// interval spans both when they are near. Far apart, the path is
	// loaded and ADR says nothing about capacity.
	if have && adr > 0 && math.Abs(adr-value) <= capSustainedNear*value {
		low, high = min(low, adr), max(high, adr)
	}

	// A shaper lets a burst through unspread at the head of every train; a
	// one-frame bucket only shortens the first gap a little, and cross
	// traffic compresses the head of some trains, not of nearly all.
	shaper := false
	if r.fronts >= capShaperTrains {
		heads := float64(r.compressed) / float64(r.fronts)
		tails := 0.0
		if r.tailGaps > 0 {
			tails = float64(r.tailShort) / float64(r.tailGaps)
		}
		shaper = heads >= capShaperShare && heads-tails >= capShaperExcess
	}
	switch {
	case shaper:
		c.Verdict = VerdictShaper
		// The rate inside the burst: the front pairs'.
		c.Peak = medianOf(r.pairs)
		if adr == 0 {
			adr = value
		}
		c.Estimate, c.Lower, c.Upper = adr, tailLo, tailHi
		if c.Sustained == 0 {
			c.Lower, c.Upper = low, high
		}
	case !have && adr > 0:
		c.Verdict = VerdictLowerBound
		// Each reading fails high in its own way: a whole train when a
		// bucket passed its head at once, the tails' mean when cross
		// traffic drained under them. The lower of the two.
		lb := m.cleanTrainRate(c.Overhead, s0)
		if lb > 0 {
			lb = min(lb, adr)
		} else {
			lb = tailLo
			if len(c.Modes) > 0 {
				lb = min(lb, c.Modes[0].Value)
			}
		}
		c.Estimate, c.Lower, c.Upper = lb, lb, 0
	case !have:
		c.Verdict = VerdictNone
		if rate, ok := m.senderLimited(); ok {
			// The few trains the path did spread gave nothing to read;
			// the many it did not say the path is faster than the sender.
			c.Verdict, c.SenderLimited = VerdictLowerBound, true
			c.Estimate, c.Lower, c.Upper = rate, rate, 0
		}
	default:
		c.Estimate, c.Lower, c.Upper = value, low, high
		switch {
		case m.coalesce:
			c.Verdict = VerdictCoalescing
		case easy:
			c.Verdict = VerdictEasyPath
		default:
			c.Verdict = VerdictCapacityMode
		}
	}
	return c, nil
}

// sustained is ADR, the interquartile mean of the sorted long trains' tail
// rates (one or two tails that cross traffic compressed or stretched do not
// move it), and the lower end of its 95 % interval from their robust
// spread, at least capADRSlack under it.
func sustained(sorted []float64) (adr, low float64) {
	n := len(sorted)
	q := n / 4
	adr = mean(sorted[q : n-q])
	low = adr * (1 - capADRSlack)
	if n >= capCIMin {
		low = min(low, adr-tQuantile(n-1)*robustSpread(sorted, medianSorted(sorted))/math.Sqrt(float64(n)))
	}
	return adr, low
}

// robustSpread is 1.4826 × the median absolute deviation of x from centre:
// a standard deviation that a few outliers do not move.
func robustSpread(x []float64, centre float64) float64 {
	dev := make([]float64, len(x))
	for i, v := range x {
		dev[i] = math.Abs(v - centre)
	}
	slices.Sort(dev)
	return 1.4826 * medianSorted(dev)
}

// location is the estimate a mode gives: the median of the sorted samples x
// inside its bell, and a 95 % confidence interval of that median from their
// spread: ±1.96 × 1.2533 × σ/√n, σ the robust (1.4826 × MAD) spread of the
// bell's samples. It covers where the centre of the samples lies, so that
// repeated runs on one path agree within it; see docs/capacity.md for what it
// does not cover.
func location(x []float64, md Mode) (value, low, high float64) {
	lo := sort.SearchFloat64s(x, md.Low)
	hi := sort.SearchFloat64s(x, md.High)
	in := x[lo:hi]
	if len(in) == 0 {
		return md.Value, md.Low, md.High
	}
	value = medianSorted(in)
	sd := robustSpread(in, value)
	if len(in) < capCIMin {
		// Too few for a spread: their range is the interval.
		return value, in[0], in[len(in)-1]
	}
	half := max(tQuantile(len(in)-1)*1.2533*sd/math.Sqrt(float64(len(in))), capCIFloor*value)
	return value, value - half, value + half
}

// tQuantile is Student's t for a two-sided 95 % interval with df degrees of
// freedom: a spread read from a handful of samples (a quick run's 14) is
// itself uncertain, and 1.96 made intervals that met the truth in 83 % of
// simulated quick runs on a narrow-before-tight path.
func tQuantile(df int) float64 {
	table := [...]float64{0, 12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086}
	switch {
	case df < 1:
		return table[1]
	case df < len(table):
		return table[df]
	case df < 30:
		return 2.045
	case df < 60:
		return 2.009
	case df < 120:
		return 1.98
	}
	return capCIz
}

// capRates are the accepted trains' rates in bit/s, normalised to full size.
type capRates struct {
	pre, one   []float64
	tails      []float64 // Phase II tail rates
	pairs      []float64 // first-pair rates of the trains with a burst at the head
	oneSize    float64   // mean size of the Phase I samples, bytes
	fronts     int       // preliminary or Phase II trains whose head was read
	compressed int       // of those, the ones whose first gap was under capShaperFront
	tailGaps   int       // the tail gaps of those trains
	tailShort  int       // of those, the ones under capShaperFront
	minDisp    float64   // ns per packet, smallest at full size
}

// rates normalises every accepted train's dispersion to the IP rate of
// packets of size s0 over a bottleneck that counts o bytes more per packet.
func (m *capMeasure) rates(o, s0 float64) capRates {
	var n [numPhases]int
	for i := range m.fits {
		if f := &m.fits[i]; f.reason == capAccepted && samplePhase(f.phase) {
			n[f.phase]++
		}
	}
	two := n[dump.PhaseTwo]
	r := capRates{
		pre: make([]float64, 0, n[dump.PhasePrelim]), one: make([]float64, 0, n[dump.PhaseOne]),
		tails:   make([]float64, 0, two),
		minDisp: math.Inf(1),
	}
	// The heads a shaper is read from: the long trains', which outlast a
	// bucket that short trains fit in; the preliminary ones' without them.
	front := dump.PhaseTwo
	if two < capShaperTrains {
		front = dump.PhasePrelim
	}
	for i := range m.fits {
		f := &m.fits[i]
		if f.reason != capAccepted {
			continue
		}
		rate := func(d float64) float64 { return 8e9 * (float64(f.size) + o) / d * s0 / (s0 + o) }
		if f.head >= 0 && f.phase == front {
			r.fronts++
			if f.head < capShaperFront*f.d {
				r.compressed++
				if f.head > 0 {
					r.pairs = append(r.pairs, rate(f.head))
				}
			}
			r.tailGaps += f.tailGaps
			r.tailShort += f.tailShort
		}
		switch f.phase {
		case dump.PhasePrelim:
			r.pre = append(r.pre, rate(f.d))
		case dump.PhaseOne:
			r.one = append(r.one, rate(f.d))
			r.oneSize += (float64(f.size) - r.oneSize) / float64(len(r.one))
		case dump.PhaseTwo:
			r.tails = append(r.tails, rate(f.d))
			continue
		default:
			continue
		}
		if float64(f.size) == s0 {
			r.minDisp = min(r.minDisp, f.d)
		}
	}
	return r
}

// tally fills the counts of c and says why when no train is usable.
func (m *capMeasure) tally(c *Capacity) error {
	var drop [numPhases][numReasons]int
	var seen [numPhases]int
	for i := range m.fits {
		f := &m.fits[i]
		if !samplePhase(f.phase) {
			continue
		}
		seen[f.phase]++
		if f.reason == capAccepted {
			c.Trains++
			continue
		}
		drop[f.phase][f.reason]++
		c.Discarded[reasonNames[f.reason]]++
	}
	if c.Trains > 0 {
		return nil
	}
	var why []string
	for _, ph := range []dump.Phase{dump.PhasePrelim, dump.PhaseOne, dump.PhaseTwo} {
		if seen[ph] == 0 {
			continue
		}
		var r []string
		for k, n := range drop[ph] {
			if n > 0 {
				r = append(r, fmt.Sprintf("%d %s", n, reasonNames[k]))
			}
		}
		why = append(why, fmt.Sprintf("no %s trains survived: %s", ph, strings.Join(r, ", ")))
	}
	if len(why) == 0 {
		return errors.New("no preliminary, phase-1 or phase-2 trains")
	}
	return errors.New(strings.Join(why, "; "))
}

// fullSize is the size capacity is reported for: the preliminary trains'
// (full-size) packets, else the largest size sent.
func fullSize(trains []dump.Train) int {
	pre, all := 0, 0
	for i := range trains {
		t := &trains[i]
		if !samplePhase(t.Phase) {
			continue
		}
		all = max(all, t.Size)
		if t.Phase == dump.PhasePrelim {
			pre = max(pre, t.Size)
		}
	}
	if pre > 0 {
		return pre
	}
	return all
}

// kernelToUser is the median delay from the eBPF receive stamp to user space,
// the one kernel source on the user stamps' clock.
func kernelToUser(trains []dump.Train) time.Duration {
	var d []int64
	// A median needs no million values: every stride-th train keeps it to
	// about 50,000 trains' packets, deterministically.
	stride := 1 + len(trains)/50000
	for i := 0; i < len(trains); i += stride {
		for j := range trains[i].Rx {
			s := &trains[i].Rx[j]
			if s.Has(dump.SourceUser) && s.Has(dump.SourceEBPF) {
				d = append(d, s[dump.SourceUser]-s[dump.SourceEBPF])
			}
		}
	}
	if len(d) == 0 {
		return 0
	}
	radixSort(d, int64Key)
	n := len(d)
	if n%2 == 1 {
		return time.Duration(d[n/2])
	}
	return time.Duration((d[n/2-1] + d[n/2]) / 2)
}
