package probe

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// stampBatch is how many agent records travel in one frame (~90 B each).
const stampBatch = 4096

// txStampWait bounds how long we wait for transmit timestamps that the kernel
// has not queued yet once traffic has stopped.
const txStampWait = 200 * time.Millisecond

// seqStamps holds the eBPF timestamps of one session's packets by sequence
// number; the collector's reader goroutine fills it. Its arrays grow with
// the sequence numbers seen, up to the session's count, rather than taking
// the whole count at the start: the count is the peer's word.
type seqStamps struct {
	mu       sync.Mutex
	out, in  []int64 // egress, ingress times
	n        int     // the session's packets
	outKind  collector.Kind
	inKind   collector.Kind
	observed int
}

func newSeqStamps(n int, outKind, inKind collector.Kind) *seqStamps {
	return &seqStamps{n: n, outKind: outKind, inKind: inKind}
}

// at returns the stamps of seq, egress and ingress, 0 when none.
func (s *seqStamps) at(seq uint32) (out, in int64) {
	if int(seq) < len(s.out) {
		return s.out[seq], s.in[seq]
	}
	return 0, 0
}

// want is what the TC program must record for this end: its own sends'
// egress and what it receives at ingress.
func (s *seqStamps) want() collector.Want {
	return collector.WantEvent(s.outKind, collector.Egress) | collector.WantEvent(s.inKind, collector.Ingress)
}

func (s *seqStamps) sink(ev *collector.ProbeEvent) {
	if int(ev.Seq) >= s.n {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if int(ev.Seq) >= len(s.out) {
		k := min(s.n, max(int(ev.Seq)+1, 2*len(s.out), 1024))
		s.out = append(s.out, make([]int64, k-len(s.out))...)
		s.in = append(s.in, make([]int64, k-len(s.in))...)
	}
	switch {
	case ev.Dir == collector.Egress && ev.Kind == s.outKind && s.out[ev.Seq] == 0:
		s.out[ev.Seq] = ev.Time
		s.observed++
	case ev.Dir == collector.Ingress && ev.Kind == s.inKind && s.in[ev.Seq] == 0:
		s.in[ev.Seq] = ev.Time
		s.observed++
	}
}

// stampSession has st timestamp session id on the interface towards peer;
// the returned function undoes it.
func stampSession(st Stamper, id uint32, port uint16, peer netip.Addr, want collector.Want, sink func(*collector.ProbeEvent)) (func(), error) {
	ifindex, err := collector.IfindexFor(peer)
	if err != nil {
		return nil, err
	}
	if err := st.Attach(ifindex); err != nil {
		return nil, err
	}
	if err := st.AddSession(id, port, want, sink); err != nil {
		st.Detach(ifindex)
		return nil, err
	}
	return func() {
		st.RemoveSession(id)
		st.Detach(ifindex)
	}, nil
}

// ebpfFallback is the warning of a session that could not have eBPF
// timestamps on this side, e.g. when the kernel refuses one more TCX program
// on the interface (ERANGE, with some 64 already there).
func ebpfFallback(err error) string {
	return fmt.Sprintf("no eBPF timestamps on this side for this session (%v): socket timestamps are used instead; --ebpf on makes this an error", err)
}

// drainTx collects transmit timestamps until want of them arrived or
// txStampWait passed since traffic stopped.
func drainTx(c *collector.Conn, want int, fn func(key uint32, s dump.Stamps)) error {
	if !c.TxStamping() {
		return nil // none will come
	}
	got := 0
	deadline := time.Now().Add(txStampWait)
	for {
		n, err := c.TxStamps(fn)
		if err != nil {
			return err
		}
		got += n
		if got >= want || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

// bucket is a token bucket of replies per second, refilled continuously,
// holding at most a tenth of a second's worth.
type bucket struct {
	rate, tokens, max float64
	last              int64 // monotonic ns
}

func newBucket(perSecond int) *bucket {
	max := max(float64(perSecond)/10, 1)
	return &bucket{rate: float64(perSecond), tokens: max, max: max}
}

func (b *bucket) take(now int64) bool {
	if b.last != 0 {
		b.tokens = min(b.max, b.tokens+b.rate*float64(now-b.last)/1e9)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func newSessionID() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}
