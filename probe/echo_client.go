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

// EchoResult is what an echo session measured, before any statistics.
type EchoResult struct {
	Params        EchoParams
	Point         dump.EchoPoint    // parameters and host drop counts, for the dump and the estimator
	Records       []dump.EchoRecord // one per probe sent, by sequence number
	AgentSources  []string
	ClientSources []string
	AgentIgnored  int
	Started       time.Time
	Interrupted   bool     // ctx ended before every probe was sent
	Warnings      []string // e.g. no eBPF timestamps for this session
	// The UDP endpoints of the probes, for a packet capture of them.
	Local, Agent netip.AddrPort
}

// EchoOptions are the client-side settings of an echo session.
type EchoOptions struct {
	// Wait bounds the wait for replies after the last probe; the wait also
	// ends once every probe has its reply, or none came for idleWait.
	Wait      time.Duration
	LocalPort uint16 // the client's UDP port; 0: any
}

// idleWait ends the wait for replies when none has come for this long.
const idleWait = 200 * time.Millisecond

// Echo runs an echo session: it sends p.Count probes of p.Size bytes every
// p.Interval (back to back, in batches, when 0), collects the replies, and
// gathers both ends' timestamps. When ctx ends early it stops sending and
// still returns what was measured.
func (c *Client) Echo(ctx context.Context, p EchoParams, o EchoOptions) (*EchoResult, error) {
	if p.Size < minEchoSize {
		return nil, fmt.Errorf("echo payload of %d bytes: the probe header and checksum need %d", p.Size, minEchoSize)
	}
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeEcho, Echo: &p}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	op := m.Opened
	agent := netip.AddrPortFrom(c.AgentAddr(), op.Port)
	to := agent
	if c.relay != nil {
		to = c.relay(agent) // tests put a relay in the path
	}
	uc, err := c.dialUDP(ctx, to, o.LocalPort)
	if err != nil {
		return nil, err
	}
	defer uc.Close()
	if _, _, err := uc.Apply(collector.SocketOptions{RcvBuf: p.RcvBuf, SndBuf: p.SndBuf, DSCP: p.DSCP, TTL: p.TTL}); err != nil {
		return nil, err
	}
	drops0, _ := uc.Drops()

	res := &EchoResult{Params: p, AgentSources: op.Sources, Started: time.Now(), Local: uc.LocalAddr(), Agent: agent,
		ClientSources: []string{dump.SourceSW.String(), dump.SourceUser.String()},
		Point:         dump.EchoPoint{Size: p.Size, Wait: p.Interval, Count: p.Count, IPHeader: ipOverhead(agent.Addr())}}
	ebpf := newSeqStamps(p.Count, collector.KindRequest, collector.KindReply)
	if p.Interval == 0 && !p.NoGSO {
		// It also stops transmit stamps; without GSO in the kernel, probes
		// go one per send as with --no-gso.
		_ = uc.UseGSO()
	}
	stamper := c.cfg.Stamper
	if stamper != nil {
		undo, err := stampSession(stamper, op.Session, op.Port, agent.Addr(), ebpf.want(), ebpf.sink)
		if err != nil && c.cfg.RequireStamper {
			return nil, fmt.Errorf("eBPF timestamps: %w", err)
		}
		if err != nil {
			res.Warnings = append(res.Warnings, ebpfFallback(err))
			stamper, undo = nil, func() {}
		}
		defer undo()
	}
	if stamper != nil {
		res.ClientSources = append([]string{dump.SourceEBPF.String()}, res.ClientSources...)
		if p.Interval == 0 && uc.TxStamping() {
			if err := uc.StopTxStamps(); err != nil {
				return nil, err
			}
		}
	}

	recs := make([]dump.EchoRecord, p.Count)
	for i := range recs {
		recs[i].Seq, recs[i].Size = uint32(i), p.Size
	}
	rx := &echoReceiver{conn: uc, session: op.Session, recs: recs, pending: p.Count, size: p.Size}
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		rx.run()
	}()

	tx := &echoSender{conn: uc, session: op.Session, p: p, recs: recs}
	sent, err := tx.run(ctx)
	if err != nil {
		uc.Close()
		<-recvDone
		return nil, err
	}
	res.Interrupted = sent < p.Count
	if realtimePacing(p.Interval) && !tx.realtime {
		res.Warnings = append(res.Warnings, "the sender ran in the ordinary scheduling class (SCHED_FIFO needs root or CAP_SYS_NICE): on a loaded host its sends are late")
	}
	res.Point.GSO = uc.GSO()
	rx.finish(o.Wait)
	<-recvDone
	rx.stop()
	if err := drainTx(uc, len(tx.seqOfKey), tx.onTx); err != nil {
		return nil, err
	}
	if drops1, err := uc.Drops(); err == nil {
		res.Point.ClientSocketDrops = drops1 - drops0
	}
	if stamper != nil {
		if err := flush(ctx, stamper); err != nil {
			return nil, err
		}
		ebpf.mu.Lock()
		for i := range recs {
			out, in := ebpf.at(uint32(i))
			recs[i].ClientTx[dump.SourceEBPF] = out
			if recs[i].Replies > 0 {
				recs[i].ClientRx[dump.SourceEBPF] = in
			}
		}
		ebpf.mu.Unlock()
	}

	// The agent's records arrive after Finish, whatever ctx says, so that
	// nothing measured is lost on Ctrl-C.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.Write(&wire.Message{Finish: &wire.Finish{}}); err != nil {
		return nil, err
	}
	for {
		m, err := c.fc.Read()
		if err != nil {
			return nil, fmt.Errorf("read agent records: %w", err)
		}
		switch {
		case m.Stamps != nil:
			for _, a := range m.Stamps.Records {
				if int(a.Seq) < len(recs) && recs[a.Seq].AgentRx == (dump.Stamps{}) {
					r := &recs[a.Seq]
					r.AgentRx, r.AgentTx, r.AgentOrder = a.Rx, a.Tx, a.Order
				}
			}
		case m.Done != nil:
			res.AgentIgnored = m.Done.Ignored
			res.Point.AgentSocketDrops = m.Done.SocketDrops
			res.Point.AgentLimited = m.Done.Limited
			res.Point.AgentDuplicates = m.Done.Duplicates
			res.Records = recs[:sent]
			return res, nil
		case m.Error != nil:
			return nil, fmt.Errorf("agent: %w", m.Error)
		default:
			return nil, fmt.Errorf("agent sent %s during results", m.Kind())
		}
	}
}

// dialUDP opens the session's socket from the control connection's
// address, the one the agent answers.
func (c *Client) dialUDP(ctx context.Context, agent netip.AddrPort, localPort uint16) (*collector.Conn, error) {
	return collector.DialUDPFrom(ctx, netip.AddrPortFrom(c.LocalAddr(), localPort), agent)
}

// echoSender sends the probes of one session.
type echoSender struct {
	conn     *collector.Conn
	session  uint32
	p        EchoParams
	recs     []dump.EchoRecord
	seqOfKey []uint32 // transmit key -> sequence number
	realtime bool     // paced from SCHED_FIFO threads
}

// run sends every probe and returns how many it sent: paced ones on their
// schedule (see pace), back-to-back ones in sendmmsg batches.
func (s *echoSender) run(ctx context.Context) (int, error) {
	s.seqOfKey = make([]uint32, 0, len(s.recs))
	if s.p.Interval > 0 {
		bufs := [][]byte{make([]byte, s.p.Size)}
		sent, realtime, err := pace(ctx, collector.MonotonicNow(), s.p.Interval, len(s.recs), func(i int, at int64) {
			s.recs[i].Scheduled = at
			s.send(i, bufs)
		})
		s.realtime = realtime
		return sent, err
	}
	bufs := make([][]byte, collector.MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, s.p.Size)
	}
	for i := 0; i < len(s.recs); i += len(bufs) {
		if ctx.Err() != nil {
			return i, nil
		}
		s.send(i, bufs[:min(len(bufs), len(s.recs)-i)])
	}
	return len(s.recs), nil
}

// send sends probes i, i+1, … in bufs, stamping each as user space sends
// it, and reads the transmit stamps every MaxBatch probes.
func (s *echoSender) send(i int, bufs [][]byte) {
	for k := range bufs {
		fillProbe(bufs[k], collector.ProbeHeader{Session: s.session, Seq: uint32(i + k), Kind: collector.KindRequest})
	}
	first, user, sent, _ := s.conn.SendBatch(bufs, netip.AddrPort{})
	// A probe the kernel refused is counted as sent and lost: the send
	// error is part of what happened to it.
	for k := range sent {
		s.recs[i+k].ClientTx[dump.SourceUser] = user
		if uint32(len(s.seqOfKey)) == first+uint32(k) {
			s.seqOfKey = append(s.seqOfKey, uint32(i+k))
		}
	}
	if n := len(bufs); (i+n)%collector.MaxBatch < n {
		s.conn.TxStamps(s.onTx)
	}
}

func (s *echoSender) onTx(key uint32, st dump.Stamps) {
	if int(key) < len(s.seqOfKey) {
		r := &s.recs[s.seqOfKey[key]]
		r.ClientTx[dump.SourceSW] = st[dump.SourceSW]
		r.ClientTx[dump.SourceHW] = st[dump.SourceHW]
	}
}

// echoReceiver records the replies of a session.
type echoReceiver struct {
	conn    *collector.Conn
	session uint32
	size    int // of the probes, and so of their replies
	recs    []dump.EchoRecord
	pending int    // probes still without a reply
	order   uint32 // replies so far
	// until is the latest the wait for replies may end (CLOCK_MONOTONIC
	// ns), once the sender is done; 0 before.
	until atomic.Int64
	cap   *time.Timer
}

// run records replies until every probe has one, or the socket's read
// deadline passes (see finish).
func (r *echoReceiver) run() {
	// A byte more than a reply, so that a longer one shows as corrupt.
	bufs := make([][]byte, collector.MaxBatch)
	for i := range bufs {
		bufs[i] = make([]byte, r.size+1)
	}
	in := make([]collector.Datagram, collector.MaxBatch)
	for r.pending > 0 {
		n, err := r.conn.RecvBatch(bufs, in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || collector.IsTimeout(err) {
				return
			}
			continue // e.g. ECONNREFUSED from an ICMP error: keep listening
		}
		for i := range n {
			r.record(bufs[i][:in[i].N], &in[i])
		}
		if until := r.until.Load(); until != 0 {
			// The sender is done: each reply buys another idle period,
			// up to the cap.
			left := time.Duration(until - collector.MonotonicNow())
			r.conn.SetReadDeadline(time.Now().Add(max(0, min(idleWait, left))))
		}
	}
}

func (r *echoReceiver) record(pkt []byte, d *collector.Datagram) {
	h, ok := collector.ParseProbeHeader(pkt)
	if !ok || h.Session != r.session || h.Kind != collector.KindReply || int(h.Seq) >= len(r.recs) {
		return
	}
	rec := &r.recs[h.Seq]
	rec.Replies++
	if rec.Replies > 1 {
		return
	}
	r.pending--
	r.order++
	rec.ClientRx, rec.ClientOrder = d.Stamps, r.order
	if h.Flags&flagCorrupt != 0 {
		rec.Corrupt |= dump.CorruptThere
	} else if len(pkt) != rec.Size || !probeIntact(pkt) {
		rec.Corrupt |= dump.CorruptBack
	}
}

// finish bounds the wait for the last replies: idleWait after the last one,
// wait at most.
func (r *echoReceiver) finish(wait time.Duration) {
	r.until.Store(collector.MonotonicNow() + int64(wait))
	r.conn.SetReadDeadline(time.Now().Add(min(idleWait, wait)))
	r.cap = time.AfterFunc(wait, func() { r.conn.SetReadDeadline(time.Now()) })
}

func (r *echoReceiver) stop() { r.cap.Stop() }
