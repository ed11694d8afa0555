package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// maxSocketBuffer bounds the socket buffers a client may ask the agent for.
const maxSocketBuffer = 64 << 20

func (s *Server) checkEcho(p EchoParams) error {
	l := s.cfg.Limits
	switch {
	case p.Count < 1 || p.Count > l.MaxPackets:
		return refusal(wire.CodeLimit, "packet count %d outside 1..%d", p.Count, l.MaxPackets)
	case p.Size < minEchoSize || p.Size > l.MaxPacketSize:
		return refusal(wire.CodeLimit, "packet size %d outside %d..%d bytes", p.Size, minEchoSize, l.MaxPacketSize)
	case p.Interval < 0:
		return refusal(wire.CodeBadRequest, "negative interval %v", p.Interval)
	case time.Duration(p.Count)*p.Interval > l.MaxDuration:
		return refusal(wire.CodeLimit, "%d packets every %v last longer than the agent's limit of %v", p.Count, p.Interval, l.MaxDuration)
	case p.RcvBuf < 0 || p.RcvBuf > maxSocketBuffer || p.SndBuf < 0 || p.SndBuf > maxSocketBuffer:
		return refusal(wire.CodeLimit, "socket buffers %d/%d bytes outside 0..%d", p.RcvBuf, p.SndBuf, maxSocketBuffer)
	case p.DSCP < 0 || p.DSCP > 63 || p.TTL < 0 || p.TTL > 255:
		return refusal(wire.CodeBadRequest, "DSCP %d or TTL %d out of range", p.DSCP, p.TTL)
	}
	return nil
}

// serveEcho is the agent's half of an echo session: it answers the client's
// probes, one reply of the same length per probe, until the client says
// Finish, then returns its timestamps.
func (s *Server) serveEcho(ctx context.Context, conn net.Conn, fc *wire.Conn, p EchoParams) error {
	if err := s.checkEcho(p); err != nil {
		return err
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	uc, err := collector.ListenUDP(ctx, netip.AddrPortFrom(local, 0))
	if err != nil {
		return err
	}
	defer uc.Close()
	if _, _, err := uc.Apply(collector.SocketOptions{RcvBuf: p.RcvBuf, SndBuf: p.SndBuf, DSCP: p.DSCP, TTL: p.TTL}); err != nil {
		return refusal(wire.CodeBadRequest, "%v", err)
	}
	id := newSessionID()
	port := uc.LocalAddr().Port()

	sources := []string{dump.SourceSW.String(), dump.SourceUser.String()}
	ebpf := newSeqStamps(p.Count, collector.KindReply, collector.KindRequest)
	if p.Interval == 0 && !p.NoGSO {
		_ = uc.UseGSO() // as the client does
	}
	if s.cfg.Stamper != nil {
		undo, err := stampSession(s.cfg.Stamper, id, port, peer, ebpf.want(), ebpf.sink)
		if err != nil {
			s.log.Warn("no eBPF timestamps for this session", "err", err)
		} else {
			defer undo()
			sources = append([]string{dump.SourceEBPF.String()}, sources...)
			if p.Interval == 0 && uc.TxStamping() {
				if err := uc.StopTxStamps(); err != nil {
					return err
				}
			}
		}
	}
	if err := fc.Write(&wire.Message{Opened: &wire.Opened{Session: id, Port: port, Sources: sources}}); err != nil {
		return err
	}

	deadline := time.Now().Add(s.cfg.Limits.MaxDuration)
	uc.SetReadDeadline(deadline)
	e := &agentEcho{id: id, peer: peer, count: p.Count, size: p.Size, conn: uc, rate: newBucket(s.cfg.Limits.MaxRate),
		recs: make([]wire.AgentStamp, 0, min(p.Count, initialRecs)), seen: make([]uint64, (p.Count+63)/64)}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		e.run()
	}()
	conn.SetReadDeadline(deadline.Add(5 * time.Second))
	// A session without a probe soon after it opened is let go.
	var unused atomic.Bool
	idle := time.AfterFunc(s.cfg.Conn.SessionStartTimeout, func() {
		if !e.begun.Load() {
			unused.Store(true)
			conn.SetReadDeadline(time.Now())
		}
	})
	m, err := fc.Read()
	idle.Stop()
	uc.SetReadDeadline(time.Now()) // ends the loop
	<-loopDone
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		if unused.Load() && isTimeout(err) {
			return s.notStarted("no probe")
		}
		return err
	}
	if m.Finish == nil {
		return fmt.Errorf("%w: expected finish, got %s", wire.ErrMalformed, m.Kind())
	}

	if err := drainTx(uc, len(e.recs), e.onTx); err != nil {
		return err
	}
	if s.cfg.Stamper != nil {
		// A busy agent may not read its ring buffer within the flush's
		// second: the session still answers, with fewer eBPF stamps.
		if err := flush(ctx, s.cfg.Stamper); err != nil {
			s.log.Warn("echo session: eBPF stamps incomplete", "err", err)
		}
	}
	drops, err := uc.Drops()
	if err != nil {
		s.log.Warn("socket drops unknown", "err", err)
	}
	ebpf.mu.Lock()
	for i := range e.recs {
		r := &e.recs[i]
		r.Tx[dump.SourceEBPF], r.Rx[dump.SourceEBPF] = ebpf.at(r.Seq)
	}
	ebpf.mu.Unlock()
	for start := 0; start < len(e.recs); start += stampBatch {
		batch := e.recs[start:min(start+stampBatch, len(e.recs))]
		if err := fc.Write(&wire.Message{Stamps: &wire.Stamps{Records: batch}}); err != nil {
			return err
		}
	}
	return fc.Write(&wire.Message{Done: &wire.Done{Received: len(e.recs), Ignored: e.ignored, Limited: e.limited, SocketDrops: drops,
		Corrupted: e.corrupted, Duplicates: e.duplicates}})
}

// initialRecs is the agent's records allocated at a session's start; they
// grow with the probes that come, not with the count the client asked for.
const initialRecs = 4096

// minEchoBuffer is the least an echo session's receive buffers hold.
const minEchoBuffer = 2048

// agentEcho answers one session's probes.
type agentEcho struct {
	id    uint32
	peer  netip.Addr // the control connection's client
	count int
	size  int // the session's probes' payload
	conn  *collector.Conn
	// client is the address and port the session's first valid probe came
	// from: the only one answered from then on. That probe had to come from
	// the control connection's address and carry the session's ID, a random
	// 32-bit number only the control connection told.
	client     netip.AddrPort
	seen       []uint64          // sequence numbers answered, a bit each
	recs       []wire.AgentStamp // one per reply sent, in order: index == transmit key
	ignored    int
	limited    int // of ignored, probes over the rate limit
	duplicates int // of ignored, probes whose sequence number was answered already
	corrupted  int
	rate       *bucket
	begun      atomic.Bool // a probe of the session was answered
}

// answered reports whether seq was answered already.
func (e *agentEcho) answered(seq uint32) bool { return e.seen[seq/64]&(1<<(seq%64)) != 0 }

func (e *agentEcho) mark(seq uint32, on bool) {
	if on {
		e.seen[seq/64] |= 1 << (seq % 64)
	} else {
		e.seen[seq/64] &^= 1 << (seq % 64)
	}
}

// accept checks a datagram against the session: its own client, a request
// of it, within the agreed count; a replay of an answered probe is a
// duplicate. Replies are never longer than the probe.
func (e *agentEcho) accept(h collector.ProbeHeader, ok bool, d *collector.Datagram) bool {
	if !ok || h.Session != e.id || h.Kind != collector.KindRequest || d.N < minEchoSize ||
		int(h.Seq) >= e.count || len(e.recs) >= e.count {
		return false
	}
	if !e.client.IsValid() {
		if d.From.Addr().Unmap() != e.peer {
			return false
		}
		e.client = d.From
	}
	if d.From != e.client {
		return false
	}
	if e.answered(h.Seq) {
		e.duplicates++
		return false
	}
	return true
}

// run answers in batches: recvmmsg, check, sendmmsg of the replies.
func (e *agentEcho) run() {
	// A probe's size, and a frame's at least (a longer datagram is still
	// answered at its length): 64 KiB buffers cost every session 4 MiB,
	// which 64 echo sessions at once spent in zeroing and collecting
	// instead of answering.
	bufs := make([][]byte, collector.MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, max(e.size+1, minEchoBuffer))
	}
	in := make([]collector.Datagram, collector.MaxBatch)
	out := make([][]byte, 0, collector.MaxBatch)
	for {
		n, err := e.conn.RecvBatch(bufs, in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || collector.IsTimeout(err) {
				return
			}
			continue
		}
		out = out[:0]
		first := len(e.recs)
		for i := range n {
			d := &in[i]
			pkt := bufs[i][:d.N]
			h, ok := collector.ParseProbeHeader(pkt)
			if !e.accept(h, ok, d) {
				e.ignored++
				continue
			}
			if !e.rate.take(d.Stamps[dump.SourceUser]) {
				e.ignored++
				e.limited++ // lost there, and said why
				continue
			}
			e.mark(h.Seq, true)
			e.begun.Store(true)
			pkt[12] = byte(collector.KindReply)
			if !probeIntact(pkt) {
				pkt[13] |= flagCorrupt
				e.corrupted++
			}
			e.recs = append(e.recs, wire.AgentStamp{Seq: h.Seq, Rx: d.Stamps, Order: uint32(len(e.recs) + 1)})
			out = append(out, pkt)
		}
		if len(out) == 0 {
			continue
		}
		_, user, sent, _ := e.conn.SendBatch(out, e.client)
		for i := range sent {
			e.recs[first+i].Tx[dump.SourceUser] = user
		}
		// A reply the kernel refused is not a reply: forget its record, so
		// that records and transmit keys stay one to one.
		for _, r := range e.recs[first+sent:] {
			e.mark(r.Seq, false)
		}
		e.recs = e.recs[:first+sent]
		if len(e.recs)/collector.MaxBatch != first/collector.MaxBatch {
			e.conn.TxStamps(e.onTx)
		}
	}
}

func (e *agentEcho) onTx(key uint32, s dump.Stamps) {
	if int(key) < len(e.recs) {
		e.recs[key].Tx[dump.SourceSW] = s[dump.SourceSW]
		e.recs[key].Tx[dump.SourceHW] = s[dump.SourceHW]
	}
}
