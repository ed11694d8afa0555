package estimator

import (
	"cmp"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/probe-dev/probe/collector/dump"
)

// rec builds a probe answered with the given client and agent times (µs) in
// one source.
func rec(src dump.Source, ctx, arx, atx, crx int64) dump.EchoRecord {
	var r dump.EchoRecord
	r.Replies = 1
	r.ClientTx[src], r.AgentRx[src], r.AgentTx[src], r.ClientRx[src] = ctx*1000, arx*1000, atx*1000, crx*1000
	r.ClientTx[dump.SourceUser], r.ClientRx[dump.SourceUser] = ctx*1000, crx*1000+5000
	return r
}

func TestEchoSubtractsTurnaround(t *testing.T) {
	recs := []dump.EchoRecord{
		rec(dump.SourceEBPF, 100, 150, 160, 200), // 100 - 10 = 90 µs
		rec(dump.SourceEBPF, 300, 350, 380, 420), // 120 - 30 = 90
		rec(dump.SourceEBPF, 500, 600, 605, 700), // 200 - 5 = 195
		{Seq: 3},                                 // lost
	}
	s, err := Echo(recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 4 || s.Received != 3 || s.Lost() != 1 || s.Unstamped != 0 {
		t.Fatalf("counts: %+v", s)
	}
	k := s.Kernel
	if k.Source() != "ebpf" || k.N != 3 || k.Min != 90*time.Microsecond || k.Median != 90*time.Microsecond ||
		k.Max != 195*time.Microsecond || k.Mean != 125*time.Microsecond {
		t.Fatalf("kernel rtt %+v", k)
	}
	// sample stddev of 90, 90, 195 µs: sqrt((35²+35²+70²)/2) = 60.62 µs
	if d := k.Stddev - 60622*time.Nanosecond; d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("stddev %v", k.Stddev)
	}
	// user space sees the whole round trip plus 5 µs, turnaround included
	if s.User.Min != 105*time.Microsecond || s.User.Max != 205*time.Microsecond {
		t.Fatalf("user rtt %+v", s.User)
	}
}

func TestEchoPrefersBestSourcePerEnd(t *testing.T) {
	r := rec(dump.SourceSW, 1000, 1050, 1060, 1100)
	r.ClientTx[dump.SourceEBPF], r.ClientRx[dump.SourceEBPF] = 1_010_000, 1_090_000
	s, err := Echo([]dump.EchoRecord{r}, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Kernel.Source() != "ebpf/sw" || s.Kernel.Min != 70*time.Microsecond {
		t.Fatalf("got %s %v, want ebpf/sw 70µs", s.Kernel.Source(), s.Kernel.Min)
	}
	// Forcing sw on both ends uses sw: 100 - 10.
	s, err = Echo([]dump.EchoRecord{r}, dump.SourceSW)
	if err != nil || s.Kernel.Min != 90*time.Microsecond {
		t.Fatalf("forced sw: %v %v", s.Kernel.Min, err)
	}
	// Forcing hw, which nobody has, is an error, not a number.
	if _, err := Echo([]dump.EchoRecord{r}, dump.SourceHW); err == nil || !strings.Contains(err.Error(), "hw") {
		t.Fatalf("forced hw: %v", err)
	}
}

func TestEchoCountsUnstampedAndDuplicates(t *testing.T) {
	a := rec(dump.SourceEBPF, 1, 10, 20, 40)
	a.Replies = 3
	b := rec(dump.SourceEBPF, 1, 10, 20, 40)
	b.AgentTx[dump.SourceEBPF] = 0 // its egress event was lost
	s, err := Echo([]dump.EchoRecord{a, b}, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	if s.Duplicates != 2 || s.Unstamped != 1 || s.Kernel.N != 1 {
		t.Fatalf("%+v", s)
	}
}

func TestEchoAllLost(t *testing.T) {
	_, err := Echo(make([]dump.EchoRecord, 5), AutoSource)
	if err == nil || !strings.Contains(err.Error(), "all 5 probes lost") {
		t.Fatalf("err = %v", err)
	}
}

// Each host's clock starts somewhere else: the figures must not care.
const (
	clientBase = 1_000_000_000_000 // ns on the client's CLOCK_MONOTONIC
	agentBase  = 7_000_000_000_000 // ns on the agent's
)

// probe is one probe's times in µs on each host's own clock: client send,
// agent receive, agent send, client receive; -1: it never happened.
type probe struct{ tx, arx, atx, rx int64 }

// echoRecs builds records, sequence numbers from 0, with eBPF stamps on both
// ends, user-space stamps 2 µs after each, and the positions of arrival that
// the receive times give.
func echoRecs(size int, ps ...probe) []dump.EchoRecord {
	stamp := func(s *dump.Stamps, base, us int64) {
		s[dump.SourceEBPF] = base + us*1000
		s[dump.SourceUser] = base + us*1000 + 2000
	}
	recs := make([]dump.EchoRecord, len(ps))
	for i, p := range ps {
		r := &recs[i]
		r.Seq, r.Size = uint32(i), size
		stamp(&r.ClientTx, clientBase, p.tx)
		if p.arx >= 0 {
			stamp(&r.AgentRx, agentBase, p.arx)
		}
		if p.atx >= 0 {
			stamp(&r.AgentTx, agentBase, p.atx)
		}
		if p.rx >= 0 {
			stamp(&r.ClientRx, clientBase, p.rx)
			r.Replies = 1
		}
	}
	setOrder(recs, func(r *dump.EchoRecord) (*uint32, int64) { return &r.AgentOrder, r.AgentRx[dump.SourceEBPF] })
	setOrder(recs, func(r *dump.EchoRecord) (*uint32, int64) { return &r.ClientOrder, r.ClientRx[dump.SourceEBPF] })
	return recs
}

// setOrder numbers the records that have a receive time in the order of it.
func setOrder(recs []dump.EchoRecord, f func(*dump.EchoRecord) (*uint32, int64)) {
	var got []*dump.EchoRecord
	for i := range recs {
		if _, at := f(&recs[i]); at != 0 {
			got = append(got, &recs[i])
		}
	}
	slices.SortStableFunc(got, func(a, b *dump.EchoRecord) int {
		_, x := f(a)
		_, y := f(b)
		return cmp.Compare(x, y)
	})
	for i, r := range got {
		o, _ := f(r)
		*o = uint32(i + 1)
	}
}

// lossIdentity checks that no probe is unaccounted for.
func lossIdentity(t *testing.T, s EchoSummary) {
	t.Helper()
	if s.Sent != s.Received+s.LostThere+s.LostBack || s.Lost() != s.LostThere+s.LostBack {
		t.Fatalf("sent %d != received %d + lost there %d + lost back %d", s.Sent, s.Received, s.LostThere, s.LostBack)
	}
}

func TestNearestRank(t *testing.T) {
	seq := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i + 1)
		}
		return d
	}
	for _, c := range []struct {
		n              int
		p90, p99, p999 time.Duration
	}{
		{1, 1, 1, 1},
		{4, 4, 4, 4},    // ceil(3.6) = 4
		{10, 9, 10, 10}, // ceil(9.0) = 9: exactly 90 % at or below
		{1000, 900, 990, 999},
		{1001, 901, 991, 1000}, // ceil(900.9), ceil(990.99), ceil(999.999)
	} {
		r := summarise(seq(c.n))
		if r.P90 != c.p90 || r.P99 != c.p99 || r.P999 != c.p999 {
			t.Errorf("n=%d: p90 %d p99 %d p99.9 %d, want %d %d %d", c.n, r.P90, r.P99, r.P999, c.p90, c.p99, c.p999)
		}
	}
}

func TestEchoStatsLossSplit(t *testing.T) {
	var ps []probe
	for i := range int64(6) {
		ps = append(ps, probe{i * 100, i*100 + 10, i*100 + 15, i*100 + 35})
	}
	ps = append(ps,
		probe{600, -1, -1, -1},  // 6: lost there on the wire
		probe{700, 710, -1, -1}, // 7: lost there, in the agent's socket buffer
		probe{800, 810, 815, -1},
		probe{900, 910, 915, 935}, // 9: lost back, in the client's socket buffer
	)
	recs := echoRecs(100, ps...)
	// The eBPF hook saw 7 reach the agent and 9 reach the client; their
	// applications never read them.
	recs[7].AgentRx[dump.SourceUser], recs[7].AgentOrder = 0, 0
	recs[9].ClientRx[dump.SourceUser], recs[9].ClientOrder, recs[9].Replies = 0, 0, 0
	p := dump.EchoPoint{Size: 100, Count: 10, AgentSocketDrops: 5, ClientSocketDrops: 1}
	s, err := EchoStats(p, recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	lossIdentity(t, s)
	if s.Received != 6 || s.LostThere != 2 || s.LostBack != 2 || s.LostThereInHost != 1 || s.LostBackInHost != 1 {
		t.Errorf("received %d lost there %d (%d in host) back %d (%d in host)",
			s.Received, s.LostThere, s.LostThereInHost, s.LostBack, s.LostBackInHost)
	}
	// "lost there 2, of which at most 2 in the agent's socket buffer (5
	// drops counted)"; "lost back 2, of which 1 in the client's".
	if s.AgentSocketDrops != 5 || s.ExplainedThere != 2 || s.ClientSocketDrops != 1 || s.ExplainedBack != 1 {
		t.Errorf("drops %d/%d explain %d/%d", s.AgentSocketDrops, s.ClientSocketDrops, s.ExplainedThere, s.ExplainedBack)
	}
	// Every probe that crossed the path there has a transit there: 0-5, 7-9.
	if s.There.N != 9 || s.Back.N != 6 || s.RoundTrip.N != 6 || s.ReorderThere.N != 8 || s.ReorderRoundTrip.N != 6 {
		t.Errorf("n there %d back %d round %d; reorder there %d round %d",
			s.There.N, s.Back.N, s.RoundTrip.N, s.ReorderThere.N, s.ReorderRoundTrip.N)
	}
}

// Every combination of what a record can say adds up.
func TestEchoStatsLossIdentity(t *testing.T) {
	var recs []dump.EchoRecord
	for replies := range 3 {
		for rx := range 3 { // agent receive: none, eBPF only, user
			for order := range 2 {
				for tx := range 2 {
					for corrupt := range uint8(4) {
						r := dump.EchoRecord{Seq: uint32(len(recs)), Replies: replies, Corrupt: corrupt, AgentOrder: uint32(order)}
						r.ClientTx[dump.SourceUser] = int64(len(recs)+1) * 1000
						if replies > 0 {
							r.ClientRx[dump.SourceUser] = r.ClientTx[dump.SourceUser] + 500
						}
						if rx > 0 {
							r.AgentRx[dump.SourceEBPF] = 1
						}
						if rx > 1 {
							r.AgentRx[dump.SourceUser] = 1
						}
						if tx > 0 {
							r.AgentTx[dump.SourceUser] = 2
						}
						recs = append(recs, r)
					}
				}
			}
		}
	}
	for _, drops := range []uint64{0, 3, 1000} {
		s, _ := EchoStats(dump.EchoPoint{AgentSocketDrops: drops, ClientSocketDrops: drops}, recs, AutoSource)
		lossIdentity(t, s)
		if s.ExplainedThere > min(s.LostThere, int(drops)) || s.ExplainedBack > min(s.LostBack, int(drops)) ||
			s.LostThereInHost > s.LostThere || s.LostBackInHost > s.LostBack {
			t.Fatalf("drops %d: %+v", drops, s)
		}
		// Intact replies are in the RTT or unstamped; corrupted ones in neither.
		var corruptReplies int
		for _, r := range recs {
			if r.Replies > 0 && r.Corrupt != 0 {
				corruptReplies++
			}
		}
		if s.Kernel.N+s.Unstamped+corruptReplies != s.Received {
			t.Fatalf("kernel %d + unstamped %d + corrupted %d != received %d", s.Kernel.N, s.Unstamped, corruptReplies, s.Received)
		}
	}
}

// Corrupted probes and replies count as received, in the corrupted counts,
// and nowhere in RTT, jitter or PDV, whatever their timing.
func TestEchoStatsCorruption(t *testing.T) {
	recs := echoRecs(100,
		probe{0, 10, 15, 35},
		probe{100, 900, 905, 925}, // corrupted there
		probe{200, 210, 215, 235},
		probe{300, 310, 315, 999}, // corrupted back
		probe{400, 401, 402, 403}, // corrupted both ways: counted there
		probe{500, 510, 515, 535},
		probe{600, 610, 615, -1}, // corrupted there, reply lost
	)
	recs[1].Corrupt = dump.CorruptThere
	recs[3].Corrupt = dump.CorruptBack
	recs[4].Corrupt = dump.CorruptThere | dump.CorruptBack
	recs[6].Corrupt = dump.CorruptThere
	s, err := EchoStats(dump.EchoPoint{Size: 100, Count: 7}, recs, AutoSource)
	if err != nil {
		t.Fatal(err)
	}
	lossIdentity(t, s)
	if s.Received != 6 || s.LostBack != 1 || s.CorruptedThere != 3 || s.CorruptedBack != 1 || s.Unstamped != 0 {
		t.Errorf("received %d lost back %d corrupted there %d back %d unstamped %d",
			s.Received, s.LostBack, s.CorruptedThere, s.CorruptedBack, s.Unstamped)
	}
	if s.Kernel.N != 3 || s.Kernel.Min != 30*time.Microsecond || s.Kernel.Max != 30*time.Microsecond || s.User.N != 3 {
		t.Errorf("kernel %+v user n %d", s.Kernel, s.User.N)
	}
	if s.There != (Variation{N: 3}) || s.Back != (Variation{N: 3}) || s.RoundTrip != (Variation{N: 3}) {
		t.Errorf("variation %+v %+v %+v", s.There, s.Back, s.RoundTrip)
	}
	// They did arrive, so they take part in the order.
	if s.ReorderThere.N != 7 || s.ReorderRoundTrip.N != 6 {
		t.Errorf("reorder n %d %d", s.ReorderThere.N, s.ReorderRoundTrip.N)
	}
	recs[0].Corrupt, recs[2].Corrupt, recs[5].Corrupt = dump.CorruptBack, dump.CorruptBack, dump.CorruptBack
	if _, err := EchoStats(dump.EchoPoint{}, recs, AutoSource); err == nil || !strings.Contains(err.Error(), "all 6 replies corrupted") {
		t.Errorf("all corrupted: %v", err)
	}
}

// Undefined figures are 0, so a summary marshals even when all is lost.
func TestEchoStatsJSON(t *testing.T) {
	for _, recs := range [][]dump.EchoRecord{
		make([]dump.EchoRecord, 3),
		echoRecs(100, probe{0, 10, 15, 35}),
		variationRecs(),
	} {
		s, _ := EchoStats(dump.EchoPoint{Size: 100, Count: len(recs)}, recs, AutoSource)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("%+v: %v", s, err)
		}
		var back EchoSummary
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("round trip: %v\n%s", err, b)
		}
	}
}
