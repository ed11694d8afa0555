package probe

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
)

// ConnLimits bound what control connections may take of the agent, before
// any session: a stranger who reaches the agent can open connections, and
// these keep their cost fixed. Zero fields take DefaultConnLimits.
type ConnLimits struct {
	// MaxConns is the connections open at once, all clients: control
	// connections and QUIC perf connections (serve --quic-perf) together.
	MaxConns int
	// MaxConnsPerSource is the connections open at once from one IP
	// address, both kinds.
	MaxConnsPerSource int
	// MaxPreAuth is the connections still in their handshake, which a
	// stranger can open without knowing anything: a control connection
	// until it is authenticated, a QUIC perf connection until its QUIC
	// handshake completes.
	MaxPreAuth int
	// PreAuthFrame bounds a frame read before the handshake ends, bytes:
	// the handshake's frames are a few dozen bytes.
	PreAuthFrame int
	// HandshakeTimeout bounds the time from accept to authenticated.
	HandshakeTimeout time.Duration
	// IdleTimeout closes an authenticated connection without a session
	// for this long.
	IdleTimeout time.Duration
	// MaxSessionsPerSource is the sessions running at once for one IP
	// address, so that one client cannot take every session slot.
	MaxSessionsPerSource int
	// SessionStartTimeout ends a session whose client has not started it
	// (no probe, no stream, no start) this long after it opened.
	SessionStartTimeout time.Duration
	// WriteTimeout bounds every write of a control frame: a client that
	// stops reading loses its connection instead of holding a session.
	WriteTimeout time.Duration
}

// DefaultConnLimits are what an agent allows unless told otherwise.
func DefaultConnLimits() ConnLimits {
	return ConnLimits{
		MaxConns:             256,
		MaxConnsPerSource:    16,
		MaxPreAuth:           64,
		PreAuthFrame:         4 << 10,
		HandshakeTimeout:     10 * time.Second,
		IdleTimeout:          2 * time.Minute,
		MaxSessionsPerSource: 8,
		SessionStartTimeout:  15 * time.Second,
		WriteTimeout:         30 * time.Second,
	}
}

func (l *ConnLimits) fill() {
	d := DefaultConnLimits()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setD := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.MaxConns, d.MaxConns)
	set(&l.MaxConnsPerSource, d.MaxConnsPerSource)
	set(&l.MaxPreAuth, d.MaxPreAuth)
	set(&l.PreAuthFrame, d.PreAuthFrame)
	set(&l.MaxSessionsPerSource, d.MaxSessionsPerSource)
	setD(&l.HandshakeTimeout, d.HandshakeTimeout)
	setD(&l.IdleTimeout, d.IdleTimeout)
	setD(&l.SessionStartTimeout, d.SessionStartTimeout)
	setD(&l.WriteTimeout, d.WriteTimeout)
}

// writeDeadline sets a deadline before every write, so that a peer that
// stops reading cannot block the agent's writer for ever; reads pass
// through.
type writeDeadline struct {
	net.Conn
	d time.Duration
}

func (w writeDeadline) Write(b []byte) (int, error) {
	w.Conn.SetWriteDeadline(time.Now().Add(w.d))
	return w.Conn.Write(b)
}

// maxRefusing bounds the connections being told why they were refused;
// past it a refused connection is just closed.
const maxRefusing = 32

// refusalLinger is how long a refused connection is kept to deliver the
// refusal: long enough for the client's hello to arrive, so that closing
// does not reset the connection before the client reads why.
const refusalLinger = time.Second

// admit counts a new connection from src, or says which limit refuses it.
func (s *Server) admit(src netip.Addr) *Error {
	l := s.cfg.Conn
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.open >= l.MaxConns:
		return refusal(wire.CodeBusy, "agent busy: %d connections open, limit %d (serve --max-conns)", s.open, l.MaxConns)
	case s.perSource[src] >= l.MaxConnsPerSource:
		return refusal(wire.CodeBusy, "agent busy: %d connections open from %v, limit %d per address (serve --max-conns-per-source)",
			s.perSource[src], src, l.MaxConnsPerSource)
	case s.preAuth >= l.MaxPreAuth:
		return refusal(wire.CodeBusy, "agent busy: %d connections in their handshake, limit %d (serve --max-preauth)", s.preAuth, l.MaxPreAuth)
	}
	s.open++
	s.perSource[src]++
	s.preAuth++
	return nil
}

// authenticated ends a connection's pre-authentication phase, however it
// ended.
func (s *Server) authenticated() {
	s.mu.Lock()
	s.preAuth--
	s.mu.Unlock()
}

// left uncounts a connection from src; conn is nil for a QUIC perf
// connection.
func (s *Server) left(conn net.Conn, src netip.Addr) {
	s.mu.Lock()
	if conn != nil {
		delete(s.conns, conn)
	}
	s.open--
	if s.perSource[src]--; s.perSource[src] <= 0 {
		delete(s.perSource, src)
	}
	s.mu.Unlock()
}

// openSession counts a session of src, or says which limit refuses it.
func (s *Server) openSession(src netip.Addr) *Error {
	l := s.cfg.Conn
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[src] >= l.MaxSessionsPerSource {
		return refusal(wire.CodeBusy, "agent busy: %d sessions running for %v, limit %d per address (serve --max-sessions-per-client)",
			s.sessions[src], src, l.MaxSessionsPerSource)
	}
	s.sessions[src]++
	return nil
}

func (s *Server) closeSession(src netip.Addr) {
	s.mu.Lock()
	if s.sessions[src]--; s.sessions[src] <= 0 {
		delete(s.sessions, src)
	}
	idle := len(s.sessions) == 0
	s.mu.Unlock()
	if idle {
		s.releaseWhenIdle()
	}
}

// idleRelease is how long the agent waits, once no session runs, before it
// hands the memory its sessions used back to the system: Go keeps a freed
// heap for reuse, and an agent idles for hours between bursts.
const idleRelease = 2 * time.Second

func (s *Server) releaseWhenIdle() {
	if !s.releasing.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(idleRelease, func() {
		s.releasing.Store(false)
		s.mu.Lock()
		idle := len(s.sessions) == 0
		s.mu.Unlock()
		if idle {
			debug.FreeOSMemory()
		}
	})
}

// refuse tells a connection refused at accept why, in plain text (it has
// no TLS yet), and closes it; past maxRefusing at once it only closes it.
func (s *Server) refuse(conn net.Conn, e *Error) {
	if s.refusing.Add(1) > maxRefusing {
		s.refusing.Add(-1)
		conn.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.refusing.Add(-1)
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(refusalLinger))
		fc := wire.NewConn(conn)
		if fc.Write(&wire.Message{Error: e}) != nil {
			return
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		io.CopyN(io.Discard, conn, 4<<10)
	}()
}

// sessionEnd is a refusal in the middle of a session: the agent tells the
// client and hangs up, since a frame of the session may still be on its
// way or half read.
type sessionEnd struct{ e *Error }

func (s *sessionEnd) Error() string { return s.e.Message }
func (s *sessionEnd) Unwrap() error { return s.e }

func endSession(code wire.Code, format string, args ...any) error {
	return &sessionEnd{refusal(code, format, args...)}
}

// notStarted ends a session whose client did not start it in time.
func (s *Server) notStarted(what string) error {
	return endSession(wire.CodeIdle, "%s within %v of opening the session: the agent ended it (serve --session-start-timeout)",
		what, s.cfg.Conn.SessionStartTimeout)
}

// isTimeout says whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// preAuthCount is how many connections are in their handshake.
func (s *Server) preAuthCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.preAuth
}

// ServerStats are what the agent holds now.
type ServerStats struct {
	Conns    int // connections open: control and QUIC perf
	PreAuth  int // of those, in their handshake
	Sessions int // sessions running
}

// Stats says what the agent holds now.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ServerStats{Conns: s.open, PreAuth: s.preAuth, Sessions: int(s.active.Load())}
}
