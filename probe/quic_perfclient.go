package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// PerfConfig is a QUIC test against any perf server
// (draft-banks-quic-performance), reached without a control connection.
type PerfConfig struct {
	Server string // host:port of the perf server's UDP socket
	Params QUICParams
	// Trust checks the server's certificate; zero: against the system's
	// roots and the host name, as nothing announces a fingerprint.
	Trust   QUICTrust
	Timeout time.Duration // each handshake; default 10 s
	Live    QUICLiveFunc  // sees the client's figures after every sample
}

// PerfQUIC runs the client's half of a QUIC test against a perf server
// without a control connection: the same two timed handshakes (the second
// resumes the first's TLS session in 0-RTT when the server allows it) and
// the same data phase as Client.QUIC, but only the client's side is known.
// Datagram pings are not part of the perf protocol, so there are none:
// Pings and PingEvery in the result's Params are zero.
func PerfQUIC(ctx context.Context, cfg PerfConfig) (*QUICResult, error) {
	p := cfg.Params
	p.Pings, p.PingEvery, p.Exclusive = 0, 0, false
	if err := p.Check(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	host, server, err := resolvePerf(ctx, cfg.Server)
	if err != nil {
		return nil, err
	}
	check := &certCheck{peer: "perf server"}
	tlsConf, err := perfTLS(cfg.Trust, host, check)
	if err != nil {
		return nil, err
	}
	local, err := sourceFor(server)
	if err != nil {
		return nil, err
	}
	cq, err := openClientQUIC(netip.AddrPortFrom(local, 0))
	if err != nil {
		return nil, err
	}
	defer cq.close()
	res := &QUICResult{Params: p, PerfOnly: true}
	qc, metrics, err := cq.connectTwice(ctx, res, server, tlsConf, check, cfg.Timeout, p.Uploads())
	if err != nil {
		return nil, err
	}
	defer qc.CloseWithError(0, "")
	side, err := quicData(ctx, p, qc, metrics, nil, "perf server", cfg.Live)
	if err != nil {
		return nil, err
	}
	res.Client, res.Started = cq.side(side), side.start
	return res, nil
}

// resolvePerf splits host:port and resolves the host.
func resolvePerf(ctx context.Context, addr string) (string, netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return "", netip.AddrPort{}, fmt.Errorf("perf server %q: want HOST:PORT", addr)
	}
	ua, err := (&net.Resolver{}).LookupNetIP(ctx, "ip", host)
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		return "", netip.AddrPort{}, fmt.Errorf("unknown host %s", host)
	case err != nil:
		return "", netip.AddrPort{}, fmt.Errorf("perf server %s: %w", addr, err)
	}
	pn, err := net.LookupPort("udp", port)
	if err != nil {
		return "", netip.AddrPort{}, fmt.Errorf("perf server %s: %w", addr, err)
	}
	return host, netip.AddrPortFrom(ua[0].Unmap(), uint16(pn)), nil
}

// sourceFor is this host's address on the route to dst, so that the QUIC
// socket is bound as the control path's is, to one address of dst's family.
// Connecting a UDP socket sends nothing.
func sourceFor(dst netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route to perf server %s: %w", dst, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
