package collector

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// IfindexFor returns the interface that traffic to dst leaves by, in the
// caller's network namespace (loopback for a local address).
func IfindexFor(dst netip.Addr) (int, error) {
	routes, err := netlink.RouteGet(dst.AsSlice())
	if err != nil {
		return 0, fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return 0, fmt.Errorf("route to %s: no interface", dst)
	}
	return routes[0].LinkIndex, nil
}
