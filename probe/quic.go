package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/probe-dev/probe/collector/dump"
)

// QUIC tests (docs/quic.md): bulk transfers over 1..N streams of one quic-go
// connection, framed as the QUIC perf protocol (draft-banks-quic-performance)
// so that other perf clients and servers interoperate: ALPN "perf"; on every
// stream the client first sends 8 bytes, a big-endian uint64, the number of
// bytes it wants back; then it sends its upload and closes its side; the
// server drains the upload and sends the requested bytes. A request of
// 2^64-1 asks for bytes until the client stops reading (STOP_SENDING).
// Beside the streams, datagrams (RFC 9221) echoed by the agent give RTT and
// jitter, and both ends sample their connection's statistics.

// perfUnlimited asks the server to send until the client stops it.
const perfUnlimited = math.MaxUint64

// perfRequestLen is the perf protocol's request header: the response size.
const perfRequestLen = 8

// Stream error codes the agent and the client use.
const (
	perfStop     quic.StreamErrorCode = 0 // the client has read enough
	perfErrLimit quic.StreamErrorCode = 1 // the request passes the agent's byte limit
)

// quicBatches splits a side into report frames under the frame limit.
func quicBatches(side QUICSide) []QUICSide {
	var out []QUICSide
	cur := side
	cur.Streams = nil
	size := 160 * len(side.Conn)
	for _, s := range side.Streams {
		n := 128 + 32*len(s.Samples) // encoded sizes, generously
		if size+n > wire.MaxFrame/2 && len(cur.Streams) > 0 {
			out = append(out, cur)
			cur = QUICSide{}
			size = 0
		}
		cur.Streams = append(cur.Streams, s)
		size += n
	}
	return append(out, cur)
}

// quicConfig is both ends' quic-go configuration: windows large enough for
// a fast path, streams for MaxStreams in both directions, datagrams, 0-RTT,
// and the tracer that follows bytes in flight, for connections whose
// context carries a *connMetrics: only a side that sends data has one, as
// quic-go builds a qlog event for every packet once a tracer is set (on
// the receiving side, about 6 % of its CPU for a figure that is always
// about 0; bench/README.md).
func quicConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:       10 * time.Second,
		MaxIdleTimeout:             30 * time.Second,
		KeepAlivePeriod:            5 * time.Second,
		InitialStreamReceiveWindow: 1 << 20,
		MaxStreamReceiveWindow:     32 << 20,
		MaxConnectionReceiveWindow: 64 << 20,
		MaxIncomingStreams:         2*MaxStreams + 16,
		MaxIncomingUniStreams:      2*MaxStreams + 16,
		EnableDatagrams:            true,
		Allow0RTT:                  true,
		Tracer: func(ctx context.Context, _ bool, _ quic.ConnectionID) qlogwriter.Trace {
			if m, ok := ctx.Value(metricsKey{}).(*connMetrics); ok {
				return m
			}
			return nil
		},
	}
}

// metricsKey carries a connection's *connMetrics in the context quic-go
// hands its tracer.
type metricsKey struct{}

// connMetrics is a qlog trace that keeps only what ConnectionStats lacks:
// the bytes in flight of quic-go's metrics_updated events.
type connMetrics struct {
	inFlight atomic.Int64
}

func (m *connMetrics) AddProducer() qlogwriter.Recorder { return m }

func (m *connMetrics) RecordEvent(e qlogwriter.Event) {
	if u, ok := e.(qlog.MetricsUpdated); ok {
		m.inFlight.Store(int64(u.BytesInFlight))
	}
}

func (m *connMetrics) Close() error { return nil }

func putPerfRequest(b []byte, n uint64) { binary.BigEndian.PutUint64(b, n) }

// quicStream is one stream of the data phase on one side.
type quicStream struct {
	id        int64
	dir       string // "up" or "down"
	requested uint64
	sends     bool // this side writes its payload
	sent      atomic.Uint64
	recvd     atomic.Uint64
	samples   []dump.QUICStreamSample // the sampler's
	err       string                  // under quicRun.mu
}

// quicRun is one side's data phase: its streams' counters, its
// connection, and the sampler.
type quicRun struct {
	interval time.Duration
	peer     string // the other end, as the client's messages name it
	mu       sync.Mutex
	streams  []*quicStream
	conn     *quic.Conn
	metrics  *connMetrics
	samples  []dump.QUICConnSample
	start    time.Time
	lastEnd  atomic.Int64 // ns after start that the last stream ended
	cpu      *cpuSpan
	stop     chan struct{}
	stopOnce sync.Once
	sampled  chan struct{}
	live     QUICLiveFunc
}

// QUICLiveFunc sees a side's newest figures after every sample: each
// stream with its counts and its newest sample alone, and the newest
// connection sample (zero before the connection is known).
type QUICLiveFunc func(streams []dump.QUICStream, conn dump.QUICConnSample)

func newQUICRun(interval time.Duration) *quicRun {
	return &quicRun{interval: interval, stop: make(chan struct{}), sampled: make(chan struct{})}
}

// begin starts the clock and the sampler on conn.
func (r *quicRun) begin(conn *quic.Conn, m *connMetrics) {
	r.cpu = beginCPU()
	r.mu.Lock()
	r.conn, r.metrics, r.start = conn, m, time.Now()
	r.mu.Unlock()
	go func() {
		defer close(r.sampled)
		t := time.NewTicker(r.interval)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.sampleOnce(time.Since(r.start)) // when read, as TCP's
			}
		}
	}()
}

// moved is the bytes this side's streams have written and read so far.
func (r *quicRun) moved() (n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		n += s.sent.Load() + s.recvd.Load()
	}
	return n
}

func (r *quicRun) add(s *quicStream) {
	r.mu.Lock()
	r.streams = append(r.streams, s)
	r.mu.Unlock()
}

func (r *quicRun) fail(s *quicStream, format string, args ...any) {
	r.mu.Lock()
	if s.err == "" {
		s.err = fmt.Sprintf(format, args...)
	}
	r.mu.Unlock()
}

func (r *quicRun) who() string {
	if r.peer == "" {
		return "agent"
	}
	return r.peer
}

// ended notes that a stream is done.
func (r *quicRun) ended() {
	at := int64(time.Since(r.start))
	for {
		old := r.lastEnd.Load()
		if at <= old || r.lastEnd.CompareAndSwap(old, at) {
			return
		}
	}
}

func (r *quicRun) sampleOnce(at time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		b := s.recvd.Load()
		if s.sends {
			b = s.sent.Load()
		}
		s.samples = append(s.samples, dump.QUICStreamSample{T: at, Bytes: b})
	}
	if r.conn == nil {
		r.showLive(dump.QUICConnSample{})
		return
	}
	st := r.conn.ConnectionStats()
	cs := dump.QUICConnSample{T: at, SmoothedRTT: st.SmoothedRTT, MinRTT: st.MinRTT, LatestRTT: st.LatestRTT,
		RTTVar: st.MeanDeviation, Cwnd: st.CongestionWindow, PacketsSent: st.PacketsSent, BytesSent: st.BytesSent,
		PacketsLost: st.PacketsLost, BytesLost: st.BytesLost, PacketsRecv: st.PacketsReceived, BytesRecv: st.BytesReceived}
	if r.metrics != nil {
		cs.BytesInFlight = uint64(max(r.metrics.inFlight.Load(), 0))
	}
	r.samples = append(r.samples, cs)
	r.showLive(cs)
}

// showLive calls live, under r.mu.
func (r *quicRun) showLive(cs dump.QUICConnSample) {
	if r.live == nil {
		return
	}
	streams := make([]dump.QUICStream, len(r.streams))
	for i, s := range r.streams {
		streams[i] = dump.QUICStream{ID: s.id, Dir: s.dir, Sent: s.sent.Load(), Received: s.recvd.Load(),
			Samples: s.samples[len(s.samples)-1:]}
	}
	r.live(streams, cs)
}

// halt stops the sampler, once; a run that began must halt.
func (r *quicRun) halt() {
	r.stopOnce.Do(func() {
		close(r.stop)
		if !r.start.IsZero() {
			<-r.sampled
		}
	})
}

// end stops the sampler, takes the last sample at the last stream's end,
// and returns this side's account.
func (r *quicRun) end() QUICSide {
	r.halt()
	elapsed := time.Duration(r.lastEnd.Load())
	if elapsed == 0 {
		elapsed = time.Since(r.start)
	}
	r.sampleOnce(elapsed)
	side := QUICSide{Elapsed: elapsed}
	if r.cpu != nil {
		side.UserCPU, side.SysCPU, side.CPUSessions = r.cpu.end()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		side.GSO = r.conn.ConnectionState().GSO
	}
	side.Conn = r.samples
	for _, s := range r.streams {
		side.Streams = append(side.Streams, dump.QUICStream{ID: s.id, Dir: s.dir, Requested: s.requested,
			Sent: s.sent.Load(), Received: s.recvd.Load(), Samples: s.samples, Err: s.err})
	}
	return side
}

// drain reads a stream to its end, counting.
func drain(r io.Reader, n *atomic.Uint64, buf []byte) error {
	for {
		k, err := r.Read(buf)
		n.Add(uint64(k))
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// isStop says whether err is the peer's STOP_SENDING or RESET_STREAM with
// code.
func isStreamCode(err error, code quic.StreamErrorCode) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote && se.ErrorCode == code
}
