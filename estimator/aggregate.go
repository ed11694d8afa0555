package estimator

import "math"

// Stat is the mean and sample standard deviation of N values: the
// iterations of one metric in one scenario.
type Stat struct {
	Mean, Std float64
	N         int
}

// Aggregate computes the mean and the sample standard deviation (n−1 in
// the denominator; 0 for a single value) of every value given. Nothing is
// dropped: a zero is a measurement like any other, and the caller leaves
// out only metrics that are absent.
func Aggregate(values []float64) Stat {
	s := Stat{N: len(values)}
	if s.N == 0 {
		return s
	}
	var sum float64
	for _, v := range values {
		sum += v
	}
	s.Mean = sum / float64(s.N)
	if s.N < 2 {
		return s
	}
	var ss float64
	for _, v := range values {
		ss += (v - s.Mean) * (v - s.Mean)
	}
	s.Std = math.Sqrt(ss / float64(s.N-1))
	return s
}

// Improvement is how much better A is than B, in % of B's mean: for a
// lower-is-better metric (CPU, memory, latency) (B − A)/B × 100, for a
// higher-is-better one (throughput) (A − B)/B × 100. Positive always means
// A is better. It is 0 when B's mean is 0, where a ratio means nothing.
func Improvement(a, b Stat, lowerIsBetter bool) float64 {
	if b.Mean == 0 {
		return 0
	}
	if lowerIsBetter {
		return (b.Mean - a.Mean) / b.Mean * 100
	}
	return (a.Mean - b.Mean) / b.Mean * 100
}

// WelchP is the two-sided p-value of Welch's t-test for equal means, with
// the Welch–Satterthwaite degrees of freedom. It is only given (ok) when
// both samples hold at least 3 values; with fewer the variance estimates
// are too poor for the test to mean much. Two samples without any spread
// give p = 1 if their means are equal and p = 0 otherwise.
func WelchP(a, b Stat) (p float64, ok bool) {
	if a.N < 3 || b.N < 3 {
		return 0, false
	}
	va, vb := a.Std*a.Std/float64(a.N), b.Std*b.Std/float64(b.N)
	se2 := va + vb
	if se2 == 0 {
		if a.Mean == b.Mean {
			return 1, true
		}
		return 0, true
	}
	t := (a.Mean - b.Mean) / math.Sqrt(se2)
	df := se2 * se2 / (va*va/float64(a.N-1) + vb*vb/float64(b.N-1))
	return studentTwoSided(t, df), true
}

// studentTwoSided is P(|T| ≥ |t|) for Student's t with df degrees of
// freedom: the regularized incomplete beta I_x(df/2, 1/2), x = df/(df+t²).
func studentTwoSided(t, df float64) float64 {
	if math.IsInf(t, 0) {
		return 0
	}
	return regIncBeta(df/2, 0.5, df/(df+t*t))
}

// regIncBeta is the regularized incomplete beta function I_x(a, b),
// evaluated by its continued fraction (modified Lentz), on whichever of
// x and 1−x makes it converge fast.
func regIncBeta(a, b, x float64) float64 {
	switch {
	case x <= 0:
		return 0
	case x >= 1:
		return 1
	}
	la, _ := math.Lgamma(a + b)
	lb, _ := math.Lgamma(a)
	lc, _ := math.Lgamma(b)
	front := math.Exp(la - lb - lc + a*math.Log(x) + b*math.Log1p(-x))
	if x < (a+1)/(a+b+2) {
		return front * betaCF(a, b, x) / a
	}
	return 1 - front*betaCF(b, a, 1-x)/b
}

func betaCF(a, b, x float64) float64 {
	const (
		eps  = 1e-15
		tiny = 1e-300
	)
	qab, qap, qam := a+b, a+1, a-1
	c, d := 1.0, 1-qab*x/qap
	if math.Abs(d) < tiny {
		d = tiny
	}
	d = 1 / d
	h := d
	for m := 1; m <= 1000; m++ {
		m2 := float64(2 * m)
		fm := float64(m)
		aa := fm * (b - fm) * x / ((qam + m2) * (a + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		h *= d * c
		aa = -(a + fm) * (qab + fm) * x / ((a + m2) * (qap + m2))
		d = 1 + aa*d
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = 1 + aa/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return h
}
