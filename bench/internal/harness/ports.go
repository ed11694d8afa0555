package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// FreeAddrs finds n distinct loopback addresses whose port is free for both
// TCP and UDP.
func FreeAddrs(n int) ([]netip.AddrPort, error) {
	var addrs []netip.AddrPort
	var held []io.Closer // until all are found, so that none comes twice
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for tries := 0; len(addrs) < n; tries++ {
		if tries == 20*n {
			return nil, errors.New("find a free port: none free for both TCP and UDP")
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(loopback, 0).String())
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		held = append(held, ln)
		addr := netip.AddrPortFrom(loopback, uint16(ln.Addr().(*net.TCPAddr).Port))
		pc, err := net.ListenPacket("udp", addr.String())
		if err != nil {
			continue
		}
		held = append(held, pc)
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// FreeAddr finds one loopback address whose port is free for both TCP and
// UDP.
func FreeAddr() (netip.AddrPort, error) {
	addrs, err := FreeAddrs(1)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return addrs[0], nil
}
