package main

import "testing"

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
