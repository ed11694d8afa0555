package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/quic-go/quic-go"
)

// ServePerf answers any QUIC perf client (draft-banks-quic-performance) on
// udp until ctx ends, outside control sessions, so that other perf clients
// can measure against the agent. Since anyone may connect, every
// connection counts as a session against MaxSessions, gets the byte budget
// and the duration of one session, and its pings are echoed at their size.
// Off unless asked for (serve --quic-perf): the design answers UDP only for
// sessions opened on the control connection.
func (s *Server) ServePerf(ctx context.Context, udp *net.UDPConn) error {
	tlsConf, _, err := s.quic.get(s.cfg.QUICCert)
	if err != nil {
		return err
	}
	tr := &quic.Transport{Conn: udp,
		// Anyone may send an Initial with any source address: answer a
		// client without a token from us with a Retry, smaller than its
		// Initial, so that a spoofed address gets no more bytes than the
		// spoofer sent. A returning client's token (NEW_TOKEN) skips it.
		VerifySourceAddress: func(net.Addr) bool { return true },
		// Called once the address is validated, before the handshake: the
		// connection counts against the control connections' caps from
		// here until quic-go ends ctx (closed, or the handshake failed).
		ConnContext: func(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
			if s.exclusive.Load() {
				return nil, errors.New("an exclusive test is running")
			}
			src := addrOfUDP(ci.RemoteAddr)
			if e := s.admit(src); e != nil {
				s.log.Info("QUIC perf connection refused", "client", ci.RemoteAddr.String(), "err", e)
				return nil, e
			}
			pc := &perfCount{s: s, src: src}
			context.AfterFunc(ctx, pc.left)
			return context.WithValue(ctx, perfCountKey{}, pc), nil
		}}
	defer tr.Close()
	ln, err := tr.ListenEarly(tlsConf, quicConfig())
	if err != nil {
		return fmt.Errorf("listen for QUIC perf clients: %w", err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	lim := s.cfg.Limits
	for {
		c, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept QUIC perf clients: %w", err)
		}
		if n := s.active.Add(1); n > int64(lim.MaxSessions) {
			s.active.Add(-1)
			c.CloseWithError(1, fmt.Sprintf("agent busy: %d sessions running, limit %d", n-1, lim.MaxSessions))
			continue
		}
		s.log.Info("perf client", "client", c.RemoteAddr().String())
		if pc, ok := c.Context().Value(perfCountKey{}).(*perfCount); ok {
			// Accepted early (0-RTT): in its handshake until it completes.
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-c.HandshakeComplete():
					pc.handshaken()
				case <-c.Context().Done():
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.active.Add(-1)
			cctx, cancel := context.WithTimeout(ctx, lim.MaxDuration)
			defer cancel()
			a := &quicAgent{p: QUICParams{WriteSize: 64 << 10}, limit: lim.MaxBytes}
			a.budget.Store(lim.MaxBytes)
			a.serveConn(cctx, c)
			select {
			case <-c.Context().Done():
			case <-cctx.Done():
				c.CloseWithError(0, "the agent's duration limit")
			}
			a.loops.Wait()
			a.streams.Wait()
		}()
	}
}

// perfCount is a QUIC perf connection's place in the connection caps.
type perfCount struct {
	s         *Server
	src       netip.Addr
	preAuth   sync.Once
	leaveOnce sync.Once
}

type perfCountKey struct{}

// handshaken ends the connection's pre-authentication phase.
func (p *perfCount) handshaken() { p.preAuth.Do(p.s.authenticated) }

// left uncounts the connection, whenever quic-go ends it.
func (p *perfCount) left() {
	p.handshaken()
	p.leaveOnce.Do(func() { p.s.left(nil, p.src) })
}

// addrOfUDP is a UDP peer's IP address, IPv4 unmapped.
func addrOfUDP(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}
