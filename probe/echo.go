package probe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
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
// number; the collector's reader goroutine fills it.
type seqStamps struct {
	mu       sync.Mutex
	out, in  []int64 // egress, ingress times
	outKind  collector.Kind
	inKind   collector.Kind
	observed int
}

func newSeqStamps(n int, outKind, inKind collector.Kind) *seqStamps {
	return &seqStamps{out: make([]int64, n), in: make([]int64, n), outKind: outKind, inKind: inKind}
}

func (s *seqStamps) sink(ev *collector.ProbeEvent) {
	if int(ev.Seq) >= len(s.out) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
func stampSession(st Stamper, id uint32, port uint16, peer netip.Addr, sink func(*collector.ProbeEvent)) (func(), error) {
	ifindex, err := collector.IfindexFor(peer)
	if err != nil {
		return nil, err
	}
	if err := st.Attach(ifindex); err != nil {
		return nil, err
	}
	if err := st.AddSession(id, port, sink); err != nil {
		st.Detach(ifindex)
		return nil, err
	}
	return func() {
		st.RemoveSession(id)
		st.Detach(ifindex)
	}, nil
}

// drainTx collects transmit timestamps until want of them arrived or
// txStampWait passed since traffic stopped.
func drainTx(c *collector.Conn, want int, fn func(key uint32, s dump.Stamps)) error {
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

func (s *Server) checkEcho(p EchoParams) error {
	l := s.cfg.Limits
	switch {
	case p.Count < 1 || p.Count > l.MaxPackets:
		return refusal("limit", "packet count %d outside 1..%d", p.Count, l.MaxPackets)
	case p.Size < collector.ProbeHeaderLen || p.Size > l.MaxPacketSize:
		return refusal("limit", "packet size %d outside %d..%d bytes", p.Size, collector.ProbeHeaderLen, l.MaxPacketSize)
	case p.Interval < 0:
		return refusal("bad-request", "negative interval %v", p.Interval)
	case time.Duration(p.Count)*p.Interval > l.MaxDuration:
		return refusal("limit", "%d packets every %v last longer than the agent's limit of %v", p.Count, p.Interval, l.MaxDuration)
	}
	return nil
}

// serveEcho is the agent's half of an echo session: it answers the client's
// probes, one reply of the same length per probe, until the client says
// Finish, then returns its timestamps.
func (s *Server) serveEcho(ctx context.Context, conn net.Conn, fc *frameConn, p EchoParams) error {
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
	id := newSessionID()
	port := uc.LocalAddr().Port()

	sources := []string{dump.SourceSW.String(), dump.SourceUser.String()}
	ebpf := newSeqStamps(p.Count, collector.KindReply, collector.KindRequest)
	if s.cfg.Stamper != nil {
		undo, err := stampSession(s.cfg.Stamper, id, port, peer, ebpf.sink)
		if err != nil {
			s.log.Warn("no eBPF timestamps for this session", "err", err)
		} else {
			defer undo()
			sources = append([]string{dump.SourceEBPF.String()}, sources...)
		}
	}
	if err := fc.write(&Message{Opened: &Opened{Session: id, Port: port, Sources: sources}}); err != nil {
		return err
	}

	deadline := time.Now().Add(s.cfg.Limits.MaxDuration)
	uc.SetReadDeadline(deadline)
	e := &agentEcho{id: id, peer: peer, count: p.Count, conn: uc, rate: newBucket(s.cfg.Limits.MaxRate)}
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		e.run()
	}()
	conn.SetReadDeadline(deadline.Add(5 * time.Second))
	m, err := fc.read()
	uc.SetReadDeadline(time.Now()) // ends the loop
	<-loopDone
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		return err
	}
	if m.Finish == nil {
		return fmt.Errorf("%w: expected finish, got %s", errMalformed, m.kind())
	}

	if err := drainTx(uc, len(e.recs), e.onTx); err != nil {
		return err
	}
	if s.cfg.Stamper != nil {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.cfg.Stamper.Flush(fctx)
		cancel()
		if err != nil {
			return err
		}
	}
	ebpf.mu.Lock()
	for i := range e.recs {
		r := &e.recs[i]
		r.Rx[dump.SourceEBPF] = ebpf.in[r.Seq]
		r.Tx[dump.SourceEBPF] = ebpf.out[r.Seq]
	}
	ebpf.mu.Unlock()
	for start := 0; start < len(e.recs); start += stampBatch {
		batch := e.recs[start:min(start+stampBatch, len(e.recs))]
		if err := fc.write(&Message{Stamps: &Stamps{Records: batch}}); err != nil {
			return err
		}
	}
	return fc.write(&Message{Done: &Done{Received: len(e.recs), Ignored: e.ignored}})
}

// agentEcho answers one session's probes.
type agentEcho struct {
	id      uint32
	peer    netip.Addr
	count   int
	conn    *collector.Conn
	recs    []AgentStamp // one per reply sent, in order: index == transmit key
	ignored int
	rate    *bucket
}

func (e *agentEcho) run() {
	buf := make([]byte, 65536)
	for {
		d, err := e.conn.Recv(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || collector.IsTimeout(err) {
				return
			}
			continue
		}
		pkt := buf[:d.N]
		h, ok := collector.ParseProbeHeader(pkt)
		// Only the client that opened the session is answered, at most once
		// per agreed packet, and never with more bytes than it sent.
		if !ok || h.Session != e.id || h.Kind != collector.KindRequest ||
			int(h.Seq) >= e.count || len(e.recs) >= e.count || d.From.Addr().Unmap() != e.peer ||
			!e.rate.take(d.Stamps[dump.SourceUser]) {
			e.ignored++
			continue
		}
		pkt[12] = byte(collector.KindReply)
		rec := AgentStamp{Seq: h.Seq, Rx: d.Stamps}
		_, user, err := e.conn.Send(pkt, d.From)
		if err != nil {
			e.ignored++
			continue
		}
		rec.Tx[dump.SourceUser] = user
		e.recs = append(e.recs, rec)
		if len(e.recs)%64 == 0 {
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

// EchoResult is what an echo session measured, before any statistics.
type EchoResult struct {
	Params        EchoParams
	Records       []dump.EchoRecord // one per probe sent, by sequence number
	AgentSources  []string
	ClientSources []string
	AgentIgnored  int
	Started       time.Time
	Interrupted   bool // ctx ended before every probe was sent
}

// Echo runs an echo session: it sends p.Count probes of p.Size bytes every
// p.Interval, waits up to wait after the last one for replies, and gathers
// both ends' timestamps. When ctx ends early it stops sending and still
// returns what was measured.
func (c *Client) Echo(ctx context.Context, p EchoParams, wait time.Duration) (*EchoResult, error) {
	if err := c.fc.write(&Message{Open: &Open{Mode: "echo", Echo: &p}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	op := m.Opened
	agent := netip.AddrPortFrom(c.AgentAddr(), op.Port)
	uc, err := collector.DialUDP(ctx, agent)
	if err != nil {
		return nil, err
	}
	defer uc.Close()

	res := &EchoResult{Params: p, AgentSources: op.Sources, Started: time.Now(),
		ClientSources: []string{dump.SourceSW.String(), dump.SourceUser.String()}}
	ebpf := newSeqStamps(p.Count, collector.KindRequest, collector.KindReply)
	if c.cfg.Stamper != nil {
		undo, err := stampSession(c.cfg.Stamper, op.Session, op.Port, agent.Addr(), ebpf.sink)
		if err != nil {
			return nil, fmt.Errorf("eBPF timestamps: %w", err)
		}
		defer undo()
		res.ClientSources = append([]string{dump.SourceEBPF.String()}, res.ClientSources...)
	}

	recs := make([]dump.EchoRecord, p.Count)
	for i := range recs {
		recs[i].Seq, recs[i].Size = uint32(i), p.Size
	}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		receiveReplies(uc, op.Session, recs)
	}()

	sent, seqOfKey := sendProbes(ctx, uc, op.Session, p, recs)
	res.Interrupted = sent < p.Count
	uc.SetReadDeadline(time.Now().Add(wait))
	<-recvDone
	if err := drainTx(uc, len(seqOfKey), txToRecords(recs, &seqOfKey)); err != nil {
		return nil, err
	}
	if c.cfg.Stamper != nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		err := c.cfg.Stamper.Flush(fctx)
		cancel()
		if err != nil {
			return nil, err
		}
		ebpf.mu.Lock()
		for i := range recs {
			recs[i].ClientTx[dump.SourceEBPF] = ebpf.out[i]
			recs[i].ClientRx[dump.SourceEBPF] = ebpf.in[i]
		}
		ebpf.mu.Unlock()
	}

	// The agent's records arrive after Finish, whatever ctx says, so that
	// nothing measured is lost on Ctrl-C.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.write(&Message{Finish: &Finish{}}); err != nil {
		return nil, err
	}
	for {
		m, err := c.fc.read()
		if err != nil {
			return nil, fmt.Errorf("read agent records: %w", err)
		}
		switch {
		case m.Stamps != nil:
			for _, a := range m.Stamps.Records {
				if int(a.Seq) < len(recs) && recs[a.Seq].AgentRx == (dump.Stamps{}) {
					recs[a.Seq].AgentRx, recs[a.Seq].AgentTx = a.Rx, a.Tx
				}
			}
		case m.Done != nil:
			res.AgentIgnored = m.Done.Ignored
			res.Records = recs[:sent]
			return res, nil
		case m.Error != nil:
			return nil, fmt.Errorf("agent: %w", m.Error)
		default:
			return nil, fmt.Errorf("agent sent %s during results", m.kind())
		}
	}
}

// sendProbes sends on an absolute schedule, so that one late wake-up does
// not delay every later probe. It returns how many it sent and, by transmit
// key, the sequence number each key belongs to.
func sendProbes(ctx context.Context, uc *collector.Conn, session uint32, p EchoParams, recs []dump.EchoRecord) (int, []uint32) {
	buf := make([]byte, p.Size)
	seqOfKey := make([]uint32, 0, len(recs))
	onTx := txToRecords(recs, &seqOfKey)
	start := time.Now()
	for i := range recs {
		if ctx.Err() != nil {
			return i, seqOfKey
		}
		if p.Interval > 0 {
			if d := time.Until(start.Add(time.Duration(i) * p.Interval)); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return i, seqOfKey
				}
			}
		}
		collector.ProbeHeader{Session: session, Seq: uint32(i), Kind: collector.KindRequest}.Put(buf)
		_, user, err := uc.Send(buf, netip.AddrPort{})
		if err != nil {
			// The probe is counted as sent and lost: a send error is part
			// of what the path did to it.
			continue
		}
		seqOfKey = append(seqOfKey, uint32(i))
		recs[i].ClientTx[dump.SourceUser] = user
		if i%64 == 63 {
			uc.TxStamps(onTx)
		}
	}
	return len(recs), seqOfKey
}

// txToRecords files transmit timestamps under the probe each key belongs to.
func txToRecords(recs []dump.EchoRecord, seqOfKey *[]uint32) func(uint32, dump.Stamps) {
	return func(key uint32, s dump.Stamps) {
		if int(key) < len(*seqOfKey) {
			r := &recs[(*seqOfKey)[key]]
			r.ClientTx[dump.SourceSW] = s[dump.SourceSW]
			r.ClientTx[dump.SourceHW] = s[dump.SourceHW]
		}
	}
}

// receiveReplies records the replies of session until the read deadline
// passes or every probe has its reply.
func receiveReplies(uc *collector.Conn, session uint32, recs []dump.EchoRecord) {
	buf := make([]byte, 65536)
	pending := len(recs)
	for pending > 0 {
		d, err := uc.Recv(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || collector.IsTimeout(err) {
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP error: keep listening
		}
		h, ok := collector.ParseProbeHeader(buf[:d.N])
		if !ok || h.Session != session || h.Kind != collector.KindReply || int(h.Seq) >= len(recs) {
			continue
		}
		r := &recs[h.Seq]
		r.Replies++
		if r.Replies == 1 {
			r.ClientRx = d.Stamps
			pending--
		}
	}
}
