package estimator

import (
	"math"
	"math/rand/v2"

	"github.com/probe-dev/probe/collector/dump"
)

// bottleneck simulates a path for capacity tests. Receive stamps are eBPF
// ones (plus user-space ones when user > 0); send stamps are eBPF, 1 µs apart
// as sendmmsg lets packets go.
type bottleneck struct {
	rate     float64 // bit/s the bottleneck serialises at
	overhead int     // link-layer bytes it counts per packet besides the IP size
	bucket   int     // token bucket of this many bytes refilled at rate (tbf); 0: a FIFO
	line     float64 // bit/s of the link behind the bucket; 0: 10 Gbit/s
	noise    float64 // ns, σ of each receive stamp
	batch    int     // interrupt coalescing: packets delivered in batches of this many
	user     float64 // ns, mean extra latency of user-space stamps; 0: none
	late     float64 // ns, mean lateness of the tbf's timer (exponential); 0: on time
	// A faster tight link behind the narrow one, loaded by Poisson cross
	// traffic of tightLoad × tight in packets of tightBytes: it compresses
	// and stretches single gaps, not the narrow link's spacing.
	tight      float64
	tightLoad  float64
	tightBytes int
	// A burst of this many cross bytes reaches the tight link just before
	// packet burstAt of every train long enough: its queue drains under the
	// train's later packets and compresses them.
	burst, burstAt int
	// htb's rule instead of tbf's: a packet leaves while the tokens are not
	// negative and may take them below zero.
	htb bool
	// The share of trains that find the bucket empty (the agent's control
	// traffic shares the shaper and took the tokens).
	drained float64
	// ns, mean (exponential) of the sender's first gap: on a busy host the
	// second packet leaves late, the rest back to back.
	senderHead float64
	// ns, mean (exponential) extra of every later sender gap: a busy
	// sender's packets leave unevenly.
	senderGaps float64
}

type gen struct {
	bottleneck
	rng   *rand.Rand
	start float64 // ns, when the next train leaves the sender
	id    uint32
}

func newGen(b bottleneck, seed uint64) *gen {
	return &gen{bottleneck: b, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), start: 1e12}
}

// arrivals are the times the packets leave the bottleneck, ns, for packets
// the sender lets go at send. cross[i] bytes of cross traffic queue just
// before packet i.
func (g *gen) arrivals(size int, send []float64, cross map[int]int) []float64 {
	n := len(send)
	wire := float64(size + g.overhead)
	t := make([]float64, n)
	if g.bucket == 0 {
		for i := range n {
			t[i] = send[i] + 1e6 // propagation
			if i > 0 {
				t[i] = max(t[i], t[i-1]+8e9*wire/g.rate)
			}
			t[i] += 8e9 * float64(cross[i]) / g.rate
		}
		return t
	}
	line := g.line
	if line == 0 {
		line = 10e9
	}
	// A token bucket, full when a train starts as trains are spaced far
	// apart, unless something else drained it.
	tok, last, prev := float64(g.bucket), send[0], math.Inf(-1)
	if g.drained > 0 && g.rng.Float64() < g.drained {
		tok = 0
	}
	need := wire // tokens a packet waits for: tbf its size, htb none
	if g.htb {
		need = 0
	}
	for i := range n {
		at := max(send[i], prev+8e9*wire/line)
		have := min(float64(g.bucket), tok+(at-last)*g.rate/8e9)
		if have < need {
			// The timer wakes when the bucket holds enough, or later;
			// tokens keep coming meanwhile.
			at += (need-have)*8e9/g.rate + g.lateness()
			have = min(float64(g.bucket), tok+(at-last)*g.rate/8e9)
		}
		tok, last, prev = have-wire, at, at
		t[i] = at + 8e9*wire/line + 1e6
	}
	return t
}

func (g *gen) lateness() float64 {
	if g.late == 0 {
		return 0
	}
	return g.rng.ExpFloat64() * g.late
}

// throughTight passes the packets leaving the narrow link at t through the
// tight link and its cross traffic, which has run for 20 ms before them.
func (g *gen) throughTight(t []float64, size int) []float64 {
	if g.tight == 0 {
		return t
	}
	wire := float64(size + g.overhead)
	crossGap := 8e9 * float64(g.tightBytes+g.overhead) / (g.tightLoad * g.tight) // ns between cross packets on average
	crossServ := 8e9 * float64(g.tightBytes+g.overhead) / g.tight
	out := make([]float64, len(t))
	free := t[0] - 20e6
	next := free + g.rng.ExpFloat64()*crossGap
	for i, at := range t {
		if g.burst > 0 && i == g.burstAt {
			free = max(free, at) + 8e9*float64(g.burst)/g.tight
		}
		for next <= at {
			free = max(free, next) + crossServ
			next += g.rng.ExpFloat64() * crossGap
		}
		free = max(free, at) + 8e9*wire/g.tight
		out[i] = free
	}
	return out
}

// train builds one train as both ends stamp it.
func (g *gen) train(ph dump.Phase, size, n int, cross map[int]int) dump.Train {
	send := make([]float64, n)
	send[0] = g.start
	for i := 1; i < n; i++ {
		gap := 1000.0 // sendmmsg lets packets go 1 µs apart
		if i == 1 && g.senderHead > 0 {
			gap += g.rng.ExpFloat64() * g.senderHead
		}
		if i > 1 && g.senderGaps > 0 {
			gap += g.rng.ExpFloat64() * g.senderGaps
		}
		send[i] = send[i-1] + gap
	}
	arr := g.throughTight(g.arrivals(size, send, cross), size)
	rx := make([]float64, n)
	if k := g.batch; k > 1 {
		// A batch is delivered when its last packet arrives, its packets 200 ns
		// apart; the train starts anywhere in a batch.
		p := g.rng.IntN(k)
		noise := 0.0
		for i := range n {
			first := max(0, (i+p)/k*k-p)
			if i == first {
				noise = g.rng.NormFloat64() * g.noise
			}
			end := min((i+p)/k*k-p+k-1, n-1)
			rx[i] = arr[end] + float64(i-first)*200 + noise
		}
	} else {
		for i := range n {
			rx[i] = arr[i] + g.rng.NormFloat64()*g.noise
		}
	}
	tr := dump.Train{ID: g.id, Phase: ph, Size: size, Tx: make([]dump.Stamps, n), Rx: make([]dump.Stamps, n)}
	var user float64
	for i := range n {
		tr.Tx[i][dump.SourceEBPF] = int64(math.Round(send[i]))
		tr.Rx[i][dump.SourceEBPF] = int64(math.Round(rx[i]))
		if g.user > 0 {
			// The application reads packets in order, 1 µs apiece: a late
			// wake-up compresses what queued behind it.
			user = max(user+1000, rx[i]+5000+g.rng.ExpFloat64()*g.user)
			tr.Rx[i][dump.SourceUser] = int64(math.Round(user))
		}
	}
	g.id++
	g.start += 100e6
	return tr
}

// crossIn puts one cross-traffic packet of the given wire bytes into a random
// gap with probability p.
func (g *gen) crossIn(p float64, n, bytes int) map[int]int {
	if n < 2 || g.rng.Float64() >= p {
		return nil
	}
	return map[int]int{1 + g.rng.IntN(n-1): bytes}
}

// crossEach puts a cross-traffic packet into each gap with probability p.
func (g *gen) crossEach(p float64, n, bytes int) map[int]int {
	c := map[int]int{}
	for i := 1; i < n; i++ {
		if g.rng.Float64() < p {
			c[i] = bytes
		}
	}
	return c
}

// phaseOneSizes are the design's ~40 sizes from 600 B to the MTU.
func phaseOneSizes() []int {
	s := make([]int, 40)
	for i := range s {
		s[i] = 600 + i*900/39
	}
	return s
}

// session describes a measurement; zero counts skip a phase.
type session struct {
	calib, prelim, one, two     int // trains; one is per Phase I size
	calibN, prelimN, oneN, twoN int
	crossPrelim, crossOne       float64 // share of trains with one cross packet
	crossTwo                    float64 // share of Phase II gaps with a cross packet
	crossBytes                  int
}

func (g *gen) session(s session) []dump.Train {
	var out []dump.Train
	for range s.calib {
		out = append(out, g.train(dump.PhaseCalibrate, 1500, s.calibN, nil))
	}
	for range s.prelim {
		out = append(out, g.train(dump.PhasePrelim, 1500, s.prelimN, g.crossIn(s.crossPrelim, s.prelimN, s.crossBytes)))
	}
	for range s.one {
		for _, size := range phaseOneSizes() {
			out = append(out, g.train(dump.PhaseOne, size, s.oneN, g.crossIn(s.crossOne, s.oneN, s.crossBytes)))
		}
	}
	for range s.two {
		out = append(out, g.train(dump.PhaseTwo, 1500, s.twoN, g.crossEach(s.crossTwo, s.twoN, s.crossBytes)))
	}
	return out
}
