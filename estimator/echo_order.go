package estimator

import (
	"cmp"
	"slices"
	"sort"

	"github.com/probe-dev/probe/collector/dump"
)

// Reorder is packet reordering in one direction, by RFC 4737's definitions.
type Reorder struct {
	// N is the packets whose arrival position is known; a duplicate counts
	// once, as its first copy (RFC 4737 evaluates only that one).
	N int
	// Count is the reordered packets: those whose sequence number was below
	// NextExp, the highest seen so far + 1, when they arrived (§3).
	Count int
	// Ratio is Count/N (Type-P-Reordered-Ratio-Stream, §4.1).
	Ratio float64
	// Reordering extent of the reordered packets (§4.2): arrival position i
	// minus the position j of the first earlier arrival with a higher
	// sequence number, i.e. how many places late the packet came.
	MaxExtent  int
	MeanExtent float64
}

// reorderOf reads the arrival order from the records' positions (order; 0:
// not arrived) and measures reordering. Gaps in the positions, left by
// duplicates or packets the records do not hold, do not count as places.
func reorderOf(recs []dump.EchoRecord, order func(*dump.EchoRecord) uint32) Reorder {
	type arrival struct{ pos, seq uint32 }
	var arr []arrival
	for i := range recs {
		if pos := order(&recs[i]); pos != 0 {
			arr = append(arr, arrival{pos, recs[i].Seq})
		}
	}
	slices.SortFunc(arr, func(a, b arrival) int {
		return cmp.Or(cmp.Compare(a.pos, b.pos), cmp.Compare(a.seq, b.seq))
	})
	seqs := make([]uint32, len(arr))
	for i, a := range arr {
		seqs[i] = a.seq
	}
	return reorder(seqs)
}

// reorder measures RFC 4737 reordering of sequence numbers in the order they
// arrived. Sequence numbers do not wrap within one measurement.
func reorder(seqs []uint32) Reorder {
	var (
		r       Reorder
		nextExp int64 // the first packet is in order, whatever its number
		seen    = make(map[uint32]bool, len(seqs))
		// highest[k] is the highest sequence number among the first k+1
		// arrivals; it never decreases, so the first arrival with a higher
		// number than s is the first k where highest[k] > s, found by
		// binary search rather than a scan back.
		highest = make([]uint32, 0, len(seqs))
		extents int
	)
	for _, s := range seqs {
		if seen[s] {
			continue
		}
		seen[s] = true
		i := len(highest)
		if int64(s) >= nextExp {
			nextExp = int64(s) + 1
			highest = append(highest, s)
			continue
		}
		highest = append(highest, highest[i-1])
		j := sort.Search(i, func(k int) bool { return highest[k] > s })
		e := i - j
		r.Count++
		extents += e
		r.MaxExtent = max(r.MaxExtent, e)
	}
	r.N = len(highest)
	if r.N > 0 {
		r.Ratio = float64(r.Count) / float64(r.N)
	}
	if r.Count > 0 {
		r.MeanExtent = float64(extents) / float64(r.Count)
	}
	return r
}
