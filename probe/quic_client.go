package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/quic-go/quic-go"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
)

// QUICResult is what both sides saw of a QUIC test.
type QUICResult struct {
	Params QUICParams
	// PerfOnly: the test ran against a perf server without a control
	// connection (PerfQUIC), so Agent is empty, the server's side unknown,
	// and there are no Pings.
	PerfOnly bool
	Started  time.Time
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
	return c.QUICLive(ctx, p, trust, nil)
}

// QUICLive is QUIC that also shows this side's figures live, after every
// sample of the data phase.
func (c *Client) QUICLive(ctx context.Context, p QUICParams, trust QUICTrust, live QUICLiveFunc) (*QUICResult, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeQUIC, QUIC: &p}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	res, err := c.quicSession(ctx, p, trust, m.Opened, live)
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) quicSession(ctx context.Context, p QUICParams, trust QUICTrust, o *wire.Opened, live QUICLiveFunc) (*QUICResult, error) {
	// Until the data phase starts, a failure ends the session with Finish
	// and leaves the control connection usable.
	abort := func(err error) (*QUICResult, error) {
		c.fc.Write(&wire.Message{Finish: &wire.Finish{}})
		return nil, err
	}
	agent := netip.AddrPortFrom(c.AgentAddr(), o.Port)
	check := &certCheck{}
	tlsConf, err := clientTLS(trust, c.host, o.CertSHA256, check)
	if err != nil {
		return abort(err)
	}
	cq, err := openClientQUIC(netip.AddrPortFrom(c.LocalAddr(), 0))
	if err != nil {
		return abort(err)
	}
	defer cq.close()
	res := &QUICResult{Params: p}
	qc, metrics, err := cq.connectTwice(ctx, res, agent, tlsConf, check, c.cfg.Timeout, p.Uploads())
	if err != nil {
		return abort(err)
	}
	defer qc.CloseWithError(0, "")

	pg := newPinger(qc)
	pctx, stopPings := context.WithCancel(ctx)
	defer stopPings()
	if p.PingEvery > 0 {
		go pg.receive(pctx)
		pg.every(pctx, p.Pings, p.PingEvery)
	}

	if err := c.fc.Write(&wire.Message{QUICStart: &wire.QUICStart{}}); err != nil {
		return nil, err
	}
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = c.expect("quic_start")
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}
	side, err := quicData(ctx, p, qc, metrics, pg, "agent", live)
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
	res.Client = cq.side(side)
	res.Started = side.start

	// The agent's account comes after Finish, whatever ctx says.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout + 10*time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.Write(&wire.Message{Finish: &wire.Finish{}}); err != nil {
		return nil, err
	}
	res.Agent, err = agentSide(c, "quic_report", func(m *wire.Message) (QUICSide, bool) { return m.QUICReport.Side, m.QUICReport.Last },
		func(s *QUICSide) *[]dump.QUICStream { return &s.Streams })
	if err != nil {
		return nil, err
	}
	return res, nil
}

// clientQUIC is the client's QUIC endpoint for one test, with or without
// a control connection: its UDP socket, with the buffers it got, and the
// transport its connections share.
type clientQUIC struct {
	udp   *net.UDPConn
	tr    *quic.Transport
	bufs  UDPBuffers
	warns []string
	// tokens keeps the server's address tokens, so that a server that
	// validates addresses with Retry (serve --quic-perf) lets the second
	// connection in without one, and its 0-RTT request is not lost.
	tokens quic.TokenStore
}

func openClientQUIC(local netip.AddrPort) (*clientQUIC, error) {
	udp, bufs, warns, err := listenQUICUDP(local)
	if err != nil {
		return nil, err
	}
	return &clientQUIC{udp: udp, tr: &quic.Transport{Conn: udp}, bufs: bufs, warns: warns, tokens: quic.NewLRUTokenStore(4, 4)}, nil
}

func (cq *clientQUIC) close() {
	cq.tr.Close()
	cq.udp.Close()
}

// side is the client's account of the data phase with its socket's buffers.
func (cq *clientQUIC) side(d dataSide) QUICSide {
	s := d.QUICSide
	s.Buffers, s.Warnings = cq.bufs, cq.warns
	return s
}

// connectTwice connects to the server at peer twice, timing a full
// handshake and then one that resumes the first's TLS session with its
// request in 0-RTT (when the server issued a ticket and takes early data),
// and returns the second connection, which carries the data phase, with
// its bytes-in-flight tracer when sends says this side sends data. The
// handshakes and the QUIC version go into res.
func (cq *clientQUIC) connectTwice(ctx context.Context, res *QUICResult, peer netip.AddrPort, tlsConf *tls.Config, check *certCheck,
	timeout time.Duration, sends bool) (*quic.Conn, *connMetrics, error) {
	conf := quicConfig()
	conf.TokenStore = cq.tokens
	hs, qc, _, err := quicConnect(ctx, cq.tr, conf, peer, tlsConf, check, timeout, false)
	if err != nil {
		return nil, nil, err
	}
	qc.CloseWithError(0, "")
	hs2, qc, metrics, err := quicConnect(ctx, cq.tr, conf, peer, tlsConf, check, timeout, sends)
	if err != nil {
		return nil, nil, err
	}
	res.Handshakes = []dump.QUICHandshake{hs, hs2}
	res.Version = qc.ConnectionState().Version.String()
	return qc, metrics, nil
}

// quicConnect dials the server at peer and times the handshake and the
// first byte of a one-byte perf response, sent in 0-RTT when tlsConf holds
// a session for the server. With trace, the connection keeps its bytes in
// flight (connMetrics); else the returned *connMetrics is nil.
func quicConnect(ctx context.Context, tr *quic.Transport, conf *quic.Config, peer netip.AddrPort, tlsConf *tls.Config, check *certCheck,
	timeout time.Duration, trace bool) (dump.QUICHandshake, *quic.Conn, *connMetrics, error) {
	var m *connMetrics
	if trace {
		m = &connMetrics{}
		ctx = context.WithValue(ctx, metricsKey{}, m)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	qc, err := tr.DialEarly(dctx, net.UDPAddrFromAddrPort(peer), tlsConf, conf)
	if err != nil {
		return dump.QUICHandshake{}, nil, nil, quicDialError(peer, err, check)
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
		// The server refused the 0-RTT request: ask again in 1-RTT.
		if qc, err = qc.NextConnection(dctx); err == nil {
			first, err = firstByte(dctx, qc, t0)
		}
	}
	if err != nil {
		qc.CloseWithError(0, "")
		if f := check.failure(); f != nil {
			err = f
		}
		return dump.QUICHandshake{}, nil, nil, fmt.Errorf("QUIC handshake with %s: first byte: %w", peer, err)
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

// dataSide is the client's account of a data phase and when it started.
type dataSide struct {
	QUICSide
	start time.Time
}

// quicData is the client's data phase on qc, against an agent or any perf
// server (peer names it in the streams' errors); pg, when not nil, marks
// the pings from its start on as sent under load.
func quicData(ctx context.Context, p QUICParams, qc *quic.Conn, m *connMetrics, pg *pinger, peer string, live QUICLiveFunc) (dataSide, error) {
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
			if (up && !p.Uploads()) || (!up && !p.Downloads()) {
				continue
			}
			s, err := qc.OpenStreamSync(ctx)
			if err != nil {
				for _, j := range jobs {
					j.s.CancelWrite(perfStop)
				}
				return dataSide{}, fmt.Errorf("open stream %d: %w", len(jobs), err)
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
	run.peer, run.live = peer, live
	for _, j := range jobs {
		run.add(j.st)
	}
	run.begin(qc, m)
	if pg != nil {
		pg.load()
	}
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
	return dataSide{run.end(), run.start}, nil
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
				r.fail(st, "write: %v", r.streamError(err))
				return
			}
			break
		}
	}
	s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		r.fail(st, "the %s's close: %v", r.who(), r.streamError(err))
	}
}

// download asks for n bytes (0: as many as come until the deadline) and
// reads them.
func download(r *quicRun, s *quic.Stream, st *quicStream, n uint64, deadline time.Time) {
	var hdr [perfRequestLen]byte
	putPerfRequest(hdr[:], st.requested)
	if _, err := s.Write(hdr[:]); err != nil {
		r.fail(st, "write the request: %v", r.streamError(err))
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
		r.fail(st, "read: %v", r.streamError(err))
	case n == 0:
		r.fail(st, "the %s ended an unlimited response early after %d bytes (its byte limit?)", r.who(), st.recvd.Load())
	case st.recvd.Load() != n:
		r.fail(st, "received %d of %d bytes", st.recvd.Load(), n)
	}
}

// streamError names the agent's refusal; another perf server's codes mean
// what it says they mean.
func (r *quicRun) streamError(err error) error {
	if r.who() != "agent" {
		return err
	}
	return quicStreamError(err)
}

// quicStreamError names the agent's refusal.
func quicStreamError(err error) error {
	if isStreamCode(err, perfErrLimit) {
		return errors.New("the agent refused the stream: over its byte limit per session")
	}
	return err
}
