package probe

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/probe-dev/probe/collector"
	"github.com/probe-dev/probe/probe/internal/wire"
)

// DefaultPort is the agent's control port.
const DefaultPort = 7323

// ClientConfig configures a client.
type ClientConfig struct {
	Key     []byte  // pre-shared key; empty: none
	Stamper Stamper // nil: no eBPF timestamps on this side
	// RequireStamper makes a session fail when Stamper cannot timestamp it
	// (--ebpf on); otherwise the session falls back to socket timestamps
	// and its result says why (--ebpf auto).
	RequireStamper bool
	Timeout        time.Duration // connect and handshake; default 10 s
	// Trust checks the agent's certificate on the control connection as
	// for QUIC (--pin, --ca, --insecure); none: the certificate is taken
	// on first use and AgentFingerprint says which it was.
	Trust QUICTrust
	// Local is the address to connect from; invalid: any.
	Local netip.Addr
}

// Client is one control connection to an agent.
type Client struct {
	cfg  ClientConfig
	hold io.Closer // keeps receive timestamps on
	// relay, in tests, returns the address to send an echo session's
	// probes to instead of the agent's.
	relay  func(agent netip.AddrPort) netip.AddrPort
	conn   net.Conn
	fc     *wire.Conn
	limits Limits
	agent  HostInfo
	host   string // as the user named the agent, for TLS names
	// fingerprint is the agent's certificate's SHA-256; verified says
	// whether its proof of the key, --pin or --ca vouched for it.
	fingerprint []byte
	verified    bool
}

// Dial connects to the agent at addr (host or host:port) and completes the
// handshake.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, fmt.Sprint(DefaultPort))
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	if cfg.Local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(cfg.Local, 0))
	}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr):
			return nil, fmt.Errorf("unknown host %s", dnsErr.Name)
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("connect to %s: connection refused (is `probe serve` running there?)", addr)
		}
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	hold, err := collector.HoldRxStamps(ctx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &Client{cfg: cfg, conn: conn, fc: wire.NewConn(conn), hold: hold}
	c.host, _, _ = net.SplitHostPort(addr)
	conn.SetDeadline(time.Now().Add(cfg.Timeout))
	if err := c.handshake(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake with %s: %w", addr, err)
	}
	c.conn.SetDeadline(time.Time{})
	return c, nil
}

// handshake says Hello in plain text, switches to TLS on the agent's
// StartTLS, and proves the key and checks the agent's proof over it.
func (c *Client) handshake(ctx context.Context) error {
	if err := c.fc.Write(&wire.Message{Hello: &wire.Hello{Version: wire.ProtocolVersion, Client: "probe"}}); err != nil {
		return err
	}
	if _, err := c.expect("start_tls"); err != nil {
		return err
	}
	tc, err := c.secureClient(ctx)
	if err != nil {
		return err
	}
	c.conn, c.fc = tc, wire.NewConn(tc)
	cs := tc.ConnectionState()
	c.fingerprint = CertFingerprint(cs.PeerCertificates[0].Raw)
	t := c.cfg.Trust
	c.verified = !t.Insecure && (t.Pin != nil || t.CA != nil)
	auth := &wire.Auth{}
	var secret []byte
	if len(c.cfg.Key) > 0 {
		if secret, err = sessionSecret(cs); err != nil {
			return err
		}
		auth.MAC = clientProof(c.cfg.Key, secret)
	}
	if err := c.fc.Write(&wire.Message{Auth: auth}); err != nil {
		return err
	}
	m, err := c.expect("welcome")
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Code == wire.CodeAuth && len(c.cfg.Key) == 0 {
			return errors.New("the agent requires a key: give it with --key-file")
		}
		return err
	}
	if len(c.cfg.Key) > 0 {
		// A client with a key talks only to an agent that proves it: a
		// keyless agent, or anyone in between, is refused.
		if len(m.Welcome.MAC) == 0 {
			return errors.New("the agent did not prove it knows the key (it has none, or is not the agent): refusing it")
		}
		if !hmac.Equal(m.Welcome.MAC, agentProof(c.cfg.Key, secret)) {
			return errors.New("the agent failed to prove it knows the key")
		}
		c.verified = true
	}
	c.limits, c.agent = m.Welcome.Limits, m.Welcome.Host
	return nil
}

// expect reads the next frame and returns it if it is of the wanted kind; an
// Error frame from the agent becomes the returned error.
func (c *Client) expect(kind string) (*wire.Message, error) {
	m, err := c.fc.Read()
	if err != nil {
		return nil, err
	}
	if m.Error != nil {
		return nil, fmt.Errorf("agent refused: %w", m.Error)
	}
	if m.Kind() != kind {
		return nil, fmt.Errorf("agent sent %s, expected %s", m.Kind(), kind)
	}
	return m, nil
}

// agentSide reads the agent's report frames of kind, sent after Finish, up
// to the last, into one side: the first frame's totals with every frame's
// streams. frame takes a frame's part of the side and its Last; streams
// points at a side's streams.
func agentSide[S, T any](c *Client, kind string, frame func(*wire.Message) (S, bool), streams func(*S) *[]T) (S, error) {
	var side S
	for {
		m, err := c.expect(kind)
		if err != nil {
			return side, fmt.Errorf("agent's report: %w", err)
		}
		part, last := frame(m)
		if *streams(&side) == nil {
			side = part
			*streams(&side) = nil
		}
		*streams(&side) = append(*streams(&side), *streams(&part)...)
		if last {
			return side, nil
		}
	}
}

// Limits are the agent's per-session limits.
func (c *Client) Limits() Limits { return c.limits }

// AgentHost is what the agent said about itself.
func (c *Client) AgentHost() HostInfo { return c.agent }

// AgentAddr is the agent's address on the control connection.
func (c *Client) AgentAddr() netip.Addr {
	return c.conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// LocalAddr is this end's address on the control connection.
func (c *Client) LocalAddr() netip.Addr {
	return c.conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// Close hangs up; the agent frees the session's resources.
func (c *Client) Close() error {
	if c.hold != nil {
		c.hold.Close()
	}
	return c.conn.Close()
}
