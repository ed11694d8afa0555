// Package probe is the agent and its client: the control protocol, sessions,
// and the workloads they run.
package probe

import (
	"context"
	"crypto/hmac"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/probe-dev/probe/collector"
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
	Key              []byte  // pre-shared key; empty: no authentication
	Limits           Limits  // zero fields take DefaultLimits
	Stamper          Stamper // nil: no eBPF timestamps, software ones only
	Logger           *slog.Logger
	HandshakeTimeout time.Duration // default 10 s
	// AllowRun lets authenticated clients run commands here (run
	// sessions); it takes a Key as well.
	AllowRun bool
	RunSched bool // account run sessions' commands with eBPF (needs root); else /proc only
	// QUICCert is the certificate of QUIC sessions; nil: a self-signed one
	// made when the agent starts.
	QUICCert *tls.Certificate
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
	quic      quicTLS      // the certificate QUIC sessions present

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

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
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, log: log, conns: make(map[net.Conn]struct{})}
}

// Serve accepts control connections on ln until ctx ends, then closes every
// connection, waits for their sessions to clean up, and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
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
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
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
			s.handle(ctx, conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		}()
	}
}

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	log := s.log.With("client", conn.RemoteAddr().String())
	fc := newFrameConn(conn)
	conn.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if err := s.handshake(fc); err != nil {
		if errors.Is(err, io.EOF) {
			log.Debug("connection closed before the handshake") // e.g. a port check
			return
		}
		log.Info("handshake refused", "err", err)
		s.tell(fc, err)
		return
	}
	conn.SetDeadline(time.Time{})
	for {
		m, err := fc.read()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				log.Info("control connection", "err", err)
				s.tell(fc, err)
			}
			return
		}
		if m.Open == nil {
			s.tell(fc, refusal("protocol", "unexpected %s message outside a session", m.kind()))
			return
		}
		err = s.session(ctx, conn, fc, m.Open)
		var refused *Error
		switch {
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

func (s *Server) handshake(fc *frameConn) error {
	m, err := fc.read()
	if err != nil {
		return err
	}
	if m.Hello == nil {
		return refusal("protocol", "expected hello, got %s", m.kind())
	}
	if m.Hello.Version != ProtocolVersion {
		return refusal("version", "version mismatch: agent speaks protocol %d, client %d; use the same probe release on both ends",
			ProtocolVersion, m.Hello.Version)
	}
	if len(m.Hello.Nonce) != nonceLen {
		return refusal("protocol", "hello nonce has %d bytes, want %d", len(m.Hello.Nonce), nonceLen)
	}
	clientNonce, nonce := m.Hello.Nonce, newNonce()
	auth := len(s.cfg.Key) > 0
	err = fc.write(&Message{Challenge: &Challenge{
		Version: ProtocolVersion, Agent: "probe", Nonce: nonce, AuthRequired: auth,
	}})
	if err != nil {
		return err
	}
	m, err = fc.read()
	if err != nil {
		return err
	}
	if m.Auth == nil {
		return refusal("protocol", "expected auth, got %s", m.kind())
	}
	w := &Welcome{Limits: s.cfg.Limits, Host: LocalHost(s.cfg.Stamper != nil)}
	if auth {
		if len(m.Auth.MAC) == 0 {
			return refusal("auth", "authentication required: this agent has a key, give it with --key-file")
		}
		if !hmac.Equal(m.Auth.MAC, clientMAC(s.cfg.Key, nonce, clientNonce)) {
			return refusal("auth", "authentication failed: wrong key")
		}
		w.MAC = agentMAC(s.cfg.Key, nonce, clientNonce)
	}
	return fc.write(&Message{Welcome: w})
}

// tell sends err to the client as an Error frame.
func (s *Server) tell(fc *frameConn, err error) error {
	var e *Error
	switch {
	case errors.As(err, &e):
	case errors.Is(err, errOversize):
		e = &Error{Code: "oversize", Message: err.Error()}
	case errors.Is(err, errMalformed):
		e = &Error{Code: "malformed", Message: err.Error()}
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			e = &Error{Code: "timeout", Message: "control connection timed out"}
		} else {
			e = &Error{Code: "internal", Message: err.Error()}
		}
	}
	return fc.write(&Message{Error: e})
}

func (s *Server) session(ctx context.Context, conn net.Conn, fc *frameConn, o *Open) error {
	if o.Mode == "counters" {
		return s.serveCounters(fc) // no traffic: not a session an exclusive test refuses
	}
	if s.exclusive.Load() {
		return refusal("busy", "agent busy: an exclusive test is running; try again when it ends")
	}
	n := s.active.Add(1)
	defer s.active.Add(-1)
	if n > int64(s.cfg.Limits.MaxSessions) {
		return refusal("busy", "agent busy: %d sessions running, limit %d", n-1, s.cfg.Limits.MaxSessions)
	}
	if (o.TCP != nil && o.TCP.Exclusive) || (o.QUIC != nil && o.QUIC.Exclusive) {
		// Only an otherwise idle agent takes an exclusive test, and it
		// refuses everyone else while it runs.
		if n > 1 || !s.exclusive.CompareAndSwap(false, true) {
			return refusal("busy", "agent busy: --exclusive needs an idle agent, and %d other sessions are running", n-1)
		}
		defer s.exclusive.Store(false)
	}
	switch o.Mode {
	case "echo":
		if o.Echo == nil {
			return refusal("bad-request", "echo session without parameters")
		}
		return s.serveEcho(ctx, conn, fc, *o.Echo)
	case "capacity":
		if o.Capacity == nil {
			return refusal("bad-request", "capacity session without parameters")
		}
		return s.serveCapacity(ctx, conn, fc, *o.Capacity)
	case "tcp":
		if o.TCP == nil {
			return refusal("bad-request", "tcp session without parameters")
		}
		return s.serveTCP(ctx, conn, fc, *o.TCP)
	case "run":
		if o.Run == nil {
			return refusal("bad-request", "run session without parameters")
		}
		return s.serveRun(ctx, conn, fc, *o.Run)
	case "quic":
		if o.QUIC == nil {
			return refusal("bad-request", "quic session without parameters")
		}
		return s.serveQUIC(ctx, conn, fc, *o.QUIC)
	}
	return refusal("bad-request", "unknown mode %q", o.Mode)
}

// refusal is an error the client is told about.
func refusal(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}
