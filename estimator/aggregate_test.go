package estimator

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestAggregate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Stat
	}{
		{"empty", nil, Stat{}},
		{"one value has no spread", []float64{7}, Stat{Mean: 7, N: 1}},
		// mean 5; squared deviations 9+1+1+9 = 20; 20/3 → std √(20/3)
		{"n-1 denominator", []float64{2, 4, 6, 8}, Stat{Mean: 5, Std: math.Sqrt(20.0 / 3), N: 4}},
		// zeros are values: mean 1, deviations 1+1+4 = 6, 6/2 = 3
		{"zeros count", []float64{0, 0, 3}, Stat{Mean: 1, Std: math.Sqrt(3), N: 3}},
		{"constant", []float64{4, 4, 4}, Stat{Mean: 4, N: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Aggregate(tc.in)
			if got.N != tc.want.N || !near(got.Mean, tc.want.Mean, 1e-12) || !near(got.Std, tc.want.Std, 1e-12) {
				t.Errorf("Aggregate(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestImprovement(t *testing.T) {
	a, b := Stat{Mean: 80, N: 3}, Stat{Mean: 100, N: 3}
	for _, tc := range []struct {
		name          string
		a, b          Stat
		lowerIsBetter bool
		want          float64
	}{
		{"A costs less", a, b, true, 20},        // (100-80)/100
		{"A costs more", b, a, true, -25},       // (80-100)/80
		{"A delivers less", a, b, false, -20},   // (80-100)/100
		{"A delivers more", b, a, false, 25},    // (100-80)/80
		{"B zero", a, Stat{N: 3}, true, 0},      // no ratio
		{"equal", a, a, true, 0},                //
		{"B zero, higher", a, Stat{}, false, 0}, //
	} {
		if got := Improvement(tc.a, tc.b, tc.lowerIsBetter); !near(got, tc.want, 1e-12) {
			t.Errorf("%s: Improvement = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The references were computed with mpmath at 40 digits (scipy was not at
// hand), the p-value both as the regularized incomplete beta and as the
// integral of the t density; the two agree to every printed digit:
//
//	from mpmath import mp, mpf, sqrt, betainc, quad, gamma, pi, inf
//	mp.dps = 40
//	def welch(a, b):
//	    a = [mpf(x) for x in a]; b = [mpf(x) for x in b]
//	    ma, mb = sum(a)/len(a), sum(b)/len(b)
//	    sa = sum((x-ma)**2 for x in a)/(len(a)-1)
//	    sb = sum((x-mb)**2 for x in b)/(len(b)-1)
//	    va, vb = sa/len(a), sb/len(b)
//	    t = (ma-mb)/sqrt(va+vb)
//	    df = (va+vb)**2/(va**2/(len(a)-1)+vb**2/(len(b)-1))
//	    p1 = betainc(df/2, mpf(1)/2, 0, df/(df+t*t), regularized=True)
//	    pdf = lambda x: gamma((df+1)/2)/(sqrt(df*pi)*gamma(df/2))*(1+x*x/df)**(-(df+1)/2)
//	    return df, p1, 2*quad(pdf, [abs(t), inf])
func TestWelchP(t *testing.T) {
	for _, tc := range []struct {
		a, b []float64
		want float64
	}{
		{[]float64{10.1, 12.3, 11.8}, []float64{13.0, 14.2, 15.1, 13.7}, 0.035377594806267481}, // df 3.67
		{[]float64{1, 2, 3, 4, 5}, []float64{2, 4, 6, 8, 10}, 0.10753119493062724},             // df 5.88
		{[]float64{0, 0, 3}, []float64{5, 6, 7}, 0.019886752919474237},                         // df 3.2
	} {
		p, ok := WelchP(Aggregate(tc.a), Aggregate(tc.b))
		if !ok || !near(p, tc.want, 1e-12) {
			t.Errorf("WelchP(%v, %v) = %v, %v; want %v", tc.a, tc.b, p, ok, tc.want)
		}
		// symmetric in A and B
		if q, _ := WelchP(Aggregate(tc.b), Aggregate(tc.a)); !near(p, q, 1e-14) {
			t.Errorf("WelchP not symmetric: %v vs %v", p, q)
		}
	}
	if _, ok := WelchP(Aggregate([]float64{1, 2}), Aggregate([]float64{1, 2, 3})); ok {
		t.Error("WelchP with n = 2 should not be given")
	}
	if p, ok := WelchP(Aggregate([]float64{3, 3, 3}), Aggregate([]float64{3, 3, 3})); !ok || p != 1 {
		t.Errorf("identical constant samples: p = %v, %v; want 1", p, ok)
	}
	if p, ok := WelchP(Aggregate([]float64{3, 3, 3}), Aggregate([]float64{4, 4, 4})); !ok || p != 0 {
		t.Errorf("different constant samples: p = %v, %v; want 0", p, ok)
	}
}

// Closed forms: with 1 degree of freedom t is Cauchy, P(|T| ≥ t) =
// 1 − 2·atan(t)/π; with 2, P(|T| ≥ t) = 1 − t/√(t²+2).
func TestStudentTwoSidedClosedForms(t *testing.T) {
	for _, x := range []float64{0, 0.1, 0.5, 1, 2.5, 10, 300} {
		if got, want := studentTwoSided(x, 1), 1-2*math.Atan(x)/math.Pi; !near(got, want, 1e-13) {
			t.Errorf("df 1, t %v: %v, want %v", x, got, want)
		}
		if got, want := studentTwoSided(-x, 2), 1-x/math.Sqrt(x*x+2); !near(got, want, 1e-13) {
			t.Errorf("df 2, t %v: %v, want %v", -x, got, want)
		}
	}
}
