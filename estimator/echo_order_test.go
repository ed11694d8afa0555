package estimator

import (
	"testing"

	"github.com/probe-dev/probe/collector/dump"
)

// RFC 4737's definitions on arrival sequences: reordered when below NextExp;
// extent = i - j, j the first earlier arrival with a higher number.
func TestReorderRFC4737(t *testing.T) {
	for _, c := range []struct {
		name    string
		arrival []uint32
		want    Reorder
	}{
		{"in order", []uint32{1, 2, 3, 4, 5}, Reorder{N: 5}},
		{"from zero", []uint32{0, 1, 2}, Reorder{N: 3}},
		{"loss is not reordering", []uint32{1, 2, 4, 5}, Reorder{N: 4}},
		{"adjacent swap", []uint32{1, 2, 4, 3, 5}, Reorder{N: 5, Count: 1, Ratio: 0.2, MaxExtent: 1, MeanExtent: 1}},
		// 4 at position 6, the first earlier higher is 5 at position 4.
		{"one late by two", []uint32{1, 2, 3, 5, 6, 4}, Reorder{N: 6, Count: 1, Ratio: 1.0 / 6, MaxExtent: 2, MeanExtent: 2}},
		// 2 at position 5, 3 at position 2.
		{"one late by three", []uint32{1, 3, 4, 5, 2}, Reorder{N: 5, Count: 1, Ratio: 0.2, MaxExtent: 3, MeanExtent: 3}},
		// 1, 2, 3 all below NextExp = 5; extents 1, 2, 3 back to the 4.
		{"one early", []uint32{4, 1, 2, 3}, Reorder{N: 4, Count: 3, Ratio: 0.75, MaxExtent: 3, MeanExtent: 2}},
		// 7, 8, 9 overtook 4, 5, 6: each of those is late by 3, 4, 5
		// places back to the 7 (positions 7, 8, 9 against 4).
		{"a block overtaken", []uint32{1, 2, 3, 7, 8, 9, 4, 5, 6, 10},
			Reorder{N: 10, Count: 3, Ratio: 0.3, MaxExtent: 5, MeanExtent: 4}},
		// 5 is reordered only against 6 (position 3), not against 4.
		{"first higher, not first earlier", []uint32{1, 4, 6, 5, 2},
			Reorder{N: 5, Count: 2, Ratio: 0.4, MaxExtent: 3, MeanExtent: 2}},
		// A second copy of 1 after 2 is a duplicate, not a reordered 1.
		{"duplicate", []uint32{1, 2, 1, 3, 3}, Reorder{N: 3}},
		{"empty", nil, Reorder{}},
	} {
		if got := reorder(c.arrival); got != c.want {
			t.Errorf("%s %v: got %+v, want %+v", c.name, c.arrival, got, c.want)
		}
	}
}

// The second copy of probe 0 arrived third at the client; the positions
// skip it, and nothing is reordered.
func TestEchoStatsDuplicateNotReordered(t *testing.T) {
	recs := echoRecs(100, probe{0, 10, 15, 35}, probe{100, 110, 115, 135}, probe{200, 210, 215, 235})
	recs[0].Replies = 2
	recs[2].ClientOrder = 4
	s, err := EchoStats(dump.EchoPoint{Size: 100, Count: 3}, recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Duplicates != 1 || s.Received != 3 || s.ReorderRoundTrip != (Reorder{N: 3}) {
		t.Fatalf("duplicates %d received %d reorder %+v", s.Duplicates, s.Received, s.ReorderRoundTrip)
	}
}
