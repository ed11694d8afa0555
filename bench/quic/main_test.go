package main

import (
	"math"
	"testing"
)

func TestIdleShare(t *testing.T) {
	for _, c := range []struct {
		busy []bool
		want float64
	}{
		{nil, 0},
		{[]bool{false, false}, 0},
		{[]bool{false, true, true, false, true, false}, 0.25}, // one empty sample of four in the transfer
		{[]bool{true, true}, 0},
	} {
		if got := idleShare(c.busy); got != c.want {
			t.Errorf("idleShare(%v) = %v, want %v", c.busy, got, c.want)
		}
	}
}

func TestReadQUICGoPerf(t *testing.T) {
	stdout := []byte(`{"type":"intermediary","timeSeconds":1.0,"uploadBytes":0,"downloadBytes":125000000}
{"type":"final","timeSeconds":8.823787871,"uploadBytes":0,"downloadBytes":1073741824}
`)
	stderr := []byte("2026/12/02 15:51:33 uploaded 0 B: 0.00s (0.00 bps)\n2026/12/02 15:51:33 downloaded 1.00 GiB: 8.81s (975.15 mbps)\n")
	n, rate, err := readQUICGoPerf(stdout, stderr)
	if err != nil || n != 1073741824 || math.Abs(rate-1073741824*8/8.81) > 1 {
		t.Errorf("readQUICGoPerf = %d, %.0f, %v", n, rate, err)
	}
	if _, _, err := readQUICGoPerf(nil, []byte("Error: timeout: no recent network activity\n")); err == nil {
		t.Error("readQUICGoPerf of a failed run: no error")
	}
}
