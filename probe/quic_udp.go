package probe

import (
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// quicBufferSize is what quic-go asks of a UDP socket's buffers (its
// desiredBufferSize on Linux); smaller ones drop bursts at high rates.
const quicBufferSize = 7 << 20

// listenQUICUDP opens the UDP socket of a QUIC endpoint and raises its
// buffers as quic-go would, so that a shortfall becomes our one warning
// (quic-go then finds them large enough and stays quiet); the warning says
// how to lift the system's limit.
func listenQUICUDP(addr netip.AddrPort) (*net.UDPConn, UDPBuffers, []string, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, UDPBuffers{}, nil, fmt.Errorf("open the QUIC socket on %s: %w", addr, err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, UDPBuffers{}, nil, err
	}
	var b UDPBuffers
	rc.Control(func(fd uintptr) {
		for _, o := range []struct{ set, force int }{{unix.SO_RCVBUF, unix.SO_RCVBUFFORCE}, {unix.SO_SNDBUF, unix.SO_SNDBUFFORCE}} {
			// The FORCE options pass the sysctl limit, with CAP_NET_ADMIN.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, quicBufferSize) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.set, quicBufferSize)
			}
		}
		b.Rcv, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		b.Snd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	})
	return c, b, bufferWarnings(b), nil
}

// ListenQUIC opens a UDP socket for ServePerf on addr (host:port), its
// buffers raised as quic-go asks; the warnings say when the system's
// limits stopped that.
func ListenQUIC(addr string) (*net.UDPConn, []string, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("QUIC perf address %s: %w", addr, err)
	}
	c, _, warn, err := listenQUICUDP(ua.AddrPort())
	return c, warn, err
}

// warnings say which buffer the system kept below what quic-go wants, and
// how to lift the limit.
func bufferWarnings(b UDPBuffers) []string {
	var warn []string
	// The kernel reports twice what it was given; so does quic-go's check.
	if b.Rcv < quicBufferSize {
		warn = append(warn, fmt.Sprintf("UDP receive buffer is %d KiB (as the kernel counts it), quic-go wants %d KiB: the system limit stops it "+
			"(run as root, or sysctl -w net.core.rmem_max=%d); QUIC may drop packets at high rates", b.Rcv>>10, quicBufferSize>>10, quicBufferSize))
	}
	if b.Snd < quicBufferSize {
		warn = append(warn, fmt.Sprintf("UDP send buffer is %d KiB (as the kernel counts it), quic-go wants %d KiB: the system limit stops it "+
			"(run as root, or sysctl -w net.core.wmem_max=%d)", b.Snd>>10, quicBufferSize>>10, quicBufferSize))
	}
	return warn
}
