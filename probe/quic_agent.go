package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/quic-go/quic-go"
)

// maxQUICConns bounds the connections one session may open: the full and
// the resumed handshake, the data connection, and a retry.
const maxQUICConns = 4

// quicAgent is the agent's half of one QUIC session: a perf server on its
// own UDP port, taking connections only from the session's client, with a
// byte budget for the whole session.
type quicAgent struct {
	p      QUICParams
	budget atomic.Int64 // bytes the session may still move, both ways
	limit  int64

	mu      sync.Mutex
	conns   []*quic.Conn
	run     *quicRun       // nil until the data phase starts
	loops   sync.WaitGroup // per connection: accepting streams, echoing datagrams
	streams sync.WaitGroup // serving streams
}

// take reserves n bytes of the session's budget.
func (a *quicAgent) take(n uint64) bool {
	if n > uint64(a.limit) {
		return false
	}
	if a.budget.Add(-int64(n)) < 0 {
		a.budget.Add(int64(n))
		return false
	}
	return true
}

// serveQUIC is the agent's half of a QUIC test.
func (s *Server) serveQUIC(ctx context.Context, conn net.Conn, fc *wire.Conn, p QUICParams) error {
	if err := p.Check(); err != nil {
		return refusal(wire.CodeBadRequest, "%v", err)
	}
	lim := s.cfg.Limits
	if p.Duration > lim.MaxDuration {
		return refusal(wire.CodeLimit, "duration %v over the agent's limit of %v", p.Duration, lim.MaxDuration)
	}
	if p.Total() > lim.MaxBytes {
		return refusal(wire.CodeLimit, "%d bytes over the agent's limit of %d bytes per session", p.Total(), lim.MaxBytes)
	}
	tlsConf, sum, err := s.quic.get(s.cfg.QUICCert)
	if err != nil {
		return refusal(wire.CodeInternal, "%v", err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	udp, bufs, warns, err := listenQUICUDP(netip.AddrPortFrom(local, 0))
	if err != nil {
		return refusal(wire.CodeInternal, "%v", err)
	}
	// quic-go's Transport leaves a socket it was given open.
	defer udp.Close()
	for _, w := range warns {
		s.log.Warn(w)
	}
	a := &quicAgent{p: p, limit: lim.MaxBytes}
	a.budget.Store(lim.MaxBytes)
	sctx, cancel := context.WithTimeout(ctx, p.Duration+lim.MaxDuration)
	defer cancel()
	tr := &quic.Transport{Conn: udp,
		// Only the session's client gets a connection, and only a few.
		ConnContext: func(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
			ua, _ := ci.RemoteAddr.(*net.UDPAddr)
			a.mu.Lock()
			n := len(a.conns)
			a.mu.Unlock()
			if ua == nil || ua.AddrPort().Addr().Unmap() != peer || n >= maxQUICConns {
				return nil, errors.New("not this session's client")
			}
			if !p.Downloads() {
				return ctx, nil // the agent only receives: no bytes in flight to keep
			}
			return context.WithValue(ctx, metricsKey{}, &connMetrics{}), nil
		}}
	defer tr.Close()
	ln, err := tr.ListenEarly(tlsConf, quicConfig())
	if err != nil {
		return refusal(wire.CodeInternal, "listen for QUIC: %v", err)
	}
	defer ln.Close()
	id := newSessionID()
	if err := fc.Write(&wire.Message{Opened: &wire.Opened{Session: id, Port: uint16(udp.LocalAddr().(*net.UDPAddr).Port), CertSHA256: sum}}); err != nil {
		return err
	}
	var accepting sync.WaitGroup
	accepting.Add(1)
	go func() {
		defer accepting.Done()
		a.accept(sctx, ln)
	}()
	defer func() {
		ln.Close()
		a.mu.Lock()
		for _, c := range a.conns {
			c.CloseWithError(0, "session over")
		}
		a.mu.Unlock()
		accepting.Wait()
		a.loops.Wait()
		a.streams.Wait()
	}()

	// The client connects (twice, for handshake timings), then says start,
	// or Finish if it gave up (a handshake failed).
	conn.SetReadDeadline(time.Now().Add(s.cfg.Conn.SessionStartTimeout))
	m, err := fc.Read()
	conn.SetReadDeadline(time.Time{})
	if err != nil {
		if isTimeout(err) {
			return s.notStarted("no start")
		}
		return err
	}
	if m.Finish != nil {
		return nil
	}
	if m.QUICStart == nil {
		return fmt.Errorf("%w: expected quic start, got %s", wire.ErrMalformed, m.Kind())
	}
	run := newQUICRun(p.Interval)
	a.mu.Lock()
	var data *quic.Conn
	if n := len(a.conns); n > 0 {
		data = a.conns[n-1] // the client starts the data phase on its latest connection
	}
	var metrics *connMetrics
	if data != nil {
		metrics, _ = data.Context().Value(metricsKey{}).(*connMetrics)
	}
	run.begin(data, metrics)
	a.run = run
	a.mu.Unlock()
	// Whatever ends the session, the sampler stops and lets go of the
	// connection.
	defer run.halt()
	if err := fc.Write(&wire.Message{QUICStart: &wire.QUICStart{}}); err != nil {
		return err
	}

	// The data phase ends with the client's Finish; the streams it moved
	// have ended by then, or end a moment later (a STOP_SENDING on its way).
	finished := make(chan error, 1)
	go func() {
		m, err := fc.Read()
		if err == nil && m.Finish == nil {
			err = fmt.Errorf("%w: expected finish, got %s", wire.ErrMalformed, m.Kind())
		}
		finished <- err
	}()
	select {
	case err = <-finished:
	case <-sctx.Done():
		err = endSession(wire.CodeLimit, "session passed the agent's duration limit of %v", lim.MaxDuration)
	}
	if err != nil {
		return err
	}
	// Streams still running end once their data stops moving, not at a
	// fixed time: a slow path may hold seconds of what the client sent.
	done := make(chan struct{})
	go func() { a.streams.Wait(); close(done) }()
	if untilIdle(done, run.moved, finishIdle) {
		cancel() // ends every stream still running
		<-done
	}
	side := run.end()
	side.Buffers, side.Warnings = bufs, warns
	batches := quicBatches(side)
	for i, b := range batches {
		if err := fc.Write(&wire.Message{QUICReport: &wire.QUICReport{Side: b, Last: i == len(batches)-1}}); err != nil {
			return err
		}
	}
	return nil
}

// accept takes the session's connections and serves their streams and
// datagrams until ctx ends or the listener closes.
func (a *quicAgent) accept(ctx context.Context, ln *quic.EarlyListener) {
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		a.mu.Lock()
		a.conns = append(a.conns, c)
		a.mu.Unlock()
		a.serveConn(ctx, c)
	}
}

// serveConn serves a connection's streams and datagrams until ctx ends or
// the connection closes.
func (a *quicAgent) serveConn(ctx context.Context, c *quic.Conn) {
	a.loops.Add(3)
	go func() {
		defer a.loops.Done()
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			a.streams.Add(1)
			go func() {
				defer a.streams.Done()
				a.serveStream(ctx, c, s, s)
			}()
		}
	}()
	go func() {
		defer a.loops.Done()
		for {
			s, err := c.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			a.streams.Add(1)
			go func() {
				defer a.streams.Done()
				a.serveStream(ctx, c, s, nil)
			}()
		}
	}()
	go func() {
		defer a.loops.Done()
		echoDatagrams(ctx, c)
	}()
}

// echoDatagrams returns every datagram as it came: never more bytes than
// were received.
func echoDatagrams(ctx context.Context, c *quic.Conn) {
	for {
		b, err := c.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		c.SendDatagram(b)
	}
}

// perfReader is the receiving half of a perf stream.
type perfReader interface {
	io.Reader
	StreamID() quic.StreamID
	CancelRead(quic.StreamErrorCode)
	SetReadDeadline(time.Time) error
}

// perfWriter is the sending half of a perf stream.
type perfWriter interface {
	io.Writer
	Close() error
	CancelWrite(quic.StreamErrorCode)
}

// serveStream answers one perf request: on a bidirectional stream (w set)
// on the same stream, on a unidirectional one on a new unidirectional
// stream, as the draft says.
func (a *quicAgent) serveStream(ctx context.Context, c *quic.Conn, r perfReader, w perfWriter) {
	var hdr [perfRequestLen]byte
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadFull(r, hdr[:])
	r.SetReadDeadline(time.Time{})
	if err != nil {
		// Closed before its request: ignored, as the draft says.
		r.CancelRead(perfStop)
		if w != nil {
			w.Close()
		}
		return
	}
	req := binary.BigEndian.Uint64(hdr[:])
	st := &quicStream{id: int64(r.StreamID()), dir: "up", requested: req, sends: req > 0}
	if req > 0 {
		st.dir = "down"
	}
	a.mu.Lock()
	run := a.run
	a.mu.Unlock()
	if run != nil {
		// Streams of the handshake probes come before the data phase
		// and are not counted in it.
		run.add(st)
		defer run.ended()
	} else {
		run = newQUICRun(time.Second) // a scratch run for fail
	}
	stop := context.AfterFunc(ctx, func() {
		r.CancelRead(perfStop)
		if w != nil {
			w.CancelWrite(perfStop)
		}
	})
	defer stop()
	if req != perfUnlimited && !a.take(req) {
		run.fail(st, "refused: a request of %d bytes is over the agent's limit of %d bytes per session (%d left)",
			req, a.limit, max(a.budget.Load(), 0))
		r.CancelRead(perfErrLimit)
		if w != nil {
			w.CancelWrite(perfErrLimit)
		}
		return
	}
	buf := make([]byte, max(a.p.WriteSize, 64<<10))
	if err := a.drain(r, st, buf); err != nil {
		if isStreamCode(err, perfErrLimit) || !isStreamCode(err, perfStop) {
			run.fail(st, "read: %v", err)
		}
		if w != nil {
			w.CancelWrite(perfErrLimit)
		}
		return
	}
	if req == 0 {
		if w != nil {
			w.Close()
		}
		return
	}
	if w == nil {
		us, err := c.OpenUniStreamSync(ctx)
		if err != nil {
			run.fail(st, "open the response stream: %v", err)
			return
		}
		w = us
	}
	a.send(w, st, req, buf[:a.p.WriteSize], run)
}

// drain reads the upload, holding it to the budget.
func (a *quicAgent) drain(r perfReader, st *quicStream, buf []byte) error {
	for {
		k, err := r.Read(buf)
		st.recvd.Add(uint64(k))
		if k > 0 && !a.take(uint64(k)) {
			r.CancelRead(perfErrLimit)
			return fmt.Errorf("upload over the agent's limit of %d bytes per session", a.limit)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// send writes the response: req bytes, or for an unlimited request until
// the client stops it or the budget runs out.
func (a *quicAgent) send(w perfWriter, st *quicStream, req uint64, buf []byte, run *quicRun) {
	for {
		b := buf
		if req != perfUnlimited {
			left := req - st.sent.Load()
			if left == 0 {
				break
			}
			b = buf[:min(uint64(len(buf)), left)]
		} else if !a.take(uint64(len(b))) {
			break // the budget is spent: FIN ends the response early
		}
		k, err := w.Write(b)
		st.sent.Add(uint64(k))
		if err != nil {
			if !isStreamCode(err, perfStop) {
				run.fail(st, "write: %v", err)
			}
			return
		}
	}
	w.Close()
}
