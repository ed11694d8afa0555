package testbed

import "testing"

// FuzzParseRate: any rate parses or is refused; what parses formats to a
// string that parses back to the same rate.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100000", "20mbit", "1.5gbit", "1mibit", "20Mbit/s", "0.0000001kbit", "18446744073709551615", "99999999999tbit", ".", "1..2mbit", "20mb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseRate(s)
		if err != nil {
			return
		}
		again, err := ParseRate(FormatRate(v))
		if err != nil || again != v {
			t.Fatalf("ParseRate(%q) = %d, formats as %q, which parses to %d, %v", s, v, FormatRate(v), again, err)
		}
	})
}
