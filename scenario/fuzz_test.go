package scenario

import (
	"errors"
	"testing"
)

// FuzzParse: any YAML parses or is refused with an error that names a line,
// without a panic; YAML aliases cannot blow it up.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validScenario))
	f.Add([]byte("test_name: x\nhosts: {a: 1.2.3.4}\n"))
	f.Add([]byte("a: &a [1, 2]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b, *b]\n"))
	f.Add([]byte("clients_per_host: 99999999999\niterations: -1\npause_between: 1e9h\n"))
	f.Add([]byte("{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := Parse(b, dir)
		var pe *ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error %v (%T) is not a ParseError", err, err)
		}
	})
}
