// Package probe is the agent and its client: the control protocol, sessions,
// and the workloads they run.
package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// Stamper timestamps probe packets in the kernel; *collector.Timestamper is
// one. Attach must run in the network namespace of ifindex.
type Stamper interface {
	Attach(ifindex int) error
	Detach(ifindex int) error
	AddSession(id uint32, port uint16, want collector.Want, sink func(*collector.ProbeEvent)) error
	RemoveSession(id uint32) error
	Flush(ctx context.Context) error
}

// ServerConfig configures an agent.
type ServerConfig struct {
	Key     []byte     // pre-shared key; empty: no authentication
	Limits  Limits     // per session; zero fields take DefaultLimits
	Conn    ConnLimits // per connection and source; zero fields take DefaultConnLimits
	Stamper Stamper    // nil: no eBPF timestamps, software ones only
	Logger  *slog.Logger
	// AllowRun lets authenticated clients run commands here (run
	// sessions); it takes a Key as well.
	AllowRun bool
	RunSched bool // account run sessions' commands with eBPF (needs root); else /proc only
	// QUICCert is the certificate of the control connections and QUIC
	// sessions; nil: a self-signed one made when the agent starts.
	QUICCert *tls.Certificate
	// AllowSockOpts widens the socket options clients may set on the
	// agent's sockets beyond the harmless ones (SafeSockOpts), by name.
	AllowSockOpts []string
}

// DefaultLimits are what an agent allows unless told otherwise.
func DefaultLimits() Limits {
	return Limits{
		MaxSessions:   64,
		MaxDuration:   5 * time.Minute,
		MaxPackets:    1_000_000,
		MaxPacketSize: 65507,
		MaxRate:       1_000_000,
		MaxBytes:      64 << 30,
	}
}

// Server is the agent: it accepts control connections and runs sessions.
type Server struct {
	cfg       ServerConfig
	log       *slog.Logger
	active    atomic.Int64 // running sessions
	exclusive atomic.Bool  // an exclusive test holds the agent
	quic      quicTLS      // the certificate of control connections and QUIC sessions
	refusing  atomic.Int64 // connections being told why they were refused
	releasing atomic.Bool  // a return of memory to the system is due
	sockOpts  sockOptPolicy

	mu        sync.Mutex
	conns     map[net.Conn]struct{} // control connections, closed when Serve ends
	open      int                   // connections counted against the caps: control and QUIC perf
	perSource map[netip.Addr]int    // open connections per source address
	sessions  map[netip.Addr]int    // running sessions per source address
	preAuth   int                   // connections in their handshake
	wg        sync.WaitGroup

	// runPath, when set, replaces exec.LookPath for run sessions: the
	// fuzzer runs every command as a harmless one.
	runPath func(string) (string, error)

	schedMu     sync.Mutex // the scheduler watch shared by run sessions
	sched       *collector.SchedWatch
	schedUsers  int
	schedWarned bool
}

// NewServer returns an agent with cfg's defaults filled in.
func NewServer(cfg ServerConfig) *Server {
	d := DefaultLimits()
	l := &cfg.Limits
	if l.MaxSessions == 0 {
		l.MaxSessions = d.MaxSessions
	}
	if l.MaxDuration == 0 {
		l.MaxDuration = d.MaxDuration
	}
	if l.MaxPackets == 0 {
		l.MaxPackets = d.MaxPackets
	}
	if l.MaxPacketSize == 0 {
		l.MaxPacketSize = d.MaxPacketSize
	}
	if l.MaxRate == 0 {
		l.MaxRate = d.MaxRate
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = d.MaxBytes
	}
	cfg.Conn.fill()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, log: log, conns: make(map[net.Conn]struct{}), perSource: make(map[netip.Addr]int),
		sessions: make(map[netip.Addr]int), sockOpts: newSockOptPolicy(cfg.AllowSockOpts)}
}

// Accept errors are retried after a delay that doubles from acceptBackoffMin
// to acceptBackoffMax, as net/http's Server does: running out of
// descriptors is a moment to wait out, not a reason to stop.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Serve accepts control connections on ln until ctx ends, then closes every
// connection, waits for their sessions to clean up, and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if _, err := s.agentTLS(); err != nil {
		return err
	}
	if len(s.cfg.Key) == 0 {
		s.log.Warn("no key: anyone who reaches this agent can run tests from it; give --key-file to allow only clients that hold the key")
	}
	hold, err := collector.HoldRxStamps(ctx)
	if err != nil {
		return err
	}
	defer hold.Close()
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	defer stop()
	defer s.wg.Wait()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept: %w", err)
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			s.log.Warn("accept failed, retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		delay = 0
		src := addrOf(conn.RemoteAddr())
		if e := s.admit(src); e != nil {
			s.log.Info("connection refused", "client", conn.RemoteAddr().String(), "err", e)
			s.refuse(conn, e)
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.handle(ctx, conn, src)
			conn.Close()
			s.left(conn, src)
		}()
	}
}

// addrOf is a connection's IP address, IPv4 unmapped.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) handle(ctx context.Context, raw net.Conn, src netip.Addr) {
	log := s.log.With("client", raw.RemoteAddr().String())
	lim := s.cfg.Conn
	raw.SetDeadline(time.Now().Add(lim.HandshakeTimeout))
	conn, fc, err := s.handshake(ctx, raw)
	s.authenticated()
	if err != nil {
		if errors.Is(err, io.EOF) && !errors.Is(err, wire.ErrMalformed) {
			log.Debug("connection closed before the handshake") // e.g. a port check
			return
		}
		log.Info("handshake refused", "err", err)
		if isTimeout(err) {
			err = refusal(wire.CodeTimeout, "handshake not done within %v (serve --handshake-timeout)", lim.HandshakeTimeout)
		}
		if fc != nil {
			s.tell(fc, err)
		}
		return
	}
	raw.SetDeadline(time.Time{})
	for {
		conn.SetReadDeadline(time.Now().Add(lim.IdleTimeout))
		m, err := fc.Read()
		conn.SetReadDeadline(time.Time{})
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF) || ctx.Err() != nil:
			case errors.As(err, &ne) && ne.Timeout():
				log.Info("idle connection closed", "after", lim.IdleTimeout)
				s.tell(fc, refusal(wire.CodeIdle, "idle for %v without a session: the agent hangs up (serve --idle-timeout)", lim.IdleTimeout))
			default:
				log.Info("control connection", "err", err)
				s.tell(fc, err)
			}
			return
		}
		if m.Open == nil {
			s.tell(fc, refusal(wire.CodeProtocol, "unexpected %s message outside a session", m.Kind()))
			return
		}
		err = s.session(ctx, conn, fc, m.Open, src)
		var refused *Error
		var ended *sessionEnd
		switch {
		case errors.As(err, &ended):
			log.Info("session ended by the agent", "err", err)
			s.tell(fc, err)
			return
		case errors.As(err, &refused):
			// The session was refused, the connection stays usable.
			log.Info("session refused", "err", err)
			if s.tell(fc, err) != nil {
				return
			}
		case err != nil:
			log.Info("session ended", "err", err)
			s.tell(fc, err)
			return
		}
	}
}

// handshake reads the plain Hello, switches to TLS and authenticates the
// client. On error, fc is where to tell the client (nil: nowhere, as the
// TLS handshake failed).
func (s *Server) handshake(ctx context.Context, raw net.Conn) (net.Conn, *wire.Conn, error) {
	pfc := wire.NewConn(raw)
	pfc.Limit = uint32(s.cfg.Conn.PreAuthFrame)
	m, err := pfc.ReadHandshake()
	if err != nil {
		return nil, pfc, err
	}
	if m == nil || m.Hello == nil {
		return nil, pfc, refusal(wire.CodeProtocol, "expected hello")
	}
	if m.Hello.Version != wire.ProtocolVersion {
		return nil, pfc, refusal(wire.CodeVersion, "version mismatch: agent speaks protocol %d, client %d; use the same probe release on both ends",
			wire.ProtocolVersion, m.Hello.Version)
	}
	hctx, cancel := context.WithTimeout(ctx, s.cfg.Conn.HandshakeTimeout)
	defer cancel()
	tc, err := s.secureAgent(hctx, raw, pfc)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, pfc, err
		}
		return nil, nil, err
	}
	fc := wire.NewConn(writeDeadline{Conn: tc, d: s.cfg.Conn.WriteTimeout})
	fc.Limit = pfc.Limit
	m, err = fc.ReadHandshake()
	if err != nil {
		return nil, fc, err
	}
	if m == nil || m.Auth == nil {
		return nil, fc, refusal(wire.CodeProtocol, "expected auth")
	}
	w, err := s.authenticate(tc, m.Auth)
	if err != nil {
		return nil, fc, err
	}
	if err := fc.Write(&wire.Message{Welcome: w}); err != nil {
		return nil, nil, err
	}
	return tc, fc, nil
}

// tell sends err to the client as an Error frame.
func (s *Server) tell(fc *wire.Conn, err error) error {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, wire.ErrOversize):
		e = &Error{Code: wire.CodeOversize, Message: err.Error()}
	case errors.Is(err, wire.ErrMalformed):
		e = &Error{Code: wire.CodeMalformed, Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		e = &Error{Code: wire.CodeInternal, Message: err.Error()}
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			e = &Error{Code: wire.CodeTimeout, Message: "control connection timed out"}
		} else {
			e = &Error{Code: wire.CodeInternal, Message: err.Error()}
		}
	}
	return fc.Write(&wire.Message{Error: e})
}

func (s *Server) session(ctx context.Context, conn net.Conn, fc *wire.Conn, o *wire.Open, src netip.Addr) error {
	if o.Mode == wire.ModeCounters {
		return s.serveCounters(fc) // no traffic: not a session an exclusive test refuses
	}
	if e := s.openSession(src); e != nil {
		return e
	}
	defer s.closeSession(src)
	if s.exclusive.Load() {
		return refusal(wire.CodeBusy, "agent busy: an exclusive test is running; try again when it ends")
	}
	n := s.active.Add(1)
	defer s.active.Add(-1)
	if n > int64(s.cfg.Limits.MaxSessions) {
		return refusal(wire.CodeBusy, "agent busy: %d sessions running, limit %d", n-1, s.cfg.Limits.MaxSessions)
	}
	if (o.TCP != nil && o.TCP.Exclusive) || (o.QUIC != nil && o.QUIC.Exclusive) {
		// Only an otherwise idle agent takes an exclusive test, and it
		// refuses everyone else while it runs.
		if n > 1 || !s.exclusive.CompareAndSwap(false, true) {
			return refusal(wire.CodeBusy, "agent busy: --exclusive needs an idle agent, and %d other sessions are running", n-1)
		}
		defer s.exclusive.Store(false)
	}
	switch o.Mode {
	case wire.ModeEcho:
		if o.Echo == nil {
			return refusal(wire.CodeBadRequest, "echo session without parameters")
		}
		return s.serveEcho(ctx, conn, fc, *o.Echo)
	case wire.ModeCapacity:
		if o.Capacity == nil {
			return refusal(wire.CodeBadRequest, "capacity session without parameters")
		}
		return s.serveCapacity(ctx, conn, fc, *o.Capacity)
	case wire.ModeTCP:
		if o.TCP == nil {
			return refusal(wire.CodeBadRequest, "tcp session without parameters")
		}
		return s.serveTCP(ctx, conn, fc, *o.TCP)
	case wire.ModeRun:
		if o.Run == nil {
			return refusal(wire.CodeBadRequest, "run session without parameters")
		}
		return s.serveRun(ctx, conn, fc, *o.Run)
	case wire.ModeQUIC:
		if o.QUIC == nil {
			return refusal(wire.CodeBadRequest, "quic session without parameters")
		}
		return s.serveQUIC(ctx, conn, fc, *o.QUIC)
	}
	return refusal(wire.CodeBadRequest, "unknown mode %q", o.Mode)
}

// refusal is an error the client is told about.
func refusal(code wire.Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
