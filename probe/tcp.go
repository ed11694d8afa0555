package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/collector/dump"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// TCP tests: N parallel streams between client and agent, one way or both,
// each side sampling every stream's TCP_INFO as it goes (docs/tcp.md).

// streamHello starts every data connection: magic, session, stream index.
const streamHelloLen = 12

func putStreamHello(b []byte, session uint32, index int) {
	binary.BigEndian.PutUint32(b, collector.ProbeMagic)
	binary.BigEndian.PutUint32(b[4:], session)
	binary.BigEndian.PutUint32(b[8:], uint32(index))
}

// setSockOpts returns a Control function that sets opts on a socket before
// it connects or listens, so that buffer sizes shape the window scale.
func setSockOpts(opts []string) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		return applySockOpts(c, opts)
	}
}

func applySockOpts(c syscall.RawConn, opts []string) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, s := range opts {
			o, err := collector.ParseSockOpt(s)
			if err == nil {
				err = o.Set(int(fd))
			}
			if err != nil {
				serr = err
				return
			}
		}
	})
	if err == nil {
		err = serr
	}
	return err
}

// readBack reads the GetOpts of one socket.
func readBack(conn *net.TCPConn, names []string) map[string]string {
	if len(names) == 0 {
		return nil
	}
	out := make(map[string]string, len(names))
	rc, err := conn.SyscallConn()
	if err != nil {
		return out
	}
	rc.Control(func(fd uintptr) {
		for _, n := range names {
			o, err := collector.LookupSockOpt(n)
			if err == nil {
				out[n], err = o.Get(int(fd))
			}
			if err != nil {
				out[n] = "error: " + err.Error()
			}
		}
	})
	return out
}

// tcpRun is one side's part of the data phase: its streams, their byte
// counters, and the sampler.
type tcpRun struct {
	p       TCPParams
	client  bool
	conns   []*net.TCPConn
	sent    []atomic.Uint64
	recvd   []atomic.Uint64
	samples [][]dump.TCPSample
	errs    []string
	start   time.Time
	cpu     *cpuSpan
	// budget is what the agent may still move, both ways (Limits.MaxBytes);
	// nil on the client.
	budget *atomic.Int64
	limit  int64
	// live sees each stream's newest sample after every round of samples.
	live func(newest []dump.TCPSample)
}

func newTCPRun(p TCPParams, client bool, conns []*net.TCPConn) *tcpRun {
	return &tcpRun{p: p, client: client, conns: conns, sent: make([]atomic.Uint64, len(conns)),
		recvd: make([]atomic.Uint64, len(conns)), samples: make([][]dump.TCPSample, len(conns)), errs: make([]string, len(conns))}
}

// run moves the data and samples until every stream is done (or ctx ends),
// and returns this side's account.
func (r *tcpRun) run(ctx context.Context) TCPSide {
	r.cpu = beginCPU()
	r.start = time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		r.sample(stopSampling)
	}()
	var wg sync.WaitGroup
	perStream := int64(0)
	if r.p.Bytes > 0 {
		perStream = r.p.Bytes / int64(len(r.conns))
	}
	deadline := r.start.Add(r.p.Duration)
	for i, c := range r.conns {
		if r.p.Sends(r.client) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.ownThread()()
				n := perStream
				if r.p.Bytes > 0 && i == len(r.conns)-1 {
					n += r.p.Bytes % int64(len(r.conns)) // the remainder rides on the last stream
				}
				r.write(ctx, i, c, n, deadline)
			}()
		}
		if r.p.Receives(r.client) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer r.ownThread()()
				r.read(ctx, i, c)
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	close(stopSampling)
	<-sampled
	// One last sample, so that the series ends with the final counts.
	r.sampleOnce(func() time.Duration { return elapsed })
	side := TCPSide{Elapsed: elapsed}
	side.UserCPU, side.SysCPU, side.CPUSessions = r.cpu.end()
	if len(r.conns) > 0 {
		side.ReadBack = readBack(r.conns[0], r.p.GetOpts)
	}
	for i := range r.conns {
		side.Streams = append(side.Streams, dump.TCPStream{Index: i, Sent: r.sent[i].Load(), Received: r.recvd[i].Load(),
			Samples: r.samples[i], Err: r.errs[i]})
	}
	return side
}

// ownThread gives the calling goroutine a thread of its own, until the
// returned func is called, when there are no more streams than CPUs. A
// goroutine that parks on a full send buffer resumes on whichever thread
// is free, and so on another CPU now and then; a veth delivers each
// segment from the sender's CPU, so the stream's segments arrived out of
// order (thousands of reordering events, 0.6 % of the bytes sent again in
// 2.5 s), and one stream ran at 0.89 × iperf3's rate, against 1.02 × on
// threads of their own (six alternated rounds). With more streams than
// CPUs the threads would only contend.
func (r *tcpRun) ownThread() (release func()) {
	if len(r.conns) > runtime.NumCPU() {
		return func() {}
	}
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// write sends until n bytes (n > 0) or the deadline, then closes its half.
func (r *tcpRun) write(ctx context.Context, i int, c *net.TCPConn, n int64, deadline time.Time) {
	buf := make([]byte, r.p.WriteSize)
	if n == 0 {
		c.SetWriteDeadline(deadline)
	}
	for ctx.Err() == nil {
		b := buf
		if n > 0 {
			left := n - int64(r.sent[i].Load())
			if left <= 0 {
				break
			}
			b = buf[:min(int64(len(buf)), left)]
		}
		if !r.spend(len(b)) {
			r.errs[i] = r.limitError()
			break
		}
		k, err := c.Write(b)
		r.sent[i].Add(uint64(k))
		if err != nil {
			if !collector.IsTimeout(err) {
				r.errs[i] = "write: " + err.Error()
			}
			break
		}
	}
	c.CloseWrite()
}

// spend takes n bytes from the agent's budget; false once it is spent.
func (r *tcpRun) spend(n int) bool {
	return r.budget == nil || r.budget.Add(-int64(n)) >= 0
}

func (r *tcpRun) limitError() string {
	return fmt.Sprintf("the agent's limit of %d bytes per session was reached", r.limit)
}

// read counts until the other side closes its half.
func (r *tcpRun) read(ctx context.Context, i int, c *net.TCPConn) {
	buf := make([]byte, 256<<10)
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		k, err := c.Read(buf)
		r.recvd[i].Add(uint64(k))
		if !r.spend(k) {
			r.errs[i] = r.limitError()
			c.Close() // the sender sees the stream end
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				r.errs[i] = "read: " + err.Error()
			}
			return
		}
	}
}

func (r *tcpRun) sample(stop chan struct{}) {
	t := time.NewTicker(r.p.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			// When the counters are read, not when the tick was due: a
			// sampler scheduled late would otherwise stretch an interval's
			// bytes over its nominal length.
			r.sampleOnce(func() time.Duration { return time.Since(r.start) })
		}
	}
}

// sampleOnce takes a sample of every stream, each stamped by at right
// after its counters are read.
func (r *tcpRun) sampleOnce(at func() time.Duration) {
	for i, c := range r.conns {
		info, err := collector.ReadTCPInfo(c)
		if err != nil {
			continue // the socket is gone: its last sample stands
		}
		bytes := r.sent[i].Load()
		if !r.p.Sends(r.client) {
			bytes = r.recvd[i].Load()
		}
		r.samples[i] = append(r.samples[i], collector.TCPSampleOf(info, at(), bytes))
	}
	if r.live != nil {
		newest := make([]dump.TCPSample, len(r.samples))
		for i, ss := range r.samples {
			if len(ss) > 0 {
				newest[i] = ss[len(ss)-1]
			}
		}
		r.live(newest)
	}
}

// maxTCPBatch bounds the streams per report frame; samples are ~100 bytes.
func tcpBatches(side TCPSide) []TCPSide {
	var out []TCPSide
	cur := TCPSide{UserCPU: side.UserCPU, SysCPU: side.SysCPU, CPUSessions: side.CPUSessions, ReadBack: side.ReadBack, Elapsed: side.Elapsed}
	size := 0
	for _, s := range side.Streams {
		n := 256 + 320*len(s.Samples) // encoded sizes, generously
		if size+n > wire.MaxFrame/2 && len(cur.Streams) > 0 {
			out = append(out, cur)
			cur = TCPSide{}
			size = 0
		}
		cur.Streams = append(cur.Streams, s)
		size += n
	}
	return append(out, cur)
}

// serveTCP is the agent's half of a TCP test.
func (s *Server) serveTCP(ctx context.Context, conn net.Conn, fc *wire.Conn, p TCPParams) error {
	if err := p.Check(); err != nil {
		return refusal(wire.CodeBadRequest, "%v", err)
	}
	if time.Duration(p.Duration) > s.cfg.Limits.MaxDuration {
		return refusal(wire.CodeLimit, "duration %v over the agent's limit of %v", p.Duration, s.cfg.Limits.MaxDuration)
	}
	total := p.Bytes
	if p.Direction == DirBidir {
		total *= 2
	}
	if total > s.cfg.Limits.MaxBytes {
		return refusal(wire.CodeLimit, "%d bytes over the agent's limit of %d bytes per session", total, s.cfg.Limits.MaxBytes)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	peer := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	if err := s.sockOpts.check(p.SockOpts); err != nil {
		return err
	}
	lc := net.ListenConfig{Control: setSockOpts(p.SockOpts)}
	ln, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(local, 0).String())
	if err != nil {
		return refusal(wire.CodeBadRequest, "listen with the socket options: %v", err)
	}
	defer ln.Close()
	id := newSessionID()
	if err := fc.Write(&wire.Message{Opened: &wire.Opened{Session: id, Port: uint16(ln.Addr().(*net.TCPAddr).Port)}}); err != nil {
		return err
	}

	// Accept the streams until the client says it has dialled them all.
	conns := make([]*net.TCPConn, p.Streams)
	accepted := make(chan error, 1)
	go func() { accepted <- s.acceptStreams(ln.(*net.TCPListener), id, peer, p, conns) }()
	conn.SetReadDeadline(time.Now().Add(s.cfg.Conn.SessionStartTimeout))
	m, err := fc.Read()
	conn.SetReadDeadline(time.Time{})
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	defer closeAll()
	if err != nil {
		ln.Close()
		<-accepted
		if isTimeout(err) {
			return s.notStarted("not every stream connected")
		}
		return err
	}
	if m.TCPStart == nil {
		ln.Close()
		<-accepted
		return fmt.Errorf("%w: expected tcp start, got %s", wire.ErrMalformed, m.Kind())
	}
	// The client dialled every stream before its start: they are in the
	// listen queue or on their way.
	select {
	case err = <-accepted:
	case <-time.After(min(streamsWait, s.cfg.Conn.SessionStartTimeout)):
		ln.Close()
		err = <-accepted
	}
	if err != nil {
		return refusal(wire.CodeStreams, "%v", err)
	}
	if err := fc.Write(&wire.Message{TCPStart: &wire.TCPStart{}}); err != nil {
		return err
	}

	// The data phase ends when every stream is done; the client's Finish
	// (or its going away) ends it early.
	rctx, cancel := context.WithTimeout(ctx, p.Duration+s.cfg.Limits.MaxDuration)
	defer cancel()
	run := newTCPRun(p, false, conns)
	finished := make(chan error, 1)
	go func() {
		m, err := fc.Read()
		if err == nil && m.Finish == nil {
			err = fmt.Errorf("%w: expected finish, got %s", wire.ErrMalformed, m.Kind())
		}
		finished <- err
		// The client is done (or gone): end this side too once data stops
		// arriving. Not at a fixed time: a slow path's queue may still
		// hold seconds of data the client counted as sent.
		if untilIdle(rctx.Done(), run.received, finishIdle) {
			cancel()
		}
	}()
	run.budget, run.limit = new(atomic.Int64), s.cfg.Limits.MaxBytes
	run.budget.Store(s.cfg.Limits.MaxBytes)
	side := run.run(rctx)
	if err := <-finished; err != nil {
		return err
	}
	batches := tcpBatches(side)
	for i, b := range batches {
		if err := fc.Write(&wire.Message{TCPReport: &wire.TCPReport{Side: b, Last: i == len(batches)-1}}); err != nil {
			return err
		}
	}
	return nil
}

// finishIdle is how long the agent waits for a byte after the client's
// Finish before it ends the streams.
const finishIdle = 2 * time.Second

// untilIdle waits until done closes (false) or count has not moved for
// quiet (true).
func untilIdle(done <-chan struct{}, count func() uint64, quiet time.Duration) bool {
	tick := time.NewTicker(quiet / 8)
	defer tick.Stop()
	last, since := count(), time.Now()
	for {
		select {
		case <-done:
			return false
		case now := <-tick.C:
			if n := count(); n != last {
				last, since = n, now
			} else if now.Sub(since) >= quiet {
				return true
			}
		}
	}
}

// received is the bytes this side's streams have read so far.
func (r *tcpRun) received() (n uint64) {
	for i := range r.recvd {
		n += r.recvd[i].Load()
	}
	return n
}

// streamsWait bounds the wait for a TCP session's streams after the
// client's start, and is at most serve --session-start-timeout.
const streamsWait = 10 * time.Second

// acceptStreams takes the client's data connections: only from its IP, each
// opening with this session's hello and a stream index not taken yet.
func (s *Server) acceptStreams(ln *net.TCPListener, id uint32, peer netip.Addr, p TCPParams, conns []*net.TCPConn) error {
	for got := 0; got < len(conns); {
		c, err := ln.AcceptTCP()
		if err != nil {
			return fmt.Errorf("%d of %d streams connected", got, len(conns))
		}
		if c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap() != peer {
			c.Close()
			continue
		}
		var hello [streamHelloLen]byte
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadFull(c, hello[:])
		c.SetReadDeadline(time.Time{})
		idx := int(binary.BigEndian.Uint32(hello[8:]))
		if err != nil || binary.BigEndian.Uint32(hello[:]) != collector.ProbeMagic ||
			binary.BigEndian.Uint32(hello[4:]) != id || idx >= len(conns) || conns[idx] != nil {
			c.Close()
			continue
		}
		if rc, err := c.SyscallConn(); err == nil {
			applySockOpts(rc, p.SockOpts) // some options are not inherited from the listener
		}
		conns[idx] = c
		got++
	}
	return nil
}
