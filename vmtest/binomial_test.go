package vmtest

import "testing"

// The intervals against exact sums (Python's math.comb, summed in order).
func TestBinomialInterval(t *testing.T) {
	for _, c := range []struct {
		n      int
		p      float64
		lo, hi int
	}{
		{100, 0.5, 37, 63},
		{3000, 0.01, 17, 45},
	} {
		if lo, hi := BinomialInterval(c.n, c.p, 0.99); lo != c.lo || hi != c.hi {
			t.Errorf("Binomial(%d, %g) 99 %%: [%d, %d], want [%d, %d]", c.n, c.p, lo, hi, c.lo, c.hi)
		}
	}
}
