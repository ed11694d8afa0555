package testbed

import (
	"errors"
	"testing"
)

// FuzzParseScenario: any YAML parses or is refused with an error that
// names a line, without a panic; YAML aliases cannot blow it up.
func FuzzParseScenario(f *testing.F) {
	f.Add([]byte(validScenario))
	f.Add([]byte("test_name: x\nhosts: {a: 1.2.3.4}\n"))
	f.Add([]byte("a: &a [1, 2]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"))
	f.Add([]byte("clients_per_host: 99999999999\niterations: -1\npause_between: 1e9h\n"))
	f.Add([]byte("{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseScenario(b, dir)
		var se *ScenarioError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("error %v (%T) is not a ScenarioError", err, err)
		}
	})
}

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
