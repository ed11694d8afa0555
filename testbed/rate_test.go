package testbed

import (
	"math"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	good := []struct {
		in   string
		want uint64
	}{
		{"100000", 100000},
		{"0", 0},
		{"20mbit", 20e6},
		{"20Mbit/s", 20e6},
		{"20MBIT", 20e6},
		{" 20mbit ", 20e6},
		{"1.5gbit", 1.5e9},
		{"500kbit", 500e3},
		{"1tbit", 1e12},
		{"1mibit", 1 << 20},
		{"2kibit", 2048},
		{"300bit", 300},
		{"300bit/s", 300},
		{".5mbit", 500e3},
		{"123.456789mbit", 123456789},
		{"0.0000005kbit", 0}, // rounds to whole bit/s
		{"0.0005kbit", 1},
		{"18446744073709551615", math.MaxUint64},
	}
	for _, c := range good {
		got, err := ParseRate(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct{ in, msg string }{
		{"", "want a number"},
		{"mbit", "want a number"},
		{"-5mbit", "want a number"},
		{"20mbps", "ambiguous"},
		{"20Mb", "ambiguous"},
		{"20m", "unknown unit"},
		{"20 mbit", "unknown unit"},
		{"1.2.3mbit", "want a number"},
		{"5.mbit", "want a number"},
		{"1e6", "unknown unit"},
		{"20000000tbit", "too large"},
		{"18446744073709551616", "too large"},
	}
	for _, c := range bad {
		got, err := ParseRate(c.in)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseRate(%q) = %d, %v; want an error saying %q", c.in, got, err, c.msg)
		}
	}
}

func TestFormatRate(t *testing.T) {
	cases := []struct {
		in   uint64
		want string
	}{
		{0, "0bit"},
		{999, "999bit"},
		{1000, "1kbit"},
		{20e6, "20mbit"},
		{1.5e9, "1.5gbit"},
		{123456789, "123.456789mbit"},
		{2e12, "2tbit"},
	}
	for _, c := range cases {
		if got := FormatRate(c.in); got != c.want {
			t.Errorf("FormatRate(%d) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, v := range []uint64{1, 1001, 19815059, 1<<40 + 7, math.MaxUint64} {
		got, err := ParseRate(FormatRate(v))
		if err != nil || got != v {
			t.Errorf("ParseRate(FormatRate(%d)) = %d, %v", v, got, err)
		}
	}
}

// The bucket must hold one full frame and never two, at any rate, despite tick rounding.
func TestBufferTicks(t *testing.T) {
	tb := &Testbed{MTU: 1500}
	for _, rate := range []uint64{100e3, 20e6, 1.5e9, 10e9, 13e9, 40e9} {
		q, burst, err := tb.newTbf(rate, 0, 0)
		if err != nil {
			t.Fatalf("newTbf(%s): %v", FormatRate(rate), err)
		}
		got := bucketBytes(q.Rate, q.Buffer)
		if burst != 1600 || got < 1514 || got >= 2*1514 {
			t.Errorf("%s: burst %d, bucket read back %d bytes; want 1600, one frame and not two", FormatRate(rate), burst, got)
		}
	}
	if _, _, err := tb.newTbf(20e6, 1000, 0); err == nil {
		t.Error("newTbf accepted a bucket smaller than a frame")
	}
}
