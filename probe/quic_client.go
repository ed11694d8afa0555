package probe

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/quic-go/quic-go"
)

// QUICResult is what both sides saw of a QUIC test.
type QUICResult struct {
	Params  QUICParams
	Started time.Time
	// Handshakes are the first connection's (a full handshake) and the
	// second's (resuming the first's TLS session, its request in 0-RTT);
	// the second carries the datagrams and the data phase.
	Handshakes []dump.QUICHandshake
	Pings      []dump.QUICPing
	Version    string // QUIC version of the data connection
	Client     QUICSide
	Agent      QUICSide
}

// QUIC runs a QUIC test: it opens a session, connects twice (timing a full
// and a resumed handshake), echoes datagrams, moves data on p.Streams
// streams for p.Duration or p.Bytes as p.Direction says, and gathers both
// sides' byte counts, connection statistics and CPU times. When ctx ends
// early, it stops and still returns what was measured.
func (c *Client) QUIC(ctx context.Context, p QUICParams, trust QUICTrust) (*QUICResult, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if err := c.fc.write(&Message{Open: &Open{Mode: "quic", QUIC: &p}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	res, err := c.quicSession(ctx, p, trust, m.Opened)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) quicSession(ctx context.Context, p QUICParams, trust QUICTrust, o *Opened) (*QUICResult, error) {
	// Until the data phase starts, a failure ends the session with Finish
	// and leaves the control connection usable.
	abort := func(err error) (*QUICResult, error) {
		c.fc.write(&Message{Finish: &Finish{}})
		return nil, err
	}
	agent := netip.AddrPortFrom(c.AgentAddr(), o.Port)
	check := &certCheck{}
	tlsConf, err := clientTLS(trust, c.host, o.CertSHA256, check)
	if err != nil {
		return abort(err)
	}
	udp, bufs, warns, err := listenQUICUDP(netip.AddrPortFrom(c.LocalAddr(), 0))
	if err != nil {
		return abort(err)
	}
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()

	res := &QUICResult{Params: p}
	hs, qc, _, err := c.quicConnect(ctx, tr, agent, tlsConf, check)
	if err != nil {
		return abort(err)
	}
	qc.CloseWithError(0, "")
	hs2, qc, metrics, err := c.quicConnect(ctx, tr, agent, tlsConf, check)
	if err != nil {
		return abort(err)
	}
	defer qc.CloseWithError(0, "")
	res.Handshakes = []dump.QUICHandshake{hs, hs2}
	res.Version = qc.ConnectionState().Version.String()

	pg := newPinger(qc)
	pctx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	if p.PingEvery > 0 {
		go pg.receive(pctx)
		pg.every(pctx, p.Pings, p.PingEvery)
	}

	if err := c.fc.write(&Message{QUICStart: &QUICStart{}}); err != nil {
		return nil, err
	}
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = c.expect("quic_start")
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	side, err := c.quicData(ctx, p, qc, metrics, pg)
	if err != nil {
		return nil, err
	}
	// Echoes of the last pings get a moment to come back.
	if p.PingEvery > 0 {
		wait := 50*time.Millisecond + 2*qc.ConnectionStats().SmoothedRTT
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		stopPings()
		res.Pings = pg.results()
	}
	side.Buffers, side.Warnings = bufs, warns
	res.Client = side
	res.Started = pg.dataStart

	// The agent's account comes after Finish, whatever ctx says.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout + 10*time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.write(&Message{Finish: &Finish{}}); err != nil {
		return nil, err
	}
	res.Agent, err = agentSide(c, "quic_report", func(m *Message) (QUICSide, bool) { return m.QUICReport.Side, m.QUICReport.Last },
		func(s *QUICSide) *[]dump.QUICStream { return &s.Streams })
	if err != nil {
		return nil, err
	}
	return res, nil
}

// quicConnect dials the agent and times the handshake and the first byte
// of a one-byte perf response, sent in 0-RTT when tlsConf holds a session
// for the agent.
func (c *Client) quicConnect(ctx context.Context, tr *quic.Transport, agent netip.AddrPort, tlsConf *tls.Config, check *certCheck) (dump.QUICHandshake, *quic.Conn, *connMetrics, error) {
	m := &connMetrics{}
	dctx, cancel := context.WithTimeout(context.WithValue(ctx, metricsKey{}, m), c.cfg.Timeout)
	defer cancel()
	t0 := time.Now()
	qc, err := tr.DialEarly(dctx, net.UDPAddrFromAddrPort(agent), tlsConf, quicConfig())
	if err != nil {
		return dump.QUICHandshake{}, nil, nil, quicDialError(agent, err, check)
	}
	handshake := make(chan time.Duration, 1)
	go func() {
		select {
		case <-qc.HandshakeComplete():
			handshake <- time.Since(t0)
		case <-qc.Context().Done():
			handshake <- 0
		}
	}()
	first, err := firstByte(dctx, qc, t0)
	if errors.Is(err, quic.Err0RTTRejected) {
		// The agent refused the 0-RTT request: ask again in 1-RTT.
		if qc, err = qc.NextConnection(dctx); err == nil {
			first, err = firstByte(dctx, qc, t0)
		}
	}
	if err != nil {
		qc.CloseWithError(0, "")
		if f := check.failure(); f != nil {
			err = f
		}
		return dump.QUICHandshake{}, nil, nil, fmt.Errorf("QUIC handshake with %s: first byte: %w", agent, err)
	}
	hs := dump.QUICHandshake{Handshake: <-handshake, FirstByte: first}
	cs := qc.ConnectionState()
	hs.Resumed, hs.Used0RTT = cs.TLS.DidResume, cs.Used0RTT
	return hs, qc, m, nil
}

// firstByte asks for one byte on a new stream and returns the time from t0
// to its arrival.
func firstByte(ctx context.Context, qc *quic.Conn, t0 time.Time) (time.Duration, error) {
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	var hdr [perfRequestLen]byte
	putPerfRequest(hdr[:], 1)
	if _, err := s.Write(hdr[:]); err != nil {
		return 0, err
	}
	s.Close()
	deadline, _ := ctx.Deadline()
	s.SetReadDeadline(deadline)
	var b [1]byte
	if _, err := io.ReadFull(s, b[:]); err != nil {
		return 0, err
	}
	first := time.Since(t0)
	io.Copy(io.Discard, s)
	return first, nil
}

// quicDialError makes a failed handshake one clear line.
func quicDialError(agent netip.AddrPort, err error, check *certCheck) error {
	if f := check.failure(); f != nil {
		return fmt.Errorf("QUIC handshake with %s: %w", agent, f)
	}
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode.IsCryptoError() {
		// The TLS error itself, without quic-go's CRYPTO_ERROR code.
		if u, ok := error(te).(interface{ Unwrap() []error }); ok {
			for _, inner := range u.Unwrap() {
				if inner != nil && inner != net.ErrClosed {
					return fmt.Errorf("QUIC handshake with %s: %w", agent, inner)
				}
			}
		}
		return fmt.Errorf("QUIC handshake with %s: %v", agent, te)
	}
	var he *quic.HandshakeTimeoutError
	var ie *quic.IdleTimeoutError
	if errors.As(err, &he) || errors.As(err, &ie) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("QUIC handshake with %s: no answer (is UDP port %d blocked?)", agent, agent.Port())
	}
	return fmt.Errorf("QUIC handshake with %s: %w", agent, err)
}

// quicData is the client's data phase on qc.
func (c *Client) quicData(ctx context.Context, p QUICParams, qc *quic.Conn, m *connMetrics, pg *pinger) (QUICSide, error) {
	type job struct {
		st *quicStream
		s  *quic.Stream
		n  uint64 // bytes to send or ask for; 0: by time
	}
	var jobs []job
	per := uint64(p.Bytes) / uint64(p.Streams)
	for i := range p.Streams {
		n := per
		if i == p.Streams-1 {
			n += uint64(p.Bytes) % uint64(p.Streams) // the remainder rides on the last stream
		}
		for _, up := range []bool{true, false} {
			if (up && !p.uploads()) || (!up && !p.downloads()) {
				continue
			}
			s, err := qc.OpenStreamSync(ctx)
			if err != nil {
				for _, j := range jobs {
					j.s.CancelWrite(perfStop)
				}
				return QUICSide{}, fmt.Errorf("open stream %d: %w", len(jobs), err)
			}
			st := &quicStream{id: int64(s.StreamID()), dir: "up", sends: up}
			if !up {
				st.dir, st.requested = "down", n
				if n == 0 {
					st.requested = perfUnlimited
				}
			}
			jobs = append(jobs, job{st, s, n})
		}
	}
	run := newQUICRun(p.Interval)
	for _, j := range jobs {
		run.add(j.st)
	}
	run.begin(qc, m)
	pg.load(run.start)
	deadline := run.start.Add(p.Duration)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer run.ended()
			stop := context.AfterFunc(ctx, func() {
				j.s.CancelWrite(perfStop)
				j.s.CancelRead(perfStop)
			})
			defer stop()
			if j.st.sends {
				upload(run, j.s, j.st, j.n, deadline, p.WriteSize)
			} else {
				download(run, j.s, j.st, j.n, deadline)
			}
		}()
	}
	wg.Wait()
	return run.end(), nil
}

// upload sends n bytes (0: until the deadline) after a request for none,
// closes, and waits for the agent's close, which says it has drained
// every byte.
func upload(r *quicRun, s *quic.Stream, st *quicStream, n uint64, deadline time.Time, size int) {
	var hdr [perfRequestLen]byte
	if _, err := s.Write(hdr[:]); err != nil {
		r.fail(st, "write: %v", err)
		return
	}
	buf := make([]byte, size)
	if n == 0 {
		s.SetWriteDeadline(deadline)
	}
	for {
		b := buf
		if n > 0 {
			left := n - st.sent.Load()
			if left == 0 {
				break
			}
			b = buf[:min(uint64(len(buf)), left)]
		}
		k, err := s.Write(b)
		st.sent.Add(uint64(k))
		if err != nil {
			if !collector.IsTimeout(err) {
				r.fail(st, "write: %v", quicStreamError(err))
				return
			}
			break
		}
	}
	s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		r.fail(st, "the agent's close: %v", quicStreamError(err))
	}
}

// download asks for n bytes (0: as many as come until the deadline) and
// reads them.
func download(r *quicRun, s *quic.Stream, st *quicStream, n uint64, deadline time.Time) {
	var hdr [perfRequestLen]byte
	putPerfRequest(hdr[:], st.requested)
	if _, err := s.Write(hdr[:]); err != nil {
		r.fail(st, "write the request: %v", quicStreamError(err))
		return
	}
	s.Close()
	if n == 0 {
		s.SetReadDeadline(deadline)
	}
	err := drain(s, &st.recvd, make([]byte, 256<<10))
	switch {
	case n == 0 && collector.IsTimeout(err):
		s.CancelRead(perfStop) // enough: STOP_SENDING ends the agent's side
	case err != nil:
		r.fail(st, "read: %v", quicStreamError(err))
	case n == 0:
		r.fail(st, "the agent ended an unlimited response early after %d bytes (its byte limit?)", st.recvd.Load())
	case st.recvd.Load() != n:
		r.fail(st, "received %d of %d bytes", st.recvd.Load(), n)
	}
}

// quicStreamError names the agent's refusal.
func quicStreamError(err error) error {
	if isStreamCode(err, perfErrLimit) {
		return errors.New("the agent refused the stream: over its byte limit per session")
	}
	return err
}

// pinger sends datagrams on a connection and times their echoes.
type pinger struct {
	qc        *quic.Conn
	mu        sync.Mutex
	t0        time.Time
	sent      []time.Time
	pings     []dump.QUICPing
	loaded    atomic.Bool
	dataStart time.Time
}

// pingLen is a ping's payload: magic, sequence number, padding.
const pingLen = 16

func newPinger(qc *quic.Conn) *pinger { return &pinger{qc: qc, t0: time.Now()} }

// load marks the pings from now on as sent during the data phase, and
// sends them until ctx ends.
func (pg *pinger) load(start time.Time) {
	pg.mu.Lock()
	pg.dataStart = start
	pg.mu.Unlock()
	pg.loaded.Store(true)
}

// every sends n pings (then goes on until ctx ends, in the background),
// one each d.
func (pg *pinger) every(ctx context.Context, n int, d time.Duration) {
	t := time.NewTicker(d)
	for range n {
		pg.send()
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	go func() {
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if pg.loaded.Load() {
					pg.send()
				}
			}
		}
	}()
}

func (pg *pinger) send() {
	var b [pingLen]byte
	binary.BigEndian.PutUint32(b[:], collector.ProbeMagic)
	pg.mu.Lock()
	seq := uint32(len(pg.pings))
	now := time.Now()
	pg.pings = append(pg.pings, dump.QUICPing{Seq: seq, Sent: now.Sub(pg.t0), Loaded: pg.loaded.Load()})
	pg.sent = append(pg.sent, now)
	pg.mu.Unlock()
	binary.BigEndian.PutUint32(b[4:], seq)
	pg.qc.SendDatagram(b[:])
}

func (pg *pinger) receive(ctx context.Context) {
	for {
		b, err := pg.qc.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		if len(b) != pingLen || binary.BigEndian.Uint32(b) != collector.ProbeMagic {
			continue
		}
		seq := binary.BigEndian.Uint32(b[4:])
		pg.mu.Lock()
		if int(seq) < len(pg.pings) && pg.pings[seq].RTT == 0 {
			pg.pings[seq].RTT = now.Sub(pg.sent[seq])
		}
		pg.mu.Unlock()
	}
}

func (pg *pinger) results() []dump.QUICPing {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return append([]dump.QUICPing(nil), pg.pings...)
}
