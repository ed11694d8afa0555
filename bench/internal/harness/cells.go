package harness

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Ratio is a / b with digits decimals, or "-" when it is not a number.
func Ratio(a, b float64, digits int) string {
	if b == 0 {
		return "-"
	}
	r := a / b
	if math.IsInf(r, 0) || math.IsNaN(r) {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits, r)
}

// Join joins two notes with "; ", leaving out an empty one.
func Join(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// Median is the median of xs, 0 when there are none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// RateUnit is the unit to print bit/s in: Gbit/s from 1 Gbit/s, else Mbit/s.
func RateUnit(bps float64) (scale float64, unit string) {
	if bps >= 1e9 {
		return 1e9, "Gbit/s"
	}
	return 1e6, "Mbit/s"
}

// FormatRate prints bit/s in RateUnit.
func FormatRate(bps float64) string {
	scale, unit := RateUnit(bps)
	return fmt.Sprintf("%.3f %s", bps/scale, unit)
}

// Fail prints msg the way every benchmark does and exits 1.
func Fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}

// Runs is how many times a timed figure is taken: on a shared host one
// run says little, five and their spread say how much it moves.
const Runs = 5

// Load is the 1-minute load average, printed beside every timed figure
// (others share the machine); "?" when /proc does not say.
func Load() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// Spread is "median (min–max)" of xs with digits decimals, "-" for none.
func Spread(xs []float64, digits int) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", digits, Median(xs), digits, slices.Min(xs), digits, slices.Max(xs))
}
