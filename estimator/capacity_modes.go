package estimator

import (
	"cmp"
	"math"
	"slices"
	"sort"
)

// Mode search (docs/capacity.md): the densest window of width ω among the unclaimed
// samples, grown a window at a time while the bell falls (10 % tolerance).
const (
	capModeGrow   = 1.10 // a neighbour window may hold this many times its inner neighbour
	capModeNoiseZ = 2    // … or more, by up to this many standard deviations of counting noise
	capModeShare  = 0.02 // a mode needs this share of the samples, and at least capModeMin
	capModeMin    = 3
	capKurtosisOn = 1e-9 // relative spread under which a bell counts as one value
	capKurtosisMx = 1000
)

// capSeg is a run x[s:e] of unclaimed samples with its densest window
// x[at:at+cnt]. A bell is at least ω wide, so no window of width ω can reach
// across one: runs are searched on their own.
type capSeg struct{ s, e, at, cnt int }

func newSeg(x []float64, s, e int, w float64) capSeg {
	sg := capSeg{s: s, e: e}
	j := s
	for i := s; i < e; i++ {
		j = max(j, i+1)
		for j < e && x[j] < x[i]+w {
			j++
		}
		if j-i > sg.cnt {
			sg.at, sg.cnt = i, j-i
		}
	}
	return sg
}

// findModes finds the modes of sorted samples x with bin width w, strongest
// merit first. A run is scanned once when it is made (two pointers) and a bell
// grows at O(log n) a window, so the cost is O(n) per mode at worst.
func findModes(x []float64, w float64) []Mode {
	n := len(x)
	if n == 0 || !(w > 0) {
		return nil
	}
	floor := max(capModeMin, capModeShare*float64(n))
	segs := []capSeg{newSeg(x, 0, n, w)}
	var modes []Mode
	for {
		b := -1
		for i, sg := range segs {
			if b < 0 || sg.cnt > segs[b].cnt || sg.cnt == segs[b].cnt && sg.at < segs[b].at {
				b = i
			}
		}
		if b < 0 || float64(segs[b].cnt) < floor {
			break
		}
		sg := segs[b]
		run := x[sg.s:sg.e]
		count := func(lo, hi float64) int {
			return sort.SearchFloat64s(run, hi) - sort.SearchFloat64s(run, lo)
		}
		lo := x[sg.at]
		hi := lo + w
		for prev := sg.cnt; ; {
			c := count(lo-w, lo)
			if c < 1 || rises(prev, c) {
				break
			}
			lo, prev = lo-w, c
		}
		for prev := sg.cnt; ; {
			c := count(hi, hi+w)
			if c < 1 || rises(prev, c) {
				break
			}
			hi, prev = hi+w, c
		}
		li := sg.s + sort.SearchFloat64s(run, lo)
		hj := sg.s + sort.SearchFloat64s(run, hi)
		k := kurtosis(x[li:hj])
		modes = append(modes, Mode{
			// The bell's median, which is also what the estimate reads
			// (location): the report's modes and estimate agree.
			Value: medianSorted(x[li:hj]),
			Low:   lo, High: hi,
			Count:    hj - li,
			Kurtosis: k,
			Merit:    k * float64(hj-li) / float64(n),
		})
		segs = slices.Delete(segs, b, b+1)
		if li > sg.s {
			segs = append(segs, newSeg(x, sg.s, li, w))
		}
		if hj < sg.e {
			segs = append(segs, newSeg(x, hj, sg.e, w))
		}
	}
	slices.SortStableFunc(modes, func(a, b Mode) int {
		if c := cmp.Compare(b.Merit, a.Merit); c != 0 {
			return c
		}
		return cmp.Compare(b.Value, a.Value)
	})
	return modes
}

// rises says whether a window of c samples next to one of prev rises out of
// the bell: by more than capModeGrow, and by more than counting noise
// explains (the difference of two Poisson counts has variance c + prev). A
// broad bell's windows differ by chance: 42 samples beside 38 split one in
// two at the 10 % rule alone, and the two halves' medians read −13 % and
// +24 % of the capacity (docs/capacity.md).
func rises(prev, c int) bool {
	d := float64(c - prev)
	return float64(c) > capModeGrow*float64(prev) && d > capModeNoiseZ*math.Sqrt(float64(c+prev))
}

// kurtosis is m4/m2² of x; a bell whose samples all agree is as peaked as it
// gets, so it is capped rather than divided by zero.
func kurtosis(x []float64) float64 {
	mu := mean(x)
	var m2, m4 float64
	for _, v := range x {
		d := (v - mu) * (v - mu)
		m2 += d
		m4 += d * d
	}
	m2 /= float64(len(x))
	m4 /= float64(len(x))
	if m2 <= (capKurtosisOn*mu)*(capKurtosisOn*mu) {
		return capKurtosisMx
	}
	return min(m4/(m2*m2), capKurtosisMx)
}

// binWidth is 1/8 of the 10 %-trimmed range of sorted samples, floored at
// 0.5 % of their mean so that timestamp noise does not split one mode.
func binWidth(sorted []float64) float64 {
	kept := trimmed(sorted)
	return max((kept[len(kept)-1]-kept[0])/8, capBinFloor*mean(sorted))
}

// trimmed drops 10 % of the sorted samples at each end.
func trimmed(sorted []float64) []float64 {
	k := int(capTrim * float64(len(sorted)))
	return sorted[k : len(sorted)-k]
}

// densestHalf is the median of the shortest run holding half of the sorted
// samples (the shorth): where most of them agree, whatever one side holds.
func densestHalf(sorted []float64) float64 {
	h := len(sorted)/2 + 1
	if len(sorted) < 3 {
		return medianSorted(sorted)
	}
	best := 0
	for i := 1; i+h <= len(sorted); i++ {
		if sorted[i+h-1]-sorted[i] < sorted[best+h-1]-sorted[best] {
			best = i
		}
	}
	return medianSorted(sorted[best : best+h])
}

// medianOf sorts x and returns its median, 0 for none.
func medianOf(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	slices.Sort(x)
	return medianSorted(x)
}

func medianSorted(x []float64) float64 {
	n := len(x)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return x[n/2]
	}
	return (x[n/2-1] + x[n/2]) / 2
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// meanStd returns the mean and the sample standard deviation.
func meanStd(x []float64) (mu, sd float64) {
	mu = mean(x)
	if len(x) < 2 {
		return mu, 0
	}
	var ss float64
	for _, v := range x {
		ss += (v - mu) * (v - mu)
	}
	return mu, math.Sqrt(ss / float64(len(x)-1))
}

// radixSort sorts x by key, which must order like the values. Capacity sorts a
// sample per train, a million of them in a long dump: a byte-wise radix sort
// is linear, and skips the bytes all keys share (most of them, for rates in
// one decade).
func radixSort[T any](x []T, key func(T) uint64) {
	if len(x) < 1024 {
		slices.SortFunc(x, func(a, b T) int { return cmp.Compare(key(a), key(b)) })
		return
	}
	var count [8][256]int
	for _, v := range x {
		k := key(v)
		for d := range 8 {
			count[d][byte(k>>(8*d))]++
		}
	}
	src, dst := x, make([]T, len(x))
	for d := range 8 {
		c := &count[d]
		if c[byte(key(src[0])>>(8*d))] == len(x) {
			continue
		}
		sum := 0
		for i := range c {
			c[i], sum = sum, sum+c[i]
		}
		for _, v := range src {
			b := byte(key(v) >> (8 * d))
			dst[c[b]] = v
			c[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &x[0] {
		copy(x, src)
	}
}

// sortPositive sorts non-negative floats (rates, dispersions), whose bit
// patterns order like them.
func sortPositive(x []float64) { radixSort(x, math.Float64bits) }

// int64Key orders int64s as unsigned keys.
func int64Key(v int64) uint64 { return uint64(v) ^ 1<<63 }
