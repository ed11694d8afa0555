package main

import (
	"strconv"
	"testing"
)

// FuzzParseBytes: any --bytes value parses to a non-negative count or is
// refused; plain numbers read as themselves.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"1500", "128K", "10M", "2G", "9223372036854775807", "9999999999G", "-1", "", "K", "1.5M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseBytes(%q) = %d", s, n)
		}
		if k, err := strconv.ParseInt(s, 10, 64); err == nil && n != k {
			t.Fatalf("parseBytes(%q) = %d", s, n)
		}
	})
}
