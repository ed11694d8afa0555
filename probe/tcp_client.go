package probe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/probe-dev/probe/probe/internal/wire"
	"golang.org/x/sync/errgroup"

	"github.com/probe-dev/probe/collector/dump"
)

// TCPResult is what both sides saw of a TCP test.
type TCPResult struct {
	Params  TCPParams
	Started time.Time
	Client  TCPSide
	Agent   TCPSide
}

// maxDialing bounds the streams being connected at once, so that 1024
// streams do not overflow the agent's accept queue.
const maxDialing = 64

// TCP runs a TCP test: it connects p.Streams streams to the agent, moves
// data for p.Duration or p.Bytes as p.Direction says, and gathers both
// sides' byte counts, TCP_INFO samples and CPU times. When ctx ends early,
// it stops and still returns what was measured.
func (c *Client) TCP(ctx context.Context, p TCPParams) (*TCPResult, error) {
	return c.TCPLive(ctx, p, nil)
}

// TCPLive is TCP that also shows live, from this side's sampler, each
// stream's newest sample after every round of samples (by stream index; a
// zero sample for a stream not yet sampled).
func (c *Client) TCPLive(ctx context.Context, p TCPParams, live func(newest []dump.TCPSample)) (*TCPResult, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if err := c.fc.Write(&wire.Message{Open: &wire.Open{Mode: wire.ModeTCP, TCP: &p}}); err != nil {
		return nil, err
	}
	m, err := c.expect("opened")
	if err != nil {
		return nil, err
	}
	agent := netip.AddrPortFrom(c.AgentAddr(), m.Opened.Port)
	conns := make([]*net.TCPConn, p.Streams)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var g errgroup.Group
	g.SetLimit(maxDialing)
	// From the control connection's address: the agent takes streams from
	// it alone.
	d := net.Dialer{Control: setSockOpts(p.SockOpts), Timeout: c.cfg.Timeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(c.LocalAddr(), 0))}
	for i := range conns {
		g.Go(func() error {
			nc, err := d.DialContext(ctx, "tcp", agent.String())
			if err != nil {
				return fmt.Errorf("connect stream %d: %w", i, err)
			}
			conns[i] = nc.(*net.TCPConn)
			var hello [streamHelloLen]byte
			putStreamHello(hello[:], m.Opened.Session, i)
			if _, err := nc.Write(hello[:]); err != nil {
				return fmt.Errorf("stream %d: %w", i, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := c.fc.Write(&wire.Message{TCPStart: &wire.TCPStart{}}); err != nil {
		return nil, err
	}
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, err = c.expect("tcp_start")
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil, err
	}

	res := &TCPResult{Params: p, Started: time.Now()}
	run := newTCPRun(p, true, conns)
	run.live = live
	res.Client = run.run(ctx)

	// The agent's account comes after Finish, whatever ctx says.
	c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout + 5*time.Second))
	defer c.conn.SetDeadline(time.Time{})
	if err := c.fc.Write(&wire.Message{Finish: &wire.Finish{}}); err != nil {
		return nil, err
	}
	res.Agent, err = agentSide(c, "tcp_report", func(m *wire.Message) (TCPSide, bool) { return m.TCPReport.Side, m.TCPReport.Last },
		func(s *TCPSide) *[]dump.TCPStream { return &s.Streams })
	if err != nil {
		return nil, err
	}
	return res, nil
}
